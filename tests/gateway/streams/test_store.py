"""The stream store against real databases: SQLite files and a throw-away PostgreSQL cluster (one schema,
numbered migrations, rows owned by their app), and where the settings put it."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading

import psycopg
import pytest

from edgeflow.config import state_dir
from edgeflow.errors import ConfigError
from edgeflow.gateway.streams import store as stores
from edgeflow.gateway.streams.store import (LATEST, MIGRATIONS, TABLE, VERSION_TABLE, PostgresStore,
                                            SqliteStore, StoreError, StreamRecord, store_for)


def rows(store, sql: str) -> list[tuple]:
    """Rows of a query on the store's database, through a connection of its own (what another client sees)."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(store.url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def test_crud_round_trips_every_field(backend, state_dir):
    with store_for("cams").open() as store:
        assert store.backend == backend
        assert store.list() == [] and store.counts() == (0, 0)
        params = {"grid_size": 16, "threshold": 1.5, "nested": {"list": [1, None, "x"]},
                  "text": "ünïcødé \u0000 nul \ud800 surrogate", "big": 10 ** 30}
        a = store.insert(StreamRecord.new("gate-1", "rtsp://u:pw@cam/1", params))
        b = store.insert(StreamRecord.new("gate-2", "file:///data/v.avi", {}, is_active=True))
        assert store.list() == [a, b]                               # oldest first, every field back
        assert store.get(a.id).params == params and store.get(b.id).is_active is True
        assert store.counts() == (2, 1)
        changed = store.update(a.id, name="gate-1b", params={"threshold": 2.0}, is_active=True)
        assert changed.name == "gate-1b" and changed.params == {"threshold": 2.0} and changed.is_active
        assert changed.created_at == a.created_at and changed.updated_at >= a.updated_at
        assert store.get(a.id) == changed and store.counts() == (2, 2)
        assert store.delete(b.id) is True and store.delete(b.id) is False
        assert store.get(b.id) is None and store.update(b.id, name="x") is None
        assert [r.id for r in store.list()] == [a.id]
        stored = rows(store, f"SELECT params FROM {TABLE}")
        assert json.loads(stored[0][0]) == {"threshold": 2.0}       # plain JSON text, readable by anyone
        assert stored[0][0].isascii()


def test_rows_have_one_owner_the_app(backend):
    with store_for("app-a").open() as a, store_for("app-b").open() as b:
        if backend == "sqlite":
            assert a.where != b.where                               # a file per app
        else:
            assert a.where == b.where                               # one database, shared
        mine = a.insert(StreamRecord.new("a1", "rtsp://a/1"))
        theirs = b.insert(StreamRecord.new("b1", "rtsp://b/1", is_active=True))
        assert a.list() == [mine] and b.list() == [theirs]
        assert a.get(theirs.id) is None and a.delete(theirs.id) is False
        assert a.update(theirs.id, is_active=False) is None
        assert b.get(theirs.id).is_active is True and a.counts() == (1, 0) and b.counts() == (1, 1)


def test_the_schema_is_reached_by_numbered_migrations_once(backend):
    store = store_for("mig")
    store._conn = store._connect()
    try:
        assert store.schema_version() == 0
        assert store.migrate(upto=1) == [1]                         # an older EdgeFlow's database
        assert store.schema_version() == 1
        store.insert(StreamRecord.new("old", "rtsp://old"))
        assert store.migrate() == [n for n, _, _ in MIGRATIONS if n > 1]
        assert store.schema_version() == LATEST and store.migrate() == []
        assert [r.name for r in store.list()] == ["old"]            # rows survive a migration
        assert rows(store, f"SELECT version FROM {VERSION_TABLE}") == [(LATEST,)]
    finally:
        store.close()
    with store_for("mig").open() as again:                          # opening again applies nothing
        assert again.schema_version() == LATEST and [r.name for r in again.list()] == ["old"]


def test_a_failed_migration_leaves_the_old_schema(backend, monkeypatch):
    with store_for("fail").open():
        pass
    broken = (*MIGRATIONS, (LATEST + 1, "a change that fails half-way",
                            (f"CREATE TABLE {TABLE}_new (x INTEGER)", "THIS IS NOT SQL")))
    monkeypatch.setattr(stores, "MIGRATIONS", broken)
    monkeypatch.setattr(stores, "LATEST", LATEST + 1)
    store = store_for("fail")
    with pytest.raises(StoreError, match="stream store .*: ") as err:
        store.open()
    assert "\n" not in str(err.value)
    monkeypatch.setattr(stores, "MIGRATIONS", MIGRATIONS)            # this EdgeFlow again
    monkeypatch.setattr(stores, "LATEST", LATEST)
    with store_for("fail").open() as store:
        assert store.schema_version() == LATEST
        if backend == "sqlite":
            tables = rows(store, "SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            tables = rows(store, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert f"{TABLE}_new" not in {t for (t,) in tables}          # its first statement was rolled back


def test_a_database_newer_than_this_edgeflow_is_refused(backend):
    with store_for("new").open() as store:
        store._execute(f"UPDATE {VERSION_TABLE} SET version = ?", (LATEST + 5,))
    with pytest.raises(StoreError) as err:
        store_for("new").open()
    assert f"schema version {LATEST + 5} is newer than this EdgeFlow knows ({LATEST}); upgrade EdgeFlow" \
        in str(err.value)


def test_two_gateways_migrating_one_database_at_once_apply_each_migration_once(backend):
    if backend == "sqlite":                   # one file per app; two processes of one app share it
        stores_ = [store_for("race") for _ in range(4)]
    else:
        stores_ = [store_for(f"race{i}") for i in range(4)]
    barrier = threading.Barrier(len(stores_))
    errors = []

    def go(store):
        try:
            store._conn = store._connect()
            barrier.wait(10)
            store.migrate()
        except BaseException as exc:           # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=go, args=(s,)) for s in stores_]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        assert all(s.schema_version() == LATEST for s in stores_)
        assert rows(stores_[0], f"SELECT COUNT(*) FROM {VERSION_TABLE}") == [(1,)]
    finally:
        for s in stores_:
            s.close()


def test_the_sqlite_file_is_the_owners_only(state_dir):
    with store_for("private").open() as store:
        store.insert(StreamRecord.new("cam", "rtsp://admin:secret@cam/1"))
    path = state_dir / "private.sqlite3"
    assert store.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600                # camera passwords inside
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_where_the_settings_put_the_store(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEFLOW_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "edgeflow"
    assert store_for("a").path == tmp_path / "xdg" / "edgeflow" / "a.sqlite3"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")         # the XDG rule: absolute paths only
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "edgeflow"
    monkeypatch.setenv("EDGEFLOW_STATE_DIR", str(tmp_path / "given"))
    assert store_for("a").path == tmp_path / "given" / "a.sqlite3"
    monkeypatch.setenv("EDGEFLOW_DB_URL", f"sqlite:///{tmp_path}/elsewhere.db")      # SQLAlchemy's form
    assert store_for("a").path == tmp_path / "elsewhere.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEFLOW_DB_URL", "sqlite:///rel/x.db")
    assert store_for("a").path.as_posix() == "rel/x.db"                              # the cwd's
    monkeypatch.setenv("EDGEFLOW_DB_URL", "postgresql://u:pw@db.local:5433/flows")
    pg = store_for("a")
    assert isinstance(pg, PostgresStore) and pg.where == "postgresql://u:***@db.local:5433/flows"
    for bad, why in (("mysql://u:pw@h/db", "unknown scheme mysql://"), ("sqlite://", "names no file")):
        monkeypatch.setenv("EDGEFLOW_DB_URL", bad)
        with pytest.raises(ConfigError, match=why) as err:
            store_for("a")
        assert "pw" not in str(err.value) and str(err.value).startswith("$EDGEFLOW_DB_URL=")


def test_an_unreachable_postgresql_is_one_line_without_its_password(monkeypatch):
    from tests.connectors._servers import free_port
    monkeypatch.setenv("EDGEFLOW_DB_URL", f"postgresql://u:hunter2@127.0.0.1:{free_port()}/db")
    monkeypatch.setattr(stores, "CONNECT_TIMEOUT", 2)
    with pytest.raises(StoreError) as err:
        store_for("a").open()
    text = str(err.value)
    assert text.startswith("stream store postgresql://u:***@127.0.0.1:") and "\n" not in text
    assert "hunter2" not in text


def test_a_postgresql_restart_is_survived_by_reconnecting(postgres, monkeypatch, tmp_path):
    from tests.connectors import _postgres
    cluster = _postgres.start(tmp_path / "own")
    try:
        monkeypatch.setenv("EDGEFLOW_DB_URL", cluster.new_database())
        with store_for("r").open() as store:
            record = store.insert(StreamRecord.new("cam", "rtsp://cam"))
            cluster.restart()                                        # every connection is cut
            assert store.get(record.id) == record                    # connected again, once
            with cluster.down():
                with pytest.raises(StoreError, match="stream store postgresql://"):
                    store.list()
            assert store.list() == [record]
    finally:
        cluster.stop()


def test_a_sqlite_file_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EDGEFLOW_STATE_DIR", str(blocker / "sub"))
    with pytest.raises(StoreError) as err:
        store_for("a").open()
    assert str(err.value).startswith(f"stream store {blocker / 'sub' / 'a.sqlite3'}: ")
    assert not os.path.exists(blocker / "sub")
