"""What travels on the wire: timestamps, the answers' headers, the backoff schedule."""

from __future__ import annotations

import datetime as _dt
import email.utils
import random
from typing import Optional, Union

_UTC = _dt.timezone.utc


def sent_at_now() -> str:
    """Now, RFC 3339 in UTC with milliseconds (``2026-11-30T11:58:02.123Z``): ``sent_at``."""
    now = _dt.datetime.now(_UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def occurred_at_text(value: Union[_dt.datetime, str, None]) -> str:
    """``occurred_at`` as sent: now (microseconds, UTC) when ``None``; an aware ``datetime`` in
    UTC; a string as given (the server is the judge of it).

    A naive ``datetime`` is refused: its offset is unknown, and guessing one would store a time
    that is off by hours without anyone noticing.
    """
    if value is None:
        return _dt.datetime.now(_UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "occurred_at must be a timezone-aware datetime "
                "(for example datetime.now(timezone.utc)), not a naive one"
            )
        return value.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, str):
        return value
    raise TypeError(
        f"occurred_at must be a datetime, an RFC 3339 string or None, not {type(value).__name__}"
    )


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """The ``Retry-After`` header in seconds from now: delay-seconds or an HTTP date; ``None``
    when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    return max(0.0, (when - _dt.datetime.now(_UTC)).total_seconds())


def policy_quota(value: Optional[str]) -> Optional[int]:
    """The ``q`` (the burst) of the ``RateLimit-Policy`` field
    (``"events";q=200000;w=2``): of the ``events`` policy when several are listed, else of the
    first that has one. ``None`` when absent or unreadable."""
    if not value:
        return None
    found: Optional[int] = None
    for member in value.split(","):
        parts = [part.strip() for part in member.split(";")]
        name = parts[0].strip('"')
        for param in parts[1:]:
            key, _, raw = param.partition("=")
            if key.strip() != "q":
                continue
            try:
                quota = int(raw.strip())
            except ValueError:
                continue
            if quota < 1:
                continue
            if name == "events":
                return quota
            if found is None:
                found = quota
    return found


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base × 2^attempt)]."""
    return random.uniform(0.0, min(cap, base * (2.0 ** min(attempt, 32))))
