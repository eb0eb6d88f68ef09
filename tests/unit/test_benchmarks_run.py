"""The benchmarks in benchmarks/ still run and still pass their own checks (so they cannot rot unnoticed).

Runs ``pytest benchmarks --benchmark-disable`` in a subprocess: each benchmark body runs once, in the fast mode
of benchmarks/conftest.py (one frame size, tiny counts), with the assertions every benchmark makes about its
answers. Benchmarks that need redis-server start their own; without one they skip, except under CI (env
``CI`` set), where a missing tool fails.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 240                    # about 20 s on the 2-core development machine; generous for a loaded one


@pytest.mark.timeout(TIMEOUT_S + 30)                 # the suite's default of 120 s would cut it first
def test_benchmarks_pass_in_fast_mode():
    env = {**os.environ, "EDGEFLOW_BENCH_FAST": "1"}
    env.pop("EDGEFLOW_BENCH_QUICK", None)
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "-q", "--benchmark-disable", "-p", "no:cacheprovider",
           "-rs"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"pytest benchmarks did not finish within {TIMEOUT_S} s:\n{exc.stdout or ''}{exc.stderr or ''}")
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"pytest benchmarks failed (exit {proc.returncode}):\n{tail}"
    assert " passed" in proc.stdout and " error" not in proc.stdout, tail
