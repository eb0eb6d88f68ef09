"""Fixtures of the settings tests: a clean environment and an empty current folder for each test."""

from __future__ import annotations

import pytest

from edgeflow.config import SETTINGS


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No setting in the environment, the current folder an empty temp folder; returns that folder."""
    for s in SETTINGS:
        monkeypatch.delenv(s.name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
