"""The benchmark workloads of `edgeflow bench` (issue 3) in quick mode: they run, check, and clean up.

Not a pure unit test: the two-process cases start a consumer child, so it is marked slow.
"""

from __future__ import annotations

import pytest

from edgeflow.bench import floors, ring
from edgeflow.bench.children import live_children
from edgeflow.bench.consumer import FrameChecker
from edgeflow.bench.payload import BURST, BURST_LAST, LAT, parse_size
from edgeflow.bench.results import BenchConfig, BenchResult

pytestmark = pytest.mark.slow
CFG = BenchConfig.quick(latency_n=40, warmup_n=5, burst_n=1000, burst_s=0.05)
SIZE = "640x480x3"


@pytest.fixture(autouse=True)
def nothing_left_behind():
    yield
    assert ring.leftover_segments() == []
    assert live_children() == []


def assert_sane(result: BenchResult) -> None:
    assert result.ok, result.error or result.skipped
    assert result.nbytes == 640 * 480 * 3
    assert result.n > 0
    assert 0 < result.p50_us <= result.p99_us <= result.p999_us


def test_mp_queue_delivers_every_frame_of_the_burst():
    result = ring.run_case("mp-queue", SIZE, CFG)
    assert_sane(result)
    assert result.burst_received == result.burst_sent > 1
    assert result.recv_fps > 0 and result.gbps > 0


def test_edgeflow_realtime_loan():
    if why := ring.edgeflow_missing():
        pytest.skip(why)
    result = ring.run_case("rt-loan", SIZE, CFG)
    assert_sane(result)
    assert 0 < result.burst_received <= result.burst_sent
    assert result.sent_fps > 0 and result.recv_fps > 0


def test_memcpy_floor_warm_paced_and_cold():
    results = floors.bench_memcpy(SIZE, CFG)
    assert [r.case for r in results] == ["floor memcpy warm", "floor memcpy paced", "floor memcpy cold"]
    for result in results:
        assert_sane(result)
        assert result.gbps > 0


def test_parse_size_is_width_by_height():
    assert parse_size("1920x1080x3") == (1080, 1920, 3)
    assert parse_size("64") == (64,)
    with pytest.raises(ValueError):
        parse_size("16")


def test_consumer_checks_catch_wrong_frames():
    durable = FrameChecker({"every": True, "burst_seq": True, "nbytes": 64})
    durable.frame(0, LAT, 0, 10, 64)
    durable.frame(1, LAT, 1, 12, 64)          # frame_id 11 skipped under DURABLE
    durable.frame(2, LAT, 7, 13, 64)          # torn: the tail says 7
    durable.frame(3, LAT, 3, 14, 32)          # short
    durable.latency(1.0, 0.5, 5)                    # latency frame 5, expected 0
    for idx in (0, 1, 3):                           # burst frame 2 missing
        durable.burst(idx, BURST if idx < 3 else BURST_LAST, 2.0)
    errors = " | ".join(durable.take_errors())
    for what in ("skipped 1", "torn frame", "32 bytes", "latency frame 5", "burst frame 3",
                 "received 3 frames of 4"):
        assert what in errors

    realtime = FrameChecker({"every": False, "burst_seq": True, "nbytes": 64})
    realtime.frame(0, BURST, 0, 5, 64)
    realtime.frame(1, BURST, 1, 9, 64)        # a gap is fine for REALTIME...
    realtime.frame(2, BURST, 2, 9, 64)        # ...a repeat is not
    assert realtime.burst(0, BURST, 1.0) is None
    assert realtime.burst(4, BURST_LAST, 2.0) == (2, 2.0)
    assert [e for e in realtime.take_errors()] == ["frame_id 9 after 9: repeated or went back"]
