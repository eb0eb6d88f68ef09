"""FusionNode overhead per emitted set, beyond the matcher itself (issue 7 target: under 50 µs).

    python benchmarks/bench_fusion_node.py          # plain script: prints the figures
    pytest benchmarks --benchmark-only -k fusion_node

The same arrival sequence (30 Hz camera, 10 Hz lidar, 200 Hz IMU with jitter) goes once through a bare
Matcher and once through the FusionNode loop's per-frame path (FusionState.push, the node's process() hook,
statistics and delivery, without rings); the difference per emitted set is the node's own cost.
"""

from __future__ import annotations

import os
import random
import time

import numpy as np

from edgeflow.frame import Frame
from edgeflow.fusion import Matcher
from edgeflow.nodes.base import FusionNode
from edgeflow.runtime.fusionloop import FusionState, _emit
from edgeflow.runtime.loop import NodeContext, NodeRunner
from edgeflow.runtime.metrics import NodeMetrics

RATES = (("camera", 30.0), ("lidar", 10.0), ("imu", 200.0))


def arrivals(seconds: float = 30.0, seed: int = 7) -> list[tuple[int, Frame]]:
    """(input index, frame) in arrival order, stamps jittered by up to 2 ms."""
    rng = random.Random(seed)
    events = []
    for index, (name, hz) in enumerate(RATES):
        for k in range(int(seconds * hz)):
            stamp = 1_000.0 + k / hz - rng.uniform(0, 0.002)
            events.append((stamp, index, Frame(np.zeros(4, np.uint8), frame_id=k + 1, timestamp=stamp, topic=name)))
    events.sort(key=lambda e: e[0])
    return [(index, frame) for _, index, frame in events]


class Fuse(FusionNode):
    slop, policy, queue_size = 0.05, "approximate", 30

    def process(self, frames):
        return None                              # nothing to publish: measure the loop, not an output


def _runner() -> NodeRunner:
    runner = NodeRunner.__new__(NodeRunner)      # the loop's per-frame path without opening rings
    runner.name, runner.output, runner._errors_logged = "fuse", None, set()
    runner.metrics = NodeMetrics("fuse")
    return runner


def through_matcher(events) -> tuple[float, int]:
    m = Matcher(3, "approximate", slop=0.05, queue_size=30)
    t0 = time.perf_counter()
    sets = sum(len(m.push(i, f.timestamp, f)) for i, f in events)
    return time.perf_counter() - t0, sets


def through_node(events) -> tuple[float, int]:
    runner, node = _runner(), Fuse(name="fuse")
    node.context = NodeContext(None, runner.metrics)
    state = FusionState(runner, node, [name for name, _ in RATES])
    t0 = time.perf_counter()
    sets = 0
    for i, frame in events:
        runner.metrics.received(frame.topic)
        for matched in state.push(i, frame):
            _emit(runner, node, list(matched), frame.timestamp)
            sets += 1
    return time.perf_counter() - t0, sets


def measure(repeats: int = 5) -> dict:
    events = arrivals()
    bare = min(through_matcher(events)[0] for _ in range(repeats))
    runs = [through_node(events) for _ in range(repeats)]
    node_time, sets = min(r[0] for r in runs), runs[0][1]
    assert sets == through_matcher(events)[1] and sets > 250, "the node must emit the matcher's sets"
    per_set_us = 1e6 * (node_time - bare) / sets
    return {"frames": len(events), "sets": sets, "matcher_s": bare, "node_s": node_time,
            "overhead_per_set_us": per_set_us}


def test_fusion_node_overhead(benchmark):
    repeats = 1 if os.environ.get("EDGEFLOW_BENCH_FAST") == "1" else 3
    result = benchmark.pedantic(measure, kwargs={"repeats": repeats}, rounds=3)
    assert result["sets"] > 250


if __name__ == "__main__":
    r = measure()
    print(f"{r['frames']} frames -> {r['sets']} sets; matcher alone {1e3 * r['matcher_s']:.1f} ms, "
          f"through the FusionNode path {1e3 * r['node_s']:.1f} ms")
    verdict = "PASS" if r["overhead_per_set_us"] < 50 else "MISS"
    print(f"{verdict}  FusionNode overhead per emitted set: {r['overhead_per_set_us']:.1f} us (target < 50 us)")
