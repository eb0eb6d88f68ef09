"""Fixtures of the pipeline tests."""

from __future__ import annotations

import sys

import pytest

from ._pl import EXAMPLES, HERE


@pytest.fixture(autouse=True)
def local_modules(tmp_path):
    """Forget the modules a test's pipeline files imported from next to them (examples' main.py, a tmp
    folder's nodes.py) and the folders put on sys.path for them: the next test may name another main.py."""
    before, path = set(sys.modules), list(sys.path)
    yield
    roots = (str(EXAMPLES), str(tmp_path), str(HERE / "apps"))
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith(roots):
            del sys.modules[name]
    sys.path[:] = path
