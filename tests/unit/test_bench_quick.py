"""The benchmark workloads of `edgeflow bench` (issue 3) in quick mode: they run, check, and clean up.

Not a pure unit test: the two-process cases start a consumer child, so it is marked slow.
"""

from __future__ import annotations

import pytest

from edgeflow.runtime import bench

pytestmark = pytest.mark.slow
CFG = bench.BenchConfig.quick(latency_n=40, warmup_n=5, burst_n=1000, burst_s=0.05)
SIZE = "640x480x3"


@pytest.fixture(autouse=True)
def nothing_left_behind():
    yield
    assert bench.leftover_segments() == []
    assert bench.live_children() == []


def assert_sane(result: bench.BenchResult) -> None:
    assert result.ok, result.error or result.skipped
    assert result.nbytes == 640 * 480 * 3
    assert result.n > 0
    assert 0 < result.p50_us <= result.p99_us <= result.p999_us


def test_mp_queue_delivers_every_frame_of_the_burst():
    result = bench.run_case("mp-queue", SIZE, CFG)
    assert_sane(result)
    assert result.burst_received == result.burst_sent > 1
    assert result.recv_fps > 0 and result.gbps > 0


def test_edgeflow_realtime_loan():
    if why := bench.edgeflow_missing():
        pytest.skip(why)
    result = bench.run_case("rt-loan", SIZE, CFG)
    assert_sane(result)
    assert 0 < result.burst_received <= result.burst_sent
    assert result.sent_fps > 0 and result.recv_fps > 0


def test_memcpy_floor_warm_and_cold():
    warm, cold = bench.bench_memcpy(SIZE, CFG)
    for result in (warm, cold):
        assert_sane(result)
        assert result.gbps > 0
    assert warm.case == "floor memcpy warm" and cold.case == "floor memcpy cold"


def test_parse_size_is_width_by_height():
    assert bench.parse_size("1920x1080x3") == (1080, 1920, 3)
    assert bench.parse_size("64") == (64,)
    with pytest.raises(ValueError):
        bench.parse_size("16")
