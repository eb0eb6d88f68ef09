"""Benchmarks: `pytest benchmarks --benchmark-only`. A plain `pytest` never collects them (testpaths: tests/).

Collects ``bench_*.py`` when pytest walks this folder (its default pattern would skip them; a file named on
the command line is collected by pytest itself), and lets a checkout that is not pip-installed import
edgeflow.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # spawned benchmark children inherit sys.path


def pytest_collect_file(file_path: pathlib.Path, parent: pytest.Collector) -> pytest.Module | None:
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
