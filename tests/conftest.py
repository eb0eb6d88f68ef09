"""Shared fixtures. Every test gets its own app namespace; teardown fails the test if it left a shared-memory
segment of that namespace in /dev/shm or a child process behind (and cleans them up so one leak fails one test)."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import pytest

SHM = Path("/dev/shm")
_counter = itertools.count()
# long-lived helpers multiprocessing starts on first use; they are not ours to count as leaks
_IGNORED_CHILDREN = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def children_of(pid: int) -> set[int]:
    """Pids of live (non-zombie-reaped) children of pid, read from /proc."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not any(name in cmdline for name in _IGNORED_CHILDREN):
                kids.add(int(stat.parent.name))
    return kids


def segments(prefix: str) -> list[str]:
    """Names in /dev/shm that start with prefix."""
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(prefix))


@pytest.fixture
def app(request) -> str:
    """A unique app namespace for this test (valid as an EdgeFlow app name)."""
    return f"t{os.getpid()}n{next(_counter)}"


@pytest.fixture(autouse=True)
def no_leaks(request):
    """Fail a test that leaves a child process or an edgeflow segment of its namespace behind."""
    before = children_of(os.getpid())
    yield
    ns = request.node.funcargs.get("app")
    leaked_kids = _reap_new_children(before)
    leaked_shm = []
    if ns:
        leaked_shm = segments(f"edgeflow.{ns}.")
        for name in leaked_shm:
            (SHM / name).unlink(missing_ok=True)
    assert not leaked_kids, f"test left child processes behind: {sorted(leaked_kids)}"
    assert not leaked_shm, f"test left shared memory behind: {leaked_shm}"


def _reap_new_children(before: set[int]) -> set[int]:
    deadline = time.monotonic() + 2.0
    while True:
        new = children_of(os.getpid()) - before
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.02)                       # a child that is exiting right now gets a moment
    for pid in new:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    return new


def pytest_sessionfinish(session, exitstatus):
    """No edgeflow segment made by this test run may outlive it."""
    left = segments(f"edgeflow.t{os.getpid()}n")
    for name in left:
        (SHM / name).unlink(missing_ok=True)
    if left and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nshared memory left behind by the test run: {left}")
