"""Read EdgeFlow recordings back as Frames: ``open_recording(path) -> Recording``.

    rec = open_recording("out/run.mcap")          # or run-0001.mcap..., a list of files, or a folder
    rec.app, rec.topics, rec.nodes                 # 'demo', ['camera', 'detector.r0'], {'camera': 'camera', ...}
    for topic, frame in rec.frames(topics=["camera"], start=t0, end=t1):
        ...                                        # frame.frame_id, .timestamp, .meta, .data exact, .topic

Files with a summary are read through ``mcap``'s seeking reader (chunk indexes: a time window reads only the
chunks it needs). A file without one (its recorder was killed) is read front to back with ``mcap``'s
non-seeking reader up to its last complete chunk; the torn end is skipped silently (``Recording.truncated``
names such files). Frames come in log-time (capture time) order across topics and files.
"""

from __future__ import annotations

import heapq
import json
import itertools
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from mcap.reader import NonSeekingReader, SeekingReader
from mcap.records import Channel, Metadata
from mcap.stream_reader import StreamReader

from edgeflow.errors import ConfigError
from edgeflow.frame import Frame
from edgeflow.record import format as fmt

__all__ = ["open_recording", "Recording", "expand_paths"]

REORDER_NS = 5_000_000_000   # a file without a summary: frames up to this far out of capture order are sorted


def expand_paths(paths_or_path: Any) -> list[Path]:
    """The files of a recording: a file, a list of files, a folder (its ``*.mcap``), or ``run.mcap`` when only
    its rotated files ``run-0001.mcap``... exist.

    Raises:
        ConfigError: nothing to read there.
    """
    items = [paths_or_path] if isinstance(paths_or_path, (str, os.PathLike)) else list(paths_or_path)
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.glob("*.mcap"))
        elif path.is_file():
            found = [path]
        else:
            found = sorted(path.parent.glob(f"{path.stem}-[0-9][0-9][0-9][0-9]{path.suffix or '.mcap'}"))
        if not found:
            raise ConfigError(f"recording {item}: no such file (nor rotated files {Path(item).stem}-0001...)")
        out.extend(found)
    if not out:
        raise ConfigError("open_recording: no files given")
    return out


class _FileInfo:
    """What one file holds: its app, channels (by id), whether it has a summary."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.app: str | None = None
        self.channels: dict[int, Channel] = {}
        self.has_summary = False
        self.message_count: int | None = None
        with open(path, "rb") as f:
            summary = None
            try:
                summary = SeekingReader(f).get_summary()
            except Exception:            # no footer / summary: a recorder that was killed
                summary = None
            if summary is not None:
                self.has_summary = True
                self.channels = dict(summary.channels)
                if summary.statistics is not None:
                    self.message_count = summary.statistics.message_count
                f.seek(0)
                try:
                    for meta in SeekingReader(f).iter_metadata():
                        if meta.name == "edgeflow":
                            self.app = meta.metadata.get("app")
                except Exception:
                    pass
                return
            f.seek(0)
            try:
                for record in StreamReader(f, emit_chunks=True).records:
                    if isinstance(record, Channel):
                        self.channels[record.id] = record
                    elif isinstance(record, Metadata) and record.name == "edgeflow":
                        self.app = record.metadata.get("app")
            except Exception:            # the torn end of the file
                pass


class Recording:
    """An EdgeFlow recording (one or more MCAP files; see ``open_recording``).

    Attributes:
        app: the app the topics were recorded from ("" when the files do not say).
        topics: ring topics recorded, sorted.
        nodes: {ring topic: node name}.
        kinds: {ring topic: "image" | "array" | "bytes" | "message"}.
        files: the files, in order.
        truncated: files without a summary (read up to their last complete chunk).
    """

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self._infos = [_FileInfo(p) for p in files]
        apps = [i.app for i in self._infos if i.app]
        self.app = apps[0] if apps else ""
        self.nodes: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        for info in self._infos:
            for ch in info.channels.values():
                if ch.metadata.get("edgeflow.role") == "envelope":
                    continue
                topic = ch.metadata.get("edgeflow.topic", ch.topic)
                self.nodes.setdefault(topic, ch.metadata.get("edgeflow.node", topic.split(".")[0]))
                self.kinds.setdefault(topic, ch.metadata.get("edgeflow.kind", ""))
        self.topics = sorted(self.nodes)
        self.truncated = [i.path for i in self._infos if not i.has_summary]

    def __repr__(self) -> str:
        return f"<Recording app={self.app!r} topics={self.topics} files={len(self.files)}>"

    def frames(self, topics: Iterable[str] | None = None, start: float | None = None,
               end: float | None = None) -> Iterator[tuple[str, Frame]]:
        """(ring topic, Frame) for every recorded frame of ``topics`` (default: all) captured in
        [``start``, ``end``) (seconds since the epoch), in capture-time order. Data is exact (arrays are
        read-only views of the message bytes); ``frame.topic`` is the ring topic.

        Raises:
            ConfigError: a topic that is not in the recording.
        """
        wanted = None
        if topics is not None:
            wanted = set([topics] if isinstance(topics, str) else topics)
            unknown = wanted - set(self.topics)
            if unknown:
                raise ConfigError(f"recording: no topic {', '.join(sorted(unknown))} (it has "
                                  f"{', '.join(self.topics) or 'none'})")
        start_ns = None if start is None else int(round(start * 1e9))
        end_ns = None if end is None else int(round(end * 1e9))
        streams = [self._paired(self._file_messages(info, wanted, start_ns, end_ns)) for info in self._infos]
        counter = itertools.count()
        merged = heapq.merge(*[((ns, next(counter), tf) for ns, tf in s) for s in streams])
        for _ns, _n, item in merged:
            yield item

    def _paired(self, items: Iterator[tuple[int, Channel, Any]]) -> Iterator[tuple[int, tuple[str, Frame]]]:
        """Messages as frames; a ROS 2 file's envelopes (companion channel, same log time and sequence) are
        joined to their frames' messages, whichever of the two comes first."""
        envelopes: dict[tuple, dict] = {}
        waiting: dict[tuple, tuple] = {}
        for ns, channel, message in items:
            meta = channel.metadata
            if meta.get("edgeflow.role") == "envelope":
                from edgeflow.record import ros2
                key = (meta.get("edgeflow.topic"), message.sequence, message.log_time)
                env = json.loads(ros2.typestore().deserialize_cdr(bytes(message.data), ros2.TYPES["message"]).data)
                held = waiting.pop(key, None)
                if held is None:
                    envelopes[key] = env
                else:
                    yield held[0], self._frame(held[1], held[2], env)
                continue
            if channel.message_encoding == "cdr" and meta.get("edgeflow.kind") != "message":
                key = (meta.get("edgeflow.topic", channel.topic), message.sequence, message.log_time)
                env = envelopes.pop(key, None)
                if env is None:
                    waiting[key] = (ns, channel, message)
                    continue
                yield ns, self._frame(channel, message, env)
                continue
            yield ns, self._frame(channel, message)

    def _file_messages(self, info: _FileInfo, wanted: set | None, start_ns: int | None,
                       end_ns: int | None) -> Iterator[tuple[int, Channel, Any]]:
        names = None
        if wanted is not None:
            names = [ch.topic for ch in info.channels.values()
                     if ch.metadata.get("edgeflow.topic", ch.topic) in wanted]     # envelopes included
            if not names:
                return
        with open(info.path, "rb") as f:
            if info.has_summary:
                reader = SeekingReader(f)
                items = reader.iter_messages(topics=names, starting_at=start_ns, ending_before=end_ns,
                                             log_time_order=True)
                for _schema, channel, message in items:
                    yield message.log_time, channel, message
                return
            yield from self._stream(f, names, start_ns, end_ns)

    def _stream(self, f: Any, names: list | None, start_ns: int | None,
                end_ns: int | None) -> Iterator[tuple[int, Channel, Any]]:
        """A file without summary: non-seeking read, sorted within a REORDER_NS window, stopping quietly at
        the torn end."""
        reader = NonSeekingReader(f)
        items = reader.iter_messages(topics=names, starting_at=start_ns, ending_before=end_ns,
                                     log_time_order=False)
        heap: list = []
        counter = itertools.count()
        try:
            for _schema, channel, message in items:
                heapq.heappush(heap, (message.log_time, next(counter), channel, message))
                while heap and heap[0][0] < message.log_time - REORDER_NS:
                    ns, _, ch, msg = heapq.heappop(heap)
                    yield ns, ch, msg
        except Exception:  # noqa: BLE001 - McapError, EndOfFile, lz4/zstd errors of a torn chunk
            pass                         # the last chunk was torn by the kill: everything before it is read
        while heap:
            ns, _, ch, msg = heapq.heappop(heap)
            yield ns, ch, msg

    @staticmethod
    def _frame(channel: Channel, message: Any, envelope: dict | None = None) -> tuple[str, Frame]:
        topic = channel.metadata.get("edgeflow.topic", channel.topic)
        kind = channel.metadata.get("edgeflow.kind", "")
        if channel.message_encoding == "cdr":
            from edgeflow.record import ros2
            data, fid, ts, meta = ros2.decode_frame(kind, message.data, envelope, topic)
        else:
            data, fid, ts, meta = fmt.decode_frame(kind, channel.message_encoding, message.data, topic)
        return topic, Frame(data, frame_id=fid, timestamp=ts, meta=meta, topic=topic)


def open_recording(paths_or_path: Any) -> Recording:
    """Open a recording: a file, a list of files, a folder, or ``run.mcap`` standing for ``run-0001.mcap``...

    Raises:
        ConfigError: no such file.
    """
    return Recording(expand_paths(paths_or_path))

