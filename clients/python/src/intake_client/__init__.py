"""The official Python client of the Event Intake API.

>>> from intake_client import Client
>>> client = Client("http://127.0.0.1:8080", "test_123")
>>> key = client.send("user.created", {"user_id": "u_12345"})
>>> client.flush(10)
FlushResult(delivered=1, failed=0, pending=0)
"""

from ._client import _VERSION as __version__
from ._client import Client
from ._types import (
    ClientClosedError,
    FailedEvent,
    FlushResult,
    IntakeError,
    QueueFullError,
    RequestError,
    SendResult,
    Stats,
)

__all__ = [
    "__version__",
    "Client",
    "ClientClosedError",
    "FailedEvent",
    "FlushResult",
    "IntakeError",
    "QueueFullError",
    "RequestError",
    "SendResult",
    "Stats",
]
