"""``recover(path)``: give an MCAP file whose writer was killed its summary back, in place.

The file is walked record by record (the ``mcap`` package's record classes parse them). Every chunk is
decompressed and its CRC checked; the file is cut after the last complete, valid chunk (and its message
indexes, rebuilt when the kill tore them), then DataEnd, the summary (schemas, channels, statistics, chunk
and metadata indexes) and the footer are appended. Only the summary is written: a multi-GB recording is read
once and not copied. A file that already has a summary is left alone.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from pathlib import Path

from mcap.data_stream import ReadDataStream, RecordBuilder
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, ChunkIndex, MessageIndex, MetadataIndex, Schema
from mcap.stream_reader import get_chunk_data_stream

from edgeflow.errors import ConfigError
from edgeflow.record.writer import MAGIC, summary_bytes

__all__ = ["recover", "RecoverResult"]

_RECORD = struct.Struct("<BQ")
_MESSAGE = struct.Struct("<HIQ")          # channel id, sequence, log time (a message record's start)


@dataclasses.dataclass
class RecoverResult:
    """What ``recover`` did: ``status`` is "complete" (had a summary already) or "recovered"."""
    path: str
    status: str
    messages: int
    chunks: int
    cut_bytes: int           # bytes of torn data cut off the end


@dataclasses.dataclass
class _State:
    pos: int = 0
    schemas: dict = dataclasses.field(default_factory=dict)
    channels: dict = dataclasses.field(default_factory=dict)
    chunk_indexes: list = dataclasses.field(default_factory=list)
    metadata_indexes: list = dataclasses.field(default_factory=list)
    counts: dict = dataclasses.field(default_factory=dict)
    messages: int = 0
    start_ns: int = 0
    end_ns: int = 0


def _stream(body: bytes) -> ReadDataStream:
    return ReadDataStream(io.BytesIO(body))


def _chunk_messages(chunk: Chunk, state: _State) -> dict[int, list]:
    """Message index entries of a chunk ({channel: [(log time, offset)]}), after checking its CRC; schemas and
    channels found inside it are kept. Raises on a corrupt chunk."""
    stream, size = get_chunk_data_stream(chunk, validate_crc=True)
    data = stream.read(size) if size else b""
    pos, indexes = 0, {}
    while pos < len(data):
        opcode, length = _RECORD.unpack_from(data, pos)
        body_at = pos + 9
        if body_at + length > len(data):
            raise ValueError("a record runs past its chunk")
        if opcode == Opcode.MESSAGE:
            cid, _seq, log_ns = _MESSAGE.unpack_from(data, body_at)
            indexes.setdefault(cid, []).append((log_ns, pos))
        elif opcode == Opcode.SCHEMA:
            schema = Schema.read(_stream(data[body_at:body_at + length]))
            state.schemas[schema.id] = schema
        elif opcode == Opcode.CHANNEL:
            channel = Channel.read(_stream(data[body_at:body_at + length]))
            state.channels[channel.id] = channel
        pos = body_at + length
    return indexes


def recover(path: str | os.PathLike) -> RecoverResult:
    """Cut a killed recording after its last complete chunk and append the summary (see the module docstring).

    Raises:
        ConfigError: no such file, or not an MCAP file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recover {path}: no such file")
    total = path.stat().st_size
    state = _State()
    cut = 0                                  # end of the last record kept
    pending: tuple[int, dict, int] | None = None   # last chunk: (end offset, its indexes, index records seen)
    with open(path, "rb") as f:
        if f.read(8) != MAGIC:
            raise ConfigError(f"recover {path}: not an MCAP file")
        pos = cut = 8
        while True:
            head = f.read(9)
            if len(head) < 9:
                break
            opcode, length = _RECORD.unpack(head)
            if pos + 9 + length > total:
                break                        # torn by the kill
            body = f.read(length)
            end = pos + 9 + length
            if opcode in (Opcode.DATA_END, Opcode.FOOTER):
                return RecoverResult(str(path), "complete", -1, len(state.chunk_indexes), 0)
            if opcode == Opcode.CHUNK:
                try:
                    chunk = Chunk.read(_stream(body))
                    indexes = _chunk_messages(chunk, state)
                except Exception:            # noqa: BLE001 - a corrupt chunk ends what can be kept
                    break
                for cid, records in indexes.items():
                    state.counts[cid] = state.counts.get(cid, 0) + len(records)
                    state.messages += len(records)
                if chunk.message_start_time or chunk.message_end_time or indexes:
                    if not state.chunk_indexes:
                        state.start_ns, state.end_ns = chunk.message_start_time, chunk.message_end_time
                    state.start_ns = min(state.start_ns, chunk.message_start_time)
                    state.end_ns = max(state.end_ns, chunk.message_end_time)
                state.chunk_indexes.append(ChunkIndex(
                    message_start_time=chunk.message_start_time, message_end_time=chunk.message_end_time,
                    chunk_start_offset=pos, chunk_length=9 + length, message_index_offsets={},
                    message_index_length=0, compression=chunk.compression, compressed_size=len(chunk.data),
                    uncompressed_size=chunk.uncompressed_size))
                pending = (end, indexes, 0)
            elif opcode == Opcode.MESSAGE_INDEX and pending is not None:
                index = MessageIndex.read(_stream(body))
                ci = state.chunk_indexes[-1]
                ci.message_index_offsets[index.channel_id] = pos
                ci.message_index_length = end - pending[0]
                pending = (pending[0], pending[1], pending[2] + 1)
            elif opcode == Opcode.SCHEMA:
                schema = Schema.read(_stream(body))
                state.schemas[schema.id] = schema
            elif opcode == Opcode.CHANNEL:
                channel = Channel.read(_stream(body))
                state.channels[channel.id] = channel
            elif opcode == Opcode.METADATA:
                name_len = struct.unpack_from("<I", body)[0]
                state.metadata_indexes.append(MetadataIndex(offset=pos, length=9 + length,
                                                            name=body[4:4 + name_len].decode()))
            pos = cut = end
    tail = b""
    if pending is not None and pending[2] < len(pending[1]):
        # the kill tore the last chunk's message indexes: cut after the chunk and write them anew
        cut = pending[0]
        ci = state.chunk_indexes[-1]
        b = RecordBuilder()
        ci.message_index_offsets = {}
        for cid, records in pending[1].items():
            ci.message_index_offsets[cid] = cut + b.count
            MessageIndex(channel_id=cid, records=records).write(b)
        tail = b.end()
        ci.message_index_length = len(tail)
    state.pos = cut + len(tail)
    with open(path, "r+b") as f:
        f.truncate(cut)
        f.seek(cut)
        f.write(tail + summary_bytes(state))
        f.flush()
        os.fsync(f.fileno())
    return RecoverResult(str(path), "recovered", state.messages, len(state.chunk_indexes), total - cut)

