"""Rate limits (§10) seen from the client: 429 with Retry-After, and a batch over the burst."""

from __future__ import annotations

import time
from typing import List

from intake_client import Client, FailedEvent
from support import Intake, Server, feed, keys_of, report


def test_a_tiny_rate_is_waited_out_and_everything_arrives(
    server: Server, intake: Intake, tenant: str
) -> None:
    token = intake.token(tenant, rate=20, burst=10)
    failures: List[FailedEvent] = []
    client = Client(server.base, token, max_batch=10, on_error=failures.append, flush_at_exit=False)
    started = time.monotonic()
    keys = [client.send("limits.tiny", {"i": i}) for i in range(60)]
    result = client.flush(60)
    stats = client.stats()
    client.close(5)
    limited = server.metric("intake_rate_limited_requests_total", f'tenant="{tenant}"')
    report(
        f"rate 20/s burst 10: 60 events in {time.monotonic() - started:.1f} s, "
        f"{stats.retried} retried, {limited:.0f} answers 429"
    )
    assert not failures
    assert result == (60, 0, 0)
    assert stats.retried > 0 and limited > 0
    assert keys_of(feed(server.base, token, 60)) == set(keys)


def test_a_batch_over_the_burst_is_split_by_q(server: Server, intake: Intake, tenant: str) -> None:
    token = intake.token(tenant, rate=100_000, burst=30)
    client = Client(server.base, token, flush_at_exit=False)  # max_batch 100 > burst 30
    keys = [client.send("limits.split", {"i": i}) for i in range(250)]
    assert client.flush(30) == (250, 0, 0)
    assert server.metric("intake_rate_limited_requests_total", f'tenant="{tenant}"') == 1
    # Later batches keep to the burst: no further refusal.
    keys += [client.send("limits.split", {"i": i}) for i in range(250, 400)]
    assert client.flush(30) == (400, 0, 0)
    assert server.metric("intake_rate_limited_requests_total", f'tenant="{tenant}"') == 1
    client.close(5)
    stored = feed(server.base, token, 400)
    assert len(stored) == 400 and keys_of(stored) == set(keys)
