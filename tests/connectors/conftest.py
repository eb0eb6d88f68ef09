"""Servers for the connector tests: real mosquitto, PostgreSQL and InfluxDB 1.x processes on free loopback
ports, data in temporary folders (never the services a machine runs on the standard ports).

Fixtures ``mqtt_broker``, ``postgres`` and ``influxdb`` give a server shared by the tests of this directory
(started lazily in ``pytest_runtest_setup`` of the first test that asks for it, before its fixtures, so the
leak check of tests/conftest.py does not count it as that test's child; stopped when the run leaves this
directory, since tests elsewhere check that this process has no children). Fault tests start servers of their
own from the modules ``_mosquitto``, ``_postgres`` and ``_influx`` and stop them before they end.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
KINDS = {"mqtt_broker": "_mosquitto", "postgres": "_postgres", "influxdb": "_influx"}   # fixture -> module


class SharedServers:
    """One server per kind, for the tests of this directory."""

    def __init__(self) -> None:
        self.servers: dict[str, object] = {}
        self.failures: dict[str, BaseException] = {}
        self._dir: tempfile.TemporaryDirectory | None = None

    def ensure(self, fixture: str) -> None:
        if fixture in self.servers or fixture in self.failures:
            return
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="edgeflow-test-connectors-")
        directory = Path(self._dir.name) / fixture
        directory.mkdir()
        module = importlib.import_module(f"{__package__}.{KINDS[fixture]}")
        try:
            self.servers[fixture] = module.start(directory)
        except BaseException as exc:         # a skip (not installed) or a failure: the test reports it
            self.failures[fixture] = exc

    def get(self, fixture: str):
        if fixture in self.failures:
            raise self.failures[fixture]
        return self.servers[fixture]

    def stop(self) -> None:
        servers, self.servers = self.servers, {}
        self.failures.clear()
        for server in servers.values():
            server.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


SHARED = SharedServers()


def pytest_runtest_setup(item):
    for fixture in KINDS:
        if fixture in item.fixturenames:
            SHARED.ensure(fixture)


def pytest_runtest_teardown(item, nextitem):
    """Stop the shared servers when the next test is not one of this directory (or there is none)."""
    if nextitem is None or HERE not in Path(str(nextitem.path)).resolve().parents:
        SHARED.stop()


def pytest_sessionfinish(session, exitstatus):
    SHARED.stop()


@pytest.fixture
def mqtt_broker():
    """The shared mosquitto (``_mosquitto.Broker``: ``.url``, ``.port``)."""
    return SHARED.get("mqtt_broker")


@pytest.fixture
def postgres():
    """The shared PostgreSQL cluster (``_postgres.Cluster``: ``.url`` of a database of its own)."""
    return SHARED.get("postgres")


@pytest.fixture
def influxdb():
    """The shared InfluxDB 1.x (``_influx.Influx``: ``.url``)."""
    return SHARED.get("influxdb")
