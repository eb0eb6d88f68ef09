"""FusionNode in a real run: input order, matched sets, silent inputs, clock offsets, drop reasons."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgeflow import EdgeApp, Frame, FusionNode, ProducerNode, SinkNode


class Stamped(ProducerNode):
    """Sends its own name and counter; ``offset`` shifts its capture stamps (a clock that runs behind)."""
    offset = 0.0
    stop_after = None

    def setup(self):
        self.n = 0

    def produce(self):
        self.n += 1
        if self.stop_after is not None and self.n > self.stop_after:
            time.sleep(0.01)          # goes silent but stays alive
            return None
        return Frame(np.array([self.n], np.int64), timestamp=time.time() - self.offset)


class Fuse(FusionNode):
    def process(self, frames):
        labels = [None if f is None else f.topic for f in frames]
        counters = [None if f is None else int(f.data[0]) for f in frames]
        stamps = [f.timestamp for f in frames if f is not None]
        return np.zeros(1, np.uint8), {"labels": labels, "counters": counters,
                                       "span": max(stamps) - min(stamps)}


class Record(SinkNode):
    def consume(self, data):
        with open(self.out, "a") as f:
            f.write(json.dumps(self.current_frame.meta) + "\n")


def make_app(name, out, *, fuse_options=None, slow_offset=0.0, lidar_stop=None):
    app = EdgeApp(name)
    app.node(Stamped, name="camera", fps=30)
    app.node(Stamped, name="lidar", fps=10, stop_after=lidar_stop)
    app.node(Stamped, name="imu", fps=100, offset=slow_offset)
    app.node(Fuse, name="fuse", **(fuse_options or {"slop": 0.05, "queue_size": 20}))
    app.node(Record, name="record", out=str(out))
    for sensor in ("lidar", "camera", "imu"):          # link order = input order
        app.link(sensor).to("fuse")
    app.link("fuse").to("record")
    return app


def stats_when(running, node, check, timeout=20.0):
    """The node's statistics once check(stats) holds (they reach the supervisor every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = running.statistics()["nodes"][node]
        if check(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def read_sets(path, at_least, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= at_least:
                return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} fused sets within {timeout} s")


def test_sets_come_one_frame_per_input_in_link_order_within_slop(app, tmp_path):
    out = tmp_path / "sets.jsonl"
    with make_app(app, out).start() as running:
        sets = read_sets(out, 8)
        fuse = stats_when(running, "fuse", lambda s: s["frames_out"] >= 8 and sum(s["drops"].values()))
    for s in sets:
        assert s["labels"] == ["lidar", "camera", "imu"]
        assert s["span"] < 0.05
    lidar_counters = [s["counters"][0] for s in sets]
    assert lidar_counters == sorted(lidar_counters) and len(set(lidar_counters)) == len(lidar_counters)
    assert fuse["frames_out"] >= 8
    assert sum(fuse["drops"].values()) > 0, "a 100 Hz input against a 10 Hz one must drop frames"
    assert set(fuse["drops"]) - {"skipped"} <= {"replaced", "queue_full", "superseded", "too_old",
                                                 "no_partner", "out_of_order", "cleared"}
    assert fuse["edge_drops"].get("imu", 0) > 0, "drops are counted per input"


def test_silent_input_is_reported_and_partial_sets_carry_none(app, tmp_path):
    out = tmp_path / "sets.jsonl"
    options = {"slop": 0.05, "queue_size": 20, "on_missing": "partial", "silent_timeout": 0.5}
    with make_app(app, out, fuse_options=options, lidar_stop=3).start() as running:
        deadline = time.monotonic() + 20
        partial = []
        while time.monotonic() < deadline and len(partial) < 5:
            if out.exists():
                partial = [s for s in map(json.loads, out.read_text().splitlines()) if s["counters"][0] is None]
            time.sleep(0.05)
        fuse = stats_when(running, "fuse", lambda s: s["extra"].get("silent_inputs"))
    assert len(partial) >= 5, "no partial sets after the lidar went silent"
    assert all(s["labels"][0] is None and s["labels"][1] == "camera" for s in partial)
    assert fuse["extra"].get("silent_inputs") == ["lidar"]


def test_clock_offset_is_estimated_per_input(app, tmp_path):
    out = tmp_path / "sets.jsonl"
    with make_app(app, out, slow_offset=0.3).start() as running:
        deadline = time.monotonic() + 20
        offsets = {}
        while time.monotonic() < deadline:
            offsets = running.statistics()["nodes"]["fuse"]["extra"].get("clock_offset_ms", {})
            if offsets.get("imu") is not None and offsets.get("camera") is not None:
                break
            time.sleep(0.1)
    assert offsets["imu"] - offsets["camera"] == pytest.approx(300, abs=60)
