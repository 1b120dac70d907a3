"""The client's logs at DEBUG never show a token or event data, through success, rejection,
a refused token, retries and send_now errors. Every logger is captured (httpx's too)."""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Iterator, List

import httpx
import pytest

from intake_client import Client, RequestError
from support import Server, free_port


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        lines = []
        for record in self.records:
            lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
            if record.exc_info:
                lines.append("".join(traceback.format_exception(*record.exc_info)))
        return "\n".join(lines)


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_no_token_or_data_in_logs_at_debug(server: Server, token: str, capture: Capture) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}"
    schema = {"type": "object", "properties": {"plan": {"enum": ["free"]}}}
    put = httpx.put(f"{server.base}/v1/schemas/logs.plan", json=schema,
                    headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert put.status_code == 201

    client = Client(server.base, token, on_error=lambda failure: None, flush_at_exit=False)
    for i in range(150):
        client.send("logs.ok", {"secret": marker, "i": i, "pad": marker * 20})
    # Rejected items whose error messages quote the data (a schema's enum, a reused key).
    client.send("logs.plan", {"plan": marker})
    client.send("logs.ok", {"secret": marker}, idempotency_key=f"k-{marker}")
    client.send("logs.ok", {"secret": marker + "2"}, idempotency_key=f"k-{marker}")
    client.send(f"bad {marker}", {"secret": marker})
    assert client.flush(30).pending == 0
    with pytest.raises(RequestError):
        client.send_now("logs.plan", {"plan": marker})
    client.close(5)

    # A refused token and a server that is down: retries, then abandoned at close.
    refused = Client(server.base, token + "x", on_error=lambda failure: None, flush_at_exit=False)
    refused.send("logs.ok", {"secret": marker})
    refused.flush(10)
    refused.close(1)
    down = Client(f"http://127.0.0.1:{free_port()}", token, on_error=lambda f: None,
                  flush_at_exit=False)
    down.send("logs.ok", {"secret": marker})
    down.flush(0.5)
    with pytest.raises(RequestError):
        down.send_now("logs.ok", {"secret": marker}, timeout=0.5)
    down.close(0.5)

    text = capture.text()
    ours = [r for r in capture.records if r.name.startswith("intake_client")]
    assert len(ours) > 5, "the client logged nothing: the capture is broken"
    assert any(r.levelno == logging.DEBUG for r in ours)
    assert token not in text
    assert marker not in text
