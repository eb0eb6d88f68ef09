"""Fixtures of the stream API tests: a state folder of the test's own (so nothing is written to the user's
~/.local/state), and a throw-away PostgreSQL cluster (tests/connectors/_postgres.py) shared by the tests of
this directory: started by the first test that asks for it (in ``pytest_runtest_setup``, before its fixtures,
so the leak check does not count the server as that test's child) and stopped when the run leaves this
directory. ``backend`` parametrizes a test over the store's two backends: it sets ``EDGEFLOW_DB_URL`` to a
fresh PostgreSQL database, or leaves it unset (SQLite in the state folder).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.connectors import _postgres

HERE = Path(__file__).resolve().parent


class _Cluster:
    """The directory's one PostgreSQL server (or why it could not start: raised again to each test)."""

    def __init__(self) -> None:
        self.cluster: _postgres.Cluster | None = None
        self.failure: BaseException | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def ensure(self) -> None:
        if self.cluster is not None or self.failure is not None:
            return
        self._dir = tempfile.TemporaryDirectory(prefix="edgeflow-test-streams-pg-")
        try:
            self.cluster = _postgres.start(Path(self._dir.name))
        except BaseException as exc:          # not installed (a skip) or broken: each test reports it
            self.failure = exc

    def get(self) -> _postgres.Cluster:
        if self.failure is not None:
            raise self.failure
        return self.cluster

    def stop(self) -> None:
        cluster, self.cluster, self.failure = self.cluster, None, None
        if cluster is not None:
            cluster.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


SHARED = _Cluster()


def _wants_postgres(item) -> bool:
    if "postgres" in item.fixturenames:
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("backend") == "postgresql"


def pytest_runtest_setup(item):
    if _wants_postgres(item):
        SHARED.ensure()


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or HERE not in Path(str(nextitem.path)).resolve().parents:
        SHARED.stop()


def pytest_sessionfinish(session, exitstatus):
    SHARED.stop()


@pytest.fixture
def postgres() -> _postgres.Cluster:
    """The shared PostgreSQL cluster (``new_database()`` gives a database of the test's own)."""
    return SHARED.get()


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch) -> Path:
    """EDGEFLOW_STATE_DIR in the test's temporary folder; no EDGEFLOW_DB_URL from the environment."""
    folder = tmp_path / "state"
    monkeypatch.setenv("EDGEFLOW_STATE_DIR", str(folder))
    monkeypatch.delenv("EDGEFLOW_DB_URL", raising=False)
    return folder


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch) -> str:
    """The store backend under test; with "postgresql" ``EDGEFLOW_DB_URL`` names a fresh database."""
    if request.param == "postgresql":
        monkeypatch.setenv("EDGEFLOW_DB_URL", SHARED.get().new_database())
    return request.param
