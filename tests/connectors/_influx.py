"""A real InfluxDB 1.x (``influxd``, Debian package influxdb) for the connector tests.

``start(directory)`` runs ``influxd`` as a child of the test process with a config file written here: every
data, meta and WAL folder under ``directory``, the HTTP API and the RPC (backup) port on free loopback ports
(the RPC port defaults to 8088: never left at its default), reporting, the ``_internal`` monitor store and
every other listener (UDP, Graphite, OpenTSDB, collectd) off, logging quiet (the server's output goes to
``directory/influxd.log``, quoted when it fails to start). ``start(directory, auth=True)`` enables
authentication and creates an admin user first (InfluxDB 1.x lets the first admin be created without
credentials); ``query()`` then sends the admin's credentials.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ._servers import START_TIMEOUT, find_exe, free_port

ADMIN = ("admin", "edgeflow-admin-pw")

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{dir}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  index-version = "inmem"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  https-enabled = false
  unix-socket-enabled = false

[logging]
  level = "error"
  suppress-logo = true

[ifql]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""


class Influx:
    """One ``influxd`` child process: ``url``, ``query()``, ``stop()``, ``kill()``, ``restart()``."""

    def __init__(self, directory: Path, auth: bool = False) -> None:
        self.exe = find_exe("influxd")
        self.directory = Path(directory)
        self.auth = auth
        self.http_port, self.rpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = self.directory / "influxdb.conf"
        self.config.write_text(CONFIG.format(dir=self.directory, rpc_port=self.rpc_port,
                                             http_port=self.http_port, auth=str(auth).lower()))
        self.log = self.directory / "influxd.log"
        self.proc: subprocess.Popen | None = None

    # -- process -------------------------------------------------------------------------------------------
    def start(self) -> "Influx":
        """Run influxd and wait until ``/ping`` answers (same ports and data on every start)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "-config", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"influxd did not answer /ping on port {self.http_port}:\n{tail}")
            time.sleep(0.05)          # polling /ping: a starting server has no event to await
        return self

    def ping(self) -> bool:
        """True when the HTTP API answers ``/ping`` with 204."""
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1.0) as response:
                return response.status == 204
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended after 10 s (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (a crash: what was acknowledged must be in the WAL)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Start again on the same ports with the same data (after ``stop()`` or ``kill()``)."""
        self.stop()
        self.start()

    # -- HTTP API ------------------------------------------------------------------------------------------
    def query(self, influxql: str, db: str | None = None, *, auth: tuple[str, str] | None = None,
              method: str | None = None) -> dict:
        """``/query`` -> its JSON answer; statements that change something are POSTed. Raises RuntimeError
        for an error answer (HTTP or a statement's ``error``)."""
        params = {"q": influxql, "epoch": "ns"}
        if db:
            params["db"] = db
        verb = method or ("GET" if influxql.lstrip().upper().startswith(("SELECT", "SHOW")) else "POST")
        data = urllib.parse.urlencode(params).encode()
        url = f"{self.url}/query"
        request = urllib.request.Request(url + "?" + data.decode() if verb == "GET" else url,
                                         data=None if verb == "GET" else data, method=verb)
        credentials = auth if auth is not None else (ADMIN if self.auth else None)
        if credentials:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"InfluxDB /query {influxql!r}: HTTP {exc.code}: {exc.read()!r}") from None
        for result in answer.get("results", ()):
            if "error" in result:
                raise RuntimeError(f"InfluxDB /query {influxql!r}: {result['error']}")
        return answer

    def write(self, lines: str, db: str) -> None:
        """Line protocol straight to ``/write`` (a test's own data); raises for any answer but 204."""
        request = urllib.request.Request(f"{self.url}/write?db={urllib.parse.quote(db)}", data=lines.encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 204:
                raise RuntimeError(f"InfluxDB /write: HTTP {response.status}")

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` (idempotent)."""
        self.query(f'CREATE DATABASE "{name}"')

    def rows(self, influxql: str, db: str) -> list[dict]:
        """The first series' rows of a SELECT as dicts (column -> value; ``time`` in ns); [] when empty."""
        answer = self.query(influxql, db)
        out = []
        for result in answer.get("results", ()):
            for series in result.get("series", ()):
                columns = series["columns"]
                tags = series.get("tags") or {}
                out.extend({**tags, **dict(zip(columns, values))} for values in series["values"])
        return out

    def debug_vars(self) -> dict:
        """``/debug/vars`` (the server's own counters: ``httpd`` -> ``writeReq``, ``pointsWrittenOK``)."""
        with urllib.request.urlopen(f"{self.url}/debug/vars", timeout=5) as response:
            return json.loads(response.read())

    def write_requests(self) -> int:
        """Write requests the HTTP API served since this process started."""
        for key, value in self.debug_vars().items():
            if key.startswith("httpd") and isinstance(value, dict):
                return int(value.get("values", {}).get("writeReq", 0))
        return 0


def start(directory: Path, auth: bool = False) -> Influx:
    """A started InfluxDB 1.x with its data in ``directory`` (see the module docstring)."""
    server = Influx(directory, auth)
    server.start()
    if auth:
        try:
            # allowed without credentials while no admin exists; from then on everything needs them
            server.query(f"CREATE USER {ADMIN[0]} WITH PASSWORD '{ADMIN[1]}' WITH ALL PRIVILEGES", auth=())
        except BaseException:
            server.stop()
            raise
    return server
