"""PostgresSink against a real PostgreSQL (a throw-away cluster of the tests' own, _postgres.py): rows exactly
once with their types, the table made from the first message or a schema, both flush bounds, bad options,
logins and tables, and the faults: the database stopped for 5 s under load, the sink SIGKILLed between its
COMMIT and its acknowledgement, the database down when the sink starts."""

from __future__ import annotations

import math
import os
import signal
import time
from datetime import datetime, timezone

import pytest

from edgeflow import EdgeApp
from edgeflow.connectors import PostgresSink
from edgeflow.errors import ConfigError

from . import _postgres, pg_nodes
from ._servers import wait_for

RUN_TIMEOUT = 60


def run_to_end(app: EdgeApp, timeout: float = RUN_TIMEOUT) -> tuple[int, dict]:
    """Start, wait until the run ends by itself; (exit code, final statistics)."""
    with app.start() as running:
        code = running.wait(timeout)
        stats = running.statistics()
    assert code is not None, f"the run did not end within {timeout} s: {stats['nodes']}"
    return code, stats


def events(stats: dict, node: str = "db") -> dict:
    return stats["nodes"][node].get("extra", {}).get("events", {})


def connection_state(running, node: str = "db") -> dict | None:
    """The node's one connection as its statistics show it now (None before it reported one)."""
    connections = running.statistics()["nodes"][node].get("extra", {}).get("connections") or {}
    return next(iter(connections.values()), None)


def count_rows(cluster, url: str, table: str) -> int:
    """Rows in the table so far (0 while it does not exist)."""
    try:
        return cluster.query(url, f'SELECT count(*) FROM "{table}"')[0][0]
    except Exception as exc:                          # noqa: BLE001 - not created yet
        if "does not exist" in str(exc):
            return 0
        raise


def column_types(cluster, url: str, table: str) -> dict[str, str]:
    return dict(cluster.query(url, "SELECT column_name, data_type FROM information_schema.columns "
                                   "WHERE table_name = %s ORDER BY ordinal_position", [table]))


def check_exactly_once(cluster, url: str, table: str, n: int) -> None:
    """Rows i = 0 .. n-1, each once (by the producer's counter and by the sink's key)."""
    total, distinct_i, distinct_key = cluster.query(
        url, f'SELECT count(*), count(DISTINCT i), count(DISTINCT (topic, ts, frame_id, idx)) '
             f'FROM "{table}"')[0]
    seen = {i for (i,) in cluster.query(url, f'SELECT i FROM "{table}"')}
    missing = sorted(set(range(n)) - seen)
    assert not missing, f"lost {len(missing)} of {n} rows: {missing[:20]}"
    assert (total, distinct_i, distinct_key) == (n, n, n), f"duplicates: {total} rows for {n} messages"


# -- rows, types, tables -----------------------------------------------------------------------------

def test_rows_arrive_once_with_their_types_in_a_table_made_from_the_first_message(app, postgres):
    url = postgres.new_database()
    stamps = [1_700_000_000.123456, 1_700_000_001.5, 1_700_000_002.25]
    messages = [{"v": 1.5, "n": 3, "ok": True, "s": "x", "l": [1, 2], "d": {"a": 1}, "ts": "own"},
                {"v": 2, "new": "y"},                          # an int into the double column; a new field
                [{"v": 3}, {"v": 4}]]                          # a list of messages: idx 0 and 1
    ef = EdgeApp(app)
    ef.node(pg_nodes.Script, name="src", messages=messages, stamps=stamps, meta={"site": "a"}, numpy=True)
    ef.node(PostgresSink, name="db", url=url, table="est")
    ef.link("src").to("db")

    code, stats = run_to_end(ef)

    assert code == 0
    assert column_types(postgres, url, "est") == {
        "frame_id": "bigint", "topic": "text", "ts": "timestamp with time zone", "idx": "integer",
        "v": "double precision", "n": "bigint", "ok": "boolean", "s": "text", "l": "jsonb", "d": "jsonb",
        "n32": "double precision", "arr": "jsonb", "extra": "jsonb"}
    rows = postgres.query(url, "SELECT frame_id, topic, ts, idx, v, n, ok, s, l, d, n32, arr, extra FROM est "
                               "ORDER BY frame_id, idx")
    at = [datetime.fromtimestamp(s, timezone.utc) for s in stamps]
    assert rows == [
        (1, "src", at[0], 0, 1.5, 3, True, "x", [1, 2], {"a": 1}, 0.5, [0, 1, 2],
         {"ts": "own", "meta.site": "a"}),
        (2, "src", at[1], 0, 2.0, None, None, None, None, None, 0.5, [0, 1, 2],
         {"new": "y", "meta.site": "a"}),
        (3, "src", at[2], 0, 3.0, None, None, None, None, None, None, None, {"meta.site": "a"}),
        (3, "src", at[2], 1, 4.0, None, None, None, None, None, None, None, {"meta.site": "a"})]
    assert events(stats)["rows"] == 4 and "bad_rows" not in events(stats)
    connection = stats["nodes"]["db"]["extra"]["connections"]
    assert [c["state"] for c in connection.values()] == ["up"]


@pytest.mark.parametrize("given", ["schema", "columns"])
def test_a_given_schema_or_column_list_makes_the_table_and_a_second_run_adds_its_own_rows(app, postgres,
                                                                                          given):
    """The table made from ``schema`` (or typed from the first message for ``columns``); a second run, whose
    frame ids start at 1 again, finds it and adds its rows beside the first run's (the key has ts)."""
    url = postgres.new_database()
    option = {"schema": {"i": "integer", "asset": "varchar(8)"}} if given == "schema" else \
        {"columns": ["i", "asset"]}
    for run in range(2):
        ef = EdgeApp(f"{app}r{run}")
        ef.node(pg_nodes.Steady, name="src", count=30, fps=None)
        ef.node(PostgresSink, name="db", url=url, table="given", **option)
        ef.link("src").to("db")
        code, stats = run_to_end(ef)
        assert code == 0 and events(stats)["rows"] == 30

    types = column_types(postgres, url, "given")
    want = {"i": "integer", "asset": "character varying"} if given == "schema" else \
        {"i": "bigint", "asset": "text"}
    assert types == {"frame_id": "bigint", "topic": "text", "ts": "timestamp with time zone",
                     "idx": "integer", **want, "extra": "jsonb"}
    rows = postgres.query(url, "SELECT frame_id, i, asset, extra FROM given ORDER BY ts")
    assert [(f, i, a) for f, i, a, _ in rows] == [(i + 1, i, f"m{i % 4}") for i in range(30)] * 2
    assert all(extra == {"v": i / 2} for (_, i, _, extra) in rows), "a field without a column goes to extra"


def test_the_time_bound_writes_a_partial_batch_and_the_size_bound_a_full_one(app, postgres):
    """Three frames, then none: a sink with room for 500 rows writes them batch_ms later, and one with
    batch_size=3 at once, while the stream is still open (no end of stream, no further frame)."""
    url = postgres.new_database()
    ef = EdgeApp(app)
    ef.node(pg_nodes.Script, name="src", messages=[{"v": 1}, {"v": 2}, {"v": 3}], linger=True, fps=50)
    ef.node(PostgresSink, name="by_time", url=url, table="by_time", batch_size=500, batch_ms=300)
    ef.node(PostgresSink, name="by_size", url=url, table="by_size", batch_size=3, batch_ms=600_000)
    ef.link("src").to("by_time")
    ef.link("src").to("by_size")
    with ef.start() as running:
        wait_for(lambda: count_rows(postgres, url, "by_time") == 3, 20, "the time bound to write 3 rows")
        wait_for(lambda: count_rows(postgres, url, "by_size") == 3, 20, "the size bound to write 3 rows")
        wait_for(lambda: running.statistics()["nodes"]["src"]["frames_out"] == 3, 5, "the producer's figures")
        assert running.wait(0) is None, "the stream is still open"


# -- bad options, logins, tables, values ---------------------------------------------------------------------

@pytest.mark.parametrize("options, option, words", [
    ({"url": "mysql://u@127.0.0.1/db"}, "url", "unknown URL scheme mysql://"),
    ({"url": "postgresql://u:hunter2@/db"}, "url", "names no host"),
    ({"table": "a.b.c"}, "table", "not a table name"),
    ({"batch_size": 0}, "batch_size", "out of range"),
    ({"batch_ms": "fast"}, "batch_ms", "expected a number"),
    ({"schema": {"v": "float; DROP TABLE x"}}, "schema", "is not an SQL type"),
    ({"schema": {"ts": "text"}}, "schema", "one of the sink's own"),
    ({"schema": {"v": "real"}, "columns": ["v"]}, "schema", "not both"),
    ({"columns": ["v", "v"]}, "columns", "distinct"),
    ({"create": "yes"}, "create", "True or False"),
    ({"tabel": "x"}, "tabel", "did you mean 'table'"),
])
def test_bad_options_fail_at_registration_in_one_line_naming_node_and_option(app, options, option, words):
    given = {"url": "postgresql://u:hunter2@127.0.0.1:5/db", "table": "t", **options}
    with pytest.raises(ConfigError) as exc:
        EdgeApp(app).node(PostgresSink, name="db", **given)
    text = str(exc.value)
    assert text.startswith(f"node 'db': option '{option}': ") and words in text, text
    assert "\n" not in text and "hunter2" not in text


def test_a_bad_password_stops_the_node_in_one_line_naming_node_and_server(app, postgres, capfd):
    url = postgres.new_database()
    postgres.add_role(app, "right-password")
    database = url.rsplit("/", 1)[1]
    ef = EdgeApp(app)
    ef.node(pg_nodes.Steady, name="src", count=10, fps=None)
    ef.node(PostgresSink, name="db", url=postgres.url_for(database, app, "wrong-password"), table="t")
    ef.link("src").to("db")

    code, stats = run_to_end(ef)

    err = capfd.readouterr().err
    assert code == 2, "a configuration error ends the run with exit code 2"
    assert stats["nodes"]["db"]["restarts"] == 0, "a login that cannot work is not retried by restarts"
    lines = [line for line in err.splitlines() if "password authentication failed" in line]
    assert len(lines) == 1, err
    assert "node 'db'" in lines[0] and f"{postgres.host}:{postgres.port}" in lines[0] and "***" in lines[0]
    assert "wrong-password" not in err


@pytest.mark.parametrize("ddl, options, words", [
    ("CREATE TABLE t (x integer)", {}, "lacks the column(s) frame_id, topic, ts, idx"),
    ("CREATE TABLE t (frame_id bigint, topic text, ts timestamptz, idx int)", {}, "has no unique key on"),
    ("CREATE TABLE t (frame_id bigint, topic text, ts timestamptz, idx int, "
     "UNIQUE (frame_id, topic, ts, idx))",
     {"schema": {"v": "real"}}, "has no column 'v'"),
    (None, {"create": False}, "does not exist (create=False)"),
])
def test_a_table_that_does_not_fit_stops_the_node_in_one_line_naming_the_table(app, postgres, capfd, ddl,
                                                                                 options, words):
    url = postgres.new_database()
    if ddl:
        postgres.execute(url, ddl)
    ef = EdgeApp(app)
    ef.node(pg_nodes.Steady, name="src", count=10, fps=None)
    ef.node(PostgresSink, name="db", url=url, table="t", **options)
    ef.link("src").to("db")

    code, stats = run_to_end(ef)

    err = capfd.readouterr().err
    assert code == 2 and stats["nodes"]["db"]["restarts"] == 0
    lines = [line for line in err.splitlines() if words in line]
    assert len(lines) == 1, err
    assert "node 'db': option '" in lines[0] and "table 't'" in lines[0]


def test_a_value_its_column_cannot_take_is_a_bad_row_and_the_rest_is_written(app, postgres, capfd):
    """Refused before sending (a string for a number, a NUL in text) and by the server (too long for
    varchar(3): the batch goes again row by row): each bad row logged once naming the column, counted."""
    url = postgres.new_database()
    messages = [{"v": 1.5, "s": "a"}, {"v": "abc", "s": "b"}, {"v": 2.5, "s": "long"}, {"v": 3.5, "s": "x\0"},
                {"v": 4.5, "s": "e"}, {"v": math.nan, "s": "f"}]
    ef = EdgeApp(app)
    ef.node(pg_nodes.Script, name="src", messages=messages)
    ef.node(PostgresSink, name="db", url=url, table="t", schema={"v": "double precision", "s": "varchar(3)"})
    ef.link("src").to("db")

    code, stats = run_to_end(ef)

    err = capfd.readouterr().err
    assert code == 0
    rows = postgres.query(url, "SELECT v, s FROM t ORDER BY frame_id")
    assert rows[:2] == [(1.5, "a"), (4.5, "e")] and len(rows) == 3 and math.isnan(rows[2][0])
    assert events(stats)["bad_rows"] == 3 and events(stats)["rows"] == 3
    bad = [line for line in err.splitlines() if "bad_rows" in line]
    assert len(bad) == 3, err
    assert all("node 'db': table 't'" in line for line in bad), bad
    assert any("column 'v'" in line and "'abc'" in line for line in bad), bad
    assert any("column 's'" in line and "NUL" in line for line in bad), bad
    assert any("character varying(3)" in line for line in bad), bad


# -- faults ------------------------------------------------------------------------------------------------

@pytest.fixture
def own_cluster(tmp_path):
    """A cluster of this test's own (it is stopped, killed and restarted)."""
    cluster = _postgres.start(tmp_path / "pg")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_postgres_stopped_for_5_s_under_load_loses_nothing_and_duplicates_nothing(app, own_cluster):
    n = 1000
    url = own_cluster.new_database()
    ef = EdgeApp(app)
    ef.node(pg_nodes.Steady, name="src", count=n, fps=200)
    ef.node(PostgresSink, name="db", url=url, table="load")
    ef.link("src").to("db")
    with ef.start() as running:
        wait_for(lambda: count_rows(own_cluster, url, "load") >= 150, 20, "150 rows before the outage")
        with own_cluster.down():
            wait_for(lambda: running.statistics()["nodes"]["src"]["blocked"], 10,
                     "the producer to be held back by the waiting sink")
            down = wait_for(lambda: (connection_state(running) or {}).get("state") == "down" and
                            connection_state(running), 10, "the sink's statistics to show the outage")
            assert down["error"], down
            time.sleep(5)                                  # the fault itself: PostgreSQL away for 5 s
        code = running.wait(RUN_TIMEOUT)
        stats = running.statistics()["nodes"]
    assert code == 0, stats
    check_exactly_once(own_cluster, url, "load", n)
    db = stats["db"]
    assert db["restarts"] == 0 and db["extra"]["events"]["retries"] >= 1, db
    [connection] = db["extra"]["connections"].values()
    assert connection["state"] == "up" and connection["reconnects"] >= 1, connection
    assert stats["src"]["blocked_seconds"] >= 3, "back-pressure: the producer waited while the sink retried"


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("stall, array", [("after_commit", True), ("mid_batch", True), ("mid_batch", False)])
def test_the_sink_killed_mid_batch_or_between_commit_and_ack_loses_and_duplicates_nothing(
        app, postgres, tmp_path, stall, array):
    """The two moments a crash hurts: a batch committed but its frames not yet acknowledged (they come
    again: the key makes them add nothing), and frames accepted whose batch is not committed yet (they come
    again and are written). Either way every message is in the table exactly once, whether its payload views
    its ring slot (an array in it) or not (a plain dict message: the frame pins the slot itself)."""
    n = 600
    url = postgres.new_database()
    pidfile, stallfile = tmp_path / "pids", tmp_path / "stalled"
    ef = EdgeApp(app)
    ef.node(pg_nodes.Steady, name="src", count=n, fps=400, array=array)
    ef.node(pg_nodes.WatchedSink, name="db", url=url, table="crash", pidfile=str(pidfile), stall=stall,
            stallfile=str(stallfile))
    ef.link("src").to("db")
    with ef.start() as running:
        wait_for(stallfile.exists, 20, "the sink to reach the moment it is killed at")
        pid, rows = (int(x) for x in stallfile.read_text().split())
        committed = count_rows(postgres, url, "crash")
        assert committed >= rows > 0 if stall == "after_commit" else committed > 0
        os.kill(pid, signal.SIGKILL)
        code = running.wait(RUN_TIMEOUT)
        stats = running.statistics()["nodes"]["db"]
    assert code == 0 and stats["restarts"] == 1, stats
    assert len(pidfile.read_text().split()) == 2
    check_exactly_once(postgres, url, "crash", n)
    if stall == "after_commit":
        assert stats["extra"]["events"].get("duplicates", 0) >= rows, \
            "the committed batch's frames came again and were skipped by the key"


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("table", ["fits", "misfit"])
def test_a_database_down_when_the_sink_starts_is_waited_for_not_a_crash_loop(app, own_cluster, capfd, table):
    """The sink waits for the database (statistics show it down, the producer is held back), then writes
    everything; a table found not to fit once the database answers stops it as it would have at start."""
    n = 100
    url = own_cluster.new_database()
    if table == "misfit":
        own_cluster.execute(url, "CREATE TABLE t (x integer)")
    own_cluster.shutdown()
    try:
        ef = EdgeApp(app)
        ef.node(pg_nodes.Steady, name="src", count=n, fps=None)
        ef.node(PostgresSink, name="db", url=url, table="t")
        ef.link("src").to("db")
        with ef.start() as running:
            wait_for(lambda: running.statistics()["nodes"]["src"]["blocked"], 15,
                     "the producer to be held back while the sink waits for the database")
            state = wait_for(lambda: connection_state(running), 10, "the sink's connection state")
            assert state["state"] == "down" and "refused" in state["error"].lower(), state
            own_cluster.start()
            code = running.wait(RUN_TIMEOUT)
            stats = running.statistics()["nodes"]["db"]
    finally:
        own_cluster.start()
    err = capfd.readouterr().err
    # one line for the outage however many retries (another may follow if the server is caught starting up)
    said = [line for line in err.splitlines() if "cannot reach" in line and "refused" in line]
    assert len(said) == 1 and "node 'db'" in said[0] and f":{own_cluster.port}/" in said[0], err
    assert stats["restarts"] == 0 and stats["extra"]["events"]["retries"] >= 1, stats
    if table == "misfit":
        assert code == 2
        lines = [line for line in err.splitlines() if "lacks the column(s)" in line]
        assert len(lines) == 1 and "node 'db': option 'table': table 't'" in lines[0], err
        return
    assert code == 0
    check_exactly_once(own_cluster, url, "t", n)
