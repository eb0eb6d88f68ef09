"""Where the gateway keeps its streams: SQLite (stdlib ``sqlite3``) by default, PostgreSQL (psycopg 3) when
``EDGEFLOW_DB_URL=postgresql://...`` says so. One schema for both, changed only by numbered migrations.

    store = open_store("vector-flow")          # settings decide the backend and the place
    store.insert(StreamRecord.new("cam-1", "rtsp://cam-1/live", {"grid_size": 16}))
    store.list(); store.get(id); store.update(id, is_active=True); store.delete(id); store.counts()
    store.close()

The calls are synchronous and not thread-safe: the gateway runs every one of them on a single thread of its
own (edgeflow.gateway.streams.service), never on the event loop.

Place: ``EDGEFLOW_DB_URL`` when set (``postgresql://user:pass@host:5432/db``, or ``sqlite:////abs/file``
and ``sqlite:///relative/file`` as SQLAlchemy writes them),
else ``<EDGEFLOW_STATE_DIR>/<app>.sqlite3`` (edgeflow.config.state_dir(): ``$XDG_STATE_HOME/edgeflow`` or
``~/.local/state/edgeflow``). The SQLite file and its folder are made readable by their owner only (0600 /
0700): stream URLs may carry camera passwords.

Ownership: every row names the app that owns it (``app``); a store only ever reads and writes its own app's
rows, so several apps may share one PostgreSQL database.

Schema (``edgeflow_schema_version`` holds the version reached; each migration runs once, in order, inside one
transaction with the version update, so a crash leaves the old or the new schema, never half of one):

    1   edgeflow_streams (id, app, name, url, params JSON text, is_active, created_at, updated_at: ISO 8601)
    2   index edgeflow_streams_app (app, created_at): the list query

A database whose version is newer than MIGRATIONS knows is refused (StoreError): an older EdgeFlow must not
write rows a newer schema would misread.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sqlite3
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Iterable

from edgeflow.config import settings, state_dir
from edgeflow.connectors._base import redact
from edgeflow.errors import ConfigError

TABLE = "edgeflow_streams"
VERSION_TABLE = "edgeflow_schema_version"
CONNECT_TIMEOUT = 5          # seconds to reach PostgreSQL
BUSY_TIMEOUT_MS = 5000       # SQLite: how long a writer waits for another process's lock
PG_LOCK_KEY = 0x45444746     # "EDGF": the advisory lock two gateways migrating one database at once take

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "the streams table", (
        f"CREATE TABLE {TABLE} ("
        " id TEXT PRIMARY KEY,"
        " app TEXT NOT NULL,"
        " name TEXT NOT NULL,"
        " url TEXT NOT NULL,"
        " params TEXT NOT NULL,"
        " is_active BOOLEAN NOT NULL DEFAULT FALSE,"
        " created_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL)",)),
    (2, "an index for listing one app's streams", (
        f"CREATE INDEX {TABLE}_app ON {TABLE} (app, created_at)",)),
)
"""(version, what it does, statements): the same SQL for SQLite and PostgreSQL. Append, never edit."""

LATEST = MIGRATIONS[-1][0]
COLUMNS = ("id", "name", "url", "params", "is_active", "created_at", "updated_at")


class StoreError(Exception):
    """The store cannot be opened or used (one line naming the database, passwords masked)."""


_last_now = [0]              # microseconds of the last utc_now(): each call is later than the one before


def utc_now() -> str:
    """Now as ISO 8601 UTC with microseconds (``2024-05-01T12:00:00.123456Z``), later than any earlier call
    in this process, so that streams made one after the other list in that order."""
    micros = max(time.time_ns() // 1000, _last_now[0] + 1)
    _last_now[0] = micros
    return iso(micros / 1e6, "microseconds")


def iso(epoch: float, timespec: str = "milliseconds") -> str:
    """A Unix time as ISO 8601 UTC with a ``Z`` (milliseconds, or ``timespec``)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class StreamRecord:
    """One stored stream. ``params`` is a JSON object (a dict); times are ISO 8601 UTC texts."""

    id: str
    name: str
    url: str
    params: dict
    is_active: bool
    created_at: str
    updated_at: str

    @classmethod
    def new(cls, name: str, url: str, params: dict | None = None, is_active: bool = False) -> "StreamRecord":
        """A record with a fresh UUID, made now."""
        now = utc_now()
        return cls(str(uuid.uuid4()), name, url, dict(params or {}), bool(is_active), now, now)

    def replace(self, **changes: Any) -> "StreamRecord":
        """A copy with ``changes`` and ``updated_at`` now."""
        return dataclasses.replace(self, **changes, updated_at=utc_now())


def _params_text(params: dict) -> str:
    # ASCII only: a NUL or a lone surrogate inside params would be refused by PostgreSQL's TEXT (or by
    # UTF-8 itself); escaped, every JSON value fits both databases
    return json.dumps(params, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


class Store:
    """The SQL both backends share; subclasses connect (see the module docstring for the calls)."""

    backend = ""
    placeholder = "?"

    def __init__(self, app: str, where: str) -> None:
        self.app = app
        self.where = where                       # the database as messages name it (no password)
        self._conn: Any = None

    # -- connection (subclasses) -----------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin_migration(self, cur: Any) -> None:
        """Start the migration's transaction, holding whatever lock keeps a second migrator out."""
        raise NotImplementedError

    def _errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    # -- life ------------------------------------------------------------------------------------------------
    def open(self) -> "Store":
        """Connect and bring the schema up to date.

        Raises:
            StoreError: unreachable, refused, or a schema newer than this EdgeFlow's.
        """
        try:
            self._conn = self._connect()
            self.migrate()
        except StoreError:
            self.close()
            raise
        except self._errors() as exc:
            self.close()
            raise StoreError(f"stream store {self.where}: {_first_line(exc)}") from None
        return self

    def close(self) -> None:
        """Disconnect (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except self._errors():
                pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ----------------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The version the database is at (0: no EdgeFlow table yet)."""
        cur = self._conn.cursor()
        try:
            cur.execute(self._sql(f"SELECT version FROM {VERSION_TABLE}"))
            row = cur.fetchone()
        except self._errors():
            self._rollback()
            return 0
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def migrate(self, upto: int | None = None) -> list[int]:
        """Apply every migration after the database's version up to ``upto`` (the latest); returns those
        applied.

        Raises:
            StoreError: the database's version is newer than ``LATEST``, or a migration failed (rolled back).
        """
        upto = LATEST if upto is None else upto
        cur = self._conn.cursor()
        applied: list[int] = []
        try:
            self._begin_migration(cur)
            cur.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
            cur.execute(f"SELECT version FROM {VERSION_TABLE}")
            row = cur.fetchone()
            version = int(row[0]) if row else 0
            if row is None:
                cur.execute(self._sql(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)"), (0,))
            if version > LATEST:
                raise StoreError(f"stream store {self.where}: schema version {version} is newer than this "
                                 f"EdgeFlow knows ({LATEST}); upgrade EdgeFlow")
            for number, _what, statements in MIGRATIONS:
                if version < number <= upto:
                    for statement in statements:
                        cur.execute(statement)
                    applied.append(number)
            if applied:
                cur.execute(self._sql(f"UPDATE {VERSION_TABLE} SET version = ?"), (applied[-1],))
            cur.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        finally:
            cur.close()
        return applied

    # -- rows ------------------------------------------------------------------------------------------------
    def list(self) -> list[StreamRecord]:
        """This app's streams, oldest first."""
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE app = ? ORDER BY created_at, id",
                           (self.app,))
        return [self._record(row) for row in rows]

    def get(self, stream_id: str) -> StreamRecord | None:
        """One of this app's streams, or None."""
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE app = ? AND id = ?",
                           (self.app, stream_id))
        return self._record(rows[0]) if rows else None

    def insert(self, record: StreamRecord) -> StreamRecord:
        """Store a new stream (its id must be new)."""
        self._execute(f"INSERT INTO {TABLE} (id, app, name, url, params, is_active, created_at, updated_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (record.id, self.app, record.name, record.url, _params_text(record.params),
                       bool(record.is_active), record.created_at, record.updated_at))
        return record

    def save(self, record: StreamRecord) -> bool:
        """Write every field of an existing stream; False when it is not (or no longer) stored."""
        n = self._execute(f"UPDATE {TABLE} SET name = ?, url = ?, params = ?, is_active = ?, updated_at = ? "
                          "WHERE app = ? AND id = ?",
                          (record.name, record.url, _params_text(record.params), bool(record.is_active),
                           record.updated_at, self.app, record.id))
        return n > 0

    def update(self, stream_id: str, **changes: Any) -> StreamRecord | None:
        """Change some fields (name, url, params, is_active) of a stream; the new record, or None."""
        record = self.get(stream_id)
        if record is None:
            return None
        record = record.replace(**changes)
        return record if self.save(record) else None

    def delete(self, stream_id: str) -> bool:
        """Remove a stream; False when there was none."""
        return self._execute(f"DELETE FROM {TABLE} WHERE app = ? AND id = ?", (self.app, stream_id)) > 0

    def counts(self) -> tuple[int, int]:
        """(streams, active streams) of this app."""
        rows = self._query(f"SELECT COUNT(*), SUM(CASE WHEN is_active THEN 1 ELSE 0 END) FROM {TABLE} "
                           "WHERE app = ?", (self.app,))
        total, active = rows[0]
        return int(total or 0), int(active or 0)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _query(self, text: str, args: Iterable[Any] = ()) -> list[tuple]:
        return self._run(text, tuple(args), fetch=True)

    def _execute(self, text: str, args: Iterable[Any] = ()) -> int:
        return self._run(text, tuple(args), fetch=False)

    def _run(self, text: str, args: tuple, fetch: bool) -> Any:
        if self._conn is None:
            raise StoreError(f"stream store {self.where}: closed")
        cur = self._conn.cursor()
        try:
            cur.execute(self._sql(text), args)
            return cur.fetchall() if fetch else cur.rowcount
        except self._errors() as exc:
            self._rollback()
            raise StoreError(f"stream store {self.where}: {_first_line(exc)}") from None
        finally:
            cur.close()

    def _rollback(self) -> None:
        # a statement, not conn.rollback(): in autocommit mode the drivers' rollback() does nothing, and the
        # migration's transaction was begun with a statement too
        if self._conn is None:
            return
        try:
            self._conn.execute("ROLLBACK")
        except self._errors():
            pass                                        # no transaction open: nothing to undo

    @staticmethod
    def _record(row: tuple) -> StreamRecord:
        values = dict(zip(COLUMNS, row))
        values["params"] = json.loads(values["params"])
        values["is_active"] = bool(values["is_active"])
        return StreamRecord(**values)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where} app={self.app!r}>"


class SqliteStore(Store):
    """The streams in one SQLite file (WAL journal: readers never wait for the writer)."""

    backend = "sqlite"

    def __init__(self, app: str, path: Path) -> None:
        super().__init__(app, str(path))
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # made before SQLite opens it, owner-only: the URLs in it may hold camera passwords
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise StoreError(f"stream store {self.where}: {exc.strerror or exc}") from None
        # autocommit (isolation_level None): each statement commits; migrations BEGIN explicitly
        # check_same_thread off: the gateway makes and uses it on its one store thread, but may close it from
        # another once that thread is gone
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")    # WAL + NORMAL: an app crash loses no commit
        return conn

    def _begin_migration(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")                # the write lock now: a second gateway waits its turn

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)


def _wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (it stays so). Switching needs the file to itself and SQLite does not wait
    for that (no busy handler): while another connection holds a lock, try again, unless it is WAL already."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        for pragma in ("PRAGMA journal_mode = WAL", "PRAGMA journal_mode"):
            try:
                if conn.execute(pragma).fetchone()[0].lower() == "wal":
                    return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.01)                                 # another process's lock: nothing to wait on


class PostgresStore(Store):
    """The streams in a PostgreSQL database (psycopg 3, one connection, reconnected when it broke)."""

    backend = "postgresql"
    placeholder = "%s"

    def __init__(self, app: str, url: str) -> None:
        super().__init__(app, redact(url))
        self.url = url

    def _connect(self) -> Any:
        import psycopg
        return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name=f"edgeflow-gateway-{self.app}"[:63])

    def _begin_migration(self, cur: Any) -> None:
        cur.execute("BEGIN")
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK_KEY,))

    def _errors(self) -> tuple[type[BaseException], ...]:
        import psycopg
        return (psycopg.Error,)

    def _run(self, text: str, args: tuple, fetch: bool) -> Any:
        # a server restart breaks the connection: connect again once and retry (every statement here is a
        # single autocommitted one, so a retry never applies half of something)
        if self._conn is not None and self._conn.closed:
            self._reconnect()
        try:
            return super()._run(text, args, fetch)
        except StoreError:
            if self._conn is None or not self._conn.closed:
                raise
            self._reconnect()
            return super()._run(text, args, fetch)

    def _reconnect(self) -> None:
        try:
            self._conn = self._connect()
        except self._errors() as exc:
            raise StoreError(f"stream store {self.where}: {_first_line(exc)}") from None


def store_for(app: str) -> Store:
    """The store the settings name for ``app`` (not opened yet): ``EDGEFLOW_DB_URL``, else SQLite in the
    state folder.

    Raises:
        ConfigError: ``EDGEFLOW_DB_URL`` is not a postgresql:// or sqlite:/// URL.
    """
    url = settings.EDGEFLOW_DB_URL
    if not url:
        return SqliteStore(app, state_dir() / f"{app}.sqlite3")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(app, url)
    if scheme == "sqlite":
        # SQLAlchemy's form: sqlite:///relative/file, sqlite:////absolute/file
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)[1:]
        if not path:
            raise ConfigError(f"$EDGEFLOW_DB_URL={redact(url)!r}: names no file "
                              "(sqlite:////path/file.sqlite3)")
        return SqliteStore(app, Path(path).expanduser())
    shown = scheme + "://" if scheme else "(none)"
    raise ConfigError(f"$EDGEFLOW_DB_URL={redact(url)!r}: unknown scheme {shown}"
                      " (expected postgresql://user:pass@host/db or sqlite:////path/file.sqlite3)")


def exists(store: Store) -> bool:
    """Whether the store has anything to read yet (a PostgreSQL database always may; a SQLite file only once
    made): reads need not create a file nobody wrote to."""
    return not isinstance(store, SqliteStore) or store.path.exists()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
