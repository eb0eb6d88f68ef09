"""InfluxSink against a real InfluxDB 1.6 (``influxd`` started by the tests on free loopback ports, data in a
temporary folder): points read back with InfluxQL over HTTP, tags, types and nanosecond timestamps exact;
batching; the server away at the start, then SIGKILLed while writing and restarted, with nothing lost; bad
credentials; a partial write; line-protocol escaping round trips; option checks. InfluxDB 2.x cannot run
here (Debian ships 1.6 only): its request (path, query, ``Authorization: Token``) is checked against a real
HTTP server started by the test that records what it receives and answers 204 as InfluxDB does (a real peer
over TCP, not a mock of the client).
"""

from __future__ import annotations

import http.server
import re
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeflow import EdgeApp
from edgeflow.connectors import InfluxSink
from edgeflow.connectors import influx as influx_module
from edgeflow.errors import ConfigError

from . import _influx
from ._servers import free_port
from .influx_nodes import Messages, Telemetry, message, stamp_us


def run(app: str, sink: dict, *, producer=Telemetry, timeout: float = 60, during=None, **source) -> tuple:
    """source -> InfluxSink(**sink) until the stream ends: (exit code, statistics of the nodes)."""
    ef = EdgeApp(app)
    ef.node(producer, name="source", **source)
    ef.node(InfluxSink, name="influx", **sink)
    ef.link("source").to("influx")
    with ef.start() as running:
        if during is not None:
            during(running)
        code = running.wait(timeout=timeout)
        stats = running.statistics()["nodes"]
    return code, stats


def events(stats: dict) -> dict:
    return stats["influx"]["extra"].get("events", {})


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)             # polling a condition of another process (no event to await)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# -- against InfluxDB 1.6 ------------------------------------------------------------------------------------

def test_points_are_read_back_with_exact_tags_types_and_nanosecond_timestamps(app, influxdb):
    influxdb.create_database(app)
    n = 30
    code, stats = run(app, dict(url=influxdb.url, database=app, measurement="motor", tags=["asset", "site"]),
                      count=n)
    assert code == 0
    rows = influxdb.rows("SELECT * FROM motor", app)
    assert len(rows) == n
    for i, row in enumerate(sorted(rows, key=lambda r: r["time"])):
        sent = message(i)
        assert row["time"] == stamp_us(i) * 1000 == sent["stamp_us"] * 1000, "the capture time, in ns"
        assert (row["asset"], row["site"]) == (sent["asset"], "plant 1"), "tags from the message and the meta"
        assert row["i"] == i and row["temp"] == sent["temp"] and row["ok"] is sent["ok"]
        assert row["note"] == sent["note"]
    types = {r["fieldKey"]: r["fieldType"] for r in influxdb.rows("SHOW FIELD KEYS FROM motor", app)}
    assert types == {"i": "integer", "temp": "float", "ok": "boolean", "note": "string",
                     "stamp_us": "integer"}, "integers with i, floats (20.0 too) as floats; no frame columns"
    tags = {r["tagKey"] for r in influxdb.rows("SHOW TAG KEYS FROM motor", app)}
    assert tags == {"asset", "site"}
    assert events(stats)["points"] == n
    connection = stats["influx"]["extra"]["connections"][influxdb.url]
    assert connection["state"] == "up"


def test_many_frames_go_in_fewer_writes(app, influxdb):
    influxdb.create_database(app)
    before = influxdb.write_requests()
    n = 240
    sink = dict(url=influxdb.url, database=app, measurement="m", fields=["i"], batch_ms=60_000)
    code, stats = run(app, sink, count=n)
    assert code == 0
    got = events(stats)
    assert got["points"] == n
    # a batch closes at the 24 frames the sink may hold; batch_ms is too long to close any
    assert got["writes"] == n // InfluxSink.max_held_frames
    assert influxdb.write_requests() - before == got["writes"] + 1, "and the empty write of the start check"
    assert influxdb.rows("SELECT count(i) FROM m", app)[0]["count"] == n


def test_a_batch_closes_at_batch_size_points(app, influxdb):
    influxdb.create_database(app)
    items = [[[{"i": 10 * f + k, "k": k} for k in range(10)], {}] for f in range(6)]   # 10 points a frame
    code, stats = run(app, dict(url=influxdb.url, database=app, measurement="m", tags=["k"], batch_size=20),
                      producer=Messages, items=items)
    assert code == 0
    assert events(stats)["writes"] == 3 and events(stats)["points"] == 60
    assert influxdb.rows("SELECT count(i) FROM m", app)[0]["count"] == 60


def test_a_batch_closes_when_batch_ms_old(app, influxdb):
    """Frames 50 ms apart: with batch_ms=10 a batch is written by the next frame or idle() at the latest (one
    or two frames a write, more when a loaded machine delays the node); with the default 1000 ms all six would
    go in one write at the end."""
    influxdb.create_database(app)
    code, stats = run(app, dict(url=influxdb.url, database=app, measurement="m", batch_ms=10), count=6, fps=20)
    assert code == 0
    assert 2 <= events(stats)["writes"] <= 6 and events(stats)["points"] == 6


def test_escaping_round_trips(app, influxdb):
    """Tag values with spaces, commas, equals signs and backslashes, a measurement template filled with them,
    string fields with quotes, backslashes and a newline, field keys with a space and a backslash; what line
    protocol cannot carry (a tag ending in a backslash or with one backslash before a comma, NaN, an integer
    beyond int64) is left out and counted."""
    influxdb.create_database(app)
    tricky = {"kind": "motor=x, big one", "asset": "a b,c=d\\e", "pair": "x\\\\,y", "bad tag": "ends\\",
              "odd": "x\\,y", "text": 'say "hi" \\ back\\\nslash\\', "field key": 1.5, "back\\slash": 2,
              "nan": float("nan"), "big": 2**63, "n": -(2**63)}
    tags = ["asset", "pair", "bad tag", "odd"]
    sink = dict(url=influxdb.url, database=app, measurement="{kind}", tags=tags)
    code, stats = run(app, sink, producer=Messages, items=[[tricky, {}]])
    assert code == 0
    [row] = influxdb.rows('SELECT * FROM "motor=x, big one"', app)
    assert (row["asset"], row["pair"]) == (tricky["asset"], tricky["pair"])
    assert row["text"] == tricky["text"]
    assert row["field key"] == 1.5 and row["back\\slash"] == 2 and row["n"] == -(2**63)
    assert "kind" not in row, "the template's field is the measurement, not also a field"
    assert not {"bad tag", "odd", "nan", "big"} & set(row)
    assert events(stats)["skipped_values"] == 4
    assert events(stats)["points"] == 1


def test_a_partial_write_counts_the_bad_points_logs_once_and_goes_on(app, influxdb, capfd):
    influxdb.create_database(app)
    # temp is a string field from now on (in the shard of the frames' week: field types are per shard)
    influxdb.write(f'm temp="text" {stamp_us(0) * 1000 - 1}', app)
    items = [[{"temp": float(i)} if i % 2 else {"level": i}, {}] for i in range(10)]
    code, stats = run(app, dict(url=influxdb.url, database=app, measurement="m", batch_ms=60_000),
                      producer=Messages, items=items)
    assert code == 0
    assert events(stats)["bad_points"] == 5 and events(stats)["points"] == 5
    assert influxdb.rows("SELECT count(level) FROM m", app)[0]["count"] == 5
    lines = [line for line in capfd.readouterr().err.splitlines() if "refused" in line]
    assert len(lines) == 1 and "node 'influx'" in lines[0] and "field type conflict" in lines[0]


def test_bad_credentials_are_one_line_naming_the_node_and_the_server(app, tmp_path, capfd):
    server = _influx.start(tmp_path, auth=True)
    try:
        server.create_database(app)
        sink = dict(url=server.url, database=app, measurement="m", username=_influx.ADMIN[0])
        code, stats = run(app, {**sink, "password": "wrong"}, count=3)
        assert code == 2, "a configuration error ends the run"
        assert stats["influx"]["failure"] == "stopped by a configuration error"
        assert stats["influx"]["extra"]["config_error"].startswith("node 'influx'")
        lines = [line for line in capfd.readouterr().err.splitlines() if "authorization failed" in line]
        assert len(lines) == 1, lines
        assert f"node 'influx': InfluxDB {server.url}: authorization failed (username 'admin'" in lines[0]
        assert "wrong" not in lines[0], "no password in the log"
        code, stats = run(app, {**sink, "password": _influx.ADMIN[1]}, count=3)     # HTTP Basic works
        assert code == 0 and events(stats)["points"] == 3
        assert server.rows("SELECT count(i) FROM m", app)[0]["count"] == 3
    finally:
        server.stop()


def test_a_missing_database_is_a_configuration_error(app, influxdb, capfd):
    code, stats = run(app, dict(url=influxdb.url, database="no_such_db", measurement="m"), count=1)
    assert code == 2
    err = capfd.readouterr().err
    assert f"node 'influx': InfluxDB {influxdb.url}: database 'no_such_db' not found" in err


@pytest.mark.slow
def test_influxdb_away_at_the_start_then_killed_while_writing_loses_nothing(app, tmp_path, capfd):
    server = _influx.start(tmp_path)
    server.create_database(app)
    server.stop()                      # away when the sink starts: a log line and retries, not a failure
    n, err, gate = 400, [], tmp_path / "killed"

    def said(text: str) -> bool:
        err.append(capfd.readouterr().err)
        return text in "".join(err)

    def outage(running):
        wait_for(lambda: said("is not reachable yet"), 30, "the sink to find InfluxDB away")
        server.start()
        wait_for(lambda: server.rows("SELECT count(i) FROM m", app), 30, "a first batch in InfluxDB")
        # and the sink got its answer (the first outage is over: the next one is a new outage, with its line);
        # the server shows the rows before its 204 may have reached the sink
        wait_for(lambda: (running.statistics()["nodes"].get("influx", {}).get("extra", {})
                          .get("connections", {}).get(server.url, {}).get("state") == "up"), 30,
                 "the sink to see InfluxDB up")
        server.kill()                  # SIGKILL while writing: what was answered 204 must be in its WAL
        gate.touch()                   # the second half of the stream meets the server away
        time.sleep(2.0)                # the fault: the server is away for 2 s
        server.start()                 # same port, same data

    try:
        sink = dict(url=server.url, database=app, measurement="m", tags=["asset"], batch_ms=50)
        code, stats = run(app, sink, count=n, fps=200, gate=str(gate), gate_at=n // 2, during=outage)
        assert code == 0
        assert server.rows("SELECT count(i) FROM m", app)[0]["count"] == n, "every point is there"
    finally:
        server.stop()
    got = events(stats)
    assert got["retries"] >= 1 and got["points"] >= n
    connection = stats["influx"]["extra"]["connections"][server.url]
    assert connection["state"] == "up" and connection["reconnects"] >= 1
    said("")
    lines = "".join(err).splitlines()
    assert len([line for line in lines if "write failed" in line]) == 1, "one line per outage"
    assert any("written after" in line for line in lines)


# -- InfluxDB 2.x: the request, against a real HTTP server that records it ---------------------------------

class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers like InfluxDB (204 to /ping and to writes) and keeps (method, path, headers, body, port)."""

    protocol_version = "HTTP/1.1"            # keep-alive, as InfluxDB
    seen: list = []

    def do_GET(self):
        self._answer(b"")

    def do_POST(self):
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _answer(self, body: bytes) -> None:
        self.seen.append((self.command, self.path, dict(self.headers), body, self.client_address[1]))
        self.send_response(204)
        self.send_header("X-Influxdb-Version", "v2.7.0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_v2_writes_to_api_v2_write_with_org_bucket_and_a_token(app, recorder):
    url = f"http://127.0.0.1:{recorder.server_port}/prefix"
    code, stats = run(app, dict(url=url, org="acme corp", bucket="twins", token="s3cret", measurement="motor",
                                tags=["asset"], fields=["i", "ok"]), count=3)
    assert code == 0
    [ping, check, *writes] = Recorder.seen
    assert ping[:2] == ("GET", "/prefix/ping")
    assert check[1] == "/prefix/api/v2/write?org=acme+corp&bucket=twins&precision=ns" and check[3] == b""
    body = b"\n".join(w[3] for w in writes).decode()
    escaped = ["pump\\ 1", "fan\\,2", "motor\\=3"]
    assert body.splitlines() == [f"motor,asset={escaped[i]} i={i}i,ok={str(i % 2 == 0).lower()} "
                                 f"{stamp_us(i) * 1000}" for i in range(3)]
    for method, path, headers, _, _ in writes:
        assert (method, path) == ("POST", "/prefix/api/v2/write?org=acme+corp&bucket=twins&precision=ns")
        assert headers["Authorization"] == "Token s3cret"
        assert headers["Content-Type"].startswith("text/plain")
    assert len({seen[4] for seen in Recorder.seen}) == 1, "one kept-alive connection"


def test_v1_sends_retention_policy_and_basic_credentials(app, recorder):
    url = f"http://127.0.0.1:{recorder.server_port}"
    code, _ = run(app, dict(url=url, database="twins", retention_policy="week", username="u", password="p",
                            measurement="m"), count=1)
    assert code == 0
    method, path, headers, body, _ = Recorder.seen[-1]
    assert path == "/write?db=twins&precision=ns&rp=week"
    assert headers["Authorization"] == "Basic dTpw"              # base64("u:p"): not in the URL
    assert body.startswith(b"m ") and body.endswith(str(stamp_us(0) * 1000).encode())


# -- options, stamps ----------------------------------------------------------------------------------------

H = "http://h:8086"


@pytest.mark.parametrize("options, message", [
    (dict(url="udp://127.0.0.1:8089", database="d"), "option 'url': unknown URL scheme udp://"),
    (dict(url=H, database="d", bucket="b", org="o", token="t"), "option 'bucket': give exactly one"),
    (dict(url=H), "option 'database': give exactly one"),
    (dict(url=H, bucket="b", token="t"), "option 'org': required"),
    (dict(url=H, database="d", token="t"), "option 'token': is for InfluxDB 2.x"),
    (dict(url=H, bucket="b", org="o", token="t", username="u"), "option 'username': is for InfluxDB 1.x"),
    (dict(url=H, database="d", username="u"), "option 'password': username and password go together"),
    (dict(url="http://u:p@h:8086", database="d"), "option 'url': credentials in the URL are not used"),
    (dict(url=H, database="d", measurement="{}"), "option 'measurement': '{}': a template names"),
    (dict(url=H, database="d", measurement="m\\"), "option 'measurement': 'm\\\\' cannot be written"),
    (dict(url=H, database="d", tags="asset"), "option 'tags': expected a list of field names"),
    (dict(url=H, database="d", tags=["a"], fields=["a"]), "option 'fields': 'a' is a tag already"),
    (dict(url=H, database="d", time_unit="ms"), "option 'time_unit': only with time_field"),
    (dict(url=H, database="d", time_field="t", time_unit="min"), "option 'time_unit': 'min' is not one of"),
    (dict(url=H, database="d", batch_size=0), "option 'batch_size': 0 is out of range"),
    (dict(url=H, database="d", ca_file="/ca.pem"), "option 'ca_file': is for https"),
    (dict(url=H, database="d", retries=3), "option 'retries': unknown option"),
])
def test_bad_options_are_refused_at_registration(app, options, message):
    options.setdefault("measurement", "m")
    with pytest.raises(ConfigError, match=re.escape("node 'influx': " + message)):
        EdgeApp(app).node(InfluxSink, name="influx", **options)


@given(st.integers(min_value=0, max_value=4_102_444_800_000_000))        # 1970 .. 2100, in microseconds
def test_a_float_capture_time_gives_back_the_microsecond_it_was_made_from(us):
    assert influx_module._time_ns(us / 1e6, 10**9) == us * 1000


def test_time_field_units():
    ns = influx_module._time_ns
    assert ns(1_700_000_000, 10**9) == 1_700_000_000 * 10**9
    assert ns(1_700_000_000_123_456_789, 1) == 1_700_000_000_123_456_789, "integer ns are exact"
    assert ns(1_700_000_000_123.457, 10**6) == 1_700_000_000_123_457_000
    assert ns("2023-11-14T22:13:20.123457+00:00", 1) == 1_700_000_000_123_457_000
    assert ns("2023-11-14T22:13:20", 1) is None, "a time without its zone is not guessed"
    assert ns(float("nan"), 10**9) is None and ns(True, 1) is None
