"""Benchmarks: `pytest benchmarks --benchmark-only` (a plain `pytest` never collects them: testpaths is tests/).

Collects ``bench_*.py`` (pytest's default pattern would skip them), lets a checkout that is not pip-installed
import edgeflow, and fails a benchmark that leaves a segment of its bench app or a child process behind.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # spawned consumers inherit sys.path

from edgeflow.runtime import bench  # noqa: E402


def pytest_collect_file(file_path: pathlib.Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After each benchmark: no /dev/shm segment of this process's bench app and no child process."""
    yield
    segments, children = bench.leftover_segments(), bench.live_children()
    assert not segments, f"segments left behind: {segments}"
    assert not children, f"child processes left behind: {children}"
