"""The values the client hands back: counts, answers, failed events, errors."""

from __future__ import annotations

import json
from typing import Any, Dict, List, NamedTuple, Optional, Union, overload


def _item(counts: Any, key: Union[str, int, slice]) -> Any:
    """A counter by name (``result["delivered"]``), or as a tuple reads it by index or slice."""
    if isinstance(key, str):
        if key not in counts._fields:
            raise KeyError(key)
        return getattr(counts, key)
    return tuple.__getitem__(counts, key)

class FlushResult(NamedTuple):
    """What ``flush`` (and ``close``) found, counting every event enqueued before the call:
    ``delivered + failed + pending`` is that number.

    Fields are read by name (``result.pending``), by index, by unpacking
    (``delivered, failed, pending = client.flush()``) or by key (``result["pending"]``).
    """

    #: Acknowledged by the server (stored, or found stored: deduplicated).
    delivered: int
    #: Refused by the server, or given up after ``max_retry_time``; each went to ``on_error``.
    failed: int
    #: Neither yet when the call returned (the timeout passed first).
    pending: int

    @overload  # type: ignore[override]
    def __getitem__(self, key: str) -> int: ...

    @overload
    def __getitem__(self, key: int) -> int: ...

    @overload
    def __getitem__(self, key: slice) -> "tuple[int, ...]": ...

    def __getitem__(self, key: Union[str, int, slice]) -> Any:
        return _item(self, key)


class Stats(NamedTuple):
    """Counters since the client was made (``stats()``); read like :class:`FlushResult`.

    ``enqueued = delivered + failed + abandoned + pending``; ``dropped`` events were never
    enqueued. ``send_now`` is not counted here: it answers for itself.
    """

    #: Events ``send`` accepted into the queue.
    enqueued: int
    #: Events the server acknowledged (``deduplicated`` ones included).
    delivered: int
    #: Of ``delivered``, those the server already had (a retry of a stored event, or a repeated key).
    deduplicated: int
    #: Events refused by the server or given up after ``max_retry_time`` (each went to ``on_error``).
    failed: int
    #: Events ``send`` did not take because the queue was full.
    dropped: int
    #: Times an event was sent again (a batch of 100 sent a second time adds 100).
    retried: int
    #: Events enqueued and not settled yet (queued or in flight).
    pending: int
    #: Events left unconfirmed when ``close`` ran out of time (each went to ``on_error``).
    abandoned: int

    @overload  # type: ignore[override]
    def __getitem__(self, key: str) -> int: ...

    @overload
    def __getitem__(self, key: int) -> int: ...

    @overload
    def __getitem__(self, key: slice) -> "tuple[int, ...]": ...

    def __getitem__(self, key: Union[str, int, slice]) -> Any:
        return _item(self, key)


class SendResult(Dict[str, Any]):
    """The server's answer to ``send_now``: the JSON object itself (a ``dict``:
    ``result["event_id"]``), with its usual fields also as attributes."""

    @property
    def event_id(self) -> str:
        return str(self["event_id"])

    @property
    def deduplicated(self) -> bool:
        return bool(self.get("deduplicated", False))

    @property
    def received_at(self) -> Optional[str]:
        value = self.get("received_at")
        return None if value is None else str(value)

    @property
    def clock_skew_ms(self) -> Optional[int]:
        value = self.get("clock_skew_ms")
        return None if value is None else int(value)


#: Why an event failed (``FailedEvent.reason``).
REJECTED = "rejected"
BATCH_REJECTED = "batch_rejected"
RETRIES_EXHAUSTED = "retries_exhausted"
ABANDONED = "abandoned"


class FailedEvent:
    """An event that was not delivered, as handed to ``on_error`` (one call per event).

    ``reason`` is one of:

    - ``"rejected"``: the server refused this item of a batch (validation, a schema violation,
      ``idempotency_key_reused``); ``errors`` are the item's errors, ``event_id`` the original
      event when the key was reused.
    - ``"batch_rejected"``: the server refused the whole request (``400``, ``401``, ``403``,
      ``413``, ``415``, ``422``, another ``4xx``); ``status`` and ``problem`` say why.
    - ``"retries_exhausted"``: no acknowledgement within ``max_retry_time``; ``status`` is the
      last answer's status (``None`` after a connection error).
    - ``"abandoned"``: ``close`` ran out of time first. If a request was in flight, the
      server may have stored it; sending it again with the same key is safe.

    Its ``repr`` leaves out ``data``. Attributes may also be read by key (``failure["errors"]``).
    """

    __slots__ = ("idempotency_key", "event_type", "reason", "errors", "status", "event_id",
                 "problem", "_body")

    def __init__(
        self,
        *,
        idempotency_key: str,
        event_type: str,
        reason: str,
        errors: List[Dict[str, Any]],
        status: Optional[int] = None,
        event_id: Optional[str] = None,
        problem: Optional[Dict[str, Any]] = None,
        body: bytes = b"{}",
    ) -> None:
        self.idempotency_key = idempotency_key
        self.event_type = event_type
        self.reason = reason
        self.errors = errors
        self.status = status
        self.event_id = event_id
        self.problem = problem
        self._body = body

    @property
    def event(self) -> Dict[str, Any]:
        """The event as it was sent: ``event_type``, ``occurred_at``, ``idempotency_key``, ``data``."""
        value: Dict[str, Any] = json.loads(self._body)
        return value

    @property
    def data(self) -> Any:
        return self.event.get("data")

    @property
    def occurred_at(self) -> str:
        return str(self.event.get("occurred_at"))

    @property
    def codes(self) -> List[str]:
        """The ``code`` of each error (``["invalid_event_type", …]``)."""
        return [str(error.get("code")) for error in self.errors if isinstance(error, dict)]

    _KEYS = frozenset({"idempotency_key", "event_type", "reason", "errors", "status", "event_id",
                       "problem", "event", "data", "occurred_at", "codes"})

    def __getitem__(self, name: str) -> Any:
        """The attributes by name too (``failure["errors"]``), like the other results."""
        if name not in self._KEYS:
            raise KeyError(name)
        return getattr(self, name)

    def __repr__(self) -> str:
        return (
            f"FailedEvent(idempotency_key={self.idempotency_key!r}, event_type={self.event_type!r}, "
            f"reason={self.reason!r}, status={self.status!r}, codes={self.codes!r}, "
            f"event_id={self.event_id!r})"
        )


class IntakeError(Exception):
    """The base of the client's errors."""


class QueueFullError(IntakeError):
    """``send`` with ``on_full="block"`` found the queue still full after ``block_timeout``;
    the event was not enqueued (and is counted as ``dropped``)."""


class ClientClosedError(IntakeError):
    """``send`` or ``send_now`` after ``close`` began."""


class RequestError(IntakeError):
    """``send_now`` was refused (``status``, the server's ``problem`` document), or got no
    acknowledgement in time (``status`` of the last answer, or ``None`` after a connection
    error). ``retryable`` says whether sending the same event again later may succeed."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        problem: Optional[Dict[str, Any]] = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.retryable = retryable

    @property
    def errors(self) -> List[Dict[str, Any]]:
        """The problem's ``errors`` (empty when it has none)."""
        if self.problem is None:
            return []
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
