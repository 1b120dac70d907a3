"""One process sending 100,000 small events through a local server; the rate is printed, not
asserted. INTAKE_PY_SKIP_THROUGHPUT=1 skips this test (and only this one)."""

from __future__ import annotations

import os
import time

import pytest

from intake_client import Client
from support import Server, report

EVENTS = 100_000


@pytest.mark.throughput
@pytest.mark.skipif(
    os.environ.get("INTAKE_PY_SKIP_THROUGHPUT") == "1",
    reason="INTAKE_PY_SKIP_THROUGHPUT=1",
)
def test_throughput_of_100000_small_events(server: Server, token: str) -> None:
    client = Client(server.base, token, flush_at_exit=False)  # the defaults: batches of 100
    started = time.perf_counter()
    for i in range(EVENTS):
        client.send("throughput.test", {"i": i, "user": "u_12345"})
    enqueued = time.perf_counter()
    result = client.flush(600)
    elapsed = time.perf_counter() - started
    stats = client.stats()
    client.close(5)
    report(
        f"throughput: {EVENTS} events in {elapsed:.1f} s = {EVENTS / elapsed:,.0f} events/s "
        f"(send() returned after {enqueued - started:.1f} s; retried {stats.retried})"
    )
    assert result == (EVENTS, 0, 0)
    assert stats.delivered == EVENTS
