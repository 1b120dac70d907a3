"""The client: a bounded queue, one worker thread that sends it in batches, retries that reuse
the same idempotency keys, and a synchronous ``send_now``."""

from __future__ import annotations

import atexit
import datetime as _dt
import gzip
import json
import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import httpx

from . import _types
from ._types import (
    ClientClosedError,
    FailedEvent,
    FlushResult,
    QueueFullError,
    RequestError,
    SendResult,
    Stats,
)
from ._wire import full_jitter, occurred_at_text, policy_quota, retry_after_seconds, sent_at_now

__all__ = ["Client"]

_log = logging.getLogger("intake_client")

#: The server takes at most this many events in one batch.
MAX_BATCH_ITEMS = 1000
#: Answers worth another try: the request may not have been handled, or handled later.
_RETRYABLE = frozenset({408, 429})
#: How many caller-given keys the process remembers the occurred_at of.
REMEMBERED_KEYS = 10_000
#: Room in a batch body for everything but the events: `{"sent_at":"…","events":[…]}`.
_ENVELOPE_BYTES = 64

try:
    from importlib.metadata import version as _dist_version

    _VERSION = _dist_version("intake-client")
except Exception:  # pragma: no cover - not installed (source checkout)
    _VERSION = "0"

OnError = Callable[[FailedEvent], Any]


class _Event:
    """One enqueued event: its JSON encoded once, at enqueue, and never changed (so a retry
    sends exactly the same payload under the same key)."""

    __slots__ = ("seq", "key", "event_type", "body", "since", "settled")

    def __init__(self, key: str, event_type: str, body: bytes) -> None:
        self.seq = 0
        self.key = key
        self.event_type = event_type
        self.body = body
        self.since = 0.0
        self.settled = False


class _Waiter:
    """A ``flush`` in progress: the counts of the events enqueued before it."""

    __slots__ = ("target", "delivered", "failed", "abandoned")

    def __init__(self, target: int, delivered: int, failed: int, abandoned: int) -> None:
        self.target = target
        self.delivered = delivered
        self.failed = failed
        self.abandoned = abandoned

    def done(self) -> bool:
        return self.delivered + self.failed + self.abandoned >= self.target

    def result(self) -> FlushResult:
        return FlushResult(self.delivered, self.failed, self.target - self.delivered - self.failed)


class _Outcome:
    """What one POST of a batch came to."""

    __slots__ = ("kind", "status", "why", "retry_after", "results", "problem")

    DONE, RETRY, SPLIT, FATAL = "done", "retry", "split", "fatal"

    def __init__(
        self,
        kind: str,
        *,
        status: Optional[int] = None,
        why: str = "",
        retry_after: Optional[float] = None,
        results: Optional[List[Any]] = None,
        problem: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.kind = kind
        self.status = status
        self.why = why
        self.retry_after = retry_after
        self.results = results
        self.problem = problem


# A settled event: (event, outcome, deduplicated, the FailedEvent when it failed).
_Settled = Tuple[_Event, str, bool, Optional[FailedEvent]]


class Client:
    """Sends events to an intake server in the background, in batches, exactly once.

    ``send`` only enqueues (it never waits for the network) and returns the event's
    idempotency key; a daemon thread sends the queue through ``POST /v1/events/batch`` and
    retries what may not have arrived with the same keys, so the server stores each event once.
    See the package's README for every option and guarantee.

    The client is thread-safe: any thread may call any method. Use one client per process
    (make it after forking, not before).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_batch: int = 100,
        flush_interval: float = 0.5,
        max_queue: int = 10_000,
        on_full: Literal["block", "drop"] = "block",
        block_timeout: Optional[float] = 5.0,
        max_retry_time: float = 600.0,
        on_error: Optional[OnError] = None,
        timeout: float = 10.0,
        gzip_threshold: int = 4096,
        max_batch_bytes: int = 5_000_000,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        send_now_timeout: float = 30.0,
        flush_at_exit: bool = True,
        exit_timeout: float = 5.0,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if not 1 <= max_batch <= MAX_BATCH_ITEMS:
            raise ValueError(f"max_batch must be 1 to {MAX_BATCH_ITEMS}")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if on_full not in ("block", "drop"):
            raise ValueError('on_full must be "block" or "drop"')
        if flush_interval <= 0 or timeout <= 0 or max_retry_time < 0:
            raise ValueError("flush_interval and timeout must be positive, max_retry_time >= 0")
        if block_timeout is not None and block_timeout < 0:
            raise ValueError("block_timeout must be >= 0 or None")
        if max_batch_bytes < 1024:
            raise ValueError("max_batch_bytes must be at least 1024")

        self._base_url = base_url.rstrip("/")
        self._max_batch = max_batch
        self._flush_interval = float(flush_interval)
        self._max_queue = max_queue
        self._on_full = on_full
        self._block_timeout = block_timeout
        self._max_retry_time = float(max_retry_time)
        self._on_error = on_error
        self._gzip_threshold = gzip_threshold
        self._max_batch_bytes = max_batch_bytes
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._send_now_timeout = send_now_timeout
        self._exit_timeout = exit_timeout

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the worker waits for events
        self._space = threading.Condition(self._lock)  # blocked senders wait for room
        self._settled = threading.Condition(self._lock)  # flushes wait for acknowledgements
        self._stop = threading.Event()
        self._queue: Deque[_Event] = deque()
        self._inflight: List[_Event] = []
        self._waiters: List[_Waiter] = []
        self._held = 0  # enqueued and not settled: the queue's fill level
        self._seq = 0
        self._delivered = 0
        self._deduplicated = 0
        self._failed = 0
        self._dropped = 0
        self._retried = 0
        self._abandoned = 0
        self._burst: Optional[int] = None  # the token's burst (RateLimit-Policy q), once seen
        self._closing = False  # send() refuses from now on
        self._close_started = False
        self._warned_drop = False

        # The token travels in this header only; it is never logged nor shown in a repr.
        headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": f"intake-client-python/{_VERSION}",
            "Accept": "application/json",
        }
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
        http_timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._worker_http = httpx.Client(
            base_url=self._base_url, headers=headers, timeout=http_timeout, limits=limits,
            transport=transport,
        )
        self._now_http = httpx.Client(
            base_url=self._base_url, headers=headers, timeout=http_timeout, transport=transport,
        )
        self._worker = threading.Thread(
            target=self._run, name="intake-client-worker", daemon=True
        )
        self._worker.start()
        if flush_at_exit:
            _flush_at_exit(self)

    def __repr__(self) -> str:
        return f"<intake_client.Client {self._base_url}>"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- sending

    def send(
        self,
        event_type: str,
        data: Mapping[str, Any],
        occurred_at: Union[_dt.datetime, str, None] = None,
        idempotency_key: Optional[str] = None,
    ) -> str:
        """Enqueues one event and returns its idempotency key (a new UUID when none is given),
        without touching the network.

        ``occurred_at`` defaults to now; a ``datetime`` must be timezone-aware, a string is sent
        as given. ``data`` is encoded to JSON here, once: later changes to the object do not
        change the event. Raises ``TypeError``/``ValueError`` for what cannot be sent at all
        (data that is not JSON, a naive datetime, an event larger than ``max_batch_bytes``);
        whatever the server refuses goes to ``on_error`` instead.

        When the queue is full: with ``on_full="drop"`` the event is counted as dropped and the
        key returned; with ``"block"`` the call waits up to ``block_timeout`` for room, then
        raises :class:`QueueFullError` (the event counted as dropped).
        """
        key, event = self._encode(event_type, data, occurred_at, idempotency_key)
        with self._lock:
            if self._closing:
                raise ClientClosedError("the client is closed")
            if self._held >= self._max_queue:
                if not self._wait_for_room():
                    self._dropped += 1
                    if self._on_full == "drop":
                        if not self._warned_drop:
                            self._warned_drop = True
                            _log.warning(
                                "queue full (max_queue=%d): dropping events (counted in stats().dropped)",
                                self._max_queue,
                            )
                        else:
                            _log.debug("queue full: an event was dropped")
                        return key
                    raise QueueFullError(
                        f"the queue still held {self._max_queue} events after "
                        f"{self._block_timeout} s; the event was not enqueued"
                    )
            self._seq += 1
            event.seq = self._seq
            event.since = time.monotonic()
            self._held += 1
            self._queue.append(event)
            queued = len(self._queue)
            if queued == 1 or queued >= self._batch_size():
                self._work.notify()
        return key

    def _wait_for_room(self) -> bool:
        """With the lock held and the queue full: waits for room as ``on_full`` says. ``True``
        when there is room now."""
        if self._on_full == "drop" or threading.current_thread() is self._worker:
            return False  # the worker (an on_error callback) cannot wait for itself
        deadline = None if self._block_timeout is None else time.monotonic() + self._block_timeout
        while self._held >= self._max_queue:
            if self._closing:
                raise ClientClosedError("the client is closed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._space.wait(remaining)
        return True

    def _encode(
        self,
        event_type: str,
        data: Mapping[str, Any],
        occurred_at: Union[_dt.datetime, str, None],
        idempotency_key: Optional[str],
    ) -> Tuple[str, _Event]:
        if not isinstance(event_type, str):
            raise TypeError(f"event_type must be a string, not {type(event_type).__name__}")
        if idempotency_key is None:
            key = str(uuid.uuid4())
            when = occurred_at_text(occurred_at)
        elif isinstance(idempotency_key, str):
            key = idempotency_key
            when = _remembered_occurred_at(key, occurred_at)
        else:
            raise TypeError(
                f"idempotency_key must be a string or None, not {type(idempotency_key).__name__}"
            )
        fields = {
            "event_type": event_type,
            "occurred_at": when,
            "idempotency_key": key,
            "data": data,
        }
        try:
            body = json.dumps(
                fields, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
        except TypeError as exc:  # an object JSON has no form for: the message names its type
            raise TypeError(f"the event cannot be encoded as JSON: {exc}") from None
        except ValueError as exc:  # NaN or infinity; a lone surrogate in a string
            raise ValueError(f"the event cannot be encoded as JSON: {exc}") from None
        if len(body) + _ENVELOPE_BYTES > self._max_batch_bytes:
            raise ValueError(
                f"the event is {len(body)} bytes as JSON; at most "
                f"{self._max_batch_bytes - _ENVELOPE_BYTES} fit in a batch (max_batch_bytes)"
            )
        return key, _Event(key, event_type, body)


    # ------------------------------------------------------------------ flush, close, stats

    def flush(self, timeout: Optional[float] = None) -> FlushResult:
        """Waits until every event enqueued before the call is acknowledged or failed, or until
        ``timeout`` seconds pass (``None``: no limit; retries end after ``max_retry_time``
        anyway). Sends what is queued at once, without waiting for ``flush_interval``.

        Returns :class:`FlushResult` ``(delivered, failed, pending)`` over the events enqueued
        before the call; ``pending == 0`` means all of them are settled.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            waiter = _Waiter(self._seq, self._delivered, self._failed, self._abandoned)
            if waiter.done() or threading.current_thread() is self._worker:
                return waiter.result()
            self._waiters.append(waiter)
            self._work.notify()
            try:
                while not waiter.done():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._settled.wait(remaining)
            finally:
                self._waiters.remove(waiter)
            return waiter.result()

    def close(self, timeout: Optional[float] = 10.0) -> FlushResult:
        """Flushes for at most ``timeout`` seconds, then stops the worker and returns what the
        flush found; never takes (much) longer than ``timeout``, even with the server down.

        Events still unconfirmed then are abandoned: counted in ``stats().abandoned`` and handed
        to ``on_error`` with reason ``"abandoned"``. ``send`` raises
        :class:`ClientClosedError` from the moment ``close`` starts. Closing twice is harmless.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            already = self._close_started
            self._close_started = True
        if already:
            return self.flush(0)
        self._stop_accepting()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        result = self.flush(remaining)
        self._stop.set()
        with self._lock:
            self._work.notify()
            left = list(self._queue) + [e for e in self._inflight if not e.settled]
            self._queue.clear()
        errors = [{
            "code": "client_closed",
            "message": "close() ran out of time before the server acknowledged this event; it may "
            "or may not be stored (sending it again with the same key is safe)",
        }]
        abandoned = self._settle(
            [(e, _types.ABANDONED, False, self._failure(e, _types.ABANDONED, errors)) for e in left]
        )
        if abandoned:
            _log.warning(
                "close: %d events were not acknowledged in time and are abandoned", abandoned
            )
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            remaining = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            self._worker.join(min(remaining, 1.0))
        self._now_http.close()
        _AT_EXIT.discard(self)
        return result

    def _stop_accepting(self) -> None:
        """From now on ``send`` refuses, and the worker sends what is queued without waiting."""
        with self._lock:
            self._closing = True
            self._work.notify()
            self._space.notify_all()

    def stats(self) -> Stats:
        """The counters since the client was made (see :class:`Stats`)."""
        with self._lock:
            return Stats(
                enqueued=self._seq,
                delivered=self._delivered,
                deduplicated=self._deduplicated,
                failed=self._failed,
                dropped=self._dropped,
                retried=self._retried,
                pending=self._held,
                abandoned=self._abandoned,
            )

    # ------------------------------------------------------------------------ the worker

    def _batch_size(self) -> int:
        if self._burst is not None and self._burst < self._max_batch:
            return self._burst
        return self._max_batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._deliver(batch)
        except BaseException as exc:  # pragma: no cover - a defect; keep the process alive
            _log.error("intake client worker stopped by an unexpected %s", type(exc).__name__)
        finally:
            self._worker_http.close()

    def _next_batch(self) -> Optional[List[_Event]]:
        """Waits until a batch is due (full, ``flush_interval`` old, or a flush or close is
        waiting) and takes it from the queue; ``None`` when the client stops."""
        with self._lock:
            while True:
                if self._stop.is_set():
                    return None
                if self._queue:
                    size = self._batch_size()
                    due = len(self._queue) >= size or self._closing or bool(self._waiters)
                    if not due:
                        wait = self._queue[0].since + self._flush_interval - time.monotonic()
                        if wait > 0:
                            self._work.wait(wait)
                            continue
                    batch: List[_Event] = []
                    room = self._max_batch_bytes - _ENVELOPE_BYTES
                    while self._queue and len(batch) < size:
                        cost = len(self._queue[0].body) + 1
                        if batch and cost > room:
                            break
                        room -= cost
                        batch.append(self._queue.popleft())
                    self._inflight = batch
                    return batch
                self._work.wait()

    def _deliver(self, batch: List[_Event]) -> None:
        """Sends a batch until every event in it is settled, splitting it when the token's
        burst is smaller; gives up at ``max_retry_time`` after the first attempt."""
        deadline = time.monotonic() + self._max_retry_time
        chunks: Deque[List[_Event]] = deque([batch])
        while chunks:
            more = self._send_chunk(chunks.popleft(), deadline)
            if more is None:
                return  # stopping: close() abandons what is left
            chunks.extendleft(reversed(more))
        with self._lock:
            self._inflight = []

    def _send_chunk(self, chunk: List[_Event], deadline: float) -> Optional[List[List[_Event]]]:
        """Sends one chunk until settled (``[]``), or returns the smaller chunks to send
        instead, or ``None`` when the client stops."""
        attempt = 0
        while True:
            if self._stop.is_set():
                return None
            size = self._batch_size()
            if len(chunk) > size:
                return [chunk[i:i + size] for i in range(0, len(chunk), size)]
            outcome = self._post_batch(chunk)
            if outcome.kind == _Outcome.DONE:
                self._settle_results(chunk, outcome.results or [])
                return []
            if outcome.kind == _Outcome.FATAL:
                _log.warning(
                    "batch of %d events refused with HTTP %s (%s); not retried",
                    len(chunk), outcome.status, outcome.why,
                )
                self._fail_all(chunk, _types.BATCH_REJECTED, outcome)
                return []
            if outcome.kind == _Outcome.SPLIT:
                _log.warning(
                    "batch of %d events exceeds the token's burst of %s; sending it in smaller "
                    "batches from now on", len(chunk), self._burst,
                )
                self._count_retried(len(chunk))
                continue
            now = time.monotonic()
            if now >= deadline:
                _log.warning(
                    "batch of %d events: no acknowledgement within max_retry_time (%s s), "
                    "last %s; giving up", len(chunk), self._max_retry_time, outcome.why,
                )
                self._fail_all(chunk, _types.RETRIES_EXHAUSTED, outcome)
                return []
            if outcome.retry_after is not None:
                delay = outcome.retry_after + full_jitter(0, self._backoff_base, self._backoff_base)
            else:
                delay = full_jitter(attempt, self._backoff_base, self._backoff_max)
            delay = min(delay, deadline - now)
            _log.info(
                "batch of %d events: %s; retrying in %.2f s (attempt %d)",
                len(chunk), outcome.why, delay, attempt + 2,
            )
            if self._stop.wait(delay):
                return None
            attempt += 1
            self._count_retried(len(chunk))

    def _count_retried(self, n: int) -> None:
        with self._lock:
            self._retried += n

    def _post_batch(self, chunk: List[_Event]) -> _Outcome:
        body = b"".join((
            b'{"sent_at":"', sent_at_now().encode("ascii"), b'","events":[',
            b",".join(event.body for event in chunk), b"]}",
        ))
        headers = {"Content-Type": "application/json"}
        if len(body) > self._gzip_threshold:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        _log.debug("sending a batch of %d events (%d bytes)", len(chunk), len(body))
        try:
            response = self._worker_http.post("/v1/events/batch", content=body, headers=headers)
        except httpx.HTTPError as exc:
            return _Outcome(_Outcome.RETRY, why=_describe(exc))
        status = response.status_code
        quota = policy_quota(response.headers.get("RateLimit-Policy"))
        if quota is not None:
            with self._lock:
                self._burst = quota
        if status == 200:
            results = _json_or_none(response)
            items = results.get("results") if isinstance(results, dict) else None
            if not isinstance(items, list) or len(items) != len(chunk):
                return _Outcome(_Outcome.RETRY, status=status, why="HTTP 200 with an unreadable answer")
            return _Outcome(_Outcome.DONE, status=status, results=items)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if status == 429 and retry_after is None:
            if quota is not None and quota < len(chunk):
                return _Outcome(_Outcome.SPLIT, status=status, why="HTTP 429 over the burst")
            return _Outcome(_Outcome.RETRY, status=status, why="HTTP 429")
        if status in _RETRYABLE or status >= 500:
            return _Outcome(_Outcome.RETRY, status=status, why=f"HTTP {status}", retry_after=retry_after)
        problem = _json_or_none(response)
        problem = problem if isinstance(problem, dict) else None
        kind = problem.get("type") if problem else None
        return _Outcome(
            _Outcome.FATAL, status=status, problem=problem,
            why=str(kind) if isinstance(kind, str) else f"HTTP {status}",
        )

    # -------------------------------------------------------------------------- settling

    def _failure(
        self,
        event: _Event,
        reason: str,
        errors: List[Dict[str, Any]],
        *,
        status: Optional[int] = None,
        event_id: Optional[str] = None,
        problem: Optional[Dict[str, Any]] = None,
    ) -> FailedEvent:
        return FailedEvent(
            idempotency_key=event.key, event_type=event.event_type, reason=reason, errors=errors,
            status=status, event_id=event_id, problem=problem, body=event.body,
        )

    def _settle_results(self, chunk: List[_Event], results: List[Any]) -> None:
        settled: List[_Settled] = []
        codes = set()
        for event, result in zip(chunk, results):
            if isinstance(result, dict) and result.get("status") == "ok":
                settled.append((event, "delivered", bool(result.get("deduplicated")), None))
            else:
                result = result if isinstance(result, dict) else {}
                errors = result.get("errors")
                errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
                event_id = result.get("event_id")
                failure = self._failure(
                    event, _types.REJECTED, errors,
                    event_id=event_id if isinstance(event_id, str) else None,
                )
                codes.update(failure.codes)
                settled.append((event, "failed", False, failure))
        rejected = sum(1 for s in settled if s[3] is not None)
        _log.debug(
            "batch of %d events acknowledged: %d delivered, %d rejected",
            len(chunk), len(chunk) - rejected, rejected,
        )
        if rejected:
            _log.warning(
                "%d events of a batch were rejected by the server (%s); not retried",
                rejected, ", ".join(sorted(codes)) or "no error codes",
            )
        self._settle(settled)

    def _fail_all(self, chunk: List[_Event], reason: str, outcome: _Outcome) -> None:
        if outcome.problem is not None and isinstance(outcome.problem.get("errors"), list):
            errors = [e for e in outcome.problem["errors"] if isinstance(e, dict)]
        elif reason == _types.RETRIES_EXHAUSTED:
            errors = [{
                "code": "retries_exhausted",
                "message": f"no acknowledgement within max_retry_time ({self._max_retry_time} s); "
                f"last: {outcome.why}",
            }]
        else:
            errors = [{"code": "batch_rejected", "message": f"HTTP {outcome.status}: {outcome.why}"}]
        self._settle([
            (e, "failed", False, self._failure(
                e, reason, errors, status=outcome.status, problem=outcome.problem,
            )) for e in chunk
        ])

    def _settle(self, items: Sequence[_Settled]) -> int:
        """Settles events: each exactly once, by whoever comes first (the worker with the
        server's answer, or close() abandoning it). Failed ones go to ``on_error`` before they
        are counted, so that a flush that sees them counted also sees the callbacks done.
        Returns how many it settled."""
        with self._lock:
            claimed = [item for item in items if not item[0].settled]
            for item in claimed:
                item[0].settled = True
        if self._on_error is not None:
            for _, _, _, failure in claimed:
                if failure is None:
                    continue
                try:
                    self._on_error(failure)
                except Exception as exc:
                    _log.warning("the on_error callback raised %s; ignored", type(exc).__name__)
        with self._lock:
            for event, outcome, deduplicated, _ in claimed:
                self._held -= 1
                if outcome == "delivered":
                    self._delivered += 1
                    if deduplicated:
                        self._deduplicated += 1
                elif outcome == "failed":
                    self._failed += 1
                else:
                    self._abandoned += 1
                for waiter in self._waiters:
                    if event.seq <= waiter.target:
                        if outcome == "delivered":
                            waiter.delivered += 1
                        elif outcome == "failed":
                            waiter.failed += 1
                        else:
                            waiter.abandoned += 1
            if claimed:
                self._settled.notify_all()
                self._space.notify_all()
        return len(claimed)

    # --------------------------------------------------------------------------- send_now

    def send_now(
        self,
        event_type: str,
        data: Mapping[str, Any],
        occurred_at: Union[_dt.datetime, str, None] = None,
        idempotency_key: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> SendResult:
        """Posts one event to ``POST /v1/events`` now, in the calling thread, and returns the
        server's answer (``event_id``, ``received_at``, ``deduplicated``, ``clock_skew_ms``).

        Retries like the worker (connection errors, timeouts, ``408``, ``429``, ``5xx``; the
        same key every time) for at most ``timeout`` seconds (default ``send_now_timeout``).
        Raises :class:`RequestError` when the server refuses the event (``status``,
        ``problem``; not retried) or nothing acknowledged it in time (``retryable=True``).
        Bypasses the queue and is not counted in ``stats()``.
        """
        if self._closing:
            raise ClientClosedError("the client is closed")
        key, event = self._encode(event_type, data, occurred_at, idempotency_key)
        limit = self._send_now_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        attempt = 0
        while True:
            body = b"".join((b'{"sent_at":"', sent_at_now().encode("ascii"), b'",', event.body[1:]))
            headers = {"Content-Type": "application/json"}
            if len(body) > self._gzip_threshold:
                body = gzip.compress(body, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
            retry_after: Optional[float] = None
            status: Optional[int] = None
            try:
                response = self._now_http.post("/v1/events", content=body, headers=headers)
            except httpx.HTTPError as exc:
                why = _describe(exc)
            else:
                status = response.status_code
                answer = _json_or_none(response)
                if status == 200 and isinstance(answer, dict) and "event_id" in answer:
                    return SendResult(answer)
                if status != 200 and status not in _RETRYABLE and status < 500:
                    problem = answer if isinstance(answer, dict) else None
                    kind = problem.get("type") if problem else None
                    raise RequestError(
                        f"the server refused the event: HTTP {status}"
                        + (f" ({kind})" if isinstance(kind, str) else ""),
                        status=status, problem=problem,
                    )
                why = f"HTTP {status}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            now = time.monotonic()
            if now >= deadline:
                raise RequestError(
                    f"no acknowledgement within {limit} s (last: {why})",
                    status=status, retryable=True,
                )
            if retry_after is not None:
                delay = retry_after + full_jitter(0, self._backoff_base, self._backoff_base)
            else:
                delay = full_jitter(attempt, self._backoff_base, self._backoff_max)
            delay = min(delay, deadline - now)
            _log.info("send_now: %s; retrying in %.2f s (attempt %d)", why, delay, attempt + 2)
            time.sleep(delay)
            attempt += 1


_KEYS_LOCK = threading.Lock()
_OCCURRED_AT: "OrderedDict[str, str]" = OrderedDict()


def _remembered_occurred_at(key: str, occurred_at: Union[_dt.datetime, str, None]) -> str:
    """``occurred_at`` for a key the caller gave. When none is given: the one this key had the
    last time any client of this process saw it, else now. So calling ``send`` or ``send_now``
    again with the same key and data is a replay, not a ``422`` over a new "now". The last
    ``REMEMBERED_KEYS`` keys are remembered."""
    with _KEYS_LOCK:
        if occurred_at is None:
            when = _OCCURRED_AT.get(key)
            if when is None:
                when = occurred_at_text(None)
        else:
            when = occurred_at_text(occurred_at)
        _OCCURRED_AT[key] = when
        _OCCURRED_AT.move_to_end(key)
        while len(_OCCURRED_AT) > REMEMBERED_KEYS:
            _OCCURRED_AT.popitem(last=False)
    return when


#: The clients to close at interpreter exit (those made with flush_at_exit=True and not closed).
#: Weak: a client nobody holds is still held by its worker thread while it has work.
_AT_EXIT: "weakref.WeakSet[Client]" = weakref.WeakSet()
_AT_EXIT_LOCK = threading.Lock()
_at_exit_registered = False


def _flush_at_exit(client: Client) -> None:
    global _at_exit_registered
    with _AT_EXIT_LOCK:
        _AT_EXIT.add(client)
        if not _at_exit_registered:
            atexit.register(_close_all_at_exit)
            _at_exit_registered = True


def _close_all_at_exit() -> None:
    """At interpreter exit: every client flushes at once, each for at most its own
    ``exit_timeout`` from now (so N clients take no longer than one), then closes."""
    started = time.monotonic()
    clients = list(_AT_EXIT)
    for client in clients:
        client._stop_accepting()
    for client in clients:
        try:
            client.close(max(0.0, started + client._exit_timeout - time.monotonic()))
        except Exception as exc:  # pragma: no cover - never let exit fail
            _log.warning("flush at exit failed: %s", type(exc).__name__)


def _describe(exc: BaseException) -> str:
    """An HTTP error in a few words: its kind and the OS's reason (no request contents)."""
    reason = str(exc).strip()
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
