"""The peer cases of the ring benchmark (issue 17): iceoryx2 and edgeflow's wait modes, in quick mode.

Real child processes and real iceoryx2 shared memory: each case must deliver every frame it checks, give sane
figures, and leave nothing in /dev/shm and no child behind. Without iceoryx2 the iceoryx2 tests skip, saying
why, except under CI (env ``CI`` set), where the bench extra is installed and a missing iceoryx2 fails.
"""

from __future__ import annotations

import glob
import os

import pytest

from edgeflow.bench import peer_report, peers, ring
from edgeflow.bench.children import live_children
from edgeflow.bench.results import BenchConfig, BenchResult
from edgeflow.errors import ConfigError

CFG = BenchConfig.quick(latency_n=30, warmup_n=3, burst_n=300, burst_s=0.05)


def _need_iceoryx2() -> None:
    why = peers.iceoryx2_missing()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI installs the bench extra, so the peer benchmark must run there")
    pytest.skip(why)


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After each test: no segment of this process's bench app or iceoryx2 cases, no child process."""
    yield
    assert not ring.leftover_segments(), ring.leftover_segments()
    assert not glob.glob(f"/dev/shm/efb{os.getpid()}x*")
    assert not live_children()


def _sane(r: BenchResult, every: bool = True) -> None:
    assert r.ok, r.error or r.skipped
    assert r.n == CFG.latency_n
    assert 0 < r.p50_us <= r.p99_us <= r.p999_us < 1e6          # one-way latency: under a second
    assert r.burst_received > 0 and r.recv_fps > 0 and r.sent_fps > 0
    if every:                                                    # the consumer counted each frame it checked
        assert r.burst_received == r.burst_sent


@pytest.mark.slow
@pytest.mark.parametrize("case_id", list(peers.PEER_CASES))
def test_iceoryx2_case_runs_and_checks_every_frame(case_id: str) -> None:
    _need_iceoryx2()
    r = ring.run_case(case_id, "640x480x3", CFG)
    _sane(r)
    assert r.case == peers.PEER_CASES[case_id][0] and r.nbytes == 640 * 480 * 3
    assert ("writes markers only" in r.note) == (peers.PEER_CASES[case_id][1] == "loan")
    assert r.gbps == pytest.approx(r.recv_fps * r.nbytes / 1e9)


@pytest.mark.slow
def test_iceoryx2_loan_fill_writes_whole_frames_at_1080p() -> None:
    _need_iceoryx2()
    cfg = BenchConfig.quick(latency_n=30, warmup_n=3, burst_n=60, burst_s=0.05, loan_fill=True)
    r = ring.run_case("iox2-loan-poll", "1920x1080x3", cfg)
    assert r.ok, r.error
    assert r.burst_received == r.burst_sent and "writes markers only" not in r.note


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["durable-loan-sleep", "durable-loan-spin", "rt-publish-spin"])
def test_edgeflow_wait_mode_cases(case_id: str) -> None:
    r = ring.run_case(case_id, "64", CFG)
    _sane(r, every=case_id.startswith("durable"))
    assert r.case.endswith(f"wait={case_id.rsplit('-', 1)[1]}")


def test_case_tables_keep_the_old_ids_and_name_the_new() -> None:
    assert ring.CASE_IDS == (*ring.EDGEFLOW_CASES, *ring.BASELINE_CASES, "sem", "memcpy")
    assert set(ring.PEER_RUN) <= set(ring.ALL_CASE_IDS)
    assert ring.case_label("rt-loan-spin") == "edgeflow REALTIME loan wait=spin"
    assert ring.case_label("iox2-loan-poll") == "iceoryx2 loan busy poll"
    with pytest.raises(ConfigError, match="iox2-loan-event"):
        ring.case_label("iox2-nope")
    with pytest.raises(ConfigError, match="unknown case 'nope'"):
        ring.run_all(["64"], ["nope"], CFG)


def test_missing_iceoryx2_is_a_skip_with_the_reason(monkeypatch) -> None:
    # the import machinery's own switch: a None entry in sys.modules makes `import iceoryx2` raise ImportError
    monkeypatch.setitem(__import__("sys").modules, "iceoryx2", None)
    assert "iceoryx2 not installed" in peers.iceoryx2_missing()
    r = ring.run_case("iox2-loan-event", "64", CFG)
    assert r.skipped and "iceoryx2 not installed" in r.skipped and r.n == 0
    assert "its cases are skipped" in peer_report.peer_status()


def _result(case: str, size: str, p50: float, fps: float, error: str | None = None) -> BenchResult:
    return BenchResult(case, size, 64, 10, p50, p50 * 2, p50 * 3, fps, fps, fps * 64 / 1e9, 10, 10,
                       error=error)


def test_medians_over_rounds_and_targets() -> None:
    ev, poll = peer_report.IOX_EVENT, peer_report.IOX_POLL
    dl, dls = ring.case_label("durable-loan"), ring.case_label("durable-loan-sleep")
    runs = [[_result(dl, "64", p, f), _result(ev, "64", 20.0, 100.0), _result(poll, "64", 10.0, 300.0),
             _result(dls, "64", 25.0, 50.0)]
            for p, f in ((8.0, 400.0), (30.0, 100.0), (9.0, 350.0))]
    runs[1].append(_result("x", "64", 1.0, 1.0, error="torn frame"))
    merged = {r.case: r for r in peer_report.median_results(runs)}
    assert merged[dl].p50_us == 9.0 and merged[dl].recv_fps == 350.0 and merged[dl].n == 30
    assert "median of 3 rounds (p50 8.00-30.0 us, recv/s 100.0-400.0)" in merged[dl].note
    assert merged["x"].error == "torn frame"                     # failed in one round: failed
    checks = {c.name: c for c in peer_report.check_peer_targets(list(merged.values()))}
    small = checks[f"{dl} (adaptive) p50 / {poll} p50 at 64"]
    assert small.passed and small.ratio == pytest.approx(0.9)
    sleep = checks[f"{dls} p50 / {ev} p50 at 64"]
    assert sleep.passed is False and sleep.ratio == pytest.approx(1.25)
    fps = checks[f"{dl} (adaptive) frames/s / {ev} at 64"]
    assert fps.passed and fps.ratio == pytest.approx(3.5)
    assert checks[f"{dl} (adaptive) p50 / {ev} p50 at 1920x1080x3"].passed is None       # not measured: n/a
    rows = {row[0]: row for row in peer_report.comparison_rows(list(merged.values()))}
    assert rows[dl][5:] == ["2.2x", "1.1x", "3.5x", "1.2x"]      # 20/9, 10/9 (p50); 350/100, 350/300 (fps)
    assert "x" not in rows                                       # a failed case has no figures to compare
    assert "MISS" in peer_report.format_peer_targets(list(checks.values()))


@pytest.mark.slow
def test_cli_bench_peers_names_the_peers_and_checks_targets() -> None:
    import json

    from click.testing import CliRunner

    from edgeflow.cli.bench import bench

    out = CliRunner().invoke(bench, ["--peers", "--quick", "--sizes", "64", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    cases = {r["case"] for r in report["results"]}
    assert {ring.case_label("durable-loan-spin"), peer_report.IOX_EVENT, peer_report.IOX_POLL} <= cases
    assert report["peers"]["status"].startswith("peers: ")
    assert any("busy poll" in t["name"] for t in report["peers"]["targets"])
    if peers.iceoryx2_missing() is None:
        assert "iceoryx2 0." in report["peers"]["status"]
        assert all(r["skipped"] is None for r in report["results"])
