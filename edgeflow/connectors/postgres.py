"""``PostgresSink``: frames as rows of a PostgreSQL table (psycopg 3), batched, exactly once.

    app.node(PostgresSink, name="db", url="postgresql://user@127.0.0.1:5432/db", table="estimates")

The table, when missing, is created from the first dict message (or from ``schema``). A batch is written
with multi-row ``INSERT ... VALUES (..), (..) ON CONFLICT (topic, ts, frame_id, idx) DO NOTHING`` statements
(up to MULTI_ROW_MAX rows each: one statement in autocommit, or several sent together in one transaction), and
its frames are acknowledged to their ring only after the COMMIT: a frame redelivered after a crash finds its
rows there already and adds nothing. While the database is away the same batch is retried with back-off and
``consume()`` waits, so frames queue upstream (DURABLE back-pressure) instead of being lost.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar

import numpy as np
import psycopg
from psycopg import sql

from edgeflow.connectors import _base
from edgeflow.connectors._batch import Batch
from edgeflow.connectors._rows import flatten, payload_items, plain, user_meta
from edgeflow.errors import ConfigError
from edgeflow.nodes.base import SinkNode

KEY = ("frame_id", "topic", "ts", "idx")
UNIQUE = ("topic", "ts", "frame_id", "idx")   # the key index's order: serves "WHERE topic = .. AND ts > .."
EXTRA = "extra"
OWN = KEY + (EXTRA,)
KEY_DDL = "frame_id bigint NOT NULL, topic text NOT NULL, ts timestamptz NOT NULL, idx integer NOT NULL"
MAX_COLUMNS = 200             # field columns made from a first message; its further fields go to extra
MAX_NAME = 63                 # PostgreSQL's identifier limit (bytes): a longer field name goes to extra
SQL_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\s*\[\s*\])*$")
CHANGED = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
           psycopg.errors.InvalidColumnReference)      # the table changed under us: look at it again
BACKOFF = (0.25, 5.0)         # seconds: first retry, cap (a database back up is written to within 5 s)
MULTI_ROW_MAX = 64            # rows per multi-row INSERT (_multi_row); a bigger batch is several, pipelined
LOG_AGAIN = (100, 1000)       # a bad-row problem is logged first, then at these counts and every 1000th
# libpq's words for a login that no retry can fix (psycopg gives connection errors no SQLSTATE)
CONFIG_WORDS = ("password authentication failed", "no password supplied", "authentication failed",
                "does not exist", "no pg_hba.conf entry", "not permitted to log in", "permission denied",
                "invalid connection option", "invalid uri", "invalid sslmode", "invalid integer value")


class PostgresSink(SinkNode):
    """Writes every frame as rows of a PostgreSQL table.

    Guarantee: exactly once into the table across a sink crash or a database outage (a unique key on
    (topic, ts, frame_id, idx) with ``ON CONFLICT DO NOTHING``; frames acknowledged only after the COMMIT).

    Options:
        url: ``postgresql://user[:password]@host[:port]/database`` (or ``postgres://``; libpq query
            parameters such as ``sslmode`` work). The password is never logged (``***``).
        table: ``"name"`` or ``"schema.name"``, used exactly as written (quoted: case kept).
        batch_size: rows per transaction (default 500). batch_ms: the oldest row waits at most this long
            (default 200).
        schema: ``{"column": "SQL type"}``, the field columns (so created when the table is missing); or
            columns: ``["a", "b"]``, the top-level fields that get a column, typed from the first message.
        create: create a missing table (default True); with False a missing table stops the node.
        connect_timeout: seconds (default 5).

    Columns: ``frame_id bigint``, ``topic text``, ``ts timestamptz`` (the frame's capture time),
    ``idx integer`` (the message's place in a list of messages, else 0); one column per top-level field of the
    first dict message (double precision, bigint, boolean, text, bytea; jsonb for lists, dicts, arrays and
    nulls); and ``extra jsonb``: fields without a column (a later message's new fields, a field named like one
    of the sink's own columns) and the frame's meta as ``meta.*``. Another payload is one row, field ``data``.
    An existing table is used as it is: its columns but the key and ``extra`` are the field columns (one
    with a default, identity or generated is left to the database unless ``schema``/``columns`` name it).

    Flush policy: a batch is written when it has ``batch_size`` rows or holds ``max_held_frames`` (24) frames
    (so with one row per frame a transaction has at most 24 rows), when its oldest row is ``batch_ms`` old
    (checked on every frame and about every 0.1 s while none comes), and at the end of the stream.

    Errors: a login no retry can fix (bad password, unknown role or database), a table without the key
    columns or their unique key, a ``schema``/``columns`` column the table lacks, or a missing table with
    ``create=False`` stop the node when first met (a ConfigError: not restarted). A value its column cannot
    take (a string for a number, NaN in JSON, a NUL in text, too long for a varchar...) makes a bad row: one
    log line naming the node, table and column, counted in ``bad_rows``; the rest of the batch is committed.
    Anything else (database unreachable, restarting, full; a table changed mid-run) is retried with back-off
    (the node's statistics go on meanwhile) until it works or the node is stopped. Statistics: the
    connection's state; events ``rows``, ``duplicates`` (rows already there: redelivered), ``bad_rows``,
    ``retries``, ``fields_dropped``.
    """

    reports_connections: ClassVar[bool] = True   # /readyz waits for its connection state (_base.py)

    max_held_frames: ClassVar[int] = 24
    OPTIONS: ClassVar[tuple[str, ...]] = ("url", "table", "batch_size", "batch_ms", "schema", "columns",
                                          "create", "connect_timeout")
    url: str = ""
    table: str = ""
    batch_size: int = 500
    batch_ms: float = 200
    schema: dict | None = None
    columns: list | None = None
    create: bool = True
    connect_timeout: float = 5.0

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Every option at registration: a one-line ConfigError naming the node and the option."""
        _base.unknown_options(name, options, cls.OPTIONS)
        _base.opt_url(name, options, "url", ("postgresql", "postgres"))
        table_parts(name, _base.opt_str(name, options, "table", required=True))
        _base.opt_number(name, options, "batch_size", low=1, high=100_000, integer=True)
        _base.opt_number(name, options, "batch_ms", low=0, high=600_000)
        _base.opt_bool(name, options, "create", default=True)
        _base.opt_number(name, options, "connect_timeout", low=0.5, high=300)
        schema, columns = options.get("schema"), options.get("columns")
        if schema is not None and columns is not None:
            raise _base.option_error(name, "schema", "give schema or columns, not both")
        if schema is not None:
            if not isinstance(schema, dict) or not schema:
                raise _base.option_error(name, "schema", f"expected a dict column -> SQL type: {schema!r}")
            for column, kind in schema.items():
                check_column(name, "schema", column)
                if not isinstance(kind, str) or not SQL_TYPE.match(kind.strip()):
                    raise _base.option_error(name, "schema", f"column {column!r}: {kind!r} is not an SQL "
                                                             "type (e.g. 'double precision', 'varchar(20)')")
        if columns is not None:
            if not isinstance(columns, (list, tuple)) or not columns or len(set(columns)) != len(columns):
                raise _base.option_error(name, "columns", f"expected a list of distinct names: {columns!r}")
            for column in columns:
                check_column(name, "columns", column)

    # -- life ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Connect (retrying while the database is unreachable); check the table, or create it from schema."""
        self._stopping = getattr(self.context, "stopping", None) or threading.Event()
        self._ident = sql.Identifier(*table_parts(self.name, self.table))
        self._shown = ".".join(table_parts(self.name, self.table))
        self._state = _base.ConnectionState(self, self.url)
        self._batch = Batch(self, int(self.batch_size), float(self.batch_ms) / 1000.0)
        self._backoff = _base.Backoff(*BACKOFF)
        self._conn: psycopg.Connection | None = None
        self._fields: list | None = None     # (column, types passed as they are, converter), once loaded
        self._version = 0                    # +1 per load of the table: a retried batch is rebuilt for it
        self._outage: tuple[float, int] | None = None          # (since, retries) while down
        self._logged: dict[Any, int] = {}
        self._abandoned: list = []           # held frames never written (stopping): never acknowledged
        self._want = list(self.schema.items()) if self.schema else None
        if not self._connect_at_start():
            return
        try:
            found = self._load(self._conn)
            if not found and not self.create:
                raise _TableError("table", f"table {self._shown!r} does not exist (create=False)")
            if not found and self._want:
                self._create(self._conn, self._want)
                self._load(self._conn)
        except _TableError as exc:
            self._close()
            raise _base.option_error(self.name, exc.option, exc.why) from None
        except psycopg.Error as exc:          # gone again already: the first frame looks again, retrying
            self.log.warning("node '%s': %s: %s; the table is looked at with the first frame", self.name,
                             self._state.target, _why(exc))
            self._close()

    def consume(self, data: Any) -> None:
        """Add the frame's rows to the batch and write the batch when it is due. The messages are kept as
        they are (no copy): the frame stays held until they are written, so its arrays still view its slot."""
        frame = self.current_frame
        if self._fields is None and not self._retrying(lambda conn: self._first_table(conn, data), 0):
            self._keep_unwritten()
            return
        fid, topic, meta = frame.frame_id, frame.topic or "", _meta(frame.meta)
        ts = datetime.fromtimestamp(frame.timestamp, timezone.utc)
        self._batch.add([(fid, topic, ts, idx, item, meta) for idx, item in enumerate(payload_items(data))])
        if self._batch.ready():
            self._flush()

    def idle(self) -> None:
        """A batch whose time is up is written even when no frame comes."""
        if self._fields is not None and self._batch.ready():
            self._flush()

    def teardown(self) -> None:
        """Write what is left, then close the connection."""
        try:
            batch = getattr(self, "_batch", None)
            if batch is not None and (batch.rows or batch.held) and self._fields is not None:
                self._flush()
        finally:
            if getattr(self, "_state", None) is not None:
                self._close()

    # -- writing ---------------------------------------------------------------------------------------------
    def _flush(self) -> None:
        rows, held = self._batch.take()
        if self._write(rows):
            Batch.acknowledge(held)
        else:
            self._abandoned.extend(held)      # stopping: not written, so never acknowledged

    def _write(self, rows: list) -> bool:
        """Commit ``rows`` in one transaction, retrying until it works; False only when stopping."""
        built: dict[str, Any] = {"version": -1}
        done: dict[str, Any] = {}

        def attempt(conn: psycopg.Connection) -> None:
            if built["version"] != self._version:      # first try, or the table was loaded again since
                built["tuples"], built["bad"] = self._build(rows)
                built["version"] = self._version
            done["inserted"], done["bad"] = self._insert(conn, built["tuples"])

        if not rows:
            return True
        if not self._retrying(attempt, len(rows)):
            return False
        bad = built["bad"] + done["bad"]
        for row, column, why in bad:
            self._bad_row(row, column, why)
        _base.count(self, "rows", done["inserted"])
        written = len(built["tuples"]) - len(done["bad"])
        if written > done["inserted"]:                  # redelivered after a crash: in the table already
            _base.count(self, "duplicates", written - done["inserted"])
        if bad:
            _base.count(self, "bad_rows", len(bad))
        return True

    def _insert(self, conn: psycopg.Connection, tuples: list) -> tuple[int, list]:
        """(rows inserted, bad rows): one executemany and COMMIT. When the server refuses a row the batch is
        sent again row by row, a savepoint each, in one transaction: only the refused rows are left out."""
        if not tuples:
            return 0, []
        try:
            if len(tuples) <= MULTI_ROW_MAX:
                # one statement is a transaction of its own: in autocommit it is one round trip, where BEGIN,
                # INSERT and COMMIT are three (rows in the table exactly when it returns, all or none)
                conn.autocommit = True
                try:
                    with psycopg.RawCursor(conn) as cur:          # $n placeholders: nothing to parse
                        cur.execute(self._multi_row(len(tuples)), [v for values in tuples for v in values])
                        return cur.rowcount, []
                finally:
                    if not conn.closed:
                        conn.autocommit = False
            # more: multi-row statements of MULTI_ROW_MAX rows, sent together (pipeline mode) in one
            # transaction: one round trip (measured, 500 rows: 2-2.5x executemany's rows/s)
            cursors = []
            with conn.pipeline():
                for start in range(0, len(tuples), MULTI_ROW_MAX):
                    part = tuples[start:start + MULTI_ROW_MAX]
                    cur = psycopg.RawCursor(conn)
                    cursors.append(cur)
                    cur.execute(self._multi_row(len(part)), [v for values in part for v in values])
                conn.commit()
            inserted = sum(cur.rowcount for cur in cursors)
            for cur in cursors:
                cur.close()
            return inserted, []
        except (psycopg.DataError, psycopg.IntegrityError):
            conn.rollback()
        inserted, bad = 0, []
        with conn.transaction(), conn.cursor() as cur:
            for values in tuples:
                try:
                    with conn.transaction():
                        cur.execute(self._statement, values)
                    inserted += cur.rowcount
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    bad.append((values, exc.diag.column_name, _why(exc)))
        return inserted, bad

    def _multi_row(self, n: int) -> str:
        """``INSERT ... VALUES (..), (..) ... ON CONFLICT DO NOTHING`` for ``n`` rows: one statement for a
        small batch (measured, 24 rows: 1.2x the rows/s of ``executemany``, which sends one per row, and one
        round trip in autocommit instead of three; from a few hundred rows on executemany is faster). Kept per
        row count (psycopg prepares what repeats), with PostgreSQL's own ``$n`` placeholders for a RawCursor:
        psycopg does not cache the conversion of ``%s`` in statements over 4 KiB, and parsed it per batch)."""
        text = self._multi.get(n)
        if text is None:
            head, width, tail = self._parts
            rows = ", ".join("(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                             for r in range(n))
            text = self._multi[n] = f"{head} VALUES {rows} {tail}"
        return text

    def _retrying(self, action: Callable[[psycopg.Connection], None], rows: int) -> bool:
        """Run ``action(connection)`` until it succeeds, with back-off between tries (each counted in
        ``retries``, the connection's state down with the error meanwhile); False when stopping."""
        while True:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._close()
                    self._conn = self._connect()
                action(self._conn)
                break
            except ConfigError:
                raise                                   # ends the node (the runtime does not restart it)
            except Exception as exc:                    # every failure is retried: nothing accepted is lost
                why = exc.why if isinstance(exc, _TableError) else _why(exc)
                if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                    self._close()
                else:
                    self._rollback()
                if isinstance(exc, CHANGED) and self._conn is not None:
                    try:
                        self._reload()
                    except Exception as again:          # noqa: BLE001 - retried like the first error
                        why = again.why if isinstance(again, _TableError) else _why(again)
                        self._rollback()
                self._went_down(why, rows, exc)
                if self._wait(self._backoff.next()):
                    return False
        self._backoff.reset()
        self._state.up()
        if self._outage is not None:
            since, retries = self._outage
            self._outage = None
            self.log.warning("node '%s': %s is up again after %.1f s (%d retries); writing on", self.name,
                             self._state.target, time.monotonic() - since, retries)
        return True

    def _went_down(self, why: str, rows: int, exc: Exception) -> None:
        _base.count(self, "retries")
        first = self._outage is None
        self._outage = (time.monotonic(), 1) if first else (self._outage[0], self._outage[1] + 1)
        if first or self._state.error != why:
            self.log.warning("node '%s': %s: %s; retrying %s with back-off (its frames stay unacknowledged: "
                             "nothing is lost)", self.name, self._state.target, why,
                             f"the batch of {rows} rows" if rows else "the table",
                             exc_info=not isinstance(exc, psycopg.Error | _TableError))
        self._state.down(why)

    # -- rows ------------------------------------------------------------------------------------------------
    def _build(self, rows: list) -> tuple[list, list]:
        """(tuples in the table's column order, bad rows as (row, column, why)). The one copy of a value out
        of its frame is made here (numpy values, bytes), or by psycopg for what passes as it is."""
        fields, names, extra = self._fields, self._field_names, self._has_extra
        tuples, bad = [], []
        for row in rows:
            fid, topic, ts, idx, values, meta = row
            column = None
            try:
                out = [fid, topic, ts, idx]
                for column, fast, convert in fields:
                    value = values.get(column)
                    if value is not None and value.__class__ not in fast:   # the common case passes as is
                        value = convert(value if value.__class__ in PLAIN else _norm(value))
                    out.append(value)
                column = EXTRA
                others = values.keys() - names
                rest = {k: values[k] for k in others} if others else {}
                if meta:
                    rest.update(meta)
                if extra:
                    out.append(_dumps(rest) if rest else None)
                elif rest:
                    self._unstored(rest)
            except _Refused as exc:
                bad.append((row, column, exc.why))
                continue
            except Exception as exc:                   # whatever a value does, it costs its row only
                bad.append((row, column, f"{type(exc).__name__}: {exc}"))
                continue
            tuples.append(out)
        return tuples, bad

    def _bad_row(self, row: tuple, column: str | None, why: str) -> None:
        key = ("bad", column, why.split(":")[0][:60])
        n = self._logged[key] = self._logged.get(key, 0) + 1
        if n == 1 or n in LOG_AGAIN or n % 1000 == 0:
            self.log.error("node '%s': table %r: %s: %s (frame %s, topic %r, idx %s): the row is counted in "
                           "bad_rows, the rest is written%s", self.name, self._shown,
                           f"column {column!r}" if column else "a row", why, row[0], row[1], row[3],
                           f" ({n} such rows so far)" if n > 1 else "")

    def _unstored(self, rest: dict) -> None:
        _base.count(self, "fields_dropped", len(rest))
        for name in rest:
            if ("unstored", name) not in self._logged and len(self._logged) < 1000:
                self._logged[("unstored", name)] = 1
                self.log.warning("node '%s': table %r has no %r column: field %r is not stored", self.name,
                                 self._shown, EXTRA, name)

    # -- the table -------------------------------------------------------------------------------------------
    def _first_table(self, conn: psycopg.Connection, data: Any) -> None:
        """The table of the first message: loaded, or created from the message's fields. A table that does
        not fit stops the node (as at start: the database was unreachable then)."""
        try:
            if self._load(conn):
                return
            if not self.create:
                raise _TableError("table", f"table {self._shown!r} does not exist (create=False)")
        except _TableError as exc:
            self._keep_unwritten()
            raise _base.option_error(self.name, exc.option, exc.why) from None
        self._create(conn, self._want or infer_columns(payload_items(data)[0], self.columns))
        if not self._load(conn):
            raise _TableError("table", f"table {self._shown!r} vanished right after it was created")

    def _create(self, conn: psycopg.Connection, columns: list[tuple[str, str]]) -> None:
        parts = [sql.SQL(KEY_DDL)]
        parts += [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in columns]
        parts.append(sql.SQL("{} jsonb").format(sql.Identifier(EXTRA)))
        parts.append(sql.SQL("UNIQUE ({})").format(sql.SQL(", ").join(map(sql.Identifier, UNIQUE))))
        try:
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self._ident,
                                                                            sql.SQL(", ").join(parts)))
            conn.commit()
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable,
                psycopg.errors.DuplicateObject):
            conn.rollback()                 # another replica created it at the same moment: load theirs
        self.log.info("node '%s': table %r is ready (%d field columns)", self.name, self._shown, len(columns))

    def _load(self, conn: psycopg.Connection) -> bool:
        """Read the table's columns from the catalog (False when it does not exist) and check they fit.

        Raises:
            _TableError: the key columns, their unique key or a column named by schema/columns is missing.
        """
        try:
            oid = conn.execute("SELECT to_regclass(%s)::oid", [self._ident.as_string(conn)]).fetchone()[0]
            if oid is None:
                return False
            found = conn.execute(
                "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.atthasdef OR "
                "a.attidentity <> '' OR a.attgenerated <> '' FROM pg_attribute a JOIN pg_type t ON "
                "t.oid = a.atttypid WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum", [oid]).fetchall()
            unique = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = %s AND i.indisunique AND "
                "i.indpred IS NULL AND i.indexprs IS NULL AND i.indnatts = 4 AND (SELECT array_agg("
                "a.attname::text ORDER BY a.attname::text) FROM pg_attribute a WHERE a.attrelid = "
                "i.indrelid AND a.attnum = ANY(i.indkey)) = %s::text[])", [oid, sorted(KEY)]).fetchone()[0]
        finally:
            conn.rollback()                 # no transaction left open between batches
        types = {name: (typname, shown) for name, typname, shown, _ in found}
        missing = [name for name in KEY if name not in types]
        if missing:
            raise _TableError("table", f"table {self._shown!r} lacks the column(s) {', '.join(missing)} "
                                       f"exactly-once needs ({KEY_DDL.replace(' NOT NULL', '')})")
        if not unique:
            raise _TableError("table", f"table {self._shown!r} has no unique key on ({', '.join(UNIQUE)}), "
                                       f"which exactly-once needs (ALTER TABLE ... ADD UNIQUE (...))")
        if EXTRA in types and types[EXTRA][0] not in ("jsonb", "json", "text"):
            raise _TableError("table", f"table {self._shown!r}: column {EXTRA!r} is {types[EXTRA][1]}, "
                                       "not jsonb")
        named = [name for name, _ in self._want] if self._want else list(self.columns or ()) or None
        if named is not None:
            for name in named:
                if name not in types:
                    raise _TableError("schema" if self._want else "columns",
                                      f"table {self._shown!r} has no column {name!r}")
        else:
            named = [name for name, _, _, auto in found if name not in OWN and not auto]
        self._fields = [(name, *converter(types[name][0])) for name in named]
        self._field_names = frozenset(named)
        self._has_extra = EXTRA in types
        self._defs = [(name, types[name][1]) for name in named]
        names = list(KEY) + named + ([EXTRA] if self._has_extra else [])
        # the statement's parts as text, once (not per batch): INSERT INTO t (..) VALUES (..) ON CONFLICT ..
        head = sql.SQL("INSERT INTO {} ({})").format(
            self._ident, sql.SQL(", ").join(map(sql.Identifier, names))).as_string(conn)
        row = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * len(names))).as_string(conn)
        tail = sql.SQL("ON CONFLICT ({}) DO NOTHING").format(
            sql.SQL(", ").join(map(sql.Identifier, UNIQUE))).as_string(conn)
        self._parts = (head, len(names), tail)     # the multi-row statement numbers its parameters ($1, ...)
        self._statement = f"{head} VALUES {row} {tail}"
        self._multi: dict[int, str] = {}      # the multi-row statements of this table's columns (_multi_row)
        self._version += 1
        return True

    def _reload(self) -> None:
        """After an error that says the table changed: load it again, or create it again (same columns)."""
        self._rollback()
        if not self._load(self._conn) and self.create:
            self._create(self._conn, self._defs)
            self._load(self._conn)

    # -- the connection --------------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, connect_timeout=max(1, round(float(self.connect_timeout))),
                               application_name=f"edgeflow {self.name}"[:63], keepalives=1,
                               keepalives_idle=10, keepalives_interval=5, keepalives_count=3)

    def _connect_at_start(self) -> bool:
        """Connect before the first frame: a login no retry can fix is a ConfigError (not restarted); an
        unreachable server is logged and retried until it answers (frames wait upstream) or we are stopped."""
        while True:
            try:
                self._conn = self._connect()
                self._state.up()
                return True
            except psycopg.Error as exc:
                why = _why(exc)
                if isinstance(exc, psycopg.ProgrammingError) or any(w in why.lower() for w in CONFIG_WORDS):
                    self._state.down(why)
                    raise _base.option_error(self.name, "url", f"cannot log in to {self._state.target}: "
                                                               f"{why}") from None
                if self._state.error != why:
                    self.log.warning("node '%s': cannot reach %s: %s; retrying with back-off", self.name,
                                     self._state.target, why)
                self._state.down(why)
                _base.count(self, "retries")
            if self._wait(self._backoff.next()):
                return False

    def _wait(self, seconds: float) -> bool:
        """Back off ``seconds`` while the runtime keeps serving statistics (the connection's state shows
        while we wait) and the supervisor's messages; True when the node is asked to stop."""
        wait = getattr(self.context, "wait", None)
        return wait(seconds) if wait is not None else self._stopping.wait(seconds)

    def _rollback(self) -> None:
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.rollback()
        except psycopg.Error:
            self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def _keep_unwritten(self) -> None:
        """Stopping before the table could be reached: keep the frame unacknowledged."""
        context = self.context
        if context is not None and context.hold_limit and context.held < context.hold_limit:
            self._abandoned.append(context.hold())


class _Refused(Exception):
    """A value its column cannot take (``why`` says so in a few words)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _TableError(Exception):
    """The table does not fit (``option`` is the option to blame)."""

    def __init__(self, option: str, why: str) -> None:
        super().__init__(why)
        self.option, self.why = option, why


def table_parts(node: str, table: str) -> tuple[str, ...]:
    """``"name"`` -> ("name",), ``"schema.name"`` -> ("schema", "name"), checked."""
    parts = tuple(table.split("."))
    if len(parts) > 2 or not all(parts) or any(len(p.encode()) > MAX_NAME or "\0" in p for p in parts):
        raise _base.option_error(node, "table", f"{table!r} is not a table name ('name' or 'schema.name', "
                                                f"each at most {MAX_NAME} bytes)")
    return parts


def check_column(node: str, option: str, column: Any) -> None:
    """A column name given by ``option`` (schema or columns), or a ConfigError."""
    if not isinstance(column, str) or not column or len(column.encode()) > MAX_NAME or "\0" in column:
        raise _base.option_error(node, option, f"{column!r} is not a column name (1 to {MAX_NAME} bytes)")
    if column in OWN:
        raise _base.option_error(node, option, f"column {column!r} is one of the sink's own "
                                               f"({', '.join(OWN)})")


def infer_columns(first: dict, only: list | None = None) -> list[tuple[str, str]]:
    """(column, SQL type) per top-level field of the first message (or per name in ``only``)."""
    names = list(only) if only else [k for k in first if isinstance(k, str) and k not in OWN
                                      and len(k.encode()) <= MAX_NAME][:MAX_COLUMNS]
    return [(name, sql_type(first.get(name))) for name in names]


def sql_type(value: Any) -> str:
    """The column type a first value asks for (jsonb takes anything, so a null or a list asks for it)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if -2**63 <= value < 2**63 else "numeric"
    return {float: "double precision", str: "text", bytes: "bytea"}.get(type(value), "jsonb")


# -- values: checked and converted per column type ----------------------------------------------------------

PLAIN = frozenset({str, int, float, bool})


def _norm(value: Any) -> Any:
    """A value as plain Python: numpy scalars and small arrays, bytes (copied out of the frame, once).

    Raises:
        _Refused: an array too big for a row (it costs its row only).
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    try:
        return plain(value)
    except ValueError as exc:
        raise _Refused(str(exc)) from None


def _meta(meta: dict | None) -> dict | None:
    mine = user_meta(meta)
    return flatten(mine, "meta.") if mine else None


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:40] + '...' if len(text) > 40 else text} ({type(value).__name__})"


def _refuse(kind: str, value: Any) -> _Refused:
    return _Refused(f"a {kind} column cannot take {_show(value)}")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (np.generic, np.ndarray)):
        return _norm(value)
    raise _Refused(f"{_show(value)} is not JSON")


def _dumps(value: Any) -> str:
    """JSON text for a json/jsonb column (numpy values and bytes made JSON-able; NaN refused: not JSON)."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False,
                          default=_json_default)
    except ValueError as exc:
        raise _Refused(f"JSON cannot hold it ({exc})") from None


def _integer(bound: int, kind: str) -> Callable[[Any], int]:
    def integer(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value.__class__ is not int or not -bound <= value < bound:
            raise _refuse(kind, value)
        return value
    return integer


def _number(value: Any) -> float:
    if value.__class__ not in (int, float):
        raise _refuse("number", value)
    return float(value)


def _boolean(value: Any) -> bool:
    raise _refuse("boolean", value)                       # a bool has passed as it is


def _text(value: Any) -> str:
    if value.__class__ in (int, float, bool):
        return json.dumps(value)                          # lossless: 1.5, true, 3
    if value.__class__ is not str:
        raise _refuse("text", value)
    if "\0" in value:
        raise _Refused("a text column cannot hold a NUL character")
    return value


def _moment(value: Any) -> Any:
    if value.__class__ in (int, float):
        return datetime.fromtimestamp(value, timezone.utc)   # seconds since the epoch
    if value.__class__ is not str:
        raise _refuse("timestamp", value)
    return value                                          # ISO text: the server parses it


def _binary(value: Any) -> bytes:
    if value.__class__ is not bytes:
        raise _refuse("bytea", value)
    return value


def _other(value: Any) -> Any:                            # uuid, inet, arrays...: the server decides
    if isinstance(value, dict):
        raise _refuse("non-JSON", value)
    return value


NOTHING: frozenset = frozenset()
CONVERTERS: dict[str, tuple[frozenset, Callable[[Any], Any]]] = {
    "int8": (frozenset({int}), _integer(2**63, "bigint")),   # beyond its range: the server refuses the row
    "int4": (NOTHING, _integer(2**31, "integer")), "int2": (NOTHING, _integer(2**15, "smallint")),
    "float8": (frozenset({float}), _number), "float4": (frozenset({float}), _number),
    "numeric": (frozenset({int, float}), _number), "bool": (frozenset({bool}), _boolean),
    "text": (NOTHING, _text), "varchar": (NOTHING, _text), "bpchar": (NOTHING, _text),
    "json": (NOTHING, _dumps), "jsonb": (NOTHING, _dumps),
    "timestamptz": (NOTHING, _moment), "timestamp": (NOTHING, _moment), "date": (NOTHING, _moment),
    "bytea": (frozenset({bytes}), _binary)}


def converter(typname: str) -> tuple[frozenset, Callable[[Any], Any]]:
    """(the types that pass unchanged, the function that checks and converts any other value) for a column
    of type ``typname`` (pg_type's name). Text always goes through the function: it checks for NUL."""
    return CONVERTERS.get(typname, (PLAIN | {list}, _other))


def _why(exc: BaseException) -> str:
    """A database error in one line, libpq's decoration cut (no password is ever in it)."""
    text = str(exc)
    if "FATAL:" in text:
        text = text.rsplit("FATAL:", 1)[1]
    elif "failed:" in text and isinstance(exc, psycopg.OperationalError):
        text = text.rsplit("failed:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (" ".join(lines[0].split()) if lines else type(exc).__name__)[:300]


__all__ = ["PostgresSink"]
