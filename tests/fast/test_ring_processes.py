"""The shared-memory ring across real processes: several readers of both kinds, back-pressure, and crashes
(real SIGKILLs of readers, group members and writers), stale segments, app namespaces and pid reuse.

Children run tests/fast/_ring_workers.py as a script (never forked from the test process) and report over their
stdout with ``@``-prefixed JSON lines; the test waits for those lines instead of sleeping. Every child is killed
and reaped by the ``procs`` fixture, every Publisher and Subscriber is closed by a ``with`` block, so the leak
check in tests/conftest.py holds.

Payload convention (shared with the workers): frame i carries ``np.array([i, tag], np.int64)`` and meta
``{"i": i}``; readers check both against the frame id, so an overwritten pinned slot shows up as a bad frame.
"""

from __future__ import annotations

import json
import mmap
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

import edgeflow as ef
from edgeflow._fast import ring

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).with_name("_ring_workers.py")
SHM = Path("/dev/shm")
TOPIC = "camera"

WAIT_S = 30.0        # generous: how long to wait for a child's next line on a busy 2-core machine
RECLAIM_S = 1.5      # promise: a dead reader's pins and private cursor are reclaimed within about a second
UNBLOCK_S = 2.0      # promise: a writer blocked on a reader that gets killed unblocks within ~1-2 s
GONE_S = 1.0         # promise: a killed writer is noticed by a blocked reader within ~0.1-0.5 s
CLOSE_WAKE_S = 0.5   # a clean close wakes blocked readers at once (futex wake)


# ---------------------------------------------------------------------------------------------------------------
# child processes

class _NoMessage(AssertionError):
    """A child did not send the expected message in time."""


class Child:
    """A worker process from _ring_workers.py. ``expect(kind)`` returns its next message of that kind."""

    def __init__(self, role: str, **args) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.role = role
        self.proc = subprocess.Popen([sys.executable, str(WORKERS), role, json.dumps(args)], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.pid = self.proc.pid
        self.messages: list[dict] = []           # every message, in order (also those expect() skipped)
        self.log: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._pump = threading.Thread(target=self._read, name=f"pump-{self.pid}", daemon=True)
        self._pump.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("@"):
                msg = json.loads(line[1:])
                self.messages.append(msg)
                self._queue.put(msg)
            else:
                self.log.append(line)
        self._queue.put(None)                    # end of output: the process exited

    def expect(self, kind: str, timeout: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise _NoMessage(f"{self}: no {kind!r} within {timeout:g} s{self._output()}") from None
            if msg is None:
                self._queue.put(None)
                raise AssertionError(f"{self}: exited (code {self.proc.wait(5)}) before {kind!r}{self._output()}")
            if msg["kind"] == "error" and kind != "error":
                raise AssertionError(f"{self}: {msg['error']}{self._output()}")
            if msg["kind"] == kind:
                return msg

    def next(self, kind: str, timeout: float) -> dict | None:
        """Like expect, but None when no such message came within the timeout."""
        try:
            return self.expect(kind, timeout)
        except _NoMessage:
            return None

    def got(self) -> list[int]:
        """Frame ids this child reported as received so far (stream mode)."""
        return [m["id"] for m in self.messages if m["kind"] == "got"]

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> float:
        """SIGKILL (without reaping); returns the monotonic time of the kill."""
        os.kill(self.pid, signal.SIGKILL)
        return time.monotonic()

    def wait(self, timeout: float = WAIT_S) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)
        self._pump.join(WAIT_S)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except BrokenPipeError:              # unsent input to a dead child
                pass

    def _output(self) -> str:
        return f"\n--- output of {self} ---\n{''.join(self.log)}" if self.log else ""

    def __repr__(self) -> str:
        return f"<{self.role} pid {self.pid}>"


class Procs:
    """Starts children and, at teardown, kills and reaps every one of them."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._others: list[subprocess.Popen] = []

    def worker(self, role: str, **args) -> Child:
        child = Child(role, **args)
        self._children.append(child)
        return child

    def sleeper(self) -> subprocess.Popen:
        """A plain live process that is not ours in any ring."""
        proc = subprocess.Popen(["sleep", "60"])
        self._others.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._others:
            if proc.poll() is None:
                proc.kill()
            proc.wait(WAIT_S)
        for child in reversed(self._children):
            child.close()


@pytest.fixture
def procs():
    p = Procs()
    try:
        yield p
    finally:
        p.close()


# ---------------------------------------------------------------------------------------------------------------
# helpers

def payload(i: int, tag: int = 0) -> np.ndarray:
    return np.array([i, tag], dtype=np.int64)


def publish(pub: ef.Publisher, i: int, tag: int = 0) -> int:
    """Publish frame i (the i-th of this ring) and check it got frame id i."""
    fid = pub.publish(payload(i, tag), meta={"i": i})
    assert fid == i, f"frame ids start at 1 and increase by 1: publish #{i} got id {fid}"
    return fid


def check_frame(frame: ef.Frame, tag: int = 0) -> int:
    assert frame.data.tolist() == [frame.frame_id, tag], f"frame {frame.frame_id} carries {frame.data.tolist()}"
    assert frame.meta.get("i") == frame.frame_id
    return frame.frame_id


def wait_until(predicate, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)
    return value


def proc_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or '' when the pid is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    return data[data.rindex(b")") + 2:].split()[0].decode()


def reader_pids(pub: ef.Publisher) -> list[int]:
    return [r["pid"] for r in pub.statistics().readers]


def group_stats(pub: ef.Publisher, name: str | None) -> dict:
    [g] = [g for g in pub.statistics().groups if g["name"] == name]
    return g


def publish_until_reclaimed(pub: ef.Publisher, pid: int, first: int, since: float) -> tuple[int, float]:
    """Keep publishing (every 10 ms) until the writer no longer lists a reader with this pid.

    Returns (next frame number, seconds from ``since`` to the reclaim). Fails past RECLAIM_S + slack.
    """
    i = first
    while pid in reader_pids(pub):
        assert time.monotonic() - since < RECLAIM_S + 3.0, \
            f"reader pid {pid} still listed {time.monotonic() - since:.1f} s after it died: {pub.statistics()}"
        publish(pub, i)                          # never blocks: two slots are always left to the writer
        i += 1
        time.sleep(0.01)
    return i, time.monotonic() - since


def hold_two_frames(pub: ef.Publisher, reader: Child) -> None:
    """Publish frames 1 and 2 to a REALTIME reader child that keeps both (pins two slots)."""
    reader.expect("attached")
    for i in (1, 2):
        publish(pub, i)
        assert reader.expect("got")["id"] == i
    assert reader.expect("holding")["ids"] == [1, 2]
    stats = pub.statistics()
    assert [(r["pid"], r["held"]) for r in stats.readers] == [(reader.pid, 2)]
    assert stats.pinned_slots == 2


def ring_segments(app: str) -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(f"edgeflow.{app}."))


# ---------------------------------------------------------------------------------------------------------------
# 1-2: many readers, back-pressure

N_MANY = 2000


def test_durable_realtime_and_group_readers_in_processes_each_get_what_their_qos_promises(app, procs):
    readers = {kind: [procs.worker("reader", app=app, topic=TOPIC, **args) for _ in range(2)]
               for kind, args in (("durable", {"qos": "durable"}), ("realtime", {"qos": "realtime"}),
                                  ("group", {"qos": "durable", "group": "workers"}))}
    everyone = [r for rs in readers.values() for r in rs]
    for r in everyone:                           # subscribers start before their publisher exists
        r.expect("attached")
    writer = procs.worker("writer", app=app, topic=TOPIC, n=N_MANY, slots=8, backpressure_timeout=20.0)
    published = writer.expect("published", timeout=60)
    done = {r: r.expect("done", timeout=60) for r in everyone}
    assert writer.wait() == 0
    for r in everyone:
        assert r.wait() == 0, r._output()

    every = list(range(1, N_MANY + 1))
    assert published["bad_ids"] == []
    for r in everyone:
        assert done[r]["bad"] == [], f"{r}: frames with wrong payload"
        assert done[r]["gones"] == [True], f"{r}: ends with a clean WriterGone after draining"
    for r in readers["durable"]:
        assert done[r]["ids"] == every, f"{r}: every frame, in order, exactly once"
        assert done[r]["drops"] == 0
    for r in readers["realtime"]:
        ids = done[r]["ids"]
        assert all(a < b for a, b in zip(ids, ids[1:])), f"{r}: REALTIME went back or repeated"
        assert ids[-1] == N_MANY, f"{r}: the newest frame is always delivered"
        assert done[r]["received"] == len(ids)
        assert done[r]["received"] + done[r]["drops"] == N_MANY, f"{r}: skipped frames are counted as drops"
    first, second = (done[r]["ids"] for r in readers["group"])
    assert not set(first) & set(second), "a group delivers each frame to exactly one member"
    assert sorted(first + second) == every, "a durable group receives every frame"
    for ids in (first, second):
        assert all(a < b for a, b in zip(ids, ids[1:]))


def test_slow_durable_consumer_gets_every_frame_in_order_while_the_producer_waits(app, procs):
    n, slots = 60, 4
    with ef.Publisher(TOPIC, app=app, slots=slots, backpressure_timeout=20.0) as pub:
        slow = procs.worker("reader", app=app, topic=TOPIC, qos="durable", count=n, delay=0.01)
        slow.expect("attached")
        worst_lag = 0
        for i in range(1, n + 1):
            publish(pub, i)
            worst_lag = max(worst_lag, group_stats(pub, None)["lag"])
        stats = pub.statistics()
        done = slow.expect("done")
    assert slow.wait() == 0
    assert done["ids"] == list(range(1, n + 1))
    assert done["bad"] == [] and done["drops"] == 0
    assert stats.backpressure_waits > 0, "the producer never waited for its slow durable consumer"
    assert worst_lag <= slots, "a durable reader is never more than a ring behind"


# ---------------------------------------------------------------------------------------------------------------
# 3-5: readers killed

def test_killed_realtime_reader_holding_pins_does_not_wedge_writer_and_its_pins_are_reclaimed(app, procs):
    with ef.Publisher(TOPIC, app=app, slots=4, backpressure_timeout=2.0) as pub:
        reader = procs.worker("reader", app=app, topic=TOPIC, qos="realtime", count=2, hold_first=2,
                              stream=True, then="wait")
        hold_two_frames(pub, reader)
        t_kill = reader.kill()
        reader.wait()
        _, took = publish_until_reclaimed(pub, reader.pid, 3, t_kill)
        stats = pub.statistics()
        assert took < RECLAIM_S, f"pins of a killed reader reclaimed only after {took:.2f} s"
        assert stats.readers == () and stats.pinned_slots == 0
        assert stats.groups == (), "a dead REALTIME reader's private group is freed"

        # all four slots are usable again: a new reader can pin two frames (not copies) while the writer goes on
        with ef.Subscriber(TOPIC, app=app, qos=ef.QoS.REALTIME) as sub:
            start = stats.published + 1
            kept = []
            for i in range(start, start + 2):
                publish(pub, i)
                kept.append(sub.recv(timeout=5))
            publish(pub, start + 2)
            assert [check_frame(f) for f in kept] == [start, start + 1]
            assert sub.statistics().copies == 0 and pub.statistics().pinned_slots == 2
            for f in kept:
                f.release()


def test_killed_lagging_durable_reader_unblocks_the_waiting_writer_without_timeout(app, procs):
    slots, timeout = 4, 10.0
    with ef.Publisher(TOPIC, app=app, slots=slots, backpressure_timeout=timeout) as pub:
        lagging = procs.worker("reader", app=app, topic=TOPIC, qos="durable", count=0, then="wait")
        lagging.expect("attached")
        for i in range(1, slots + 1):
            publish(pub, i)
        result: dict = {}

        def blocked_publish():
            try:
                result["fid"] = pub.publish(payload(slots + 1), meta={"i": slots + 1})
            except BaseException as exc:         # reported by the main thread
                result["error"] = exc
            result["t"] = time.monotonic()

        publisher = threading.Thread(target=blocked_publish)
        t_start = time.monotonic()
        publisher.start()
        try:
            wait_until(lambda: pub.statistics().backpressure_waits == 1, "the writer to block on the reader")
            assert "fid" not in result and "error" not in result
            t_kill = lagging.kill()
            lagging.wait()
        finally:
            publisher.join(timeout + 5)
        assert "error" not in result, f"publish failed instead of unblocking: {result.get('error')!r}"
        assert result["fid"] == slots + 1
        assert result["t"] - t_kill < UNBLOCK_S, \
            f"writer unblocked {result['t'] - t_kill:.2f} s after the lagging reader was killed"
        assert result["t"] - t_start < timeout
        stats = pub.statistics()
        assert stats.readers == () and stats.groups == (), "the dead reader's private cursor is gone"
        for i in range(slots + 2, slots + 2 + 3 * slots):   # and the writer never waits for it again
            publish(pub, i)
        assert pub.statistics().backpressure_waits == 1


def test_killed_group_member_frame_is_redelivered_to_new_member_and_group_blocks_writer_meanwhile(app, procs):
    slots, hold, n = 8, 7, 30
    bp_timeout = 1.0
    with ef.Publisher(TOPIC, app=app, slots=slots, backpressure_timeout=bp_timeout) as pub:
        first = procs.worker("reader", app=app, topic=TOPIC, qos="durable", group="workers", count=10,
                             hold_ids=[hold], stream=True, then="wait")
        first.expect("attached")
        for i in range(1, 11):
            publish(pub, i)
            assert first.expect("got")["id"] == i
        assert first.expect("done")["held_ids"] == [hold]
        for i in range(11, 14):                  # published, not taken by anyone yet
            publish(pub, i)
        last = 13
        assert group_stats(pub, "workers")["cursor"] == 11
        first.kill()
        first.wait()

        # no live member: the group keeps its cursor, so the writer fills what is free, then waits and times out
        t0 = time.monotonic()
        with pytest.raises(ef.BackpressureTimeout) as timed_out:
            for _ in range(slots + 1):
                publish(pub, last + 1)
                last += 1
        blocked = time.monotonic() - t0
        assert bp_timeout <= blocked < bp_timeout + 2.0
        g = group_stats(pub, "workers")
        assert g["members"] == 0 and g["cursor"] == 11, f"the group's position survives its member: {g}"

        # a new member goes on where the group stood, and first gets the frame the dead one never released
        second = procs.worker("reader", app=app, topic=TOPIC, qos="durable", group="workers", until_id=n,
                              stream=True)
        second.expect("attached")
        while second.expect("got")["id"] != last:
            pass
        assert hold in second.got(), \
            f"frame {hold}, taken but never released by the killed member, was not redelivered: " \
            f"{second.got()}; group {group_stats(pub, 'workers')}"
        for i in range(last + 1, n + 1):
            publish(pub, i)
            assert second.expect("got")["id"] == i
        done = second.expect("done")
    assert second.wait() == 0

    a, b = first.got(), second.got()
    assert done["bad"] == [], "a redelivered frame must still carry its own payload"
    assert set(a) | set(b) == set(range(1, n + 1)), "the group lost frames across the crash"
    assert set(a) & set(b) <= {hold}, "only frames the dead member took but never released may come twice"
    assert len(b) == len(set(b))
    assert b[1:] == list(range(11, n + 1)), "after the redelivery, the new member goes on in order"
    assert "workers" in str(timed_out.value), \
        f"BackpressureTimeout does not name the group that has no live member: {timed_out.value}"


# ---------------------------------------------------------------------------------------------------------------
# 6-7: writers killed

def test_killed_writer_wakes_blocked_reader_then_a_new_writer_takes_the_ring_over(app, procs):
    with ExitStack() as stack:
        durable = stack.enter_context(ef.Subscriber(TOPIC, app=app, qos=ef.QoS.DURABLE))
        realtime = stack.enter_context(ef.Subscriber(TOPIC, app=app, qos=ef.QoS.REALTIME))
        assert realtime.writer_status() == "none"
        writer = procs.worker("writer", app=app, topic=TOPIC, n=5, hold=True)
        writer.expect("published")
        assert realtime.writer_status() == "running"
        with realtime.recv(timeout=5) as f:
            assert check_frame(f) == 5
        for i in (1, 2):
            with durable.recv(timeout=5) as f:
                assert check_frame(f) == i

        killed = {}
        killer = threading.Timer(0.3, lambda: killed.setdefault("t", writer.kill()))   # while recv blocks
        killer.start()
        try:
            with pytest.raises(ef.WriterGone) as gone:
                realtime.recv(timeout=10)
            t_gone = time.monotonic()
        finally:
            killer.cancel()
            killer.join()
        assert gone.value.clean is False
        assert 0 <= t_gone - killed["t"] < GONE_S, f"WriterGone {t_gone - killed['t']:.2f} s after the kill"
        assert realtime.writer_status() == "dead" and durable.writer_status() == "dead"
        with durable.recv(timeout=5) as f:       # what the dead writer published stays readable
            assert check_frame(f) == 3

        pub = stack.enter_context(ef.Publisher(TOPIC, app=app, slots=8))
        assert realtime.writer_status() == "running"
        publish(pub, 6)
        with realtime.recv(timeout=5) as f:      # the same subscriber goes on with the new writer
            assert check_frame(f) == 6
        got = []
        for _ in range(3):
            with durable.recv(timeout=5) as f:
                got.append(check_frame(f))
        assert got == [4, 5, 6], "a durable subscriber drains the dead writer's frames, then the new one's"
        publish(pub, 7)
        publish(pub, 8)
        with realtime.recv(timeout=5) as f:
            assert check_frame(f) == 8
        got = []
        for _ in range(2):
            with durable.recv(timeout=5) as f:
                got.append(check_frame(f))
        assert got == [7, 8]
        assert durable.recv_nowait() is None and realtime.recv_nowait() is None
    assert ring_segments(app) == []


def test_segment_left_by_a_killed_writer_is_reused_by_the_next_publisher(app, procs):
    writer = procs.worker("writer", app=app, topic=TOPIC, n=3, slots=4, hold=True)
    writer.expect("published")
    writer.kill()
    writer.wait()
    stale = ring_segments(app)
    assert f"edgeflow.{app}.{TOPIC}.ctl" in stale and len(stale) >= 2, stale

    with ExitStack() as stack:
        early = stack.enter_context(ef.Subscriber(TOPIC, app=app, qos=ef.QoS.REALTIME))   # before the publisher
        assert early.writer_status() == "dead"
        pub = stack.enter_context(ef.Publisher(TOPIC, app=app, slots=4))
        late = stack.enter_context(ef.Subscriber(TOPIC, app=app, qos=ef.QoS.DURABLE))
        fids, got = [], []
        for i in range(10):
            fids.append(pub.publish(payload(i), meta={"i": i}))
            with late.recv(timeout=5) as f:
                got.append(f.frame_id)
                assert f.data.tolist() == [f.meta["i"], 0]
        assert fids == list(range(fids[0], fids[0] + 10))
        assert got == fids
        with early.recv(timeout=5) as f:
            assert f.frame_id == fids[-1] and f.data.tolist() == [9, 0]
    assert ring_segments(app) == [], "closing the new publisher removes the stale segments too"


# ---------------------------------------------------------------------------------------------------------------
# 8: namespaces

def test_two_apps_with_the_same_topic_in_two_processes_never_see_each_others_frames(app, procs):
    other = f"{app}-other"
    counts, tags = {app: 20, other: 30}, {app: 1, other: 2}
    try:
        readers = {a: procs.worker("reader", app=a, topic=TOPIC, qos="durable", tag=tags[a]) for a in counts}
        for r in readers.values():
            r.expect("attached")
        writers = [procs.worker("writer", app=a, topic=TOPIC, n=counts[a], tag=tags[a]) for a in counts]
        for a, r in readers.items():
            done = r.expect("done")
            assert done["bad"] == [], f"app {a} received frames of the other app"
            assert done["ids"] == list(range(1, counts[a] + 1)) and done["gones"] == [True]
        for child in writers + list(readers.values()):
            assert child.wait() == 0
    finally:
        assert ring_segments(other) == []


# ---------------------------------------------------------------------------------------------------------------
# 9: liveness is pid + start time

def test_process_start_time_tells_live_zombie_and_reaped_processes_apart(procs):
    mine = Path("/proc/self/stat").read_bytes()
    assert ring.process_start_time(os.getpid()) == int(mine[mine.rindex(b")") + 2:].split()[19]) > 0
    sleeper = procs.sleeper()
    start = ring.process_start_time(sleeper.pid)
    assert start > 0
    os.kill(sleeper.pid, signal.SIGKILL)
    wait_until(lambda: proc_state(sleeper.pid) == "Z", "the killed child to become a zombie")
    assert ring.process_start_time(sleeper.pid) == 0, "a killed but not yet reaped process counts as dead"
    sleeper.wait(WAIT_S)
    assert ring.process_start_time(sleeper.pid) == 0


# ef_reader entries in the control segment (edgeflow/_fast/_layout.h): after the 4096-byte header, 64 bytes each,
# state u32 @0 (2 = ACTIVE), group u32 @4, pid i32 @8, held u32 @12, start_time u64 @16.
_READERS_AT, _READER_BYTES, _ACTIVE = 4096, 64, 2


def _rewrite_reader_pid(app: str, index: int, expected_pid: int, new_pid: int) -> int:
    """Make reader entry ``index`` name another pid (as if the dead reader's pid were reused); returns its start
    time. Checks the layout assumption first."""
    with open(SHM / f"edgeflow.{app}.{TOPIC}.ctl", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        at = _READERS_AT + index * _READER_BYTES
        state, _group, pid, _held, start = struct.unpack_from("<IIiIQ", m, at)
        assert (state, pid) == (_ACTIVE, expected_pid), "the reader table layout is not what this test assumes"
        struct.pack_into("<i", m, at + 8, new_pid)
    return start


def test_reader_entry_whose_pid_was_reused_by_a_live_process_is_treated_as_dead(app, procs):
    with ef.Publisher(TOPIC, app=app, slots=4, backpressure_timeout=2.0) as pub:
        reader = procs.worker("reader", app=app, topic=TOPIC, qos="realtime", count=2, hold_first=2,
                              stream=True, then="wait")
        hold_two_frames(pub, reader)
        [entry] = pub.statistics().readers
        reader_start = ring.process_start_time(reader.pid)
        reader.kill()
        reader.wait()                            # the writer does no housekeeping until the next publish
        live = procs.sleeper()
        recorded = _rewrite_reader_pid(app, entry["index"], reader.pid, live.pid)
        assert recorded == reader_start != ring.process_start_time(live.pid) > 0
        assert reader_pids(pub) == [live.pid]
        t0 = time.monotonic()
        _, took = publish_until_reclaimed(pub, live.pid, 3, t0)
        assert took < RECLAIM_S
        assert pub.statistics().pinned_slots == 0
        assert live.poll() is None, "the process that reuses the pid is untouched"


def test_killed_reader_pins_are_reclaimed_before_the_zombie_is_reaped(app, procs):
    with ef.Publisher(TOPIC, app=app, slots=4, backpressure_timeout=2.0) as pub:
        reader = procs.worker("reader", app=app, topic=TOPIC, qos="realtime", count=2, hold_first=2,
                              stream=True, then="wait")
        hold_two_frames(pub, reader)
        t_kill = reader.kill()
        wait_until(lambda: proc_state(reader.pid) == "Z", "the killed reader to become a zombie")
        _, took = publish_until_reclaimed(pub, reader.pid, 3, t_kill)
        assert proc_state(reader.pid) == "Z", "nobody reaped it: the writer saw a zombie"
        assert took < RECLAIM_S
        assert pub.statistics().pinned_slots == 0
        reader.wait()


# ---------------------------------------------------------------------------------------------------------------
# 10: clean close

def test_clean_close_wakes_a_blocked_realtime_reader_process_with_writer_gone_clean(app, procs):
    reader = procs.worker("reader", app=app, topic=TOPIC, qos="realtime", stream=True, recv_timeout=10.0)
    with ef.Publisher(TOPIC, app=app) as pub:
        reader.expect("attached")
        publish(pub, 1)
        assert reader.expect("got")["id"] == 1
        reader.expect("waiting")                 # about to block in recv(timeout=10)
        t_close = time.monotonic()
    gone = reader.expect("gone")
    assert gone["clean"] is True and gone["n"] == 1
    assert gone["t"] - t_close < CLOSE_WAKE_S, f"WriterGone {gone['t'] - t_close:.2f} s after close()"
    done = reader.expect("done")
    assert reader.wait() == 0
    assert done["ids"] == [1] and done["gones"] == [True] and done["bad"] == []


def test_each_clean_close_raises_writer_gone_once_and_the_next_publisher_reaches_the_same_subscriber(app, procs):
    rounds = 40                                  # publishers one after another on one topic, one subscriber
    reader = procs.worker("reader", app=app, topic=TOPIC, qos="realtime", count=rounds, gone_limit=1_000_000,
                          stream=True, recv_timeout=10.0)
    reader.expect("attached")
    i = 0       # the subscriber keeps the ring: each new publisher takes it over and frame ids go on increasing
    for r in range(rounds):
        with ef.Publisher(TOPIC, app=app) as pub:
            i += 1
            publish(pub, i)
            while (got := reader.next("got", timeout=0.02)) is None:   # until the subscriber is on this ring
                i += 1
                publish(pub, i)
            assert got["id"] <= i
        if r < rounds - 1:
            assert reader.expect("gone")["clean"] is True
    done = reader.expect("done")
    assert reader.wait() == 0
    assert done["bad"] == []
    assert done["gones"] == [True] * (rounds - 1), \
        f"{rounds - 1} clean closes raised WriterGone {len(done['gones'])} times"
