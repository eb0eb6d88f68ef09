"""CsvSink and JsonlSink: one row per message of each frame, appended to files that rotate by size or time.

    app.node(CsvSink, name="csv", path="out/estimates.csv")
    app.node(JsonlSink, name="log", path="out/est-{start}.jsonl", rotate_s=3600, flush="batch")

Rows are ``_rows.frame_rows``: ``frame_id``, ``topic``, ``timestamp`` (capture time), ``index`` (a list of
messages: one row each), the payload's fields flattened with dots, then ``meta.*``. A payload field named
like a frame column (``timestamp`` ...) is kept as ``data.timestamp``.

- CSV: a header line, then one line per row (UTF-8, ``\\n`` line ends, quoted as Python's csv module does).
  The columns are fixed by a file's first row; the last column, ``extra``, holds a JSON object of the fields
  a later row has beyond them (empty when none); a field a row lacks is an empty cell. Numbers are written as
  Python's ``repr`` (floats read back bit-exact), True/False as ``true``/``false``, None as an empty cell,
  lists and dicts as JSON.
- JSONL: one JSON object per line, full fidelity (arrays as lists, bytes as base64 text; NaN and infinities
  as ``NaN`` / ``Infinity``, which Python's json reads back).

Files: ``path`` is a template (see ``_rotate``: ``{start}``, ``{n}``, ``{replica}``); parent folders are
created. ``rotate_bytes`` starts a new file before a write that would take the current one past that size (a
file holds at least one frame); ``rotate_s`` before the first frame captured ``rotate_s`` or more after the
file's first frame (capture times, not the wall clock: a replay gives the same files; a late frame joins the
current file). A sink (re)started continues the newest file of its template, a new run too.

Flush policy (``flush``):
- ``"frame"`` (default): each frame's rows are written to the OS in one write() inside consume(), before the
  frame is acknowledged: a crash of the node loses nothing written.
- ``"batch"``: rows are collected and written when there are ``flush_rows`` of them, 24 frames (what a sink
  may hold) or the oldest is ``flush_ms`` old; the frames stay unacknowledged (held) until their rows are
  written, so a crash loses nothing either: the runtime hands them out again.
- ``"os"``: as "batch" but frames are acknowledged at once: fewest writes, and a crash loses the rows not
  written yet.
``fsync=True`` also asks the disk to store each write before going on (without it, a machine crash or power
loss may lose what the OS had not stored yet).

Crash safety: on start the sink reads its newest file back: a torn last line (a write a kill cut short) is
cut off, and the last frames written are remembered (the last one; the last 24 when batching), so a frame the
runtime hands out again because the killed process had not acknowledged it is skipped
(``duplicates_skipped``), or only its missing rows are written (``frames_completed``). Such a frame may come
after newer ones, so rows written across a crash can be out of order (``frame_id`` and ``index`` tell). The
one limit: a frame with the very topic, frame id and capture time of one remembered is taken for it (a replay
of identical frames right after a restart).
A write that fails (disk full) is undone and retried with back-off; the frames wait, unacknowledged.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, ClassVar

from edgeflow.connectors._base import (Backoff, ConnectionState, count, opt_bool, opt_number, opt_str,
                                       option_error, unknown_options)
from edgeflow.connectors._batch import Batch
from edgeflow.connectors._rotate import Tail, Template, check_template, scan_tail
from edgeflow.connectors._rows import FRAME_COLUMNS, flatten, frame_rows, payload_items, user_meta
from edgeflow.nodes.base import SinkNode

log = logging.getLogger(__name__)

FLUSH = ("frame", "batch", "os")


def rows_of(frame: Any, data: Any, with_meta: bool = True) -> list[dict[str, Any]]:
    """``frame_rows`` with the frame's own columns kept: a payload field named ``frame_id``, ``topic``,
    ``timestamp`` (or ``index`` in a list of messages) is renamed ``data.<name>``, in its place."""
    rows = frame_rows(frame, data, with_meta=with_meta)
    items = payload_items(data)
    taken = FRAME_COLUMNS + (("index",) if len(items) > 1 else ())
    for i, item in enumerate(items):
        clash = [key for key in taken if key in item and not isinstance(item[key], dict)
                 and f"data.{key}" not in rows[i]]             # (not renamed by frame_rows already)
        if not clash:
            continue
        fixed: dict[str, Any] = {"frame_id": frame.frame_id, "topic": frame.topic,
                                 "timestamp": frame.timestamp}
        if len(items) > 1:
            fixed["index"] = i
        for key, value in flatten(item).items():
            fixed[f"data.{key}" if key in clash else key] = value
        if with_meta:
            fixed.update(flatten(user_meta(frame.meta), "meta."))
        rows[i] = fixed
    return rows


def _groups(keys: list) -> list[list]:
    """Consecutive equal keys as [key, count] (a frame's rows share its key)."""
    out: list[list] = []
    for key in keys:
        if out and out[-1][0] == key:
            out[-1][1] += 1
        else:
            out.append([key, 1])
    return out


@dataclasses.dataclass
class _Open:
    """The file being written."""

    path: Path
    fd: Any                         # an unbuffered binary file (io.FileIO)
    written: int = 0                # bytes in the file
    size: int = 0                   # bytes in it once the pending rows are written
    rows: int = 0                   # rows in it (of a continued file: at least those its tail showed)
    start: float | None = None      # capture time of its first frame
    columns: list[str] | None = None


class _Csv:
    """CSV rows: header, cells, the overflow column."""

    quoted, head, header_rows = True, 2, 1

    @staticmethod
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if value is True or value is False:
            return "true" if value else "false"
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, (list, dict)):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return str(value)

    def encode(self, rows: list[dict], out: _Open) -> bytes:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if out.columns is None:
            columns = list(rows[0])
            extra = "extra"
            while extra in columns:
                extra += "_"
            out.columns = columns + [extra]
            writer.writerow(out.columns)
        columns = out.columns
        where = {name: i for i, name in enumerate(columns[:-1])}
        for row in rows:
            cells = [""] * len(columns)
            extra = {}
            for key, value in row.items():
                i = where.get(key)
                if i is None:
                    extra[key] = value
                else:
                    cells[i] = self.cell(value)
            if extra:
                cells[-1] = json.dumps(extra, ensure_ascii=False, separators=(",", ":"))
            writer.writerow(cells)
        return text.getvalue().encode("utf-8")

    def key(self, row: dict) -> tuple:
        return tuple(self.cell(row.get(name)) for name in FRAME_COLUMNS)

    @staticmethod
    def _parse(records: list[bytes]) -> list[list[str]]:
        return list(csv.reader(io.StringIO(b"".join(records).decode("utf-8", "replace"))))

    def keys(self, records: list[bytes]) -> list:
        return [tuple(cells[:3]) if len(cells) >= 3 else None for cells in self._parse(records)]

    def recover(self, node: str, path: Path, tail: Tail) -> tuple[list[str] | None, float | None]:
        """(columns, first capture time) of a file this sink wrote; ConfigError for another file."""
        if not tail.head:
            return None, None
        columns = self._parse(tail.head[:1])[0]
        if tuple(columns[:3]) != FRAME_COLUMNS or not re.fullmatch(r"extra_*", columns[-1]):
            raise option_error(node, "path", f"{str(path)!r} is not a file a CsvSink wrote (its header "
                                             "does not start with frame_id,topic,timestamp and end with "
                                             "extra); choose another path")
        first = None
        if len(tail.head) > 1:
            cells = self._parse(tail.head[1:2])[0]
            first = _float(cells[2] if len(cells) > 2 else None)
        return columns, first


class _Jsonl:
    """JSON lines."""

    quoted, head, header_rows = False, 1, 0

    def encode(self, rows: list[dict], out: _Open) -> bytes:
        return "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
                       for row in rows).encode("utf-8")

    def key(self, row: dict) -> tuple:
        return tuple(json.dumps(row.get(name)) for name in FRAME_COLUMNS)

    def keys(self, records: list[bytes]) -> list:
        out = []
        for record in records:
            try:
                row = json.loads(record)
            except ValueError:
                row = None
            out.append(self.key(row) if isinstance(row, dict) else None)
        return out

    def recover(self, node: str, path: Path, tail: Tail) -> tuple[None, float | None]:
        if not tail.last:
            return None, None
        last = self.keys(tail.last[-1:])[0]
        if last is None or last[0] == "null":
            raise option_error(node, "path", f"{str(path)!r} is not a file a JsonlSink wrote (its last line "
                                             "is not a JSON object with a frame_id); choose another path")
        try:
            first = json.loads(tail.head[0]).get("timestamp") if tail.head else None
        except (ValueError, AttributeError):
            first = None
        return None, _float(first)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _FileSink(SinkNode):
    """The file sinks' common part: files, rotation, flushing, crash recovery (see the module docstring)."""

    reports_connections: ClassVar[bool] = True   # /readyz waits for its connection state (_base.py)

    max_held_frames: ClassVar[int] = 24
    OPTIONS: ClassVar[tuple] = ("path", "rotate_bytes", "rotate_s", "flush", "flush_rows", "flush_ms",
                                "fsync", "meta")
    codec: ClassVar[type] = _Jsonl
    path: Any = None
    rotate_bytes: int | None = None
    rotate_s: float | None = None
    flush: str = "frame"
    flush_rows: int = 1000
    flush_ms: float = 1000.0
    fsync: bool = False
    meta: bool = True

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Every option, at registration (one line naming the node and the option)."""
        unknown_options(name, options, cls.OPTIONS)
        if options.get("path") is None:
            raise option_error(name, "path", "required (a file path, e.g. 'out/estimates.csv')")
        check_template(name, "path", options["path"])
        opt_number(name, options, "rotate_bytes", low=1, integer=True)
        opt_number(name, options, "rotate_s", low=0.001)
        flush = opt_str(name, options, "flush", default="frame", choices=FLUSH)
        for key in ("flush_rows", "flush_ms"):
            if options.get(key) is not None and flush == "frame":
                raise option_error(name, key, "only with flush='batch' or flush='os' (flush='frame' writes "
                                              "every frame at once)")
        opt_number(name, options, "flush_rows", low=1, integer=True)
        opt_number(name, options, "flush_ms", low=1)
        opt_bool(name, options, "fsync")
        opt_bool(name, options, "meta", default=True)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Continue the newest file of the template (cut a torn line, remember its last frames)."""
        replicas = int(getattr(self, "replicas", 1) or 1)
        if replicas > 1 and "{replica}" not in str(self.path):
            raise option_error(self.name, "path", f"{replicas} replicas would write one file: put "
                                                  "{replica} in the file name")
        self._codec = self.codec()
        self._template = Template(self.path, rotating=bool(self.rotate_bytes or self.rotate_s),
                                  replica=self.replica)
        self._file: _Open | None = None
        self._pending: list[bytes] = []
        self._pending_rows = 0
        self._pending_since = 0.0
        self._batch = Batch(self, self.flush_rows, self.flush_ms / 1000.0) if self.flush == "batch" else None
        self._recovered: dict[tuple, int] = {}       # the last frames' keys -> their rows in the file
        self._backoff = Backoff(0.5, 10.0)
        self._failing = False
        newest = self._template.newest()
        if newest is not None:
            self._continue(newest)
        self._state = ConnectionState(self, str(self.path))       # "down" while a write fails (disk full)
        self._state.up()

    def consume(self, data: Any) -> None:
        """Write (or, batching, collect) the frame's rows; skip what a killed predecessor already wrote."""
        frame = self.current_frame
        rows = rows_of(frame, data, self.meta)
        if self._recovered:
            rows = self._unseen(rows)
            if not rows:
                return
        self._place(frame.timestamp, rows)

    def idle(self) -> None:
        """Write the collected rows once they are flush_ms old."""
        if self._pending and self._due():
            self._write_pending()

    def teardown(self) -> None:
        """Write what is collected and close the file."""
        try:
            if getattr(self, "_pending", None):
                self._write_pending()
        except OSError as exc:
            log.error("node '%s': could not write the last rows to %s: %s", self.name, self._file.path, exc)
        finally:
            if getattr(self, "_file", None) is not None:
                self._file.fd.close()
                self._file = None

    # -- placing rows --------------------------------------------------------------------------------------
    def _place(self, timestamp: float, rows: list[dict]) -> None:
        out = self._file
        blob = self._codec.encode(rows, out) if out is not None else b""
        if out is None or self._rotate_due(out, timestamp, len(blob)):
            if self._pending:
                self._write_pending()            # a batch never spans two files
            out = self._new_file(timestamp)
            blob = self._codec.encode(rows, out)
        if out.start is None:
            out.start = timestamp
        out.rows += len(rows)
        out.size += len(blob)
        if self.flush == "frame":
            self._emit(blob)
            count(self, "rows", len(rows))
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(blob)
        self._pending_rows += len(rows)
        if self._batch is not None:
            self._batch.add(rows)                # held: acknowledged once written
        if self._due():
            self._write_pending()

    def _rotate_due(self, out: _Open, timestamp: float, size: int) -> bool:
        if not out.rows:
            return False                         # an empty file takes the frame, whatever its size or time
        if self.rotate_s and out.start is not None and timestamp >= out.start + self.rotate_s:
            return True
        return bool(self.rotate_bytes and out.size + size > self.rotate_bytes)

    def _due(self) -> bool:
        if self._batch is not None:
            return self._batch.ready()
        return (self._pending_rows >= self.flush_rows
                or time.monotonic() - self._pending_since >= self.flush_ms / 1000.0)

    def _write_pending(self) -> None:
        blob, rows = b"".join(self._pending), self._pending_rows
        self._pending, self._pending_rows = [], 0
        self._emit(blob)
        count(self, "rows", rows)
        if self._batch is not None:
            _, held = self._batch.take()
            Batch.acknowledge(held)

    def _new_file(self, timestamp: float) -> _Open:
        if self._file is not None:
            self._file.fd.close()
        path = self._template.next_path(timestamp)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open(path, "ab", buffering=0)
        if self.fsync:
            _fsync_folder(path.parent)
        self._file = _Open(path, fd, written=fd.tell(), size=fd.tell())
        count(self, "files")
        return self._file

    def _emit(self, blob: bytes) -> None:
        """Write ``blob`` at the end of the file, all of it (fsync'd when asked); a failed write is cut off
        again and retried with back-off until it succeeds or the node is stopped."""
        out = self._file
        while True:
            try:
                view = memoryview(blob)
                while view:
                    view = view[out.fd.write(view):]
                if self.fsync:
                    os.fsync(out.fd.fileno())
            except OSError as exc:
                self._write_failed(out, exc)
                continue
            out.written += len(blob)
            if self._failing:
                self._failing = False
                self._backoff.reset()
                self._state.up()
                log.info("node '%s': writing %s again", self.name, out.path)
            return

    def _write_failed(self, out: _Open, exc: OSError) -> None:
        try:
            os.ftruncate(out.fd.fileno(), out.written)     # no half row stays behind
        except OSError:
            pass
        count(self, "write_errors")
        self._state.down(f"{exc.strerror or exc}")
        if not self._failing:
            self._failing = True
            log.error("node '%s': cannot write %s: %s; retrying (its frames wait, unacknowledged)", self.name,
                      out.path, exc)
        # the runtime's wait serves statistics meanwhile, where it has one; True: the node is asked to stop
        wait = getattr(self.context, "wait", None) or getattr(getattr(self.context, "stopping", None), "wait",
                                                              None)
        if wait is None or wait(self._backoff.next()):
            raise exc

    # -- crash recovery ------------------------------------------------------------------------------------
    def _continue(self, path: Path) -> None:
        # the frames a killed process may have written without acknowledging: the one it was consuming, or
        # the batch it held (remembering no more keeps a replay of the same frames from being taken for them)
        codec, want = self._codec, (self.max_held_frames if self._batch is not None else 1)
        tail = scan_tail(path, quoted=codec.quoted, head=codec.head,
                         enough=lambda records: len(_groups(codec.keys(records))) > want)
        columns, first = codec.recover(self.name, path, tail)
        if tail.good < tail.size:
            with open(path, "r+b") as file:
                file.truncate(tail.good)
                if self.fsync:
                    os.fsync(file.fileno())
            count(self, "torn_lines")
            log.warning("node '%s': cut a torn last line (%d bytes, a write cut short by a crash) off %s",
                        self.name, tail.size - tail.good, path)
        keys = codec.keys(tail.last)
        if tail.from_start:
            keys = keys[codec.header_rows:]
        groups = _groups(keys)
        if not tail.from_start:
            groups = groups[1:]                  # the oldest may have rows before the part read back
        for key, rows in groups[-want:]:
            if key is not None:
                self._recovered[key] = rows
        fd = open(path, "ab", buffering=0)
        self._file = _Open(path, fd, written=tail.good, size=tail.good, rows=len(keys), start=first,
                           columns=columns if tail.good else None)

    def _unseen(self, rows: list[dict]) -> list[dict]:
        """The rows of a frame not in the file yet. (A frame handed out again after a crash may come after
        newer ones: the ring requeues a dead reader's frames when its writer notices, within about 0.5 s.)"""
        written = self._recovered.pop(self._codec.key(rows[0]), None)
        if written is None:
            return rows
        if written >= len(rows):
            count(self, "duplicates_skipped")
            return []
        count(self, "frames_completed")
        return rows[written:]


def _fsync_folder(folder: Path) -> None:
    """Store a new file's name (its folder entry) on disk too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CsvSink(_FileSink):
    """Appends one CSV row per message of each frame to ``path`` (see edgeflow.connectors.files).

    Options: ``path`` (template), ``rotate_bytes``, ``rotate_s``, ``flush`` ("frame", "batch", "os"),
    ``flush_rows``, ``flush_ms``, ``fsync``, ``meta`` (meta.* columns, default True).

    Guarantee: with flush "frame" (the default) or "batch", every frame it receives is in its files exactly
    once, also across a SIGKILL and restart of the sink (a torn line is cut off, a frame handed out again is
    skipped), while flush "os" may lose the rows not yet written at a crash and only ``fsync=True`` survives a
    power loss.
    """

    codec = _Csv


class JsonlSink(_FileSink):
    """Appends one JSON line per message of each frame to ``path`` (see edgeflow.connectors.files).

    Options: as CsvSink.

    Guarantee: with flush "frame" (the default) or "batch", every frame it receives is in its files exactly
    once, also across a SIGKILL and restart of the sink (a torn line is cut off, a frame handed out again is
    skipped), while flush "os" may lose the rows not yet written at a crash and only ``fsync=True`` survives a
    power loss.
    """

    codec = _Jsonl
