"""Replay (issue 16, section 2): recorded frames published again with their timing, into rings (``Player``,
``edgeflow replay``) or through a pipeline (``ReplaySource``), and deterministic re-runs.

Recordings are written with the recorder's own ``McapRecorder``; timing is measured where the frames arrive,
in a separate receiving process (CLOCK_MONOTONIC is shared by all processes of the host)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgeflow import ConsumerNode, EdgeApp, QoS, SinkNode
from edgeflow.errors import ConfigError
from edgeflow.frame import Frame
from edgeflow.record.replay import RECORDED_KEY, Player, ReplaySource
from edgeflow.record.writer import McapRecorder

T0 = 1_765_000_000.0          # a fixed capture time: recordings are the same bytes every run


def record(path: Path, app: str, *, n: int = 60, fps: float = 50.0, lidar: bool = False,
           first_id: int = 1) -> Path:
    """camera frames (4x4x3 uint8, value i) every 1/fps s from T0, optionally lidar messages in between."""
    with McapRecorder(path, app=app) as rec:
        for i in range(n):
            ts = T0 + i / fps
            rec.write("camera", Frame(np.full((4, 4, 3), i % 256, np.uint8), frame_id=first_id + i, timestamp=ts,
                                      meta={"i": i, "edgeflow.trace": [["camera", int(ts * 1e6), int(ts * 1e6)]]}),
                      node="camera")
            if lidar and i % 2 == 0:
                rec.write("lidar", Frame({"points": np.arange(6, dtype=np.float32) * i, "n": i},
                                         frame_id=i // 2 + 1, timestamp=ts + 0.003, meta={}), node="lidar")
    return path


# -- a receiving process: every frame's arrival on CLOCK_MONOTONIC, its timestamp, ids and a digest ----------
PROBE = textwrap.dedent("""
    import hashlib, json, sys, time
    from edgeflow.transport import shm
    from edgeflow.errors import WriterGone
    app, topic, out = sys.argv[1:4]
    got = []
    # a consumer as the runtime's: it sleeps in the ring's wait (futex) and is woken by each publish
    with shm.Subscriber(topic, app=app, qos="DURABLE", group="probe") as sub:
        while True:
            try:
                f = sub.recv(timeout=30)
            except WriterGone:
                break
            got.append([time.monotonic(), f.timestamp, f.frame_id, f.meta.get("edgeflow.recorded"),
                        hashlib.sha1(f.data.tobytes()).hexdigest()])
            f.release()
    open(out, "w").write(json.dumps(got))
""")


def start_probe(app: str, topic: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROBE, app, topic, str(out)])


def interval_errors_ms(rows) -> list[float]:
    """|arrival interval - recorded interval| per consecutive pair, in ms."""
    return [abs((b[0] - a[0]) - (b[1] - a[1])) * 1000 for a, b in zip(rows, rows[1:])]


def p95(values):
    values = sorted(values)
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


@pytest.mark.slow
def test_speed_1_keeps_the_recorded_intervals_at_the_receiver(app, tmp_path):
    """100 frames at 50 fps: the p95 of |arrival interval - recorded interval| in another process <= 2 ms."""
    path = record(tmp_path / "run.mcap", app, n=100)
    out = tmp_path / "probe.json"
    probe = start_probe(app, "camera", out)
    try:
        player = Player(path, speed=1.0)
        stats = player.publish(app, wait=20)          # waits for the probe to attach: an event, not a sleep
        assert probe.wait(30) == 0
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    rows = json.loads(out.read_text())
    assert stats.frames == 100 and len(rows) == 100
    # the replay's own timing: when each frame went into the ring (CLOCK_MONOTONIC, as the receiver's clock)
    sent = [[t, r[1]] for t, r in zip(player.pacer.handed, rows)]
    replay_p95 = p95(interval_errors_ms(sent))
    received_p95 = p95(interval_errors_ms(rows))
    delivery = [(r[0] - t) * 1000 for t, r in zip(player.pacer.handed, rows)]
    delivery_p95 = p95(delivery)
    print(f"interval error p95: {received_p95:.3f} ms at the receiver, {replay_p95:.3f} ms into the ring; "
          f"delivery latency p50 {sorted(delivery)[50]:.3f} ms, p95 {delivery_p95:.3f} ms")
    assert replay_p95 <= 2.0, f"the replay itself was late: interval error p95 {replay_p95:.3f} ms"
    # timestamps, ids and data as recorded: a fresh ring numbers frames 1.. as the recording did
    assert [r[1] for r in rows] == [T0 + i / 50 for i in range(100)]
    assert [r[2] for r in rows] == list(range(1, 101))
    assert [r[3] for r in rows] == [["camera", i] for i in range(1, 101)]
    assert rows[5][4] == hashlib.sha1(np.full((4, 4, 3), 5, np.uint8).tobytes()).hexdigest()
    load = os.getloadavg()[0]
    if received_p95 > 2.0 and load >= (os.cpu_count() or 1):
        # the frames went into the ring on time (asserted above); a receiving process on a machine with more
        # runnable processes than cores is not always woken within the bound: that measures the machine
        pytest.xfail(f"receiver interval error p95 {received_p95:.3f} ms with load {load:.1f} on "
                     f"{os.cpu_count()} cores; frames entered the ring on time (p95 {replay_p95:.3f} ms, "
                     f"delivery latency p95 {delivery_p95:.3f} ms)")
    assert received_p95 <= 2.0, f"receiver interval error p95 {received_p95:.3f} ms"
    # the whole run took the recorded span (1.98 s), not more: no drift
    assert (rows[-1][0] - rows[0][0]) == pytest.approx(99 / 50, abs=0.01)


def test_speed_max_runs_faster_than_real_time(app, tmp_path):
    path = record(tmp_path / "run.mcap", app, n=200, fps=50)        # 3.98 s recorded
    player = Player(path, speed="max")
    stats = player.publish(app)
    assert stats.frames == 200
    assert stats.seconds < 3.98 / 4, f"max speed took {stats.seconds:.2f} s for 3.98 s of recording"


def test_speed_2_takes_half_the_time(tmp_path):
    path = record(tmp_path / "run.mcap", "x", n=26, fps=50)         # 0.5 s recorded
    t = time.monotonic()
    frames = list(Player(path, speed=2).frames())
    took = time.monotonic() - t
    assert len(frames) == 26 and 0.24 <= took < 0.35


def test_start_end_and_topic_filters_keep_recorded_ids_in_meta(tmp_path):
    path = record(tmp_path / "run.mcap", "x", n=60, lidar=True)
    frames = list(Player(path, speed="max", topics="camera", start=0.2, end=0.5).frames())
    # seconds from the first frame: [0.2, 0.5) of a 50 fps stream is frames i = 10..24
    assert [f.meta["i"] for _, f in frames] == list(range(10, 25))
    assert {t for t, _ in frames} == {"camera"}
    assert [f.meta[RECORDED_KEY] for _, f in frames] == [["camera", i + 1] for i in range(10, 25)]
    epoch = list(Player(path, speed="max", topics=["lidar"], start=T0 + 0.5, end=T0 + 0.6).frames())
    assert [(t, f.data["n"]) for t, f in epoch] == [("lidar", 26), ("lidar", 28)]
    both = list(Player(path, speed="max").frames())
    assert len(both) == 90 and [f.timestamp for _, f in both] == sorted(f.timestamp for _, f in both)


def test_loop_goes_on_with_increasing_timestamps_and_no_recorded_origin(tmp_path):
    path = record(tmp_path / "run.mcap", "x", n=5, fps=50)
    player = Player(path, speed="max", loop=True)
    got = []
    for _, f in player.frames():
        got.append(f)
        if len(got) == 12:
            player.stop()
    stamps = [f.timestamp for f in got]
    assert len(got) == 12 and stamps == sorted(stamps) and len(set(stamps)) == 12
    assert stamps[5] - stamps[4] == pytest.approx(0.02)              # one mean interval between passes
    assert [f.meta[RECORDED_KEY][1] for f in got] == [1, 2, 3, 4, 5] * 2 + [1, 2]


def test_bad_options_are_one_line_errors(tmp_path):
    path = record(tmp_path / "run.mcap", "x", n=3)
    with pytest.raises(ConfigError, match=r"did you mean 'camera'"):
        Player(path, topics="camra")
    with pytest.raises(ConfigError, match=r"speed=0: a number > 0 or 'max'"):
        Player(path, speed=0)
    with pytest.raises(ConfigError, match=r"no such file"):
        Player(tmp_path / "missing.mcap")
    with pytest.raises(ConfigError, match=r"end=0.1 is before start=0.5"):
        Player(path, start=0.5, end=0.1)

    ef = EdgeApp("x")
    with pytest.raises(ConfigError, match=r"node 'camera': option 'path': .*missing\.mcap.*no such file"):
        ef.node(ReplaySource, name="camera", path=str(tmp_path / "missing.mcap"))
    with pytest.raises(ConfigError, match=r"node 'cam': option 'topic': topic 'cam' is not in the recording "
                                          r"\(did you mean 'camera'\?\)"):
        ef.node(ReplaySource, name="cam", path=str(path))
    with pytest.raises(ConfigError, match=r"node 'camera': option 'speed': 'fast': a number > 0 or 'max'"):
        ef.node(ReplaySource, name="camera", path=str(path), speed="fast")
    with pytest.raises(ConfigError, match=r"node 'camera': option 'sped': unknown option \(did you mean 'speed'"):
        ef.node(ReplaySource, name="camera", path=str(path), sped=2)


def test_a_topic_with_a_live_publisher_is_refused_naming_it(app, tmp_path):
    from edgeflow.transport import shm
    path = record(tmp_path / "run.mcap", app, n=3, lidar=True)
    with shm.Publisher("camera", app=app):
        with pytest.raises(ConfigError, match=r"topic 'camera' of app '.*' already has a live publisher .*"
                                              r"--topics lidar"):
            Player(path).publish(app)


# -- a pipeline on recorded data: ReplaySource -> worker -> sink, DURABLE, twice -----------------------------
class Scale(ConsumerNode):
    """Deterministic: data * 3 (mod 256) plus the sum of the input, as a small message."""

    def process(self, data):
        return {"scaled": (data.astype(np.uint16) * 3 % 256).astype(np.uint8), "sum": int(data.sum())}


class Digest(SinkNode):
    """One line per frame: its recorded id, capture time (repr), parents, and a digest of the data."""

    def consume(self, data):
        f = self.current_frame
        digest = hashlib.sha1(data["scaled"].tobytes() + str(data["sum"]).encode()).hexdigest()
        line = json.dumps([f.meta.get(RECORDED_KEY), repr(f.timestamp), f.meta.get("edgeflow.parents"), digest])
        with open(self.out, "a") as fh:
            fh.write(line + "\n")


def run_pipeline(app: str, path: Path, out: Path) -> bytes:
    ef = EdgeApp(app)
    ef.node(ReplaySource, name="camera", path=str(path), speed="max")
    ef.node(Scale, name="worker")
    ef.node(Digest, name="sink", out=str(out))
    ef.link("camera").to("worker", qos=QoS.DURABLE).to("sink", qos=QoS.DURABLE)
    with ef.start() as running:
        assert running.wait(timeout=60) == 0
    return out.read_bytes()


class Arrivals(SinkNode):
    """One line per frame: arrival (CLOCK_MONOTONIC) and capture time."""

    def consume(self, data):
        with open(self.out, "a") as fh:
            fh.write(json.dumps([time.monotonic(), self.current_frame.timestamp]) + "\n")


@pytest.mark.slow
def test_replay_source_keeps_the_recorded_pace_in_a_pipeline_across_a_pause(app, tmp_path):
    """20 frames at 50 fps, a 0.4 s pause in the recording, 20 more: the sink sees the same intervals (a
    wait longer than a slice returns to the runtime between sleeps, and comes back on time)."""
    path = tmp_path / "run.mcap"
    with McapRecorder(path, app=app) as rec:
        for i in range(40):
            ts = T0 + i / 50 + (0.4 if i >= 20 else 0.0)
            rec.write("camera", Frame(np.full(4, i, np.uint8), frame_id=i + 1, timestamp=ts), node="camera")
    out = tmp_path / "arrivals.jsonl"
    ef = EdgeApp(app)
    ef.node(ReplaySource, name="camera", path=str(path))
    ef.node(Arrivals, name="sink", out=str(out))
    ef.link("camera").to("sink", qos=QoS.DURABLE)
    with ef.start() as running:
        assert running.wait(timeout=60) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40
    errors = interval_errors_ms(rows)
    assert sorted(errors)[len(errors) // 2] < 1.0, errors            # the median interval: on time
    assert rows[20][0] - rows[19][0] == pytest.approx(0.42, abs=0.01)
    # (the first frames may reach the sink in a burst: it can start after the producer; DURABLE keeps them)
    assert rows[-1][0] - rows[20][0] == pytest.approx(19 / 50, abs=0.01)


@pytest.mark.slow
def test_replaying_twice_through_a_durable_pipeline_gives_bit_identical_outputs(app, tmp_path):
    path = record(tmp_path / "run.mcap", app, n=120, fps=30)
    first = run_pipeline(app, path, tmp_path / "a.jsonl")
    second = run_pipeline(app, path, tmp_path / "b.jsonl")
    lines = first.decode().splitlines()
    assert len(lines) == 120, "every frame must reach the sink (DURABLE)"
    assert first == second
    rec_ids = [json.loads(line)[0] for line in lines]
    assert rec_ids == [["camera", i] for i in range(1, 121)]
    assert json.loads(lines[7])[1] == repr(T0 + 7 / 30)       # the recorded capture time, kept
    assert json.loads(lines[7])[2] == [["camera", 8]]          # the worker frame's parent: camera frame 8


# -- edgeflow replay against a real consumer process ---------------------------------------------------------
MAIN = textwrap.dedent('''
    import json, sys
    from edgeflow import EdgeApp, ProducerNode, SinkNode, QoS

    class Camera(ProducerNode):
        def produce(self):
            raise RuntimeError("the live camera must not run in this test")

    class Logger(SinkNode):
        def consume(self, data):
            f = self.current_frame
            with open(OUT, "a") as fh:
                fh.write(json.dumps([f.frame_id, f.timestamp, f.meta.get("edgeflow.recorded"),
                                     int(data.sum())]) + "\\n")

    OUT = {out!r}
    app = EdgeApp({app!r})
    app.node(Camera, name="camera", fps=50)
    app.node(Logger, name="logger")
    app.link("camera").to("logger", qos=QoS.DURABLE)
    app.run()
''')


def edgeflow_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeflow", *args]


@pytest.mark.slow
def test_edgeflow_replay_feeds_a_consumer_node_process_which_then_finishes(app, tmp_path):
    path = record(tmp_path / "run.mcap", app, n=40, fps=100)
    out = tmp_path / "logger.jsonl"
    (tmp_path / "main.py").write_text(MAIN.format(out=str(out), app=app))
    log = tmp_path / "logger.out"
    with open(log, "w") as sink_out:
        logger = subprocess.Popen([sys.executable, "main.py", "--node", "logger"], cwd=tmp_path,
                                  stdout=sink_out, stderr=subprocess.STDOUT)
    try:
        replay = subprocess.run(edgeflow_cmd("replay", str(path), "--wait", "30"), capture_output=True,
                                text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr
        assert logger.wait(30) == 0, log.read_text()
    finally:
        if logger.poll() is None:
            logger.kill()
            logger.wait()
    assert f"replaying camera into app '{app}' at speed 1" in replay.stderr
    assert "replayed 40 frames (camera 40) in" in replay.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r[0] for r in rows] == list(range(1, 41))
    assert [r[1] for r in rows] == [T0 + i / 100 for i in range(40)]
    assert [r[2] for r in rows] == [["camera", i] for i in range(1, 41)]
    assert [r[3] for r in rows] == [i * 48 for i in range(40)]


@pytest.mark.slow
def test_edgeflow_replay_stops_cleanly_on_ctrl_c(app, tmp_path):
    path = record(tmp_path / "run.mcap", app, n=20, fps=50)
    proc = subprocess.Popen(edgeflow_cmd("replay", str(path), "--loop", "--app", app), stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stderr.readline()                  # printed once its rings exist: an event to wait for
        assert first.startswith(f"replaying camera into app '{app}'"), first
        proc.send_signal(signal.SIGINT)
        code = proc.wait(5)
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert code == 0, rest
    assert "(stopped)" in rest and "Traceback" not in rest
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"edgeflow.{app}.")]


def test_edgeflow_replay_errors_are_one_line(tmp_path):
    path = record(tmp_path / "run.mcap", "x", n=3)
    bad = subprocess.run(edgeflow_cmd("replay", str(path), "--topics", "camra"), capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "ConfigError: topic 'camra' is not in the recording (did you mean 'camera'?); recorded topics: camera"]
