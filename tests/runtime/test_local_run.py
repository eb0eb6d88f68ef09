"""Whole apps on this host (issue 4, section 5): QoS end to end, replicas, unsendable results, failing hooks,
timestamps and the hop trace, zero-copy output, --frames / --duration, validation errors, time to first frame.

Every app runs real node processes (spawned; classes from runtime/nodes.py). Nodes report through files they
append to; runs are awaited with ``running.wait(timeout)``, never with sleeps.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeflow import ConfigError, EdgeApp, QoS
from edgeflow.runtime import supervisor
from edgeflow.transport import shm

from . import nodes
from .nodes import counters, edge, read_lines

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 60            # seconds a run that should end by itself may take before the test fails


def run_to_end(app: EdgeApp, *, frames: int | None = None, timeout: float = RUN_TIMEOUT):
    """Start app, wait until it ends by itself; (exit code, final statistics)."""
    with app.start(frames=frames) as running:
        code = running.wait(timeout)
        stats = running.statistics()
    assert code is not None, f"the run did not end within {timeout} s: {stats}"
    return code, stats


# -- QoS end to end ------------------------------------------------------------------------------------------

def test_durable_consumer_slower_than_producer_gets_every_frame_in_order(app, tmp_path):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=None)              # as fast as the consumer takes frames
    ef.node(nodes.Recorder, name="log", out=str(out), delay=0.002, every=4)
    ef.link("camera").to("log", qos=QoS.DURABLE)

    code, stats = run_to_end(ef, frames=2000)

    assert code == 0
    assert counters(out) == [(0, i) for i in range(2000)]        # every frame, in order, exactly once
    assert stats["nodes"]["camera"]["frames_out"] == 2000
    assert edge(stats, "camera", "log")["frames"] == 2000
    assert edge(stats, "camera", "log")["drops"] == 0
    assert stats["nodes"]["camera"]["states"] == ["finished"]
    assert stats["nodes"]["log"]["states"] == ["finished"]


@pytest.mark.parametrize("qos", [QoS.REALTIME, QoS.BALANCED], ids=["REALTIME", "BALANCED"])
def test_lossy_consumer_slower_than_producer_gets_only_fresh_frames_and_counts_drops(app, tmp_path, qos):
    # BALANCED (max_lag 2) behaves as REALTIME once the consumer is behind, which it always is here
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=500)
    ef.node(nodes.Recorder, name="log", out=str(out), delay=0.01)
    ef.link("camera").to("log", qos=qos)

    code, stats = run_to_end(ef, frames=1000)

    assert code == 0
    got = [i for _, i in counters(out)]
    assert got, "the consumer received nothing"
    assert all(a < b for a, b in zip(got, got[1:])), f"not strictly increasing: {got}"
    link = edge(stats, "camera", "log")
    assert link["frames"] == len(got)
    assert link["drops"] > 0
    assert stats["nodes"]["log"]["drops"].get("skipped") == link["drops"]
    # frames taken + frames skipped = what was published while the consumer was attached (it attaches a few
    # ms after the producer may start, and the newest frames may be left unread when the stream closes)
    produced = stats["nodes"]["camera"]["frames_out"]
    print(f"\n{qos.name}: {produced} produced, {link['frames']} taken, {link['drops']} skipped")
    assert produced == 1000
    assert 0.8 * produced <= link["frames"] + link["drops"] <= produced, link


def test_two_replicas_of_a_consumer_split_the_frames_with_none_handled_twice(app, tmp_path):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=None)
    ef.node(nodes.Recorder, name="log", out=str(out), replicas=2, delay=0.002)
    ef.link("camera").to("log", qos=QoS.DURABLE)

    code, stats = run_to_end(ef, frames=600)

    assert code == 0
    by_replica = collections.defaultdict(list)
    for line in read_lines(out):
        _, counter, replica, _ = map(int, line.split())
        by_replica[replica].append(counter)
    assert set(by_replica) == {0, 1}, f"both replicas should take part: {dict(by_replica)}"
    first, second = set(by_replica[0]), set(by_replica[1])
    assert not first & second, f"handled by both replicas: {sorted(first & second)[:20]}"
    assert first | second == set(range(600))
    assert sum(map(len, by_replica.values())) == 600                   # and none twice by the same replica
    for replica, got in by_replica.items():
        assert got == sorted(got), f"replica {replica} took frames out of order"
    assert stats["nodes"]["log"]["replicas"] == 2
    assert stats["nodes"]["log"]["frames_in"] == 600


def test_replicated_producer_each_replicas_output_reaches_a_durable_consumer_once(app, tmp_path):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=None, replicas=2)
    ef.node(nodes.Recorder, name="log", out=str(out))
    ef.link("camera").to("log", qos=QoS.DURABLE)

    code, stats = run_to_end(ef, frames=300)                # each producer replica stops after 300

    assert code == 0
    got = counters(out)
    assert sorted(got) == [(r, i) for r in (0, 1) for i in range(300)]     # each exactly once
    for r in (0, 1):
        assert [i for src, i in got if src == r] == list(range(300)), f"replica {r}'s stream out of order"
    assert stats["nodes"]["camera"]["frames_out"] == 600
    assert stats["nodes"]["camera"]["states"] == ["finished", "finished"]


# -- what hooks return and raise -----------------------------------------------------------------------------

def test_unsendable_results_are_a_node_error_logged_once_and_counted_and_the_node_goes_on(app, tmp_path,
                                                                                        capfd):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=None)
    ef.node(nodes.BadReturner, name="bad")          # dict, list, object array for counters 1, 2, 3 (mod 4)
    ef.node(nodes.Recorder, name="log", out=str(out))
    ef.link("camera").to("bad", qos=QoS.DURABLE).to("log")

    code, stats = run_to_end(ef, frames=40)

    assert code == 0
    assert [i for _, i in counters(out)] == list(range(0, 40, 4))        # later valid frames are delivered
    bad = stats["nodes"]["bad"]
    assert bad["frames_in"] == 40
    assert bad["errors"] == 30
    assert bad["drops"].get("unsendable") == 30
    assert bad["restarts"] == 0 and bad["states"] == ["finished"]
    err = capfd.readouterr().err
    # one log line per distinct problem, naming the node and the type, however often it happened
    assert err.count("node 'bad' returned str") == 1, err
    assert err.count("node 'bad' returned a message that cannot be sent") == 1, err
    assert err.count("node 'bad' returned an array of Python objects") == 1, err


@pytest.mark.parametrize("where", ["consumer", "sink", "producer"])
def test_a_raising_hook_is_logged_once_counted_and_the_loop_goes_on(app, tmp_path, capfd, monkeypatch, where):
    # Nothing here should crash, so no restart is expected. A runtime that lets the exception kill the node
    # would restart it with back-off; RESTART_LIMIT = 1 keeps such a failure quick (one restart, give up).
    monkeypatch.setattr(supervisor, "RESTART_LIMIT", 1)
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    producer = nodes.RaisingCounter if where == "producer" else nodes.Counter
    ef.node(producer, name="camera", fps=None, count=50)     # EndOfStream after 50 ticks
    if where == "consumer":
        ef.node(nodes.Raiser, name="work")
        ef.node(nodes.Recorder, name="log", out=str(out))
        ef.link("camera").to("work", qos=QoS.DURABLE).to("log")
    else:
        sink = nodes.RaisingRecorder if where == "sink" else nodes.Recorder
        ef.node(sink, name="log", out=str(out))
        ef.link("camera").to("log")
    raiser = {"consumer": "work", "sink": "log", "producer": "camera"}[where]

    code, stats = run_to_end(ef)

    node = stats["nodes"][raiser]
    assert code == 0, f"exit code {code}: {raiser} restarted {node['restarts']} times, {node['states']}"
    assert [i for _, i in counters(out)] == [i for i in range(50) if i % 5], "the loop must go on"
    assert node["errors"] == 10
    assert node["drops"].get("error") == 10
    assert node["restarts"] == 0 and node["states"] == ["finished"]
    err = capfd.readouterr().err
    assert err.count(f"{raiser}: ValueError: boom") == 1, err            # logged once, naming the node


# -- frames: timestamps, meta, zero copy ---------------------------------------------------------------------

def test_output_frames_keep_the_capture_timestamp_and_gain_one_hop_per_node(app, tmp_path):
    out = tmp_path / "frames.jsonl"
    ef = EdgeApp(app)
    ef.node(nodes.Stamper, name="camera", count=20)           # Frames stamped 1 s before they are produced
    ef.node(nodes.Relay, name="relay")                        # returns a plain array
    ef.node(nodes.Tagger, name="tag")                         # returns (array, meta)
    ef.node(nodes.FrameLogger, name="log", out=str(out))
    ef.link("camera").to("relay", qos=QoS.DURABLE).to("tag", qos=QoS.DURABLE).to("log")

    code, _ = run_to_end(ef)

    assert code == 0
    frames = [json.loads(line) for line in read_lines(out)]
    assert [f["data"] for f in frames] == [[0, i] for i in range(20)]
    for f in frames:
        meta = f["meta"]
        assert f["ts"] == meta["captured"], "the producer's capture time must survive every hop"
        assert meta["seq"] == f["data"][1]                    # the producer's meta is carried forward
        assert meta["tagged"] == f["data"][1]                 # and a node's own meta is added
        assert f["topic"] == "tag"
        trace = meta["edgeflow.trace"]
        assert [hop[0] for hop in trace] == ["camera", "relay", "tag"]
        times = [t for hop in trace for t in hop[1:]]         # received, sent of each hop, in order (µs)
        assert all(isinstance(t, int) for t in times), "hop times are integer microseconds"
        assert all(a <= b for a, b in zip(times, times[1:])), trace
        assert f["ts"] * 1e6 <= times[0] + 1 and times[-1] <= f["arrived"] * 1e6 + 1


def test_zero_copy_output_delivers_correct_data_and_input_views_are_read_only(app, tmp_path):
    seen, out = tmp_path / "readonly.txt", tmp_path / "check.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Grid, name="camera", count=30)
    ef.node(nodes.LoanDoubler, name="double", out=str(seen))   # fills self.output(shape, dtype), returns it
    ef.node(nodes.GridChecker, name="check", out=str(out))
    ef.link("camera").to("double", qos=QoS.DURABLE).to("check")

    code, stats = run_to_end(ef)

    assert code == 0
    assert read_lines(out) == [f"{i} ok" for i in range(30)]
    assert read_lines(seen) == ["readonly"] * 30, "writing into an input view must raise"
    assert stats["nodes"]["double"]["errors"] == 0
    assert stats["nodes"]["double"]["frames_out"] == 30


def test_fusion_node_gets_matched_sets_in_input_order(app, tmp_path):
    out = tmp_path / "frames.jsonl"
    ef = EdgeApp(app)
    ef.node(nodes.Ticker, name="left", count=20)              # [i] stamped 1000 + i
    ef.node(nodes.Ticker, name="right", count=20, offset=100)  # [100 + i] stamped 1000 + i
    # queue_size above the stream length: one producer may finish before the other starts
    ef.node(nodes.Fuse, name="fuse", policy="exact", queue_size=30)
    ef.node(nodes.FrameLogger, name="log", out=str(out))
    ef.link("left").to("fuse", qos=QoS.DURABLE)
    ef.link("right").to("fuse", qos=QoS.DURABLE)
    ef.link("fuse").to("log")

    code, stats = run_to_end(ef)

    assert code == 0
    frames = [json.loads(line) for line in read_lines(out)]
    assert [f["data"] for f in frames] == [[i, 100 + i] for i in range(20)]   # input order = link order
    assert [f["ts"] for f in frames] == [1000.0 + i for i in range(20)]
    assert all([hop[0] for hop in f["meta"]["edgeflow.trace"]][-1] == "fuse" for f in frames)
    assert stats["nodes"]["fuse"]["edges_in"] == {"left": 20, "right": 20}
    assert stats["nodes"]["fuse"]["frames_out"] == 20


def test_nodes_in_the_original_configure_and_loop_style_run(app, tmp_path):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.SeedCounter, name="camera")
    ef.node(nodes.SeedRelay, name="relay")
    ef.node(nodes.Recorder, name="log", out=str(out))
    ef.link("camera").to("relay", qos=QoS.DURABLE).to("log")

    code, _ = run_to_end(ef, frames=20)

    assert code == 0
    assert counters(out) == [(0, 1000 + i) for i in range(20)]


# -- the running app -----------------------------------------------------------------------------------------

def test_a_started_app_reports_while_running_and_stop_runs_every_teardown(app, tmp_path):
    out, events = tmp_path / "log.txt", tmp_path / "events.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=100)            # endless
    ef.node(nodes.Recorder, name="log", out=str(out), events=str(events), replicas=2)
    ef.link("camera").to("log")

    with ef.start() as running:
        nodes.wait_for(lambda: len(read_lines(out)) >= 10, 30, "frames at the sink")
        assert running.wait(0.1) is None                     # still running
        with pytest.raises(ConfigError, match="already running"):
            ef.start()                                        # one app name, one run per host
        nodes.wait_for(lambda: running.statistics()["nodes"]["log"]["frames_in"] >= 10, 10,
                       "statistics from the running sink")
        stats = running.statistics()
        assert stats["nodes"]["camera"]["states"] == ["running"]
        assert stats["nodes"]["log"]["states"] == ["running", "running"]
        code = running.stop()

    assert code == 0
    assert sorted(read_lines(events)) == ["setup"] * 2 + ["teardown"] * 2     # teardown also when stopped
    assert running.wait(0) == 0
    final = running.statistics()
    assert final["nodes"]["log"]["frames_in"] == len(read_lines(out))


# -- app.run(): flags and errors -----------------------------------------------------------------------------

def test_frames_flag_ends_the_run_once_every_node_drained(app, tmp_path, capsys):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=None)
    ef.node(nodes.Relay, name="relay")
    ef.node(nodes.Recorder, name="log", out=str(out), delay=0.001)
    ef.link("camera").to("relay", qos=QoS.DURABLE).to("log")
    shm.declare_group("old-topic", "old-group", app=app)     # as if an earlier run of the app had died

    assert ef.run(["--frames", "200"]) == 0                  # returns by itself: no stop was asked for

    assert counters(out) == [(0, i) for i in range(200)]
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("note: removed ") and f"left by an earlier run of '{app}'" in line
               for line in printed), printed
    assert "camera -> relay: shm (same host), DURABLE" in printed
    assert "relay -> log: shm (same host), DURABLE" in printed


def test_duration_flag_stops_an_endless_run_after_about_that_long(app, tmp_path, capsys):
    out = tmp_path / "log.txt"
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera", fps=50)             # endless
    ef.node(nodes.Recorder, name="log", out=str(out))
    ef.link("camera").to("log")

    t0 = time.monotonic()
    code = ef.run(["--duration", "1.5", "--stats", "0.5"])
    elapsed = time.monotonic() - t0

    assert code == 0
    assert 1.5 <= elapsed < 1.5 + 8, f"--duration 1.5 took {elapsed:.2f} s"
    assert len(counters(out)) > 5
    printed = capsys.readouterr().out
    assert "restarts" in printed and "camera" in printed and "log" in printed     # the --stats table


def test_graph_error_through_run_exits_2_with_one_line_on_stderr(app, capsys):
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera")
    ef.node(nodes.Recorder, name="detector")
    ef.link("camera").to("detektor")

    with pytest.raises(SystemExit) as exc:
        ef.run([])

    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["GraphError: link camera -> detektor: unknown node 'detektor' "
                                "(did you mean 'detector'?)"], err


def test_bad_flag_through_run_exits_2_with_one_line_on_stderr(app, capsys):
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera")
    ef.node(nodes.Recorder, name="log")
    ef.link("camera").to("log")

    with pytest.raises(SystemExit) as exc:
        ef.run(["--frames", "0"])

    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["ConfigError: --frames 0: must be at least 1"]


@pytest.mark.parametrize("argv, message", [
    (["--node", "loger"], "GraphError: unknown node 'loger' (did you mean 'log'?)"),
    (["--node", "log", "--replica", "1"], "ConfigError: --replica 1: node 'log' has 1 replica(s)"),
    (["--duration", "-1"], "ConfigError: --duration -1.0: must be positive"),
])
def test_bad_node_flags_exit_2_before_anything_starts(app, capsys, argv, message):
    ef = EdgeApp(app)
    ef.node(nodes.Counter, name="camera")
    ef.node(nodes.Recorder, name="log")
    ef.link("camera").to("log")

    with pytest.raises(SystemExit) as exc:
        ef.run(argv)

    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines() == [message]


# -- python main.py ------------------------------------------------------------------------------------------

APP_NODES = '''
import time
import numpy as np
from edgeflow import ConsumerNode, ProducerNode, SinkNode


class Camera(ProducerNode):
    fps = None

    def setup(self):
        self.i = 0

    def produce(self):
        self.i += 1
        return np.full((120, 160, 3), self.i % 256, np.uint8)


class Blur(ConsumerNode):
    def process(self, data):
        return data // 2


class Logger(SinkNode):
    out = None

    def consume(self, data):
        with open(self.out, "a") as file:
            file.write(f"{self.current_frame.frame_id} {time.time():.6f}\\n")
'''

APP_MAIN = '''
from edgeflow import EdgeApp
from appnodes import Blur, Camera, Logger

app = EdgeApp({app!r})
app.node(Camera, name="camera")
app.node(Blur, name="blur")
app.node(Logger, name="logger", out={out!r})
app.link("camera").to("blur", qos="durable").to("logger")

if __name__ == "__main__":
    app.run()
'''


def test_python_main_py_reaches_the_last_node_quickly(app, tmp_path):
    out = tmp_path / "log.txt"
    (tmp_path / "appnodes.py").write_text(APP_NODES)
    (tmp_path / "main.py").write_text(APP_MAIN.format(app=app, out=str(out)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    t0 = time.time()
    done = subprocess.run([sys.executable, "main.py", "--frames", "30"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)

    assert done.returncode == 0, done.stderr
    lines = read_lines(out)
    assert lines, done.stderr
    first = float(lines[0].split()[1]) - t0
    print(f"\npython main.py -> first frame at the last node: {first:.2f} s")
    assert first < 5.0, f"{first:.2f} s from process start to the first frame at the last node"
    assert "camera -> blur: shm (same host), DURABLE" in done.stdout
    assert [int(line.split()[0]) for line in lines] == list(range(1, 31))     # --frames 30, all delivered
