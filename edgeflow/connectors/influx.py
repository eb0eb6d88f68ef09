"""InfluxSink: frames as InfluxDB points, written in batches as line protocol over HTTP (InfluxDB 1.x
``/write`` and 2.x ``/api/v2/write``), with the standard library's ``http.client`` on one kept-alive
connection.

    app.node(InfluxSink, name="influx", url="http://127.0.0.1:8086", database="twins", measurement="motor",
             tags=["asset"])

Each row of a frame (``_rows.frame_rows``: one per dict message) becomes one point. Its timestamp is the
frame's capture time in nanoseconds, rounded to the microsecond: ``frame.timestamp`` is a float of seconds,
which holds today's epoch to about 0.24 us, so the microsecond the producer stamped is recovered exactly while
the digits below it would be float noise (the runtime carries no finer stamp). ``time_field`` takes it from a
message field instead (a number in ``time_unit``: an integer is exact to the nanosecond, a float to the
microsecond; or an ISO 8601 text with a UTC offset).

Escaping is InfluxDB's (1.x and 2.x share the parser): commas, spaces and equals signs in tag keys, tag values
and field keys, commas and spaces in the measurement, each after a backslash; backslashes there are kept as
they are (never unescaped); in a string field, backslashes and double quotes get a backslash. So a newline, a
backslash at the end, or an odd run of backslashes before an escaped character cannot be carried in a name or
tag (InfluxDB refuses or changes it): such a tag is left out, such a point skipped, both counted.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import http.client
import json
import math
import re
import ssl
import threading
import time
import urllib.parse
from typing import Any, ClassVar

from edgeflow.connectors import _base
from edgeflow.connectors._batch import Batch
from edgeflow.connectors._rows import FRAME_COLUMNS, frame_rows
from edgeflow.errors import ConfigError
from edgeflow.nodes.base import SinkNode

OPTIONS = ("url", "database", "username", "password", "retention_policy", "bucket", "org", "token",
           "measurement", "tags", "fields", "time_field", "time_unit", "batch_size", "batch_ms", "timeout",
           "ca_file")
V1_ONLY, V2_ONLY = ("username", "password", "retention_policy"), ("org", "token")
TIME_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
NOT_DEFAULT_FIELDS = frozenset(FRAME_COLUMNS) | {"index"}        # frame columns: fields only when named
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CONFIG_STATUSES = (401, 403, 404)   # credentials, or no such database/bucket: the data is not at fault
RETRY_STATUSES = (408, 429)         # and every 5xx: the same batch again, after a back-off
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_TEMPLATE = re.compile(r"\{([^{}]*)\}")
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
# what an escape cannot fix: a line break, a backslash at the end, an odd backslash run before an escaped char
_UNFIT_KEY = re.compile(r"[\r\n]|\\\Z|(?<!\\)\\(\\\\)*[,= ]")
_UNFIT_MEASUREMENT = re.compile(r"[\r\n]|\\\Z|(?<!\\)\\(\\\\)*[, ]|^#")


class InfluxSink(SinkNode):
    """Writes each frame's rows to InfluxDB as points, in batches, retrying until they are stored.

    Guarantee: at least once into InfluxDB across an outage or a sink crash (a frame is acknowledged to its
    ring only after the write that holds its points returned 204), and since InfluxDB keeps one point per
    measurement, tag set and timestamp (a repeated write overwrites it with the same values), a batch written
    again after a lost response or a crash leaves each point stored once.

    Options:
        url: ``http://`` or ``https://`` address of the InfluxDB HTTP API (a path prefix is kept).
        database: InfluxDB 1.x database (``/write``); with ``username``/``password`` (HTTP Basic) and
            ``retention_policy``. Exactly one of ``database`` and ``bucket``.
        bucket, org, token: InfluxDB 2.x (``/api/v2/write``, ``Authorization: Token ...``); all three needed.
        measurement: its name, or a template filled from each row (``"{kind}"``; a row without the field is
            skipped and counted).
        tags: row fields (or ``meta.`` fields, found by their bare name) written as tags; a missing or empty
            one is left out.
        fields: row fields written as fields; default every number, bool and text of the message that is not a
            tag (frame_id, topic, timestamp, index and meta only when named). Integers get the ``i`` suffix,
            floats stay floats; NaN and infinities are left out and counted.
        time_field, time_unit: take the timestamp from this field, in "s" (default), "ms", "us" or "ns".
        batch_size: points per write at most (5000); batch_ms: a batch is written at the latest this old
            (1000). A batch also closes at as many frames as the node may hold (``max_held_frames``).
        timeout: seconds a request may take (10). ca_file: CA bundle for https.

    Failures: a connection error, 5xx, 408 or 429 retries the same batch, in order, with back-off, until it is
    stored or the node is stopped (frames wait upstream meanwhile: DURABLE back-pressure). 401/403/404
    (credentials, a missing database or bucket) at start are a ConfigError from setup; later, one log line
    and the batch is kept and retried at the longest back-off. Another 4xx is bad data: the points InfluxDB
    dropped are counted (``bad_points``), its error logged, and the sink goes on. Counters: ``points``,
    ``writes``, ``retries``, ``bad_points``, ``skipped_values``, ``skipped_points``.
    """

    reports_connections: ClassVar[bool] = True   # /readyz waits for its connection state (_base.py)

    max_held_frames: ClassVar[int] = 24

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Validate every option (see the class docstring) before anything starts."""
        _Settings(name, options)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Parse the options, open the connection and check at once what can only fail by configuration."""
        options = _base.connector_options(self)
        self.settings = s = _Settings(self.name, options)
        self.batch = Batch(self, s.batch_size, s.batch_ms / 1000.0)
        self.state = _base.ConnectionState(self, s.target)
        self.http = _Http(self.name, s)
        self._logged: dict[str, int] = {}
        # a retry loop gives up on it; an object used outside a runtime has no context: its own event
        self._stop = getattr(self.context, "stopping", None) or threading.Event()
        self._check_server()

    def _pause(self, seconds: float) -> bool:
        """Back off; True when the node is asked to stop. In a runtime its statistics stay served meanwhile."""
        wait = getattr(self.context, "wait", None)
        return wait(seconds) if wait is not None else self._stop.wait(seconds)

    def consume(self, data: Any) -> None:
        """Encode the frame's rows as points (no reference to the frame's data is kept) and batch them."""
        frame = self.current_frame
        points = [p for p in (self._point(row, frame) for row in frame_rows(frame, data)) if p is not None]
        self.batch.add(points)
        if self.batch.ready():
            self._flush()

    def idle(self) -> None:
        """Write a batch that has become old enough."""
        if self.batch.ready():
            self._flush()

    def teardown(self) -> None:
        """Write what is left (retrying unless the node is being stopped), then close the connection."""
        try:
            if len(self.batch) or self.batch.held:
                self._flush()
        finally:
            self.http.close()

    # -- writing ---------------------------------------------------------------------------------------------
    def _flush(self) -> None:
        points, held = self.batch.take()
        if self._send(points):
            Batch.acknowledge(held)
        # else: stopping, the frames stay unacknowledged (a restarted sink gets them again)

    def _send(self, points: list[str]) -> bool:
        """Write ``points`` (retrying, see the class docstring); False when given up because of a stop."""
        if not points:
            return True
        s, backoff, failures, since = self.settings, _base.Backoff(), 0, time.monotonic()
        body = "\n".join(points).encode("utf-8")
        while True:
            try:
                status, answer = self.http.request("POST", s.write_path, body, s.headers)
                why = f"HTTP {status}: {_error_text(answer)}"
            except (OSError, http.client.HTTPException) as exc:
                status, answer, why = 0, b"", f"{type(exc).__name__}: {exc}"
            if 200 <= status < 300:
                if failures:
                    self.log.warning("node '%s': InfluxDB %s: written after %d retries (%.1f s)", self.name,
                                     s.target, failures, time.monotonic() - since)
                self.state.up()
                _base.count(self, "writes")
                _base.count(self, "points", len(points))
                return True
            if status == 413 and len(points) > 1:       # over the server's max-body-size: halves
                half = len(points) // 2
                return self._send(points[:half]) and self._send(points[half:])
            if 400 <= status < 500 and status not in RETRY_STATUSES + CONFIG_STATUSES:
                self._bad_data(status, answer, len(points))
                self.state.up()
                return True
            config = status in CONFIG_STATUSES
            # one line per outage (the start's "not reachable yet" is one), one when it is over
            said = self.state.state == "down" and not config
            self.state.down(why)
            if not failures and not said:
                log = self.log.error if config else self.log.warning
                what = _config_hint(status, s) if config else "write failed"
                how = f"every {backoff.cap:g} s" if config else "with back-off"
                log("node '%s': InfluxDB %s: %s (%s); the batch of %d points is kept and retried %s",
                    self.name, s.target, what, why, len(points), how)
            failures += 1
            _base.count(self, "retries")
            if self._stop.is_set() or self._pause(backoff.cap if config else backoff.next()):
                self.log.warning("node '%s': stopping: %d points not written to %s (%s); their frames stay "
                                 "unacknowledged", self.name, len(points), s.target, why)
                return False

    def _bad_data(self, status: int, answer: bytes, n: int) -> None:
        """A 4xx that is the data's fault: count what InfluxDB dropped, say its error, go on."""
        text = _error_text(answer)
        dropped = sum(int(m) for m in re.findall(r"dropped=(\d+)", text)) + text.count("unable to parse")
        bad = min(n, dropped) if dropped else n
        _base.count(self, "bad_points", bad)
        if n - bad:
            _base.count(self, "points", n - bad)
        _base.count(self, "writes")
        self._say("bad", f"node '{self.name}': InfluxDB {self.settings.target} refused {bad} of {n} points "
                         f"(HTTP {status}): {text[:500]}")

    def _check_server(self) -> None:
        """At start: /ping, then an empty write (it checks credentials, the database or bucket and retention
        policy without writing a point). A definite refusal is a ConfigError; no answer only a log line."""
        s = self.settings
        try:
            status, answer = self.http.request("GET", s.ping_path, None, s.headers)
            if 400 <= status < 500 and status not in (401, 403):
                raise ConfigError(f"node '{self.name}': option 'url': {s.target} is not an InfluxDB HTTP API "
                                  f"(GET /ping answered HTTP {status})")
            if status < 300:
                status, answer = self.http.request("POST", s.write_path, b"", s.headers)
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(f"node '{self.name}': option 'url': {s.target}: {exc} (see ca_file)") from None
        except (OSError, http.client.HTTPException) as exc:
            self.state.down(f"{type(exc).__name__}: {exc}")
            self.log.warning("node '%s': InfluxDB %s is not reachable yet (%s: %s); points are kept and "
                             "retried with back-off", self.name, s.target, type(exc).__name__, exc)
            return
        text = _error_text(answer)
        if status in CONFIG_STATUSES:
            raise ConfigError(f"node '{self.name}': InfluxDB {s.target}: {_config_hint(status, s)} "
                              f"(HTTP {status}: {text})")
        if "retention policy not found" in text:             # 1.x answers it with a 500
            raise ConfigError(f"node '{self.name}': option 'retention_policy': {text} on {s.target}")
        # an empty write may be refused as such (400): only a server error says it is not ready
        if status < 500:
            self.state.up()
        else:
            self.state.down(f"HTTP {status}: {text}")

    def _say(self, key: str, message: str) -> None:
        """Log ``message`` the 1st, 10th, 100th and every 1000th time ``key`` happens (not once a frame)."""
        n = self._logged[key] = self._logged.get(key, 0) + 1
        if n in (1, 10, 100) or n % 1000 == 0:
            self.log.error("%s%s", message, f" ({n} times so far)" if n > 1 else "")

    # -- points ----------------------------------------------------------------------------------------------
    def _point(self, row: dict[str, Any], frame: Any) -> str | None:
        """One row as a line-protocol point, or None (counted) when it cannot be one."""
        s = self.settings
        measurement = s.measurement if s.template is None else self._fill(row)
        if measurement is None:
            return None
        tags = []
        for key, name in s.tags:
            value = _lookup(row, name)
            if value is not None and value != "":
                text = _tag_text(value)
                if text is None:
                    _base.count(self, "skipped_values")
                else:
                    tags.append(f",{key}={text.translate(_KEY_ESCAPES)}")
        fields = []
        for name in (s.fields if s.fields is not None else self._default_fields(row)):
            value = row.get(name)
            if value is not None:
                text, key = _field_text(value), _key(name)
                if text is None or not key:
                    _base.count(self, "skipped_values")
                else:
                    fields.append(f"{key}={text}")
        if not fields:
            _base.count(self, "skipped_points")
            self._say("nofields", f"node '{self.name}': a row with no field to write was skipped "
                                  f"(frame {frame.frame_id}; fields: {s.fields or 'any'})")
            return None
        stamp = self._stamp(row, frame)
        return None if stamp is None else f"{measurement}{''.join(tags)} {','.join(fields)} {stamp}"

    def _default_fields(self, row: dict[str, Any]) -> list[str]:
        skip = self.settings.not_fields
        return [k for k, v in row.items() if k not in skip and not k.startswith("meta.")
                and isinstance(v, (bool, int, float, str))]

    def _fill(self, row: dict[str, Any]) -> str | None:
        """The measurement template filled from the row, escaped; None (counted) when it cannot be."""
        missing = []

        def value(match: re.Match) -> str:
            got = _lookup(row, match.group(1))
            if got is None or isinstance(got, (list, dict)):
                missing.append(match.group(1))
                return ""
            return str(got).lower() if isinstance(got, bool) else str(got)

        name = _TEMPLATE.sub(value, self.settings.template)
        if missing or not _representable(name, _UNFIT_MEASUREMENT):
            _base.count(self, "skipped_points")
            self._say("measurement", f"node '{self.name}': option 'measurement': a row without a usable "
                                     f"{'field ' + repr(missing[0]) if missing else 'name'} for "
                                     f"{self.settings.template!r} was skipped")
            return None
        return name.translate(_MEASUREMENT_ESCAPES)

    def _stamp(self, row: dict[str, Any], frame: Any) -> int | None:
        """Nanoseconds since the epoch: the frame's capture time (to the microsecond) or ``time_field``."""
        s = self.settings
        if s.time_field is None:
            return round(frame.timestamp * 1e6) * 1000
        value = _lookup(row, s.time_field)
        stamp = _time_ns(value, s.time_scale)
        if stamp is None:
            _base.count(self, "skipped_points")
            self._say("time", f"node '{self.name}': option 'time_field': a row whose {s.time_field!r} is "
                              f"{'missing' if value is None else repr(value)[:80]} was skipped")
        return stamp


def _lookup(row: dict[str, Any], name: str) -> Any:
    """A row's field, or its ``meta.`` field of that name."""
    return row[name] if name in row else row.get(f"meta.{name}")


def _representable(text: str, unfit: re.Pattern = _UNFIT_KEY) -> bool:
    """Line protocol can carry ``text`` as a tag key or value or field key (or, with its pattern, a
    measurement)."""
    return bool(text) and unfit.search(text) is None


@functools.lru_cache(maxsize=4096)                  # a message's keys are few and repeat in every row
def _key(name: str) -> str:
    """An escaped tag or field key, or "" when it cannot be written."""
    return name.translate(_KEY_ESCAPES) if _representable(name) else ""


def _tag_text(value: Any) -> str | None:
    """A tag value as text (unescaped), or None when it cannot be one."""
    if not isinstance(value, (bool, int, float, str)):
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)      # str(float) is its repr
    return text if _representable(text) else None


def _field_text(value: Any) -> str | None:
    """A field value in line protocol: ``1i``, ``1.5``, ``true``, ``"text"``; None when it cannot be one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i" if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None


def _time_ns(value: Any, scale: int) -> int | None:
    """A time field's value in nanoseconds (floats to the microsecond; see the module docstring)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value * scale
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value * (scale // 1000)) * 1000 if scale >= 1000 else round(value)
    if isinstance(value, str):
        try:
            when = _dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if when.tzinfo is None:
            return None                          # a local time of unknown zone: refused, not guessed
        return (when - EPOCH) // _dt.timedelta(microseconds=1) * 1000
    return None


def _error_text(answer: bytes) -> str:
    """InfluxDB's error out of an answer's body (1.x ``error``, 2.x ``message``), on one line."""
    text = answer.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            text = str(parsed.get("error") or parsed.get("message") or text)
    except ValueError:
        pass
    return " ".join(text.split())[:1000] or "(no message)"


def _config_hint(status: int, s: "_Settings") -> str:
    if status in (401, 403):
        who = f"token for org {s.org!r}" if s.bucket else \
            (f"username {s.username!r} / password" if s.username else "no credentials")
        return f"authorization failed ({who})"
    return f"{'bucket ' + repr(s.bucket) if s.bucket else 'database ' + repr(s.database)} not found"


class _Settings:
    """The options, checked (one-line ConfigErrors naming node and option) and ready to use."""

    def __init__(self, node: str, options: dict[str, Any]) -> None:
        _base.unknown_options(node, options, OPTIONS)
        url = _base.opt_url(node, options, "url", ("http", "https"))
        if url.username is not None or url.password is not None:
            raise _base.option_error(node, "url", "credentials in the URL are not used: give username= and "
                                                  "password= (InfluxDB 1.x) or token= (2.x)")
        if url.query or url.fragment:
            raise _base.option_error(node, "url", f"{_base.redact(options['url'])!r}: no query or fragment "
                                                  "(the sink builds the request's own)")
        self.url = url
        self.target = urllib.parse.urlunsplit((url.scheme, url.netloc, url.path.rstrip("/"), "", ""))
        self.database = _base.opt_str(node, options, "database")
        self.bucket = _base.opt_str(node, options, "bucket")
        if (self.database is None) == (self.bucket is None):
            raise _base.option_error(node, "database" if self.bucket is None else "bucket",
                                     "give exactly one of database= (InfluxDB 1.x) and bucket= (2.x)")
        v2 = self.bucket is not None
        for key in V1_ONLY if v2 else V2_ONLY:
            if options.get(key) is not None:
                where = "1.x (database=)" if v2 else "2.x (bucket=)"
                raise _base.option_error(node, key, f"is for InfluxDB {where}")
        self.username = _base.opt_str(node, options, "username")
        self.password = _base.opt_str(node, options, "password")
        if (self.username is None) != (self.password is None):
            raise _base.option_error(node, "password" if self.password is None else "username",
                                     "username and password go together")
        rp = _base.opt_str(node, options, "retention_policy")
        self.org = _base.opt_str(node, options, "org", required=v2)
        token = _base.opt_str(node, options, "token", required=v2)
        measurement = _base.opt_str(node, options, "measurement", required=True)
        names = _TEMPLATE.findall(measurement)
        rest = _TEMPLATE.sub("", measurement)
        if any(not n for n in names) or "{" in rest or "}" in rest:
            raise _base.option_error(node, "measurement", f"{measurement!r}: a template names fields in "
                                                          "braces, e.g. '{kind}'")
        if not names and not _representable(measurement, _UNFIT_MEASUREMENT):
            raise _base.option_error(node, "measurement", f"{measurement!r} cannot be written in line "
                                                          "protocol (a newline, an ending backslash, a #)")
        self.template = measurement if names else None
        self.measurement = measurement.translate(_MEASUREMENT_ESCAPES)
        tags = _names(node, options, "tags") or []
        fields = _names(node, options, "fields")
        for name in (*tags, *(fields or ())):
            if not _representable(name):
                raise _base.option_error(node, "tags" if name in tags else "fields",
                                         f"{name!r} cannot be a key in line protocol")
        both = set(tags) & set(fields or ())
        if both:
            raise _base.option_error(node, "fields", f"{sorted(both)[0]!r} is a tag already")
        self.tags = sorted((_key(name), name) for name in tags)       # InfluxDB wants tags sorted by key
        self.fields = fields
        self.time_field = _base.opt_str(node, options, "time_field")
        unit = _base.opt_str(node, options, "time_unit", choices=TIME_UNITS)
        if unit is not None and self.time_field is None:
            raise _base.option_error(node, "time_unit", "only with time_field= (frames carry their own time)")
        if self.time_field is not None and (self.time_field in tags or self.time_field in (fields or ())):
            raise _base.option_error(node, "time_field", f"{self.time_field!r} is also a tag or field")
        self.time_scale = TIME_UNITS[unit or "s"]
        self.not_fields = NOT_DEFAULT_FIELDS | set(tags) | set(names) | {self.time_field}
        self.batch_size = _base.opt_number(node, options, "batch_size", default=5000, low=1, high=1_000_000,
                                           integer=True)
        self.batch_ms = _base.opt_number(node, options, "batch_ms", default=1000, low=0, high=3_600_000)
        self.timeout = _base.opt_number(node, options, "timeout", default=10.0, low=0.1, high=3600)
        self.ca_file = _base.opt_str(node, options, "ca_file")
        if self.ca_file is not None and url.scheme != "https":
            raise _base.option_error(node, "ca_file", "is for https:// URLs")
        base = url.path.rstrip("/")
        if v2:
            query = {"org": self.org, "bucket": self.bucket, "precision": "ns"}
            self.write_path = f"{base}/api/v2/write?{urllib.parse.urlencode(query)}"
        else:
            query = {"db": self.database, "precision": "ns", **({"rp": rp} if rp else {})}
            self.write_path = f"{base}/write?{urllib.parse.urlencode(query)}"
        self.ping_path = f"{base}/ping"
        self.headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "edgeflow-influx"}
        if v2:
            self.headers["Authorization"] = f"Token {token}"
        elif self.username is not None:
            pair = f"{self.username}:{self.password}".encode()
            self.headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"


def _names(node: str, options: dict[str, Any], key: str) -> list[str] | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _base.option_error(node, key, f"expected a list of field names, got {value!r}")
    if len(set(value)) != len(value):
        raise _base.option_error(node, key, f"a name is given twice in {list(value)!r}")
    if key == "fields" and not value:
        raise _base.option_error(node, key, "an empty list writes nothing (leave it out for every field)")
    return list(value)


class _Http:
    """One kept-alive HTTP(S) connection to the server, opened again when it breaks."""

    def __init__(self, node: str, s: _Settings) -> None:
        self.settings = s
        self.conn: http.client.HTTPConnection | None = None
        self._context = None
        if s.url.scheme == "https":
            try:
                self._context = ssl.create_default_context(cafile=s.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"node '{node}': option 'ca_file': {s.ca_file!r}: {exc}") from None

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        """(status, body) of one request; raises OSError / HTTPException when the connection fails."""
        fresh = self.conn is None
        if fresh:
            self.conn = self._connect()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            answer = response.read()             # read it all: the connection is reused
        except ConnectionError:
            self.close()
            if fresh:
                raise
            # a kept-alive connection the server closed while we were idle: once more, on a new one
            return self.request(method, path, body, headers)
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, answer

    def _connect(self) -> http.client.HTTPConnection:
        s = self.settings
        if self._context is not None:
            return http.client.HTTPSConnection(s.url.hostname, s.url.port, timeout=s.timeout,
                                               context=self._context)
        return http.client.HTTPConnection(s.url.hostname, s.url.port, timeout=s.timeout)

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
