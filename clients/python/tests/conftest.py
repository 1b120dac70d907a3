"""Real `intake serve` processes for the client's tests.

Needs `INTAKE_BIN` (the `intake` binary) and `DATABASE_URL` (a PostgreSQL server where the user
may create databases; `scripts/db with` sets it). `make test-python` sets both. A test that needs
a server fails, loudly, when either is missing: none of them skips.

The session gets a database of its own (made by `intake migrate`, dropped at the end when `psql`
is at hand); each test a tenant (and token) of its own, so counts in the feed are the test's.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from support import FIGURES, Intake, Server, env_for, psql_path, required, with_database


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("intake client figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def intake_bin() -> str:
    path = required("INTAKE_BIN")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"INTAKE_BIN={path} is not an executable (build it: cargo build --bin intake)")
    return path


@pytest.fixture(scope="session")
def database_url(intake_bin: str) -> Iterator[str]:
    server = required("DATABASE_URL")
    name = f"intake_pyclient_{uuid.uuid4().hex[:12]}"
    url = with_database(server, name)
    env = env_for(url)
    done = subprocess.run([intake_bin, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"intake migrate failed:\n{done.stdout}\n{done.stderr}")
    yield url
    psql = psql_path()
    if psql is None:
        print(f"note: psql not found; the test database {name} is left on the server")
        return
    subprocess.run(
        [psql, with_database(server, "postgres"), "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        capture_output=True, timeout=60,
    )


@pytest.fixture(scope="session")
def intake(intake_bin: str, database_url: str) -> Intake:
    return Intake(intake_bin, database_url)


@pytest.fixture(scope="session")
def server(intake: Intake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The session's shared server."""
    serving = intake.serve(log_dir=tmp_path_factory.mktemp("logs"))
    yield serving
    serving.stop()


@pytest.fixture
def servers() -> Iterator[List[Server]]:
    """Servers a test starts for itself (`spawn(port)`), stopped after it."""
    started: List[Server] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture
def spawn(intake: Intake, servers: List[Server], tmp_path: Path) -> Callable[..., Server]:
    """Starts a server of the test's own (on `port`, or a free one)."""

    def start(port: Optional[int] = None) -> Server:
        s = intake.serve(port, tmp_path)
        servers.append(s)
        return s

    return start


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> str:
    """A tenant id of the test's own (1–64 of a-z 0-9 _ -)."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())
    return f"py_{name[:40]}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def token(intake: Intake, tenant: str) -> str:
    return intake.token(tenant)


