"""Delivery against real `intake serve` processes: crashes, a server that is not there yet,
rejected items, send_now. Counts are read back from the tenant's feed."""

from __future__ import annotations

import threading
import time
from typing import Callable, List

import httpx
import pytest

from intake_client import Client, FailedEvent, RequestError
from support import Intake, Server, feed, free_port, keys_of, report

EVENTS = 2000


@pytest.mark.parametrize("run", [1, 2, 3])
def test_kill9_mid_stream_stores_every_key_exactly_once(
    run: int, spawn: Callable[..., Server], token: str
) -> None:
    port = free_port()
    server = spawn(port)
    failures: List[FailedEvent] = []
    client = Client(server.base, token, on_error=failures.append, flush_at_exit=False)
    keys: List[str] = []

    def produce() -> None:
        # Faster than the server takes them, so that the worker always has a batch in flight
        # and the crash lands mid-request.
        for i in range(EVENTS):
            keys.append(client.send("crash.test", {"i": i, "run": run, "pad": "p" * 40}))
            if i % 20 == 19:
                time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 60
    while client.stats().delivered < 400:
        assert time.monotonic() < deadline, f"no progress: {client.stats()}"
        time.sleep(0.005)
    server.kill9()
    at_kill = client.stats()
    time.sleep(0.5)
    server.start()
    producer.join(60)
    result = client.flush(120)
    stats = client.stats()
    client.close(5)
    reading = time.monotonic()
    stored = feed(server.base, token, EVENTS)
    read_in = time.monotonic() - reading
    distinct = keys_of(stored)
    report(
        f"kill -9 run {run}: {EVENTS} sent, {at_kill.delivered} acknowledged before the kill; "
        f"flush {tuple(result)}; retried {stats.retried}, deduplicated {stats.deduplicated}; "
        f"feed: {len(stored)} rows, {len(distinct)} distinct keys (read in {read_in:.1f} s)"
    )
    assert not failures, failures[:3]
    assert result == (EVENTS, 0, 0)
    assert at_kill.delivered < EVENTS, "the kill came after the stream ended"
    assert stats.retried > 0, "the kill interrupted nothing"
    assert len(stored) == EVENTS, "every key stored once"
    assert distinct == set(keys) and len(keys) == EVENTS


def test_a_server_down_at_start_gets_everything_once_it_is_up(
    spawn: Callable[..., Server], token: str
) -> None:
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", token, flush_at_exit=False)
    keys = [client.send("late.server", {"i": i}) for i in range(300)]
    time.sleep(1.5)
    before = client.stats()
    assert before.delivered == 0 and before.retried > 0
    server = spawn(port)
    result = client.flush(60)
    client.close(5)
    assert result == (300, 0, 0)
    stored = feed(server.base, token, 300)
    assert len(stored) == 300 and keys_of(stored) == set(keys)


def test_bad_items_go_to_on_error_and_the_good_ones_are_stored(
    server: Server, token: str
) -> None:
    schema = {"type": "object", "properties": {"plan": {"enum": ["free", "pro"]}}}
    put = httpx.put(f"{server.base}/v1/schemas/bad.items.plan", json=schema,
                    headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert put.status_code == 201, put.text
    failures: List[FailedEvent] = []
    client = Client(server.base, token, on_error=failures.append, flush_at_exit=False)
    good = [client.send("bad.items.good", {"i": i}) for i in range(10)]
    bad_type = client.send("bad type!", {"i": -1})
    good += [client.send("bad.items.good", {"i": i}) for i in range(10, 20)]
    late = client.send("bad.items.good", {}, occurred_at="2999-01-01T00:00:00Z")
    violation = client.send("bad.items.plan", {"plan": "gold"})
    first = client.send("bad.items.good", {"v": 1}, idempotency_key=f"reused-{token[-8:]}")
    reused = client.send("bad.items.good", {"v": 2}, idempotency_key=f"reused-{token[-8:]}")
    result = client.flush(30)
    time.sleep(1.0)  # anything retried would show now
    stats = client.stats()
    client.close(5)

    assert result == (21, 4, 0)
    assert (stats.delivered, stats.failed, stats.retried) == (21, 4, 0)
    by_key = {f.idempotency_key: f for f in failures}
    assert len(failures) == 4 and set(by_key) == {bad_type, late, violation, reused}
    assert "invalid_event_type" in by_key[bad_type].codes
    assert by_key[late].codes == ["invalid_timestamp"] or "occurred_at" in str(by_key[late].errors)
    assert by_key[violation].codes == ["schema_violation"]
    assert by_key[reused].codes == ["idempotency_key_reused"]
    assert by_key[reused].event_id and by_key[reused].event_id.startswith("evt_")
    assert all(f.reason == "rejected" for f in failures)
    stored = feed(server.base, token, 21)
    assert keys_of(stored) == set(good) | {first}
    assert len(stored) == 21


def test_send_now_returns_the_event_id_and_a_repeat_is_deduplicated(
    server: Server, token: str
) -> None:
    client = Client(server.base, token, flush_at_exit=False)
    first = client.send_now("now.test", {"a": 1}, idempotency_key="now-1")
    assert first.event_id.startswith("evt_") and first["deduplicated"] is False
    assert isinstance(first.clock_skew_ms, int)
    again = client.send_now("now.test", {"a": 1}, idempotency_key="now-1")
    assert again.deduplicated is True and again.event_id == first.event_id
    other = Client(server.base, token, flush_at_exit=False)  # another client, same process
    assert other.send_now("now.test", {"a": 1}, idempotency_key="now-1").deduplicated is True
    other.close(1)
    generated = client.send_now("now.test", {"a": 2})
    assert generated.event_id != first.event_id
    with pytest.raises(RequestError) as refused:
        client.send_now("now.test", {"a": 999}, idempotency_key="now-1")
    assert refused.value.status == 422 and not refused.value.retryable
    with pytest.raises(RequestError) as invalid:
        client.send_now("bad type!", {})
    assert invalid.value.status == 400
    assert any(e.get("field") == "event_type" for e in invalid.value.errors)
    client.close(5)
    assert len(feed(server.base, token, 2)) == 2


def test_send_now_retries_until_the_server_is_up(
    spawn: Callable[..., Server], token: str
) -> None:
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", token, flush_at_exit=False)
    threading.Timer(1.0, lambda: spawn(port)).start()
    answer = client.send_now("now.late", {}, idempotency_key="late-1", timeout=30)
    assert answer.event_id.startswith("evt_")
    client.close(5)


def test_a_wrong_token_fails_the_batch_without_retrying(server: Server) -> None:
    failures: List[FailedEvent] = []
    client = Client(server.base, "itk_" + "0" * 64, on_error=failures.append, flush_at_exit=False)
    for i in range(5):
        client.send("t", {"i": i})
    assert client.flush(10) == (0, 5, 0)
    assert {f.status for f in failures} == {401} and {f.reason for f in failures} == {"batch_rejected"}
    assert client.stats().retried == 0
    client.close(5)


class _LosingProxy:
    """An HTTP proxy in front of a server that forwards each request but, for the first
    `lose` of them, drops the connection instead of passing the answer back: the server
    stored the events, the client never heard so."""

    def __init__(self, upstream: str, lose: int) -> None:
        import http.server

        proxy = self
        self.lost = 0
        self.forwarded = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "content-type", "content-encoding")}
                answer = httpx.post(upstream + self.path, content=body, headers=headers, timeout=30)
                with proxy.lock:
                    proxy.forwarded += 1
                    drop = proxy.lost < lose and answer.status_code == 200
                    if drop:
                        proxy.lost += 1
                if drop:
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                for name in ("Content-Type", "RateLimit-Policy", "RateLimit", "Retry-After"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_lost_acknowledgement_is_retried_and_deduplicated(server: Server, token: str) -> None:
    proxy = _LosingProxy(server.base, lose=2)
    try:
        client = Client(proxy.base, token, flush_at_exit=False)
        keys = [client.send("lost.ack", {"i": i}) for i in range(250)]
        result = client.flush(30)
        stats = client.stats()
        client.close(5)
    finally:
        proxy.close()
    assert proxy.lost == 2
    assert result == (250, 0, 0)
    # The first batch: answer lost, lost again, then answered as a replay.
    assert stats.deduplicated == 100 and stats.retried == 200
    stored = feed(server.base, token, 250)
    assert len(stored) == 250 and keys_of(stored) == set(keys)
