"""Issue 8: `edgeflow bench`: figures for every transport and baseline it reports; shm ahead of baselines."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from _clitools import edgeflow
from edgeflow.bench import ring
from edgeflow.bench.results import BenchConfig
from edgeflow.cli import cli
from edgeflow.cli import bench as bench_cli

pytestmark = pytest.mark.slow
LARGE = "1920x1080x3"


def test_quick_json_has_figures_for_everything_it_reports():
    out = edgeflow("bench", "--json", "--quick", timeout=300)
    report = json.loads(out.stdout)
    results = report["results"]
    print(f"\nbench --quick took {report['seconds']} s; {report['redis']}")
    assert out.returncode == 0, [r for r in results if r["error"]]
    assert report["leftovers"] == []
    assert "edgeflow bench" in out.stderr                  # the progress bar is on stderr
    for r in results:
        if r["skipped"]:
            assert r["skipped"].strip()                    # a skip says why
            continue
        assert r["error"] is None, r
        assert r["n"] > 0 and 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"], r
        if not r["case"].startswith("floor"):
            assert r["recv_fps"] and r["recv_fps"] > 0, r
    measured = {r["case"] for r in results if not r["skipped"]}
    for case in ("edgeflow REALTIME publish", "edgeflow REALTIME loan", "edgeflow DURABLE publish",
                 "mp.Queue", "pickle over mp.Pipe", "floor memcpy warm", "floor sem one-way"):
        assert case in measured
    for label in ("edgeflow Redis DURABLE", "edgeflow dual Redis DURABLE", "edgeflow TCP REALTIME",
                  "redis-py RPUSH/BLPOP"):
        assert any(r["case"] == label for r in results)     # measured, or skipped with the reason
    assert {r["size"] for r in results} == {"-", "64", "640x480x3", LARGE}

    def p50(case):
        return next(r["p50_us"] for r in results if r["case"] == case and r["size"] == LARGE)
    for case in ("edgeflow REALTIME publish", "edgeflow REALTIME loan", "edgeflow DURABLE publish"):
        assert p50(case) < p50("mp.Queue"), case
        assert p50(case) < p50("pickle over mp.Pipe"), case
    assert "Same host: shared memory" in report["recommendation"]


def test_table_and_recommendation_in_text_mode():
    result = CliRunner().invoke(cli, ["bench", "--quick", "--sizes", "64",
                                      "--cases", "shm-rt,mp-queue,memcpy"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "case" in text and "p50 us" in text and "p99.9 us" in text
    assert "edgeflow REALTIME publish" in text and "mp.Queue" in text and "floor memcpy warm" in text
    assert "Same host: shared memory" in text and "Between hosts" in text
    assert "one copy of a 64-byte frame" in text
    assert ring.leftover_segments() == []


def test_redis_cases_use_the_given_redis(redis_url):
    import redis
    client = redis.Redis.from_url(redis_url)
    keys_before = set(client.keys("*"))
    result = CliRunner().invoke(cli, ["bench", "--quick", "--json", "--sizes", "64",
                                      "--cases", "redis-py,redis", "--redis", redis_url])
    report = json.loads(result.stdout)
    assert "(--redis)" in report["redis"]
    plain = next(r for r in report["results"] if r["case"] == "redis-py RPUSH/BLPOP")
    assert plain["error"] is None and plain["skipped"] is None and plain["p50_us"] > 0
    assert set(client.keys("*")) == keys_before           # nothing of the bench's left in that Redis
    client.close()


def test_skipped_redis_without_a_server(monkeypatch):
    from edgeflow.cli import _benchnet
    monkeypatch.setattr(_benchnet.shutil, "which", lambda name: None)
    report = bench_cli.run_bench(["redis-py"], ["64"], BenchConfig.quick(), None, None)
    result = report["_results"][0]
    assert result.skipped == "no Redis (give --redis URL, or install redis-server)"
    assert "redis-server not installed" in report["redis"]


def test_bad_sizes_and_cases_exit_2():
    assert CliRunner().invoke(cli, ["bench", "--sizes", "16"]).exit_code == 2      # below the markers
    assert CliRunner().invoke(cli, ["bench", "--sizes", "axb"]).exit_code == 2
    assert CliRunner().invoke(cli, ["bench", "--cases", "shm-rt,carrier-pigeon"]).exit_code == 2


def test_the_default_matrix_fits_a_minute():
    """Default counts: (cases x sizes) two-process runs of at most latency_budget_s + burst_s each, plus the
    child's start; checked on the configuration rather than by running the minute-long bench."""
    cfg = bench_cli.default_config()
    two_process = (len(bench_cli.DEFAULT_CASES) - 2) * len(bench_cli.DEFAULT_SIZES)
    per_case = cfg.latency_budget_s + cfg.burst_s + cfg.warmup_n * cfg.pace_s + 0.5
    assert two_process * per_case < 55
