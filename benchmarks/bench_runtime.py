"""The node runtime beside the raw ring, with pytest-benchmark: `pytest benchmarks --benchmark-only`.

Two kinds of benchmark:

- one hop in this process (group "runtime hop"): pytest-benchmark times a hop of the node path exactly as
  NodeRunner takes it (``Output.loan`` + ``Output.send``, then ``InputSet.next`` + ``release``) beside the raw
  path (``Publisher.loan().commit()`` or ``publish()``, then ``Subscriber.recv_nowait().release()``) on a
  DURABLE ring at 640x480x3: the framework's own Python per hop, without wake-ups or other processes.
- the multi-process workloads of ``benchmarks/run_runtime.py`` (edgeflow/bench/runtime.py), one round
  each: the timed figure is the whole workload's wall time; what it measured (one-way latency percentiles,
  CPU per frame and hop, seconds to the first frame) is in ``extra_info`` (``--benchmark-json``).

Every benchmark fails on a wrong answer: frame ids in order, the trace and capture time carried, every frame
of a DURABLE run delivered, nothing left in /dev/shm or in the process table. ``EDGEFLOW_BENCH_QUICK=1`` runs
the small configuration; ``EDGEFLOW_BENCH_FAST=1`` (or ``--benchmark-disable``) tiny counts, each body once,
and the latency pairs of two QoS/mode combinations that between them cover both QoS and both modes.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest

from edgeflow.bench import nodes, runtime, startup
from edgeflow.bench.payload import make_frame, parse_size
from edgeflow.qos import QoS
from edgeflow.runtime.inputs import InputSet
from edgeflow.runtime.outputs import TRACE_KEY, Output
from edgeflow.runtime.plan import InputPlan
from edgeflow.transport import shm

FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"
if FAST:
    CFG = runtime.RuntimeConfig.quick(latency_n=20, warmup_n=5, round_n=10, cpu_frames=300, cpu_warmup=50,
                                      cpu_window=50, startup_frames=5)
elif os.environ.get("EDGEFLOW_BENCH_QUICK") == "1":
    CFG = runtime.RuntimeConfig.quick()
else:
    CFG = runtime.RuntimeConfig(latency_n=300, cpu_repeats=1, startup_runs=1)
SHAPE = parse_size(nodes.CPU_SIZE)
HOP_CASES = ("raw loan", "node loan output", "raw publish", "node returned array")
HOP_ROUNDS, HOP_WARMUP = (200, 20) if FAST else (2000, 200)
LATENCY_CASES = ([("REALTIME", "loan"), ("DURABLE", "copy")] if FAST
                 else [(qos, mode) for qos in ("REALTIME", "DURABLE") for mode in ("loan", "copy")])


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After each benchmark: no segment of this process's apps, no child, no node process of a main.py."""
    yield
    assert nodes.leftovers() == []


@pytest.fixture
def ring():
    """A DURABLE ring of a fresh app: (app, publisher); the group "sink" is declared before any frame."""
    app = nodes.new_app_name("hop")
    pub = shm.Publisher("hop", app=app, slots=8)
    try:
        pub.declare_group("sink", QoS.DURABLE)
        yield app, pub
    finally:
        pub.close()
        shm.sweep_app(app)


def _raw_hop(app: str, pub: shm.Publisher, loan: bool):
    sub = shm.Subscriber("hop", app=app, qos=QoS.DURABLE, group="sink", max_held=8)
    src = make_frame(SHAPE)

    def hop() -> int:
        fid = pub.loan(SHAPE, np.uint8).commit() if loan else pub.publish(src)
        frame = sub.recv_nowait()
        assert frame.frame_id == fid
        frame.release()
        return fid

    return hop, sub.close, lambda: None


def _node_hop(app: str, pub: shm.Publisher, loan: bool):
    out = Output("source", pub)
    plan = InputPlan("source", "source", ("hop",), "sink", QoS.DURABLE, 0, None)
    inputs = InputSet.open(app, [plan], max_held=8)
    src, last = make_frame(SHAPE), {}

    def hop() -> int:
        received = time.time()
        fid = out.send(out.loan(SHAPE, np.uint8) if loan else src, None, received)
        frame, _ = inputs.next(1.0)
        assert frame.frame_id == fid
        last.update(meta=frame.meta, timestamp=frame.timestamp, received=received)
        frame.release()
        return fid

    def check() -> None:
        (node, received_us, sent_us), = last["meta"][TRACE_KEY]              # a hop: integer microseconds
        assert node == "source" and received_us == int(last["received"] * 1e6)
        assert isinstance(sent_us, int) and received_us <= sent_us
        assert last["received"] <= last["timestamp"] <= (sent_us + 1) / 1e6  # stamped at send time, carried

    return hop, inputs.close, check


@pytest.mark.parametrize("case", HOP_CASES)
def test_hop_in_process(benchmark, ring, case: str) -> None:
    app, pub = ring
    benchmark.group = f"runtime hop {nodes.CPU_SIZE}, in process"
    make = _node_hop if case.startswith("node") else _raw_hop
    hop, close, check = make(app, pub, loan="loan" in case)
    try:
        first = hop()
        benchmark.pedantic(hop, rounds=HOP_ROUNDS, warmup_rounds=HOP_WARMUP, iterations=1)
        hops = 1 if benchmark.disabled else HOP_ROUNDS + HOP_WARMUP         # disabled: the body runs once
        assert hop() == first + hops + 1                                   # every frame, in order
        check()
    finally:
        close()


@pytest.mark.parametrize(("qos", "mode"), LATENCY_CASES)
def test_latency_pair(benchmark, qos: str, mode: str) -> None:
    benchmark.group = f"runtime latency {nodes.LATENCY_SIZE} (figures in extra_info)"
    raw, node = benchmark.pedantic(runtime.latency_pair, args=(qos, mode, CFG), rounds=1, iterations=1)
    benchmark.extra_info.update(raw=raw.to_dict(), node=node.to_dict(), p50_ratio=node.p50_us / raw.p50_us)
    for result in (raw, node):
        assert result.error is None, result.error
        assert 0 < result.p50_us <= result.p99_us
    assert raw.n == CFG.latency_n
    assert node.n >= 0.9 * CFG.latency_n if qos == "REALTIME" else node.n == CFG.latency_n


def test_cpu_per_frame_and_hop(benchmark) -> None:
    benchmark.group = f"runtime CPU {nodes.CPU_SIZE} (figures in extra_info)"
    results = benchmark.pedantic(runtime.cpu_cases, args=(CFG,), rounds=1, iterations=1)
    benchmark.extra_info.update({r.case: dataclasses.asdict(r) for r in results})
    assert [r.case for r in results] == [runtime.RAW_CPU_CASES[1], runtime.NODE_CPU_CASE,
                                         runtime.RAW_CPU_CASES[2]]
    for result in results:
        assert result.error is None, result.error                 # every process saw every frame_id in order
        assert result.frames == CFG.cpu_frames and result.per_frame_hop_us > 0
        assert len(result.per_process_us) == result.hops + 1


def test_startup_to_first_frame(benchmark) -> None:
    benchmark.group = "runtime startup (figures in extra_info)"
    result = benchmark.pedantic(startup.startup, args=(CFG,), rounds=1, iterations=1)
    benchmark.extra_info.update(dataclasses.asdict(result))
    assert result.error is None and len(result.runs_s) == CFG.startup_runs
    assert all(0 < first < done for first, done in zip(result.runs_s, result.exit_s))
