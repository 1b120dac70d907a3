"""The bounded queue and shutdown: a full queue in both policies, close with the server down."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, List

import pytest

from intake_client import Client, ClientClosedError, FailedEvent, QueueFullError
from support import Server, feed, free_port, keys_of


def test_block_waits_then_raises_and_room_lets_a_blocked_send_through(
    spawn: Callable[..., Server], token: str
) -> None:
    port = free_port()  # nothing listens yet: the queue cannot drain
    client = Client(f"http://127.0.0.1:{port}", token, max_queue=5, on_full="block",
                    block_timeout=0.3, flush_at_exit=False)
    keys = [client.send("queue.block", {"i": i}) for i in range(5)]
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        client.send("queue.block", {"i": 5})
    waited = time.monotonic() - started
    assert 0.3 <= waited < 2
    stats = client.stats()
    assert (stats.enqueued, stats.dropped, stats.pending) == (5, 1, 5)

    # A send blocked without a limit goes through once the server drains the queue.
    client._block_timeout = None
    blocked: List[str] = []
    sender = threading.Thread(target=lambda: blocked.append(client.send("queue.block", {"i": 6})))
    sender.start()
    time.sleep(0.3)
    assert not blocked, "send should block while the queue is full"
    server = spawn(port)
    sender.join(30)
    assert len(blocked) == 1
    assert client.flush(30) == (6, 0, 0)
    client.close(5)
    assert keys_of(feed(server.base, token, 6)) == set(keys) | set(blocked)


def test_drop_counts_what_did_not_fit(spawn: Callable[..., Server], token: str) -> None:
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", token, max_queue=5, on_full="drop",
                    flush_at_exit=False)
    started = time.monotonic()
    keys = [client.send("queue.drop", {"i": i}) for i in range(8)]
    assert time.monotonic() - started < 0.5, "drop never waits"
    stats = client.stats()
    assert (stats.enqueued, stats.dropped) == (5, 3)
    server = spawn(port)
    assert client.flush(30) == (5, 0, 0)
    client.close(5)
    assert keys_of(feed(server.base, token, 5)) == set(keys[:5])


def test_close_with_the_server_down_returns_in_time(token: str) -> None:
    failures: List[FailedEvent] = []
    client = Client(f"http://127.0.0.1:{free_port()}", token, on_error=failures.append,
                    flush_at_exit=False)
    for i in range(50):
        client.send("queue.close", {"i": i})
    time.sleep(0.3)
    started = time.monotonic()
    result = client.close(2)
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"close(2) took {elapsed:.2f} s"
    assert result == (0, 0, 50)
    assert client.stats().abandoned == 50 and len(failures) == 50
    assert {f.reason for f in failures} == {"abandoned"}
    with pytest.raises(ClientClosedError):
        client.send("queue.close", {})


def test_close_with_a_server_that_never_answers_returns_in_time(token: str) -> None:
    """A listener that accepts and never answers: the worker hangs in a read (timeout 10 s);
    close(2) must not wait for it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        port = listener.getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", token, flush_at_exit=False)
        client.send("queue.hang", {})
        time.sleep(0.8)  # the batch is in flight, waiting for an answer
        started = time.monotonic()
        result = client.close(2)
        elapsed = time.monotonic() - started
        assert elapsed < 3, f"close(2) took {elapsed:.2f} s"
        assert result == (0, 0, 1)
    finally:
        stop.set()
        acceptor.join(2)
        for s in held:
            s.close()
        listener.close()
