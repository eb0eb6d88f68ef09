"""The runtime benchmarks of issue 4 in quick mode: they run, check their frames, and clean up.

Not a pure unit test: the workloads start node processes and a real `python main.py`, so it is marked slow.
"""

from __future__ import annotations

import glob

import pytest

from edgeflow.qos import QoS
from edgeflow.bench import nodes, runtime
from edgeflow.bench.ring import EDGEFLOW_CASES

pytestmark = pytest.mark.slow
CFG = runtime.RuntimeConfig.quick(latency_n=40, warmup_n=10)


def test_quick_run_measures_every_case_and_leaves_nothing_behind():
    run = runtime.run_all(CFG)

    assert run.errors() == []
    raw = [EDGEFLOW_CASES[case_id][0] for case_id in ("rt-loan", "rt-publish")]
    assert [r.case for r in run.latency] == [raw[0], "node REALTIME loan output",
                                             raw[1], "node REALTIME returned array"]
    for result in run.latency:
        assert result.ok and result.size == "1920x1080x3" and result.nbytes == 1920 * 1080 * 3
        assert result.n >= 0.9 * CFG.latency_n                # the consumer node received (and checked) them
        assert 0 < result.p50_us <= result.p99_us <= result.p999_us
    processes = {runtime.RAW_CPU_CASES[1]: ["publisher", "subscriber"],
                 runtime.NODE_CPU_CASE: list(nodes.CPU_NODES),
                 runtime.RAW_CPU_CASES[2]: ["publisher", "relay", "subscriber"]}
    assert [r.case for r in run.cpu] == list(processes)
    for result in run.cpu:
        assert result.ok and result.frames == CFG.cpu_frames   # every process saw every frame_id, in order
        assert list(result.per_process_us) == processes[result.case]
        assert result.per_frame_hop_us > 0 and all(us > 0 for us in result.per_process_us.values())
    floor, start = run.startup
    assert floor.ok and start.ok and 0 < floor.median_s and 0 < start.median_s < start.exit_s[0]
    assert nodes.leftovers() == []
    assert glob.glob(f"/dev/shm/edgeflow.{nodes.app_prefix()}*") == []


def test_apps_are_valid_graphs_with_the_links_measured():
    latency = nodes.latency_app("rtbench-t1", "/nonexistent", mode="copy", qos="DURABLE").graph()
    assert [(e.source, e.target, e.qos) for e in latency.edges] == [("source", "probe", QoS.DURABLE)]
    assert latency.node("source").fps == 300.0 and latency.node("probe").options["every"] is True
    cpu = nodes.cpu_app("rtbench-t2", "/nonexistent").graph()
    assert [(e.source, e.target, e.qos) for e in cpu.edges] == [("source", "relay", QoS.DURABLE),
                                                                ("relay", "sink", QoS.DURABLE)]
    assert cpu.node("source").fps is None
    with pytest.raises(ValueError):
        nodes.latency_app("rtbench-t3", "/nonexistent", mode="zero")


def test_cpu_meter_counts_whole_windows_after_the_warmup():
    meter = nodes.CpuMeter(warmup=3, window=2)
    for _ in range(10):
        meter.tick()
    assert meter.count == 10 and len(meter.marks) == 4               # at frames 4, 6, 8 and 10
    assert len(meter.per_frame_us()) == 3 and all(us >= 0 for us in meter.per_frame_us())
    assert meter.report(["x"])["frames"] == 10 and meter.report([])["sleeps"] >= 0
