"""Lineage (issue 16, section 3): the tree of a frame back to its source frames.

The core on plain meta dicts (what the gateway feeds it from rings), ``match_topics``, and, end to end, a real
run camera -> detector (2 replicas) + lidar -> fusion recorded by a RecorderNode, every parent id in the file
checked against what the nodes did (each node puts the ids of the inputs it got into its output), and the
``edgeflow lineage`` command's text and JSON."""

from __future__ import annotations

import json

import pytest

from edgeflow.errors import ConfigError
from edgeflow.record import lineage as lin


def frame(topic, fid, ts, parents=None, hop=None):
    meta = {}
    if parents is not None:
        meta["edgeflow.parents"] = [list(p) for p in parents]
    if hop is not None:
        meta["edgeflow.trace"] = [list(hop)]
    return {"topic": topic, "frame_id": fid, "timestamp": ts, "meta": meta}


def chain():
    """camera 7 and lidar 3 -> detector.r1 #4 (from camera 7) -> fusion #2 (detector.r1 #4 + lidar 3)."""
    t = 1000.0
    us = int(t * 1e6)
    return [frame("camera", 7, t, hop=("camera", us, us + 100)),
            frame("lidar", 3, t + 0.001, hop=("lidar", us + 1000, us + 1050)),
            frame("detector.r1", 4, t, parents=[("camera", 7)], hop=("detector", us + 400, us + 2400)),
            frame("fusion", 2, t, parents=[("detector.r1", 4), ("lidar", 3)], hop=("fusion", us + 3000, us + 3500))]


def test_tree_from_meta_dicts_follows_parents_with_latencies():
    tree = lin.build("fusion", 2, lin.lookup_of(chain()))

    assert (tree.topic, tree.frame_id, tree.node, tree.found) == ("fusion", 2, "fusion", True)
    assert [(p.topic, p.frame_id) for p in tree.parents] == [("detector.r1", 4), ("lidar", 3)]
    det, lidar = tree.parents
    assert [(p.topic, p.frame_id) for p in det.parents] == [("camera", 7)]
    assert [(s.topic, s.frame_id) for s in tree.sources()] == [("camera", 7), ("lidar", 3)]
    assert tree.processing_ms == pytest.approx(0.5)
    assert tree.link_ms == [pytest.approx(0.6), pytest.approx(1.95)]    # 3000-2400 us, 3000-1050 us
    assert det.processing_ms == pytest.approx(2.0) and det.link_ms == [pytest.approx(0.3)]
    assert tree.age_ms == pytest.approx(3.5)
    d = lin.to_dict(tree)
    assert d["parents"][0]["parents"][0]["frame_id"] == 7 and d["parents"][1]["link_ms"] == 1.95
    json.dumps(d)                                         # JSON-able as it is


def test_missing_parent_and_cycle_are_marked_not_followed_forever():
    frames = chain()[2:]                                  # camera and lidar not recorded
    frames.append(frame("a", 1, 1.0, parents=[("b", 1)]))
    frames.append(frame("b", 1, 1.0, parents=[("a", 1)]))
    tree = lin.build("fusion", 2, lin.lookup_of(frames))
    leaves = tree.sources()
    assert [(s.topic, s.found) for s in leaves] == [("camera", False), ("lidar", False)]
    assert "not found" in lin.render_text(tree)
    loop = lin.build("a", 1, lin.lookup_of(frames))
    assert loop.parents[0].parents[0].cycle is True
    assert lin.build("nope", 1, lin.lookup_of(frames)).found is False


def test_text_tree_shows_every_frame_indented():
    text = lin.render_text(lin.build("fusion", 2, lin.lookup_of(chain())))
    lines = text.splitlines()
    assert lines[0].startswith("fusion #2  node fusion")
    assert lines[1].startswith("├── detector.r1 #4  node detector") and "link 0.600 ms" in lines[1]
    assert lines[2].startswith("│   └── camera #7  node camera") and "source" in lines[2]
    assert lines[3].startswith("└── lidar #3")


def test_match_topics_expands_a_node_to_its_replica_rings_and_suggests():
    topics = ["camera", "detector.r0", "detector.r1", "detector.r10", "fusion"]
    assert lin.match_topics("detector", topics) == ["detector.r0", "detector.r1", "detector.r10"]
    assert lin.match_topics("detector.r1", topics) == ["detector.r1"]
    assert lin.match_topics("det", ["x.r0"], {"x.r0": "det"}) == ["x.r0"]
    with pytest.raises(ConfigError, match=r"topic 'camra' is not in the recording \(did you mean 'camera'\?\)"):
        lin.match_topics("camra", topics)


# -- end to end: a real run recorded by a RecorderNode ---------------------------------------------------------
import numpy as np                                                    # noqa: E402

from edgeflow import ConsumerNode, EdgeApp, FusionNode, ProducerNode  # noqa: E402


class Counter(ProducerNode):
    """Sends [n] for n = 1..count, then ends its stream."""
    count = 20

    def setup(self):
        self.n = 0

    def produce(self):
        self.n += 1
        if self.n > self.count:
            raise ProducerNode.END
        return np.array([self.n], np.int64)


class Detector(ConsumerNode):
    """Says which input frame (ring topic, id) it got and which replica it is."""

    def process(self, data):
        f = self.current_frame
        return data * 10, {"det_in": f.frame_id, "det_label": f.topic, "replica": self.replica}


class Fuse(FusionNode):
    """Says which member frames (label, id, replica) it fused."""
    slop = 0.05
    queue_size = 20

    def process(self, frames):
        members = [[f.topic, f.frame_id, f.meta.get("replica")] for f in frames]
        return np.zeros(1, np.uint8), {"fused": members}


from edgeflow.record.recorder_node import RecorderNode  # noqa: E402


class RingRecorder(RecorderNode):
    """A RecorderNode that names replica rings itself while the runtime does not say which ring a frame came
    from (``context.current_topic``, which RecorderNode uses; without it a node's replica rings are recorded
    under the node's name, and their frame ids collide): the detector's frames say their replica in meta."""

    def consume(self, data):
        if getattr(self.context, "current_topic", None) is not None:
            return super().consume(data)
        frame = self.context.current_frame
        # (the fusion's frames carry the detector's meta forward too: only the detector's own frames count)
        ring = f"detector.r{frame.meta['replica']}" if frame.topic == "detector" else frame.topic
        self.recorder.write(ring, frame, node=frame.topic)
        self._check()


def lineage_app(app, out):
    ef = EdgeApp(app)
    ef.node(Counter, name="camera", fps=50, count=100)   # 2 s: processes start up to ~1 s apart
    ef.node(Counter, name="lidar", fps=25, count=50)
    ef.node(Detector, name="detector", replicas=2)
    ef.node(Fuse, name="fusion")
    ef.node(RingRecorder, name="rec", path=str(out), progress_s=0)
    ef.link("camera").to("detector")
    ef.link("detector").to("fusion")
    ef.link("lidar").to("fusion")
    for node in ("camera", "lidar", "detector", "fusion"):
        ef.link(node).to("rec")
    return ef


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One real run, recorded: (app, path). Shared by the tests below (a run takes ~4 s)."""
    import os
    app = f"t{os.getpid()}lineage"
    out = tmp_path_factory.mktemp("lineage") / "run.mcap"
    with lineage_app(app, out).start() as running:
        assert running.wait(timeout=60) == 0
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"edgeflow.{app}.")]
    return app, out


@pytest.mark.slow
def test_lineage_through_two_detector_replicas_and_a_fusion_is_complete_and_correct(recorded):
    from edgeflow.record.reader import open_recording
    app, out = recorded
    rec = open_recording(out)
    assert rec.app == app
    assert rec.topics == ["camera", "detector.r0", "detector.r1", "fusion", "lidar"]
    frames = {(t, f.frame_id): f for t, f in rec.frames()}
    lookup = lin.from_recording(rec)
    fused = [f for (t, _), f in frames.items() if t == "fusion"]
    assert len(fused) >= 5, "the run fused too few sets to check"
    replicas_seen = set()
    for f in fused:
        tree = lin.build("fusion", f.frame_id, lookup)
        (det_label, det_id, det_rep), (lidar_label, lidar_id, _) = f.meta["fused"]
        assert (det_label, lidar_label) == ("detector", "lidar")
        det_ring = f"detector.r{det_rep}"
        replicas_seen.add(det_ring)
        # the fusion frame's parents are exactly the members the node fused
        assert [(p.topic, p.frame_id) for p in tree.parents] == [(det_ring, det_id), ("lidar", lidar_id)]
        det, lidar = tree.parents
        assert det.found and lidar.found and det.node == "detector" and lidar.node == "lidar"
        # the detector frame's parent is the camera frame that detector replica received
        det_frame = frames[(det_ring, det_id)]
        assert det_frame.meta["det_label"] == "camera" and det_frame.meta["replica"] == det_rep
        assert [(p.topic, p.frame_id) for p in det.parents] == [("camera", det_frame.meta["det_in"])]
        cam = det.parents[0]
        assert cam.found and cam.node == "camera" and cam.parents == []
        # data agrees with the chain: camera sends [n] as frame n, the detector [10 n]
        assert int(frames[("camera", cam.frame_id)].data[0]) == cam.frame_id
        assert int(det_frame.data[0]) == 10 * cam.frame_id
        # timestamps: a consumer keeps its input's capture time
        assert det.timestamp == cam.timestamp == frames[("camera", cam.frame_id)].timestamp
        assert [(s.topic, s.node) for s in tree.sources()] == [("camera", "camera"), ("lidar", "lidar")]
        for node in tree.walk():
            assert node.processing_ms is not None and node.processing_ms >= 0
        assert all(link is not None and link >= 0 for link in tree.link_ms + det.link_ms)
    assert replicas_seen == {"detector.r0", "detector.r1"}, "both replicas should have fed the fusion"


@pytest.mark.slow
def test_edgeflow_lineage_command_prints_the_tree_for_each_matching_replica_ring(recorded):
    import subprocess
    import sys
    from edgeflow.record.reader import open_recording
    _, out = recorded
    rec = open_recording(out)
    ids = {t: {f.frame_id for tt, f in rec.frames() if tt == t} for t in ("detector.r0", "detector.r1")}
    both = sorted(ids["detector.r0"] & ids["detector.r1"])
    assert both, ids
    cmd = [sys.executable, "-m", "edgeflow", "lineage", str(out), "--topic", "detector", "--frame", str(both[0])]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "detector: node of 2 rings: detector.r0, detector.r1 (frame ids are per ring)"
    assert sum(line.startswith(f"detector.r0 #{both[0]}  node detector") for line in lines) == 1
    assert sum(line.startswith(f"detector.r1 #{both[0]}  node detector") for line in lines) == 1
    assert sum(line.startswith("└── camera #") for line in lines) == 2
    js = subprocess.run(cmd + ["--format", "json"], capture_output=True, text=True, timeout=60)
    doc = json.loads(js.stdout)
    assert doc["matched"] == ["detector.r0", "detector.r1"]
    assert [t["topic"] for t in doc["trees"]] == ["detector.r0", "detector.r1"]
    assert all(t["parents"][0]["topic"] == "camera" and t["parents"][0]["found"] for t in doc["trees"])
    missing = subprocess.run(cmd[:-1] + ["999999"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no frame 999999 recorded on detector.r0, detector.r1" in missing.stderr
