"""The client against a scripted server (httpx.MockTransport): what it puts on the wire and how
it reacts to each kind of answer. No process, no database; the real server's tests are in the
other files."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import httpx
import pytest

from intake_client import Client, FailedEvent, FlushResult, QueueFullError
from intake_client._wire import occurred_at_text, policy_quota, retry_after_seconds

SENT_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Recorder:
    """A scripted server: `answer(request, events)` decides each answer; every request is kept
    (decoded body, headers, time)."""

    def __init__(self, answer: Optional[Callable[[httpx.Request, List[Dict[str, Any]]], httpx.Response]] = None) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.answer = answer or answer_ok
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = json.loads(raw)
        events = body["events"] if "events" in body else [body]
        with self.lock:
            self.requests.append({
                "path": request.url.path, "headers": request.headers, "raw": raw, "body": body,
                "events": events, "at": time.monotonic(), "compressed": len(request.content),
            })
        return self.answer(request, events)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def sizes(self) -> List[int]:
        return [len(r["events"]) for r in self.requests]


def answer_ok(request: httpx.Request, events: List[Dict[str, Any]]) -> httpx.Response:
    """A server that takes everything: batches, and single events on /v1/events."""
    if request.url.path == "/v1/events":
        return httpx.Response(200, json={"status": "ok", "event_id": "evt_1", "received_at": "x",
                                         "deduplicated": False})
    return ok(events)


def ok(events: List[Dict[str, Any]], deduplicated: bool = False) -> httpx.Response:
    results = [
        {"status": "ok", "event_id": f"evt_{i:032x}", "received_at": "2026-01-01T00:00:00Z",
         "deduplicated": deduplicated}
        for i, _ in enumerate(events)
    ]
    return httpx.Response(200, json={"clock_skew_ms": 1, "results": results, "accepted": len(events),
                                      "deduplicated": 0, "rejected": 0})


def client(recorder: Recorder, **options: Any) -> Client:
    options.setdefault("flush_at_exit", False)
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_max", 0.05)
    return Client("http://intake.test", "tok_secret", transport=recorder.transport(), **options)


def test_batches_carry_sent_at_at_the_top_and_the_events_as_given() -> None:
    recorder = Recorder()
    c = client(recorder)
    when = dt.datetime(2025, 12, 22, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    keys = [c.send("user.created", {"n": i}, occurred_at=when) for i in range(3)]
    assert c.flush(5) == FlushResult(3, 0, 0)
    (request,) = recorder.requests
    assert request["path"] == "/v1/events/batch"
    assert request["headers"]["authorization"] == "Bearer tok_secret"
    assert request["headers"]["content-type"] == "application/json"
    assert list(request["body"]) == ["sent_at", "events"]
    assert SENT_AT.match(request["body"]["sent_at"])
    assert [e["idempotency_key"] for e in request["events"]] == keys
    assert request["events"][0] == {
        "event_type": "user.created", "occurred_at": "2025-12-22T08:30:00.000000Z",
        "idempotency_key": keys[0], "data": {"n": 0},
    }
    c.close(1)


def test_keys_are_uuids_made_once_and_the_payload_is_frozen_at_send() -> None:
    recorder = Recorder()
    c = client(recorder)
    data = {"plan": "pro"}
    key = c.send("user.created", data)
    data["plan"] = "changed after send"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", key)
    assert c.send("user.created", {}, idempotency_key="mine-1") == "mine-1"
    c.flush(5)
    assert recorder.requests[0]["events"][0]["data"] == {"plan": "pro"}
    c.close(1)


def test_retries_resend_the_same_keys_and_payloads_with_a_fresh_sent_at() -> None:
    answers = iter([
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(500),
        httpx.Response(408),
    ])

    def answer(request: httpx.Request, events: List[Dict[str, Any]]) -> httpx.Response:
        return next(answers, None) or ok(events)

    recorder = Recorder(answer)
    c = client(recorder)
    for i in range(5):
        c.send("t", {"i": i})
    assert c.flush(10) == (5, 0, 0)
    assert len(recorder.requests) == 4
    first = recorder.requests[0]["events"]
    for later in recorder.requests[1:]:
        assert later["events"] == first  # same keys, same occurred_at, same data
        assert SENT_AT.match(later["body"]["sent_at"])
    stats = c.stats()
    assert (stats.delivered, stats.retried, stats.failed) == (5, 15, 0)
    c.close(1)


def test_connection_errors_and_timeouts_are_retried() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls["n"] == 2:
            raise httpx.ReadTimeout("timed out", request=request)
        return recorder(request)

    recorder = Recorder()
    c = Client("http://intake.test", "tok", transport=httpx.MockTransport(flaky), flush_at_exit=False,
               backoff_base=0.01, backoff_max=0.02)
    c.send("t", {})
    assert c.flush(5) == (1, 0, 0)
    assert calls["n"] == 3 and c.stats().retried == 2
    c.close(1)


def test_retry_after_is_honoured() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "1", "RateLimit-Policy": '"events";q=100;w=1'})])
    recorder = Recorder(lambda request, events: next(answers, None) or ok(events))
    c = client(recorder)
    c.send("t", {})
    assert c.flush(10) == (1, 0, 0)
    first, second = recorder.requests
    assert second["at"] - first["at"] >= 1.0
    c.close(1)


def test_item_errors_go_to_on_error_once_and_are_never_retried() -> None:
    def answer(request: httpx.Request, events: List[Dict[str, Any]]) -> httpx.Response:
        results: List[Dict[str, Any]] = []
        for e in events:
            if e["event_type"] == "bad":
                results.append({"status": "error", "errors": [
                    {"field": "event_type", "code": "invalid_event_type", "message": "…"}]})
            elif e["idempotency_key"] == "reused":
                results.append({"status": "error", "event_id": "evt_original", "errors": [
                    {"field": "idempotency_key", "code": "idempotency_key_reused", "message": "…"}]})
            else:
                results.append({"status": "ok", "event_id": "evt_1", "received_at": "x",
                                "deduplicated": e["idempotency_key"] == "again"})
        return httpx.Response(200, json={"results": results})

    failures: List[FailedEvent] = []
    recorder = Recorder(answer)
    c = client(recorder, on_error=failures.append)
    c.send("good", {})
    c.send("bad", {"secret": 1})
    c.send("good", {}, idempotency_key="reused")
    c.send("good", {}, idempotency_key="again")
    result = c.flush(5)
    assert result == (2, 2, 0)
    assert len(recorder.requests) == 1
    bad, reused = failures
    assert (bad.reason, bad.codes, bad.event_type, bad.data) == ("rejected", ["invalid_event_type"], "bad", {"secret": 1})
    assert (reused.idempotency_key, reused.event_id, reused.codes) == ("reused", "evt_original", ["idempotency_key_reused"])
    assert "secret" not in repr(bad)
    assert bad["errors"] == bad.errors and bad["data"] == {"secret": 1}
    stats = c.stats()
    assert (stats.delivered, stats.deduplicated, stats.failed, stats.retried) == (2, 1, 2, 0)
    c.close(1)


@pytest.mark.parametrize("status", [400, 401, 403, 413, 415, 422])
def test_a_refused_batch_fails_whole_without_retry(status: int) -> None:
    problem = {"type": "/docs/troubleshooting#x", "title": "no", "status": status}
    recorder = Recorder(lambda request, events: httpx.Response(status, json=problem))
    failures: List[FailedEvent] = []
    c = client(recorder, on_error=failures.append)
    for i in range(3):
        c.send("t", {"i": i})
    assert c.flush(5) == (0, 3, 0)
    assert len(recorder.requests) == 1
    assert [f.reason for f in failures] == ["batch_rejected"] * 3
    assert failures[0].status == status and failures[0].problem == problem
    c.close(1)


def test_retries_end_at_max_retry_time_and_the_events_fail() -> None:
    recorder = Recorder(lambda request, events: httpx.Response(503))
    failures: List[FailedEvent] = []
    c = client(recorder, on_error=failures.append, max_retry_time=0.3)
    c.send("t", {})
    started = time.monotonic()
    assert c.flush(5) == (0, 1, 0)
    assert 0.3 <= time.monotonic() - started < 2
    assert failures[0].reason == "retries_exhausted" and failures[0].status == 503
    assert len(recorder.requests) > 1
    c.close(1)


def test_a_batch_over_the_burst_is_split_by_q_and_later_batches_keep_to_it() -> None:
    def answer(request: httpx.Request, events: List[Dict[str, Any]]) -> httpx.Response:
        if len(events) > 30:
            return httpx.Response(429, headers={"RateLimit-Policy": '"events";q=30;w=1'},
                                  json={"type": "/docs/troubleshooting#rate-limited"})
        return ok(events)

    recorder = Recorder(answer)
    c = client(recorder)
    keys = [c.send("t", {"i": i}) for i in range(100)]
    assert c.flush(5) == (100, 0, 0)
    assert recorder.sizes() == [100, 30, 30, 30, 10]
    sent = [e["idempotency_key"] for r in recorder.requests[1:] for e in r["events"]]
    assert sent == keys
    for i in range(70):
        c.send("t", {"i": i})
    c.flush(5)
    assert recorder.sizes()[5:] == [30, 30, 10]
    c.close(1)


def test_large_bodies_are_gzipped_small_ones_not() -> None:
    recorder = Recorder()
    c = client(recorder, gzip_threshold=4096)
    c.send("t", {"pad": "x" * 100})
    c.flush(5)
    c.send("t", {"pad": "x" * 10_000})
    c.flush(5)
    small, large = recorder.requests
    assert "content-encoding" not in small["headers"]
    assert large["headers"]["content-encoding"] == "gzip"
    assert large["compressed"] < len(large["raw"])
    c.close(1)


def test_batches_are_bounded_by_bytes_too() -> None:
    recorder = Recorder()
    c = client(recorder, max_batch_bytes=50_000)
    for i in range(10):
        c.send("t", {"pad": "x" * 10_000})
    c.flush(5)
    assert all(len(r["raw"]) <= 50_000 for r in recorder.requests)
    assert sum(recorder.sizes()) == 10 and len(recorder.requests) >= 3
    with pytest.raises(ValueError):
        c.send("t", {"pad": "x" * 60_000})
    c.close(1)


def test_flush_interval_sends_a_partial_batch() -> None:
    recorder = Recorder()
    c = client(recorder, flush_interval=0.2)
    c.send("t", {})
    time.sleep(0.6)
    assert recorder.sizes() == [1]
    c.close(1)


def test_a_full_batch_goes_without_waiting_for_the_interval() -> None:
    recorder = Recorder()
    c = client(recorder, flush_interval=30, max_batch=10)
    for i in range(10):
        c.send("t", {})
    deadline = time.monotonic() + 5
    while not recorder.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.sizes() == [10]
    c.close(1)


def test_flush_counts_what_was_enqueued_before_it() -> None:
    recorder = Recorder()
    c = client(recorder)
    for _ in range(3):
        c.send("t", {})
    assert c.flush(5) == (3, 0, 0)
    c.send("t", {})
    result = c.flush(5)
    assert result == (4, 0, 0)
    assert (result.delivered, result["failed"], result[2]) == (4, 0, 0)
    assert c.flush(0) == (4, 0, 0)
    c.close(1)


def test_flush_gives_up_at_its_timeout_and_reports_pending() -> None:
    recorder = Recorder(lambda request, events: httpx.Response(503))
    c = client(recorder)
    c.send("t", {})
    c.send("t", {})
    started = time.monotonic()
    assert c.flush(0.3) == (0, 0, 2)
    assert time.monotonic() - started < 1.5
    c.close(0.1)


def test_on_error_that_raises_does_not_stop_the_worker() -> None:
    recorder = Recorder(lambda request, events: httpx.Response(
        200, json={"results": [{"status": "error", "errors": []} for _ in events]}))

    def explode(failure: FailedEvent) -> None:
        raise RuntimeError("boom")

    c = client(recorder, on_error=explode)
    c.send("t", {})
    assert c.flush(5) == (0, 1, 0)
    c.send("t", {})
    assert c.flush(5) == (0, 2, 0)
    c.close(1)


def test_block_policy_waits_for_room_then_raises() -> None:
    gate = threading.Event()

    def answer(request: httpx.Request, events: List[Dict[str, Any]]) -> httpx.Response:
        gate.wait(10)
        return ok(events)

    c = client(Recorder(answer), max_queue=2, block_timeout=0.2)
    c.send("t", {})
    c.send("t", {})
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        c.send("t", {})
    assert time.monotonic() - started >= 0.2
    unblocked: List[str] = []
    c2 = threading.Thread(target=lambda: unblocked.append(c.send("t", {})))
    c._block_timeout = 10  # the next send waits for room
    c2.start()
    time.sleep(0.2)
    assert not unblocked
    gate.set()
    c2.join(5)
    assert len(unblocked) == 1
    assert c.flush(5) == (3, 0, 0)
    assert c.stats().dropped == 1
    c.close(1)


def test_send_now_posts_one_event_with_sent_at_and_returns_the_answer() -> None:
    def answer(request: httpx.Request, events: List[Dict[str, Any]]) -> httpx.Response:
        return httpx.Response(200, json={"status": "ok", "event_id": "evt_1", "received_at": "x",
                                         "deduplicated": False, "clock_skew_ms": 3})

    recorder = Recorder(answer)
    c = client(recorder)
    result = c.send_now("t", {"a": 1}, idempotency_key="k1")
    assert result.event_id == "evt_1" and result["deduplicated"] is False and result.clock_skew_ms == 3
    (request,) = recorder.requests
    assert request["path"] == "/v1/events"
    assert SENT_AT.match(request["body"]["sent_at"]) and request["body"]["idempotency_key"] == "k1"
    assert c.stats().enqueued == 0
    c.close(1)


def test_a_key_given_again_without_occurred_at_keeps_its_first_occurred_at() -> None:
    recorder = Recorder()
    c = client(recorder)
    c.send("t", {}, idempotency_key="same")
    time.sleep(0.01)
    c.send("t", {}, idempotency_key="same")
    c.send("t", {})
    time.sleep(0.01)
    c.send("t", {})
    c.flush(5)
    events = [e for r in recorder.requests for e in r["events"]]
    assert events[0]["occurred_at"] == events[1]["occurred_at"]
    assert events[2]["occurred_at"] != events[3]["occurred_at"]
    other = client(recorder)  # another client of the same process remembers it too
    other.send_now("t", {}, idempotency_key="same")
    assert recorder.requests[-1]["events"][0]["occurred_at"] == events[0]["occurred_at"]
    c.close(1)
    other.close(1)


def test_what_cannot_be_sent_is_refused_at_send() -> None:
    c = client(Recorder())
    with pytest.raises(ValueError):
        c.send("t", {}, occurred_at=dt.datetime(2025, 1, 1))  # naive
    with pytest.raises(TypeError):
        c.send("t", {"when": object()})
    with pytest.raises(ValueError):
        c.send("t", {"x": float("nan")})
    with pytest.raises(ValueError):
        c.send("t", {"x": "\udc80"})  # a lone surrogate: not UTF-8
    with pytest.raises(TypeError):
        c.send(42, {})  # type: ignore[arg-type]
    assert c.stats().enqueued == 0
    c.close(1)


def test_the_token_is_not_in_the_repr() -> None:
    c = client(Recorder())
    assert "tok_secret" not in repr(c) and "tok_secret" not in str(c.__dict__.get("_base_url"))
    c.close(1)


def test_close_is_bounded_and_abandons_what_is_left() -> None:
    failures: List[FailedEvent] = []
    c = client(Recorder(lambda request, events: httpx.Response(503)), on_error=failures.append)
    for _ in range(3):
        c.send("t", {})
    started = time.monotonic()
    result = c.close(0.5)
    assert time.monotonic() - started < 1.5
    assert result == (0, 0, 3)
    assert [f.reason for f in failures] == ["abandoned"] * 3
    stats = c.stats()
    assert (stats.abandoned, stats.pending) == (3, 0)
    assert c.close(1) == (0, 0, 3)  # twice is harmless


def test_wire_helpers() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= (retry_after_seconds(later) or 0) <= 31
    assert policy_quota('"events";q=10;w=2') == 10
    assert policy_quota('"other";q=5;w=1, "events";q=7;w=1') == 7
    assert policy_quota("garbage") is None and policy_quota(None) is None
    assert occurred_at_text("2025-01-01T00:00:00Z") == "2025-01-01T00:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", occurred_at_text(None))
