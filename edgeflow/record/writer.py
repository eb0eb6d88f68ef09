"""McapRecorder: frames of ring topics into chunked, compressed, indexed, rotating MCAP files.

    rec = McapRecorder("out/run.mcap", app="demo", compression="lz4", rotate_bytes=512 << 20)
    rec.write("camera", frame, node="camera")
    rec.close()

The records themselves (header, schema, channel, metadata, message index, chunk index, statistics, summary
offsets, footer) are the ``mcap`` package's record classes. The chunks are built here rather than by
``mcap.writer.Writer``: a message is handed to a *streaming* compressor (lz4 frame / zstd) piece by piece, so a
frame's array goes from its shared-memory slot straight into the compressor, with no copy of the frame before
compression (``mcap.writer.Writer`` first copies every message into an in-memory chunk buffer). The chunk's
CRC is computed on the pieces as they go. The result is an ordinary MCAP file: any MCAP reader opens it.

Crash safety: the header, metadata, schemas and channels are written (outside chunks) before the first
message that needs them, and every chunk is written to the OS in one go once complete, followed by its
message indexes. A recorder killed at any moment leaves a file that readers open up to its last complete
chunk (``recover`` then adds the summary). A chunk is closed when it reaches ``chunk_bytes`` or holds frames
captured ``chunk_seconds`` apart (also checked by ``flush_due``): that bounds what a kill loses.

Disk full (any OSError while writing): the recorder stops, keeps the error as one line in ``.error`` (also
logged once), counts later frames as drops and never raises into the caller: the pipeline goes on.
"""

from __future__ import annotations

import datetime
import logging
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (Channel, ChunkIndex, DataEnd, Footer, Header, MessageIndex, Metadata, MetadataIndex,
                          Schema, Statistics, SummaryOffset)

from edgeflow.errors import ConfigError
from edgeflow.record import format as fmt

__all__ = ["McapRecorder", "COMPRESSIONS", "rotated_path", "MAGIC", "keep_freed_memory"]

log = logging.getLogger(__name__)

MAGIC = b"\x89MCAP0\r\n"
COMPRESSIONS = ("lz4", "zstd", "none")
LIBRARY = "edgeflow-record"
_MESSAGE_HEAD = struct.Struct("<BQHIQQ")         # opcode, record length, channel id, sequence, log, publish time
_CHUNK_HEAD = struct.Struct("<BQQQQI")           # opcode, record length, start, end, uncompressed size, crc
_IOV = 512                                       # buffers per writev (IOV_MAX is 1024 on Linux)


def rotated_path(path: str | os.PathLike, n: int) -> Path:
    """The ``n``-th file of a rotating recording: ``run.mcap`` -> ``run-0001.mcap``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{n:04d}{path.suffix or '.mcap'}")


def keep_freed_memory() -> bool:
    """Make glibc keep freed buffers of up to 32 MiB for reuse in this process (mallopt) rather than return
    them to the kernel; True if it took.

    A compressed chunk of a 1080p frame is a fresh multi-MB buffer; by default glibc maps each one anew and
    unmaps it once written, and the kernel then zeroes ~3000 new pages per frame: measured at 30 fps, 1080p,
    lz4: 15 ms of system CPU per frame without this, 3 ms with it. Called by the processes that record
    (``edgeflow record``, RecorderNode's node process), not on import: it is a process-wide setting.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1
        return libc.mallopt(m_trim_threshold, 256 << 20) == 1 and ok
    except (OSError, AttributeError):     # not glibc: the allocator's own defaults
        return False


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("edgeflow")
    except Exception:                 # a checkout that is not installed
        return "0"


class _Chunk:
    """The chunk being built: compressed output so far, CRC and size of what went in, message indexes."""

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.out: list = []
        if compression == "lz4":
            import lz4.frame
            self._comp = lz4.frame.LZ4FrameCompressor()
            self.out.append(self._comp.begin())
        elif compression == "zstd":
            import zstandard
            self._comp = zstandard.ZstdCompressor(level=3).compressobj()
        else:
            self._comp = None
            self._buf = bytearray()
        self.crc = 0
        self.size = 0
        self.out_bytes = 0
        self.start = self.end = 0
        self.count = 0
        self.indexes: dict[int, list] = {}

    def add(self, channel_id: int, log_ns: int, record_head: bytes, pieces: list) -> None:
        if self.count == 0:
            self.start = self.end = log_ns
        else:
            self.start, self.end = min(self.start, log_ns), max(self.end, log_ns)
        self.count += 1
        self.indexes.setdefault(channel_id, []).append((log_ns, self.size))
        for piece in (record_head, *pieces):
            self.crc = zlib.crc32(piece, self.crc)
            self.size += len(piece) if isinstance(piece, bytes) else memoryview(piece).nbytes
            if self._comp is None:
                self._buf += piece
                self.out_bytes = len(self._buf)
            else:
                out = self._comp.compress(piece)
                if out:
                    self.out.append(out)
                    self.out_bytes += len(out)

    def finish(self) -> list:
        if self._comp is None:
            self.out = [self._buf]
        else:
            self.out.append(self._comp.flush())
        self.out_bytes = sum(len(b) for b in self.out)
        return self.out


class _File:
    """One open MCAP file and what its summary will need."""

    def __init__(self, path: Path, profile: str, metadata: dict) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.pos = 0
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.chunk_indexes: list[ChunkIndex] = []
        self.metadata_indexes: list[MetadataIndex] = []
        self.counts: dict[int, int] = {}
        self.messages = 0
        self.start_ns = self.end_ns = 0
        self.first_log: int | None = None
        self.schema_ids: dict[tuple, int] = {}
        self.channel_ids: dict[str, int] = {}
        self.write_all([MAGIC, self.record(Header(profile=profile, library=LIBRARY))])
        b = RecordBuilder()
        Metadata(name="edgeflow", metadata=metadata).write(b)
        data = b.end()
        self.metadata_indexes.append(MetadataIndex(offset=self.pos, length=len(data), name="edgeflow"))
        self.write_all([data])

    @staticmethod
    def record(rec: Any) -> bytes:
        b = RecordBuilder()
        rec.write(b)
        return b.end()

    def write_all(self, parts: list) -> None:
        """Write every part (partial writes resumed), at most _IOV buffers per system call."""
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        while views:
            batch = views[:_IOV]
            n = os.writev(self.fd, batch)
            self.pos += n
            while n:
                head = batch[0]
                if n >= head.nbytes:
                    n -= head.nbytes
                    batch.pop(0)
                    views.pop(0)
                else:
                    views[0] = head[n:]
                    n = 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class McapRecorder:
    """Writes frames of ring topics to MCAP (see the module docstring and docs/recording.md).

    Args:
        path: the file (``out/run.mcap``); with rotation the files are ``run-0001.mcap``, ``run-0002.mcap``...
        app: the app the topics belong to (kept in the file's ``edgeflow`` metadata: replay publishes there).
        compression: "lz4" (default: fast enough for raw 1080p at 30 fps), "zstd" (smaller, slower) or "none".
        chunk_bytes: uncompressed bytes per chunk (a chunk holds at least one message).
        chunk_seconds: a chunk also closes once it spans this much capture time: what a kill may lose.
        rotate_bytes: start the next file before a message would take one past this many bytes (the summary,
            a few KB, comes on top; a file holds at least one message). None: never.
        rotate_seconds: start the next file at the first frame captured this long after the file's first.
        jpeg: store uint8 mono/BGR image topics as foxglove.CompressedImage JPEG (lossy; ``jpeg_quality``).
        ros2: ROS 2 CDR messages (``sensor_msgs/msg/Image``, ``std_msgs/msg/String``), profile "ros2".
        color: channel order of 3/4-channel uint8 images, "bgr" (OpenCV, default) or "rgb".

    Raises:
        ConfigError: a bad option (naming it).
    """

    def __init__(self, path: str | os.PathLike, *, app: str, compression: str = "lz4",
                 chunk_bytes: int = 4 << 20, chunk_seconds: float = 1.0, rotate_bytes: int | None = None,
                 rotate_seconds: float | None = None, jpeg: bool = False, ros2: bool = False,
                 color: str = "bgr", jpeg_quality: int = 90) -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"recorder: compression={compression!r}: one of {', '.join(COMPRESSIONS)}")
        for name, value in (("chunk_bytes", chunk_bytes), ("chunk_seconds", chunk_seconds),
                            ("rotate_bytes", rotate_bytes), ("rotate_seconds", rotate_seconds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0):
                raise ConfigError(f"recorder: {name}={value!r}: a number > 0")
        if jpeg and ros2:
            raise ConfigError("recorder: jpeg with ros2: ROS 2 images are recorded raw (sensor_msgs/msg/Image)")
        if color not in ("bgr", "rgb"):
            raise ConfigError(f"recorder: color={color!r}: 'bgr' or 'rgb'")
        self.path = Path(path)
        self.app = app
        self.compression = compression
        self.chunk_bytes = int(chunk_bytes)
        self.chunk_seconds = float(chunk_seconds)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.jpeg = bool(jpeg)
        self.jpeg_quality = int(jpeg_quality)
        self.ros2 = bool(ros2)
        self.color = color
        self.error: str | None = None
        self._ros = None
        if self.ros2:
            from edgeflow.record import ros2 as _ros2
            self._ros = _ros2.Ros2Encoder()
        self._rotating = rotate_bytes is not None or rotate_seconds is not None
        self._file: _File | None = None
        self._chunk: _Chunk | None = None
        self._kinds: dict[str, tuple[str, bool]] = {}     # ring topic -> (kind, jpeg)
        self._nodes: dict[str, str] = {}
        self._files: list[str] = []
        self._frames = 0
        self._done_bytes = 0         # bytes of the files finished
        self._chunks = 0
        self._drops = 0
        self._started = time.monotonic()
        self._closed = False
        self._meta = {"app": app, "edgeflow_version": _version(),
                      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        try:
            self._open()
        except OSError as exc:
            raise ConfigError(f"recorder: cannot create {self._next_path()}: {exc.strerror or exc}") from None

    # -- files ---------------------------------------------------------------------------------------------------
    def _next_path(self) -> Path:
        return rotated_path(self.path, len(self._files) + 1) if self._rotating else self.path

    def _open(self) -> None:
        path = self._next_path()
        self._file = _File(path, "ros2" if self.ros2 else "", self._meta)
        self._files.append(str(path))

    def _channel(self, topic: str, node: str | None, frame: Any) -> int:
        """The channel id of ``topic`` in the current file; registers its schema and channel first."""
        f = self._file
        cid = f.channel_ids.get(topic)
        if cid is not None:
            return cid
        kind, jpeg = self._kinds.get(topic) or self._kind(topic, frame)
        if self._ros is not None:
            name, sencoding, sdata, mencoding, channel_topic = self._ros.schema(topic, kind)
        else:
            name, sencoding, sdata = fmt.schema_for(kind, jpeg=jpeg, first=frame.data, topic=topic)
            mencoding, channel_topic = fmt.message_encoding(kind), topic
        sid = self._schema(name, sencoding, sdata) if name else 0
        meta = {"edgeflow.topic": topic, "edgeflow.node": node or self._nodes.get(topic) or topic.split(".")[0],
                "edgeflow.kind": kind}
        if jpeg:
            meta["edgeflow.jpeg"] = "true"
        if self._ros is not None:
            from edgeflow.record import ros2
            meta["offered_qos_profiles"] = ros2.QOS
        return self._register(topic, channel_topic, mencoding, sid, meta)

    def _kind(self, topic: str, frame: Any) -> tuple[str, bool]:
        kind = fmt.kind_of(frame.data)
        data = frame.data
        jpeg = (self.jpeg and kind == "image" and data.dtype.itemsize == 1
                and (data.ndim == 2 or data.shape[2] == 3))
        self._kinds[topic] = (kind, jpeg)
        return kind, jpeg

    # -- writing -------------------------------------------------------------------------------------------------
    def write(self, ring_topic: str, frame: Any, node: str | None = None) -> bool:
        """Record one frame of ``ring_topic`` (produced by ``node``); True if it was recorded.

        Never raises for I/O: after an OSError (disk full) the recorder has stopped (``.error``) and every
        frame is counted as a drop. A payload that changed kind on a topic (an image topic sending a dict)
        is dropped and logged.
        """
        if self.error is not None or self._closed:
            self._drops += 1
            return False
        if node is not None:
            self._nodes.setdefault(ring_topic, node)
        log_ns = int(round(frame.timestamp * 1e9))
        try:
            kind, jpeg = self._kinds.get(ring_topic) or self._kind(ring_topic, frame)
            if self._ros is not None:
                pieces = self._ros.encode(kind, frame, log_ns, ring_topic)
            else:
                pieces = fmt.encode_frame(kind, frame, log_ns, topic=ring_topic, color=self.color,
                                          jpeg_quality=self.jpeg_quality if jpeg else None)
            size = sum(len(p) if isinstance(p, bytes) else memoryview(p).nbytes for p in pieces)
            f = self._file
            if self._rotating and f.messages and self._should_rotate(f, log_ns, size):
                self._rotate()
                f = self._file
            cid = self._channel(ring_topic, node, frame)
            chunk = self._chunk
            if chunk is None:
                chunk = self._chunk = _Chunk(self.compression)
            if self._ros is not None:
                env = self._ros.envelope(kind, frame)
                if env is not None:            # ROS messages cannot carry it: a companion message, just before
                    self._add(chunk, self._envelope_channel(ring_topic), frame, log_ns, [env], len(env))
            self._add(chunk, cid, frame, log_ns, pieces, size)
            self._frames += 1
            if chunk.size >= self.chunk_bytes or chunk.end - chunk.start >= self.chunk_seconds * 1e9:
                self._flush_chunk()
            return True
        except OSError as exc:
            self._fail(exc)
            self._drops += 1
            return False
        except TypeError as exc:
            log.error("recorder: %s; frame dropped", exc)
            self._drops += 1
            return False

    def _add(self, chunk: _Chunk, cid: int, frame: Any, log_ns: int, pieces: list, size: int) -> None:
        f = self._file
        head = _MESSAGE_HEAD.pack(Opcode.MESSAGE, 22 + size, cid, frame.frame_id & 0xFFFFFFFF, log_ns,
                                  time.time_ns())
        chunk.add(cid, log_ns, head, pieces)
        f.counts[cid] = f.counts.get(cid, 0) + 1
        if f.messages == 0:
            f.start_ns = f.end_ns = log_ns
            f.first_log = log_ns
        else:
            f.start_ns, f.end_ns = min(f.start_ns, log_ns), max(f.end_ns, log_ns)
        f.messages += 1

    def _envelope_channel(self, topic: str) -> int:
        """ROS 2 mode: the channel of ``topic``'s envelopes (std_msgs/msg/String) in the current file."""
        from edgeflow.record import ros2
        f = self._file
        key = topic + "\0envelope"
        cid = f.channel_ids.get(key)
        if cid is None:
            name, sencoding, sdata = self._ros.envelope_schema()
            sid = self._schema(name, sencoding, sdata)
            cid = self._register(key, ros2.ros_topic(topic) + ros2.ENVELOPE_SUFFIX, "cdr", sid,
                                 {"edgeflow.topic": topic, "edgeflow.role": "envelope",
                                  "offered_qos_profiles": ros2.QOS})
        return cid

    def _schema(self, name: str, encoding: str, data: bytes) -> int:
        f = self._file
        sid = f.schema_ids.get((name, data))
        if sid is None:
            sid = len(f.schemas) + 1
            schema = Schema(id=sid, name=name, encoding=encoding, data=data)
            f.schemas[sid] = schema
            f.schema_ids[(name, data)] = sid
            f.write_all([f.record(schema)])
        return sid

    def _register(self, key: str, topic: str, encoding: str, sid: int, meta: dict) -> int:
        f = self._file
        cid = len(f.channels) + 1
        channel = Channel(id=cid, topic=topic, message_encoding=encoding, schema_id=sid, metadata=meta)
        f.channels[cid] = channel
        f.channel_ids[key] = cid
        f.write_all([f.record(channel)])
        return cid

    def _should_rotate(self, f: _File, log_ns: int, size: int) -> bool:
        if self.rotate_bytes is not None:
            # what is written, the chunk being built so far, and this message (its uncompressed size: the
            # file stays under the limit but for its summary, or a single message larger than the limit)
            pending = self._chunk.out_bytes if self._chunk is not None else 0
            if f.pos + pending + size + 64 > self.rotate_bytes:
                return True
        return self.rotate_seconds is not None and log_ns - f.first_log >= self.rotate_seconds * 1e9

    def _rotate(self) -> None:
        self._finish_file()
        self._open()

    def flush_due(self, now: float | None = None) -> None:
        """Close the chunk being built if its first frame was recorded more than ``chunk_seconds`` ago (call it
        when idle: a topic that goes quiet still reaches the disk)."""
        chunk = self._chunk
        if chunk is None or chunk.count == 0 or self.error is not None:
            return
        now_ns = time.time_ns() if now is None else int(now * 1e9)
        if now_ns - chunk.start >= self.chunk_seconds * 1e9:
            try:
                self._flush_chunk()
            except OSError as exc:
                self._fail(exc)

    def _flush_chunk(self) -> None:
        chunk, self._chunk = self._chunk, None
        if chunk is None or chunk.count == 0:
            return
        f = self._file
        data = chunk.finish()
        comp = b"" if chunk.compression == "none" else chunk.compression.encode()
        length = 8 + 8 + 8 + 4 + 4 + len(comp) + 8 + chunk.out_bytes
        head = (_CHUNK_HEAD.pack(Opcode.CHUNK, length, chunk.start, chunk.end, chunk.size, chunk.crc)
                + struct.pack("<I", len(comp)) + comp + struct.pack("<Q", chunk.out_bytes))
        start = f.pos
        b = RecordBuilder()
        offsets = {}
        index_start = start + len(head) + chunk.out_bytes
        for cid, records in chunk.indexes.items():
            offsets[cid] = index_start + b.count
            MessageIndex(channel_id=cid, records=records).write(b)
        indexes = b.end()
        f.write_all([head, *data, indexes])
        self._chunks += 1
        f.chunk_indexes.append(ChunkIndex(
            message_start_time=chunk.start, message_end_time=chunk.end, chunk_start_offset=start,
            chunk_length=len(head) + chunk.out_bytes, message_index_offsets=offsets,
            message_index_length=len(indexes), compression=comp.decode(), compressed_size=chunk.out_bytes,
            uncompressed_size=chunk.size))

    def _finish_file(self) -> None:
        f = self._file
        try:
            self._flush_chunk()
            tail = summary_bytes(f)
            f.write_all([tail])
        finally:
            f.close()
            self._done_bytes += f.pos

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            where = self._file.path if self._file is not None else self.path
            reason = "disk full" if exc.errno == 28 else (exc.strerror or str(exc))
            self.error = (f"recorder: {where}: {reason} after {self._frames} frames; recording stopped "
                          "(the file opens up to its last complete chunk)")
            log.error("%s", self.error)
        self._chunk = None
        if self._file is not None and self._file.fd >= 0:
            self._file.close()
            self._done_bytes += self._file.pos

    # -- end -------------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Write the last chunk and the summary, close the file (idempotent; never raises for I/O)."""
        if self._closed:
            return
        self._closed = True
        if self.error is not None or self._file is None:
            return
        try:
            self._finish_file()
        except OSError as exc:
            self._fail(exc)

    def stats(self) -> dict:
        """{frames, bytes (written to disk), mb_per_s (since the start), drops, files, chunks, error}."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        f = self._file
        written = self._done_bytes + (f.pos if f is not None and f.fd >= 0 else 0)
        return {"frames": self._frames, "bytes": written, "mb_per_s": written / elapsed / 1e6,
                "drops": self._drops, "files": list(self._files), "chunks": self._chunks, "error": self.error}

    def count_drops(self, n: int) -> None:
        """Add frames lost before they reached the recorder (a subscriber that skipped) to ``drops``."""
        self._drops += n

    def __enter__(self) -> "McapRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summary_bytes(f: Any) -> bytes:
    """DataEnd, the summary section (schemas, channels, statistics, chunk and metadata indexes, summary
    offsets), the footer and the closing magic of a file whose data section ends at ``f.pos``.

    ``f`` has ``pos``, ``schemas``, ``channels``, ``chunk_indexes``, ``metadata_indexes``, ``counts``,
    ``messages``, ``start_ns``, ``end_ns`` (a _File, or what ``recover`` rebuilt)."""
    out = RecordBuilder()
    DataEnd(data_section_crc=0).write(out)
    summary_start = f.pos + out.count
    body = RecordBuilder()
    offsets: list[SummaryOffset] = []

    def group(opcode: int, records: list) -> None:
        if not records:
            return
        start = body.count
        for rec in records:
            rec.write(body)
        offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                     group_length=body.count - start))

    group(Opcode.SCHEMA, list(f.schemas.values()))
    group(Opcode.CHANNEL, list(f.channels.values()))
    group(Opcode.STATISTICS, [Statistics(
        message_count=f.messages, schema_count=len(f.schemas), channel_count=len(f.channels),
        attachment_count=0, metadata_count=len(f.metadata_indexes), chunk_count=len(f.chunk_indexes),
        message_start_time=f.start_ns, message_end_time=f.end_ns,
        channel_message_counts=dict(f.counts))])
    group(Opcode.CHUNK_INDEX, f.chunk_indexes)
    group(Opcode.METADATA_INDEX, f.metadata_indexes)
    offset_start = summary_start + body.count
    for off in offsets:
        off.write(body)
    summary = body.end()
    crc = zlib.crc32(summary)
    crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_start, offset_start), crc)
    Footer(summary_start=summary_start, summary_offset_start=offset_start, summary_crc=crc).write(body)
    return out.end() + summary + body.end() + MAGIC
