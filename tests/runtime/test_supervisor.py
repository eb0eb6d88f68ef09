"""The supervisor: restarts after SIGKILL without losing DURABLE frames, back-off and giving up on a node that
keeps crashing, Ctrl-C / SIGTERM of ``python main.py``, and ``python main.py --node X`` processes finding each
other (issue 4, section 5; the restart policy in edgeflow/runtime/supervisor.py's docstring)."""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeflow import EdgeApp, QoS
from edgeflow.runtime import supervisor

from . import nodes
from .nodes import counters, read_lines, wait_for

ROOT = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")


def shm_of(app: str) -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(f"edgeflow.{app}."))


def pids_of(pidfile: Path) -> list[int]:
    return [int(line.split()[1]) for line in read_lines(pidfile)]


# -- restarts ------------------------------------------------------------------------------------------------

def test_sigkilled_consumer_is_restarted_and_a_durable_link_loses_no_frame(app, tmp_path):
    out, pidfile, taken = tmp_path / "log.txt", tmp_path / "relay.pid", tmp_path / "taken.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=None)
    # the relay spends most of its time inside its hook, holding the frame: the kill most likely lands there,
    # with a frame taken from the ring but not released
    ef.node(nodes.Relay, name="relay", pidfile=str(pidfile), taken=str(taken), delay=0.01)
    ef.node(nodes.Recorder, name="log", out=str(out))
    ef.link("camera").to("relay", qos=QoS.DURABLE).to("log", qos=QoS.DURABLE)

    with ef.start(frames=300) as running:
        wait_for(lambda: len(read_lines(out)) >= 50, 30, "50 frames at the sink")
        [victim] = pids_of(pidfile)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(pids_of(pidfile)) == 2, 30, "the relay to be restarted")
        code = running.wait(60)
        stats = running.statistics()

    assert code == 0, stats
    assert pids_of(pidfile)[1] != victim
    assert stats["nodes"]["relay"]["restarts"] >= 1
    assert stats["nodes"]["relay"]["states"] == ["finished"]
    # the restarted relay goes on where the killed one was: with the frame it held (redelivered, when the kill
    # landed inside the hook) or the next one; never further on
    took = [tuple(map(int, line.split())) for line in read_lines(taken)]
    last_of_victim = max(i for pid, i in took if pid == victim)
    first_of_new = next(i for pid, i in took if pid != victim)
    assert first_of_new in (last_of_victim, last_of_victim + 1), (last_of_victim, first_of_new)
    print(f"\nkilled holding {last_of_victim}; the restarted relay began with {first_of_new}")
    got = [i for _, i in counters(out)]
    missing = set(range(300)) - set(got)
    assert not missing, f"DURABLE lost frames across the crash: {sorted(missing)}"
    # At-least-once, not exactly-once: a frame the killed relay had taken but not yet released is redelivered
    # to the restarted one; if the kill came after the relay had published its output but before it released
    # the input, that frame reaches the sink twice. So duplicates CAN appear, only around the kill and no more
    # than a node may hold; seen by first arrival, the stream is complete and in order.
    extra = {i: n - 1 for i, n in collections.Counter(got).items() if n > 1}
    print(f"\nafter SIGKILL: {len(got)} deliveries of 300 frames, redelivered twice: {extra}")
    assert sum(extra.values()) <= 8, f"more duplicates than frames a node may hold: {extra}"
    assert list(dict.fromkeys(got)) == list(range(300))


def _crash_run(app, tmp_path, crasher, restart_limit, monkeypatch, caplog, camera_fps, frames):
    """camera -> crash (REALTIME, the crasher) and camera -> log (DURABLE); runs to the end."""
    monkeypatch.setattr(supervisor, "RESTART_LIMIT", restart_limit)   # the supervisor runs in this process
    caplog.set_level(logging.INFO, logger="edgeflow")
    starts, out = tmp_path / "starts.txt", tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=camera_fps)
    ef.node(crasher, name="crash", out=str(starts))
    ef.node(nodes.Recorder, name="log", out=str(out))
    ef.link("camera").to("crash", qos=QoS.REALTIME)        # never back-pressures the camera
    ef.link("camera").to("log")
    with ef.start(frames=frames) as running:
        code = running.wait(60)
        stats = running.statistics()
    assert code is not None, "the run did not end after the supervisor gave up"
    return code, stats, [float(t) for t in read_lines(starts)], counters(out)


def test_a_node_crashing_in_setup_is_restarted_with_back_off_then_given_up_on(app, tmp_path, monkeypatch,
                                                                              caplog):
    code, stats, starts, logged = _crash_run(app, tmp_path, nodes.SetupCrasher, 2, monkeypatch, caplog,
                                             camera_fps=None, frames=50)

    assert code == 1                                          # a node was given up on
    crash = stats["nodes"]["crash"]
    assert crash["restarts"] == 2 and crash["states"] == ["failed"]
    assert len(starts) == 3, "the first start and RESTART_LIMIT restarts"
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.5 - 0.05 and gaps[1] >= 1.0 - 0.05, f"back-off 0.5 s then 1 s, got {gaps}"
    assert gaps[1] > gaps[0]
    messages = [r.getMessage() for r in caplog.records]
    assert "crash[0]: crashed (exit code 1); restart 1 in 0.5 s" in messages
    assert "crash[0]: crashed (exit code 1); restart 2 in 1 s" in messages
    assert "crash[0]: crashed (exit code 1) 3 times in 60 s; giving up on it" in messages
    # the other nodes were not disturbed and ended cleanly
    assert logged == [(0, i) for i in range(50)]
    assert stats["nodes"]["camera"]["states"] == ["finished"]
    assert stats["nodes"]["log"]["states"] == ["finished"]
    assert stats["nodes"]["camera"]["restarts"] == stats["nodes"]["log"]["restarts"] == 0


def test_a_node_exiting_in_process_is_restarted_then_given_up_on(app, tmp_path, monkeypatch, caplog):
    code, stats, starts, logged = _crash_run(app, tmp_path, nodes.ExitCrasher, 1, monkeypatch, caplog,
                                             camera_fps=50, frames=150)

    assert code == 1
    crash = stats["nodes"]["crash"]
    assert crash["restarts"] == 1 and crash["states"] == ["failed"]
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 0.5 - 0.05
    messages = [r.getMessage() for r in caplog.records]
    assert "crash[0]: crashed (exit code 3); restart 1 in 0.5 s" in messages
    assert "crash[0]: crashed (exit code 3) 2 times in 60 s; giving up on it" in messages
    assert logged == [(0, i) for i in range(150)]
    assert stats["nodes"]["camera"]["states"] == ["finished"]
    assert stats["nodes"]["log"]["states"] == ["finished"]


def test_only_crashes_within_the_restart_window_count_toward_the_limit(app, tmp_path, monkeypatch, caplog):
    # RESTART_LIMIT = 1 would give up on the second crash, but each crash here is more than RESTART_WINDOW
    # after the previous one (the 0.5 s back-off alone is longer), so the node is restarted each time and,
    # once it stops crashing (third start), runs to the end.
    monkeypatch.setattr(supervisor, "RESTART_LIMIT", 1)
    monkeypatch.setattr(supervisor, "RESTART_WINDOW", 0.3)
    caplog.set_level(logging.INFO, logger="edgeflow")
    starts = tmp_path / "starts.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=50)
    ef.node(nodes.SetupCrasher, name="crash", out=str(starts), times=2)
    ef.link("camera").to("crash", qos=QoS.DURABLE)

    with ef.start(frames=200) as running:                      # 4 s: outlasts two restarts
        code = running.wait(60)
        stats = running.statistics()

    assert code == 0, [r.getMessage() for r in caplog.records]
    assert len(read_lines(starts)) == 3
    crash = stats["nodes"]["crash"]
    assert crash["restarts"] == 2 and crash["states"] == ["finished"]
    assert not any("giving up" in r.getMessage() for r in caplog.records)
    assert crash["frames_in"] == 200                          # DURABLE: its input waited while it was down


def test_a_node_restarted_after_an_exception_still_feeds_its_durable_consumer(app, tmp_path):
    # A node that dies of an exception (here in setup) is a crash, not the end of its stream: the supervisor
    # restarts it, and its DURABLE consumer must wait for it as for a SIGKILLed one (inputs.py: "one that died
    # is waited for"), then get every frame. The crash waits until the consumer is attached (its setup, which
    # writes the pid file, runs after its inputs are open), so the consumer sees the crash happen.
    starts, out, pidfile = tmp_path / "starts.txt", tmp_path / "log.txt", tmp_path / "log.pid"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=50)
    ef.node(nodes.SetupCrasher, name="crash", out=str(starts), times=1, after=str(pidfile))  # 1st start only
    ef.node(nodes.Recorder, name="log", out=str(out), pidfile=str(pidfile))
    ef.link("camera").to("crash", qos=QoS.DURABLE).to("log", qos=QoS.DURABLE)

    with ef.start(frames=100) as running:
        code = running.wait(60)
        stats = running.statistics()

    assert code == 0
    assert len(read_lines(starts)) == 2
    assert stats["nodes"]["crash"]["restarts"] == 1
    assert stats["nodes"]["crash"]["frames_out"] == 100
    assert counters(out) == [(0, i) for i in range(100)], (
        f"log: {stats['nodes']['log']['frames_in']} frames, states {stats['nodes']['log']['states']}")


def test_stop_kills_a_node_stuck_in_its_hook_and_everything_is_gone_within_5_s(app, tmp_path):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=100)
    ef.node(nodes.Recorder, name="log", out=str(out), delay=60)        # sleeps 60 s after its first frame
    ef.link("camera").to("log")

    with ef.start() as running:
        wait_for(lambda: read_lines(out), 30, "the first frame at the stuck sink")
        t0 = time.monotonic()
        code = running.stop()
        took = time.monotonic() - t0

    assert took < 5.0, f"stopping took {took:.2f} s (STOP_TIMEOUT {supervisor.STOP_TIMEOUT} s, then SIGKILL)"
    assert code == 0
    assert shm_of(app) == []
    states = running.statistics()["nodes"]
    assert states["camera"]["states"] == ["stopped"] and states["log"]["states"] == ["stopped"]


# -- python main.py in a terminal ----------------------------------------------------------------------------

APP_NODES = '''
import os
import numpy as np
from edgeflow import ProducerNode, SinkNode


class Camera(ProducerNode):
    fps = 100

    def setup(self):
        self.i = 0

    def produce(self):
        self.i += 1
        return np.full((48, 64), self.i % 256, np.uint8)


class Logger(SinkNode):
    out = None

    def setup(self):
        open(self.out + ".ready", "w").close()

    def consume(self, data):
        with open(self.out, "a") as file:
            file.write(f"{self.current_frame.frame_id} {os.getpid()}\\n")
'''

APP_MAIN = '''
from edgeflow import EdgeApp
from appnodes import Camera, Logger

app = EdgeApp({app!r})
app.node(Camera, name="camera")
app.node(Logger, name="logger", out={out!r})
app.link("camera").to("logger")

if __name__ == "__main__":
    app.run()
'''


def write_app(tmp_path: Path, app: str) -> Path:
    """main.py and the node module it imports, in tmp_path; returns the logger's output file."""
    out = tmp_path / "log.txt"
    (tmp_path / "appnodes.py").write_text(APP_NODES)
    (tmp_path / "main.py").write_text(APP_MAIN.format(app=app, out=str(out)))
    return out


def launch(tmp_path: Path, *args: str) -> subprocess.Popen:
    """``python main.py *args`` in its own process group, output to files in tmp_path."""
    tag = "-".join(args).replace("-", "") or "all"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp_path / f"{tag}.out", "w") as stdout, open(tmp_path / f"{tag}.err", "w") as stderr:
        return subprocess.Popen([sys.executable, "main.py", *args], cwd=tmp_path, env=env, stdout=stdout,
                                stderr=stderr, start_new_session=True)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop_and_wait(proc: subprocess.Popen, sig: int, timeout: float) -> float:
    """Send sig to the process only (not its group); seconds until it exited. Kills the group on timeout."""
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"{sig!r} did not stop the app within {timeout} s")
    return time.monotonic() - t0


def assert_group_gone(proc: subprocess.Popen) -> None:
    # the node processes must be gone, not merely re-parented: nothing of the group may stay alive (allow a
    # moment for multiprocessing's resource tracker, which exits when the last holder of its pipe is gone)
    try:
        wait_for(lambda: not group_members(proc.pid), 3, "every process of the app to exit")
    except AssertionError:
        left = group_members(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"processes left behind after the app exited: {left}") from None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_python_main_py_within_5_s_and_leaves_nothing_behind(app, tmp_path, sig):
    out = write_app(tmp_path, app)
    proc = launch(tmp_path)
    try:
        wait_for(lambda: len(read_lines(out)) >= 3, 30, "frames at the logger")
        kids = children(proc.pid)
        assert len(kids) >= 2, f"expected a process per node, children are {kids}"
        took = stop_and_wait(proc, sig, 5.0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    err = (tmp_path / "all.err").read_text()
    assert took < 5.0
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert shm_of(app) == []
    assert_group_gone(proc)


def test_node_processes_started_separately_find_each_other_and_stop_cleanly(app, tmp_path):
    out = write_app(tmp_path, app)
    logger = launch(tmp_path, "--node", "logger")       # first: it waits for a camera that is not there yet
    camera = launch(tmp_path, "--node", "camera")
    procs = [logger, camera]
    try:
        wait_for(lambda: len(read_lines(out)) >= 10, 30, "frames at the logger")
        took = [stop_and_wait(p, signal.SIGTERM, 5.0) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    errors = {tag: (tmp_path / f"{tag}.err").read_text() for tag in ("nodelogger", "nodecamera")}
    assert [p.returncode for p in procs] == [0, 0], errors
    assert max(took) < 5.0
    assert {int(line.split()[1]) for line in read_lines(out)} == {logger.pid}    # in the foreground
    ids = [int(line.split()[0]) for line in read_lines(out)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert "camera -> logger: shm (same host), DURABLE" in (tmp_path / "nodecamera.out").read_text()
    assert shm_of(app) == []
    for p in procs:
        assert_group_gone(p)


def test_node_processes_started_separately_with_frames_end_by_themselves(app, tmp_path):
    out = write_app(tmp_path, app)
    logger = launch(tmp_path, "--node", "logger")
    procs = [logger]
    try:
        wait_for(lambda: Path(f"{out}.ready").exists(), 30, "the logger to be attached")
        procs.append(launch(tmp_path, "--node", "camera", "--frames", "20"))
        for p in procs:
            p.wait(30)                 # the camera stops after 20 frames, the logger once it drained them
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    errors = [(tmp_path / f"{tag}.err").read_text() for tag in ("nodelogger", "nodecameraframes20")]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert [int(line.split()[0]) for line in read_lines(out)] == list(range(1, 21))
    assert shm_of(app) == []
