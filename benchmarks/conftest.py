"""Benchmarks: `pytest benchmarks --benchmark-only`. A plain `pytest` never collects them (testpaths: tests/).

Collects ``bench_*.py`` when pytest walks this folder (its default pattern would skip them; a file named on
the command line is collected by pytest itself), and lets a checkout that is not pip-installed import
edgeflow.

Fast mode, so the benchmarks cannot rot unnoticed (tests/unit/test_benchmarks_run.py runs it):
``EDGEFLOW_BENCH_FAST=1``, or ``--benchmark-disable`` (which sets it: a disabled benchmark runs its body
once and times nothing, so there is no point in large sizes). Each module then trims its sizes and counts to
what checks that every body still runs and still checks its answers; figures from it mean nothing.
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # spawned benchmark children inherit sys.path
FAST_ENV = "EDGEFLOW_BENCH_FAST"


def pytest_configure(config: pytest.Config) -> None:
    # before collection: the modules read the switch when they are imported
    if config.getoption("benchmark_disable", default=False):
        os.environ[FAST_ENV] = "1"


def pytest_collect_file(file_path: pathlib.Path, parent: pytest.Collector) -> pytest.Module | None:
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
