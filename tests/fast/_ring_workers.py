"""Child-process entry points for tests/fast/test_ring_processes.py.

Run as a script: ``python _ring_workers.py ROLE JSON_ARGS``. A worker talks to the test over its stdout with one
JSON object per line, prefixed with ``@`` (``{"kind": "attached", ...}``); anything else on stdout or stderr is
log text the test shows when something goes wrong. Workers that must stay alive until the test kills them block
on stdin; a line ``exit`` (or end of input) lets them close cleanly.

The payload of frame number i (counted from 1 by the writer) is ``np.array([i, tag], np.int64)``: a reader checks
that ``data[0] == frame_id`` (the slot was not overwritten under a pinned view) and that ``data[1]`` is its app's
tag (no cross-talk between apps).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

import edgeflow as ef


def say(kind: str, **fields) -> None:
    print("@" + json.dumps({"kind": kind, "pid": os.getpid(), **fields}), flush=True)


def wait_for_stdin() -> str:
    """Block until the test sends a line (or closes stdin); returns the line without its newline."""
    return sys.stdin.readline().strip()


def payload(i: int, tag: int) -> np.ndarray:
    return np.array([i, tag], dtype=np.int64)


def writer(app: str, topic: str, n: int, slots: int = 8, backpressure_timeout: float = 10.0, tag: int = 0,
           hold: bool = False) -> None:
    """Publish frames 1..n, report, then close (or, with hold, stay alive with the ring open until killed)."""
    with ef.Publisher(topic, app=app, slots=slots, backpressure_timeout=backpressure_timeout) as pub:
        say("created")
        bad_ids = []
        for i in range(1, n + 1):
            fid = pub.publish(payload(i, tag), meta={"app": app, "i": i})
            if fid != i:
                bad_ids.append((i, fid))
        stats = pub.statistics()
        say("published", n=n, bad_ids=bad_ids, backpressure_waits=stats.backpressure_waits)
        if hold:
            wait_for_stdin()
    say("closed")


def reader(app: str, topic: str, qos: str = "durable", group: str | None = None, count: int | None = None,
           until_id: int | None = None, gone_limit: int = 1, hold_ids: tuple = (), hold_first: int = 0,
           delay: float = 0.0, stream: bool = False, recv_timeout: float = 30.0, then: str = "exit",
           max_held: int = 4, tag: int | None = None) -> None:
    """Receive frames and report them.

    Stops after ``count`` frames, after frame ``until_id``, or at the ``gone_limit``-th WriterGone, whichever comes
    first. Frames listed in ``hold_ids`` and the first ``hold_first`` frames are kept unreleased (their slots stay
    pinned); the others are released after ``delay`` seconds. With ``stream`` every frame is reported as it
    arrives (``got``), and ``waiting`` is said before each blocking recv. ``then="wait"`` keeps the process (and
    its held frames) alive until the test kills it or sends a line.
    """
    held, ids, bad, gones = [], [], [], []
    stats = None
    with ef.Subscriber(topic, app=app, qos=ef.QoS(qos), group=group, max_held=max_held) as sub:
        say("attached")
        while (count is None or len(ids) < count) and len(gones) < gone_limit:
            if stream:
                say("waiting")
            try:
                frame = sub.recv(timeout=recv_timeout)
            except ef.WriterGone as exc:
                gones.append(exc.clean)
                say("gone", clean=exc.clean, t=time.monotonic(), n=len(ids))
                continue
            data = frame.data
            if int(data[0]) != frame.frame_id or (tag is not None and int(data[1]) != tag) \
                    or frame.meta.get("i") != frame.frame_id:
                bad.append((frame.frame_id, data.tolist(), frame.meta))
            ids.append(frame.frame_id)
            del data
            stats = sub.statistics()              # before any WriterGone: a clean close re-attaches the reader
            if stream:
                say("got", id=frame.frame_id)
            if frame.frame_id in hold_ids or len(held) < hold_first:
                held.append(frame)
                if hold_first and len(held) == hold_first:
                    say("holding", ids=[f.frame_id for f in held])
            else:
                if delay:
                    time.sleep(delay)             # a slow consumer, holding its frame meanwhile
                frame.release()
            if until_id is not None and frame.frame_id >= until_id:
                break
        final = sub.statistics()
        say("done", ids=ids, bad=bad, gones=gones, held_ids=[f.frame_id for f in held],
            received=stats and stats.received, drops=stats and stats.drops,          # as of the last frame
            final_received=final.received, final_drops=final.drops)                  # as of now
        if then == "wait":
            wait_for_stdin()
        for f in held:
            f.release()
    say("closed")


ROLES = {"writer": writer, "reader": reader}


def main() -> None:
    role, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        ROLES[role](**args)
    except BaseException as exc:                  # report, then fail loudly: the test shows the traceback
        say("error", error=f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()
