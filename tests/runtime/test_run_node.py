"""edgeflow.testing.run_node: a node class run in this process, as the runtime would run it (no processes)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow import ConsumerNode, Frame, NodeError
from edgeflow.runtime.outputs import TRACE_KEY

from . import nodes

STAT_KEYS = {"node", "replica", "frames_in", "frames_out", "errors", "drops", "edges_in", "edge_drops", "fps",
             "processing_ms", "latency_ms", "extra"}


@pytest.fixture
def run_node():
    # imported here, so that a broken edgeflow.testing fails these tests one by one with its own error
    from edgeflow.testing import run_node
    return run_node


def pair(i: int) -> np.ndarray:
    return np.array([0, i], dtype=np.int64)


def test_producer_outputs_frames_with_ids_trace_and_statistics(run_node):
    result = run_node(nodes.Counter, frames=5)

    assert [f.data.tolist() for f in result.outputs] == [[0, i] for i in range(5)]
    assert [f.frame_id for f in result.outputs] == [1, 2, 3, 4, 5]
    assert all(f.topic == "counter" for f in result.outputs)      # default name: the class in snake_case
    for f in result.outputs:
        [hop] = f.meta[TRACE_KEY]
        assert hop[0] == "counter" and hop[1] <= hop[2]
    assert result.errors == []
    assert STAT_KEYS <= set(result.statistics)
    assert result.statistics["node"] == "counter"
    assert result.statistics["frames_out"] == 5
    assert result.statistics["processing_ms"]["count"] == 5


def test_producer_runs_until_end_of_stream_without_frames(run_node):
    result = run_node(nodes.Counter, count=3, name="camera")

    assert [f.data.tolist() for f in result.outputs] == [[0, 0], [0, 1], [0, 2]]
    assert result.outputs[0].meta[TRACE_KEY][0][0] == "camera"
    assert result.statistics["frames_out"] == 3


def test_producer_returning_a_frame_keeps_its_timestamp_and_meta(run_node):
    result = run_node(nodes.Stamper, frames=2)

    for i, f in enumerate(result.outputs):
        assert f.timestamp == f.meta["captured"]
        assert f.meta["seq"] == i
        assert [hop[0] for hop in f.meta[TRACE_KEY]] == ["stamper"]


def test_consumer_keeps_input_timestamps_carries_meta_and_adds_a_hop(run_node):
    inputs = [Frame(pair(i), frame_id=i + 1, timestamp=1000.0 + i,
                    meta={"seq": i, TRACE_KEY: [["camera", 999.0, 999.5]]}) for i in range(3)]

    result = run_node(nodes.Tagger, inputs, name="tag")

    assert [f.data.tolist() for f in result.outputs] == [[0, i] for i in range(3)]
    for i, f in enumerate(result.outputs):
        assert f.timestamp == 1000.0 + i
        assert f.meta["seq"] == i and f.meta["tagged"] == i
        assert [hop[0] for hop in f.meta[TRACE_KEY]] == ["camera", "tag"]
    assert inputs[0].meta[TRACE_KEY] == [["camera", 999.0, 999.5]], "the input's meta must not be changed"
    stats = result.statistics
    assert stats["frames_in"] == 3 and stats["frames_out"] == 3
    assert stats["edges_in"] == {"input": 3}
    assert stats["latency_ms"]["count"] == 3


def test_consumer_sees_read_only_inputs_and_its_loaned_output_is_sent(run_node, tmp_path):
    seen = tmp_path / "readonly.txt"
    grids = [np.full((16, 16), i, np.int32) for i in range(3)]

    result = run_node(nodes.LoanDoubler, grids, out=str(seen))

    assert nodes.read_lines(seen) == ["readonly"] * 3
    assert all(g[1, 1] == i for i, g in enumerate(grids)), "the caller's arrays must be left alone"
    for i, f in enumerate(result.outputs):
        np.testing.assert_array_equal(f.data, np.full((16, 16), 2 * i + 1, np.int64))


def test_consumer_unsendable_results_are_recorded_as_node_errors(run_node):
    result = run_node(nodes.BadReturner, [pair(i) for i in range(8)], name="bad")

    assert [f.data.tolist() for f in result.outputs] == [[0, 0], [0, 4]]
    assert len(result.errors) == 6
    assert all(isinstance(e, NodeError) and e.node == "bad" for e in result.errors)
    texts = [str(e) for e in result.errors]
    assert sum("node 'bad' returned str" in t for t in texts) == 2
    assert sum("node 'bad' returned a message that cannot be sent" in t for t in texts) == 2
    assert sum("array of Python objects" in t for t in texts) == 2
    assert result.statistics["errors"] == 6
    assert result.statistics["drops"] == {"unsendable": 6}


def test_consumer_exceptions_are_recorded_and_the_run_goes_on(run_node):
    result = run_node(nodes.Raiser, [pair(i) for i in range(10)])

    assert [f.data.tolist()[1] for f in result.outputs] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [type(e) for e in result.errors] == [ValueError, ValueError]
    assert result.statistics["drops"] == {"error": 2}


def test_consumer_sees_the_topic_it_is_given(run_node):
    class TopicEcho(ConsumerNode):
        def process(self, data):
            return np.frombuffer(self.current_frame.topic.encode(), np.uint8)

    result = run_node(TopicEcho, [pair(0)], topic="cam")

    assert bytes(result.outputs[0].data) == b"cam"
    assert result.statistics["edges_in"] == {"cam": 1}


def test_sink_consumes_every_input_and_sends_nothing(run_node, tmp_path):
    out = tmp_path / "log.txt"

    result = run_node(nodes.Recorder, [pair(i) for i in range(4)], out=str(out))

    assert result.outputs == [] and result.errors == []
    assert nodes.counters(out) == [(0, i) for i in range(4)]
    assert result.statistics["frames_in"] == 4
    assert result.statistics["frames_out"] == 4          # consumed


def test_fusion_node_gets_sets_of_frames_and_keeps_the_oldest_timestamp(run_node):
    sets = [[Frame(np.array([i], np.int64), timestamp=10.0 + i, topic="left"),
             Frame(np.array([100 + i], np.int64), timestamp=9.99 + i, topic="right")] for i in range(3)]

    result = run_node(nodes.Fuse, sets, name="fuse")

    assert [f.data.tolist() for f in result.outputs] == [[i, 100 + i] for i in range(3)]
    assert [f.timestamp for f in result.outputs] == [9.99 + i for i in range(3)]
    assert all(f.meta[TRACE_KEY][-1][0] == "fuse" for f in result.outputs)
    assert result.statistics["frames_out"] == 3
