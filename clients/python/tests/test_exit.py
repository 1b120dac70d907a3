"""What happens when the interpreter exits: a process that sends and ends without flush."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from support import Server, feed, free_port


def run(script: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=timeout,
    )


def test_exit_without_flush_still_delivers(server: Server, token: str) -> None:
    done = run(f"""
        from intake_client import Client
        client = Client({server.base!r}, {token!r})
        for i in range(500):
            client.send("exit.test", {{"i": i}})
        # no flush, no close: the interpreter exits here
    """)
    assert done.returncode == 0, done.stderr
    assert len(feed(server.base, token, 500)) == 500


def test_flush_at_exit_false_sends_nothing_left_in_the_queue(server: Server, token: str) -> None:
    done = run(f"""
        from intake_client import Client
        client = Client({server.base!r}, {token!r}, flush_at_exit=False, flush_interval=60)
        for i in range(50):
            client.send("exit.test", {{"i": i}})
    """)
    assert done.returncode == 0, done.stderr
    assert feed(server.base, token, 0) == []


def test_exit_with_the_server_down_is_bounded_by_exit_timeout(token: str) -> None:
    """Three clients with exit_timeout=1.5 and nowhere to send: they wait together, not one
    after the other (4.5 s)."""
    started = time.monotonic()
    done = run(f"""
        from intake_client import Client
        clients = [Client("http://127.0.0.1:{free_port()}", {token!r}, exit_timeout=1.5)
                   for _ in range(3)]
        for client in clients:
            client.send("exit.test", {{}})
    """)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert 1.5 <= elapsed < 3.5, f"the process took {elapsed:.1f} s to exit"
