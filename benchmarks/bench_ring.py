"""The ring against its baselines and peers, with pytest-benchmark: `pytest benchmarks --benchmark-only`.

The two-process cases are edgeflow's (each QoS and produce mode; its subscriber wait modes), the plain-Python
baselines and the peers (iceoryx2 loan with event wake-up and busy poll, its send_copy; skipped without
iceoryx2, saying so, except under CI, where the bench extra is installed and a missing iceoryx2 fails).

pytest-benchmark times one paced round trip per round: the producer sends a stamped frame and waits until
the consumer child has received and checked it (``Session.roundtrip``; ``Session.pace`` runs untimed between
rounds).
The one-way percentiles and the throughput of the same session, measured as `edgeflow bench` does, are in each
benchmark's ``extra_info`` (``--benchmark-json``). Benchmarks are grouped by frame size, so edgeflow and the
baselines of one size sit in one table. ``EDGEFLOW_BENCH_QUICK=1`` runs the small configuration;
``EDGEFLOW_BENCH_FAST=1`` (or ``--benchmark-disable``, see conftest.py) one size with tiny counts, each body once.

Every benchmark fails on a wrong answer: the consumer checks each frame's index, kind, size, tail marker and
frame_id, and a case that delivers every frame must deliver exactly the frames sent.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgeflow.bench import ring
from edgeflow.bench.children import live_children
from edgeflow.bench.floors import SemPingPong
from edgeflow.bench.payload import SIZES, make_frame, parse_size
from edgeflow.bench.results import BenchConfig

FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"
if FAST:          # checks that every body still runs: one frame size (the code path is the same at each)
    CFG, RUN_SIZES = BenchConfig.quick(latency_n=20, warmup_n=3, burst_n=200, burst_s=0.05), ("640x480x3",)
elif os.environ.get("EDGEFLOW_BENCH_QUICK") == "1":
    CFG, RUN_SIZES = BenchConfig.quick(), SIZES
else:
    CFG, RUN_SIZES = BenchConfig(latency_n=300, warmup_n=30, burst_s=0.25), SIZES
# fast mode: two wait-mode cases stand for the rest (the same sender; only the subscriber's wait= differs)
WAITS = ("rt-loan-sleep", "durable-loan-spin") if FAST else tuple(ring.WAIT_CASES)
TWO_PROCESS = [*ring.EDGEFLOW_CASES, *WAITS, *ring.BASELINE_CASES, *ring.PEER_CASES]


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After each benchmark: no /dev/shm segment of this process's bench app and no child process."""
    yield
    segments, children = ring.leftover_segments(), live_children()
    assert not segments, f"segments left behind: {segments}"
    assert not children, f"child processes left behind: {children}"


def _skip_if_missing(case_id: str) -> None:
    why = ring.case_missing(case_id)
    if why and case_id in ring.PEER_CASES and os.environ.get("CI"):
        pytest.fail(f"{why}: CI installs the bench extra")
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("size", RUN_SIZES)
@pytest.mark.parametrize("case_id", TWO_PROCESS)
def test_two_process_roundtrip(benchmark, case_id: str, size: str) -> None:
    _skip_if_missing(case_id)
    benchmark.group = f"ring {size}"
    with ring.open_session(case_id, size, CFG) as session:
        session.warmup()
        benchmark.pedantic(session.roundtrip, setup=session.pace, rounds=CFG.latency_n, iterations=1)
        session.collect()
        session.burst()
    result = session.result()
    benchmark.extra_info.update(result.to_dict())
    assert result.error is None, result.error
    assert result.n == (1 if benchmark.disabled else CFG.latency_n)    # disabled: the body runs once
    assert 0 < result.p50_us <= result.p99_us <= result.p999_us
    assert result.burst_received > 0
    if not case_id.startswith("rt-"):                     # REALTIME is latest-wins: it may drop
        assert result.burst_received == result.burst_sent


def test_semaphore_floor(benchmark) -> None:
    benchmark.group = "floor"
    warm, rounds = (0, 1) if benchmark.disabled else (CFG.warmup_n, CFG.latency_n)   # the child counts pings
    with SemPingPong(CFG, warm + rounds) as floor:
        benchmark.pedantic(floor.roundtrip, setup=floor.pace, rounds=rounds, warmup_rounds=warm, iterations=1)
        one_way = floor.one_way_us()[warm:]
    p50, p99, p999 = np.percentile(one_way, [50, 99, 99.9])
    benchmark.extra_info.update(one_way_p50_us=p50, one_way_p99_us=p99, one_way_p999_us=p999)
    assert len(one_way) == rounds and min(one_way) > 0


@pytest.mark.parametrize("size", RUN_SIZES)
def test_memcpy_floor(benchmark, size: str) -> None:
    benchmark.group = f"ring {size}"
    src = make_frame(parse_size(size), idx=7)
    dst = np.empty_like(src)
    dst.fill(1)                                            # pre-faulted, as in floors.bench_memcpy
    benchmark(np.copyto, dst, src)
    assert np.array_equal(dst, src)
