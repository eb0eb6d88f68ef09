"""Helpers for the connector tests' real servers (mosquitto, PostgreSQL, InfluxDB): free loopback ports, finding
a server's executable, waiting for it to listen. The servers a machine already runs on standard ports are never
used: every server here is started by the tests, on a port that was free, with its data in a temporary folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import time

import pytest

START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_exe(name: str, *patterns: str) -> str:
    """The path of executable ``name`` (on PATH or in one of the glob ``patterns``, e.g. PostgreSQL's
    ``/usr/lib/postgresql/*/bin``); skips the test when it is missing, or fails it on CI (.ci/run installs it)."""
    found = shutil.which(name)
    for pattern in patterns:
        if found:
            break
        hits = sorted(glob.glob(os.path.join(pattern, name)))
        found = hits[-1] if hits else None
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs it for the connector tests)")
        pytest.skip(f"{name} is not installed (Debian: see .ci/run)")
    return found


def wait_listening(port: int, proc=None, timeout: float = START_TIMEOUT, what: str = "server") -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``; fail when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)        # polling a port that has no event to await
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s")


def wait_for(predicate, timeout: float, what: str):
    """Poll predicate() every 20 ms until it returns something truthy (returned); AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def read_lines(path) -> list[str]:
    """The complete lines of path so far ([] while it does not exist); a line still being written is left out."""
    try:
        with open(path) as file:
            text = file.read()
    except FileNotFoundError:
        return []
    return text.split("\n")[:-1]
