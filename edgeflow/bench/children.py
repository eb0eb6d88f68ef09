"""Child processes of the benchmarks: start, talk to, stop, and find the ones left behind.

Every child is started from the multiprocessing "spawn" context: the CLI reuses the benchmarks, and fork
would copy its threads and sockets into the child.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import time
from typing import Any, Callable

from edgeflow.bench.results import BenchError


def spawn_context() -> Any:
    """The multiprocessing context of every benchmark child."""
    return multiprocessing.get_context("spawn")


def start_child(target: Callable[..., None], args: tuple, child_ctl: Any, name: str) -> Any:
    """Start a daemon child (spawn context); our copy of its end of the control pipe is closed either way."""
    proc = spawn_context().Process(target=target, args=args, name=name, daemon=True)
    try:
        proc.start()
    finally:
        child_ctl.close()
    return proc


def stop_child(proc: Any, timeout: float = 5.0) -> bool:
    """Join a started child, terminating (then killing) it if it does not exit; True if it exited itself."""
    proc.join(timeout)
    exited = proc.exitcode is not None
    if not exited:
        proc.terminate()
        proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    proc.close()
    return exited


def receive_message(ctl: Any, proc: Any, tag: str, timeout: float, who: str) -> Any:
    """The payload of the child's next message, which must be ``tag``; else BenchError (with traceback)."""
    deadline = time.monotonic() + timeout
    while not ctl.poll(0.05):
        if not proc.is_alive() and not ctl.poll(0):
            raise BenchError(f"{who}: the child exited (code {proc.exitcode}) before sending {tag!r}")
        if time.monotonic() > deadline:
            raise BenchError(f"{who}: no {tag!r} from the child within {timeout:g} s")
    try:
        what, payload = ctl.recv()
    except (EOFError, OSError) as exc:
        raise BenchError(f"{who}: the child exited (code {proc.exitcode}) before sending {tag!r}") from exc
    if what == "error":
        raise BenchError(f"{who}: the child failed:\n{payload}")
    if what != tag:
        raise BenchError(f"{who}: the child sent {what!r}, expected {tag!r}")
    return payload


def run_all_steps(*steps: Callable[[], None]) -> None:
    """Cleanup: run every step even if one fails, then raise the first failure."""
    failure: BaseException | None = None
    for step in steps:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the remaining steps ran
            failure = failure or exc
    if failure is not None:
        raise failure


def live_children() -> list[tuple[int, str]]:
    """Child processes of this process, without multiprocessing's resource tracker (it lives until exit)."""
    me, found = os.getpid(), []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != me:
                continue
            pid = int(stat.split("/")[2])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue                          # exited while we looked
        if "resource_tracker" not in cmdline:
            found.append((pid, cmdline))
    return found


