"""Helpers of the client's tests: `intake` processes, tokens, the feed."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Set

import httpx

REPO = Path(__file__).resolve().parents[3]
CONFIG_DIR = Path(os.environ.get("INTAKE_CONFIG_DIR") or REPO / "config")

FIGURES: List[str] = []


def report(line: str) -> None:
    """A figure for the end of the run (and printed at once, visible with `-s`)."""
    print(line)
    FIGURES.append(line)


def required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: these tests run real `intake serve` processes "
            "(run them with `make test-python`, which sets INTAKE_BIN and DATABASE_URL)"
        )
    return value


def with_database(url: str, name: str) -> str:
    """`url` (postgres://…/db?query) with another database name."""
    base, sep, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    server = rest.split("/", 1)[0]
    return f"{scheme}://{server}/{name}{sep}{query}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def psql_path() -> Optional[str]:
    found = shutil.which("psql")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    return candidates[-1] if candidates else None


def env_for(url: str, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_") and k != "RUST_LOG"}
    env.update(
        DATABASE_URL=url,
        INTAKE_CONFIG_DIR=str(CONFIG_DIR),
        RUST_LOG="warn",
    )
    env.update(extra)
    return env


class Intake:
    """The `intake` command against the session's database."""

    def __init__(self, binary: str, url: str) -> None:
        self.binary = binary
        self.url = url

    def token(self, tenant: str, *, rate: Optional[int] = None, burst: Optional[int] = None) -> str:
        """A new token (every scope) for `tenant`; its secret."""
        args = [self.binary, "tokens", "create", "--tenant", tenant, "--name", "pyclient"]
        if rate is not None:
            args += ["--rate", str(rate)]
        if burst is not None:
            args += ["--burst", str(burst)]
        done = subprocess.run(args, env=env_for(self.url), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"intake tokens create failed: {done.stderr}")
        return done.stdout.strip().splitlines()[-1]

    def serve(self, port: Optional[int] = None, log_dir: Optional[Path] = None) -> "Server":
        return Server(self.binary, self.url, port or free_port(), log_dir)


class Server:
    """One `intake serve` process on a port; `kill9` and `start` again on the same port."""

    def __init__(self, binary: str, url: str, port: int, log_dir: Optional[Path]) -> None:
        self.binary = binary
        self.url = url
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = (log_dir or Path("/tmp")) / f"intake-serve-{port}-{uuid.uuid4().hex[:6]}.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.start()

    def start(self) -> "Server":
        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.binary, "serve"],
            env=env_for(self.url, INTAKE__SERVER__PORT=str(self.port)),
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"intake serve exited at start:\n{self.logs()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"intake serve never answered on {self.base}:\n{self.logs()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL: a crash, with no chance to finish anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def metric(self, name: str, labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        wanted = f"{name}{{{labels}}}"
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0


def feed(base: str, token: str, expected: Optional[int] = None, timeout: float = 60.0) -> List[dict]:
    """Every event of the token's tenant, following `next_cursor`.

    An empty page means "caught up for now", not "all there is": the feed only hands out rows
    older than every transaction still open on the PostgreSQL server (any database), so a busy
    server (or a connection of a killed process not yet noticed) holds it back for a while.
    With `expected`, it keeps polling with the same cursor until that many events have come,
    then once more after a pause, to catch any extra (a duplicate would show there); without,
    it stops at the first empty page.
    """
    events: List[dict] = []
    cursor: Optional[str] = None
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    settled_once = False
    with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
        while True:
            params = {"limit": "1000"}
            if cursor is not None:
                params["cursor"] = cursor
            answer = http.get("/v1/events", params=params)
            answer.raise_for_status()
            page = answer.json()
            events.extend(page["data"])
            cursor = page["next_cursor"]
            if page["data"]:
                continue
            if expected is None or time.monotonic() > deadline:
                return events
            if len(events) >= expected:
                if settled_once:
                    return events
                settled_once = True
            time.sleep(0.2)


def keys_of(events: List[dict]) -> Set[str]:
    return {e["idempotency_key"] for e in events}


def dead_port() -> int:
    """A port where nothing listens (connections are refused)."""
    return free_port()
