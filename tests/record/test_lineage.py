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
