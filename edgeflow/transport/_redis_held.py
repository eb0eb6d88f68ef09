"""The DURABLE frames a RedisPublisher still answers for, as plain bookkeeping (no I/O, no locks: the
publisher holds its lock around every call).

A frame is *spooled* while Redis has not taken it (unreachable), and *retained* once it is in Redis but not
yet acknowledged by every durable group: if Redis restarts empty, the retained frames are published again.
Both count against one bound (frames and bytes), so the memory a publisher keeps for an absent or slow
consumer is known. Copies of raw payloads go into recycled buffers (a frame's buffer is reused once every
group acknowledged it): copying into memory that is already mapped is about five times cheaper than into
fresh memory, which the kernel must fault in and zero. Recycled buffers count against the same byte bound.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Iterable, Iterator, NamedTuple

EntryId = tuple[int, int]                 # a stream entry id "ms-seq" as integers, ordered as Redis does
ZERO_ID: EntryId = (0, 0)


def parse_id(raw: bytes | str) -> EntryId:
    """``b"1700000000000-3"`` -> ``(1700000000000, 3)``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(entry: EntryId) -> str:
    """``(1700000000000, 3)`` -> ``"1700000000000-3"``."""
    return f"{entry[0]}-{entry[1]}"


class GroupPosition(NamedTuple):
    """How far a consumer group got: the last entry delivered to it, and its oldest unacknowledged entry."""
    delivered: EntryId
    oldest_pending: EntryId | None

    def has_acked(self, entry: EntryId) -> bool:
        """True when the group surely acknowledged ``entry`` (delivered, and older than anything pending)."""
        return entry <= self.delivered and (self.oldest_pending is None or entry < self.oldest_pending)


class Held:
    """One DURABLE frame: what XADD needs (``fields``), the payload, and where it is in Redis once sent.

    ``payload`` is bytes-like; ``buffer`` is the recycled bytearray behind it (None when the payload is an
    immutable ``bytes`` of its own).
    """

    __slots__ = ("fid", "fields", "payload", "buffer", "size", "blob_key", "entry", "set_at")

    def __init__(self, fid: int, fields: dict, payload: Any, blob_key: str,
                 buffer: bytearray | None = None) -> None:
        self.fid = fid
        self.fields = fields
        self.payload = payload
        self.buffer = buffer
        self.size = len(payload)
        self.blob_key = blob_key
        self.entry: EntryId | None = None     # stream entry id, once Redis took it
        self.set_at = 0.0                     # monotonic time the blob's TTL was last set

    def __repr__(self) -> str:
        return f"<Held {self.fid} {self.size} B entry={self.entry}>"


class HeldFrames:
    """Spooled and retained DURABLE frames, in frame order, within ``max_frames`` and ``max_bytes``.

    One frame larger than ``max_bytes`` is still accepted when nothing else is held, so that a large frame is
    slow rather than impossible.
    """

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.spool: deque[Held] = deque()
        self.retained: OrderedDict[int, Held] = OrderedDict()
        self.nbytes = 0
        self._pool: dict[int, list[bytearray]] = {}    # recycled buffers by size
        self.pool_bytes = 0

    def __len__(self) -> int:
        return len(self.spool) + len(self.retained)

    def has_room(self, size: int) -> bool:
        """True when one more frame of ``size`` bytes fits the bound."""
        held = len(self)
        return held < self.max_frames and (held == 0 or self.nbytes + size <= self.max_bytes)

    def copy_of(self, payload: Any) -> tuple[memoryview, bytearray]:
        """A copy of ``payload`` in a recycled buffer when one of its size is free: (view, buffer)."""
        size = len(payload)
        free = self._pool.get(size)
        if free:
            buffer = free.pop()
            self.pool_bytes -= size
        else:
            buffer = bytearray(size)
        view = memoryview(buffer)
        view[:] = payload
        return view, buffer

    def add_spooled(self, frame: Held) -> None:
        """A frame Redis has not taken yet, last in line."""
        self.spool.append(frame)
        self.nbytes += frame.size
        self._fit_pool()

    def retain(self, frame: Held, entry: EntryId, now: float) -> None:
        """A frame now in Redis as ``entry`` (new, or sent again with a new entry id)."""
        if frame.fid not in self.retained:
            self.nbytes += frame.size
        frame.entry, frame.set_at = entry, now
        self.retained[frame.fid] = frame
        self._fit_pool()

    def take_spool(self) -> list[Held]:
        """Every spooled frame, oldest first, leaving the spool empty (the caller retains or re-spools)."""
        frames = list(self.spool)
        self.spool.clear()
        self.nbytes -= sum(f.size for f in frames)
        return frames

    def respool_front(self, frames: Iterable[Held]) -> None:
        """Put frames that could not be sent back at the front of the spool, in their order."""
        frames = list(frames)
        for f in reversed(frames):
            if f.fid in self.retained:
                self._forget(f.fid)
            self.spool.appendleft(f)
            self.nbytes += f.size

    def release_acked(self, groups: Iterable[GroupPosition]) -> int:
        """Forget retained frames every group acknowledged; returns how many.

        Retained frames are in entry order and "acknowledged" is a bound on the entry id, so the scan stops at
        the first frame some group still needs.
        """
        groups = list(groups)
        released = 0
        while self.retained:
            fid, frame = next(iter(self.retained.items()))
            if frame.entry is None or not all(g.has_acked(frame.entry) for g in groups):
                break
            self._forget(fid, recycle=True)
            released += 1
        return released

    def drop_trimmed(self, first_entry: EntryId | None, length: int,
                     groups: Iterable[GroupPosition]) -> list[int]:
        """Forget retained frames the stream no longer holds (trimmed by MAXLEN); returns the frame ids of
        those some group had not read yet (lost to it).

        ``first_entry`` is the stream's oldest entry (None with ``length`` 0: everything was trimmed).
        """
        groups = list(groups)
        unread = []
        for fid, frame in list(self.retained.items()):
            if frame.entry is None or not (first_entry is None and length == 0 or
                                           first_entry is not None and frame.entry < first_entry):
                break
            self._forget(fid, recycle=True)
            if not all(frame.entry <= g.delivered for g in groups):
                unread.append(fid)
        return unread

    def forget(self, frames: Iterable[Held]) -> None:
        """Stop retaining these frames (to publish them again: ``retain`` takes them back, new entries)."""
        for f in frames:
            self._forget(f.fid)

    def due_for_refresh(self, now: float, age: float) -> list[Held]:
        """Retained frames whose blob TTL was set more than ``age`` seconds ago."""
        return [f for f in self.retained.values() if now - f.set_at > age]

    def __iter__(self) -> Iterator[Held]:
        yield from self.retained.values()
        yield from self.spool

    def _forget(self, fid: int, recycle: bool = False) -> None:
        frame = self.retained.pop(fid)
        self.nbytes -= frame.size
        if recycle and frame.buffer is not None:
            # no send of this frame can be under way: sends, like this, run under the publisher's lock
            buffer, frame.buffer, frame.payload = frame.buffer, None, b""
            if self.nbytes + self.pool_bytes + len(buffer) <= self.max_bytes:
                self._pool.setdefault(len(buffer), []).append(buffer)
                self.pool_bytes += len(buffer)

    def _fit_pool(self) -> None:
        """Held frames first: drop recycled buffers while frames and buffers together exceed the bound."""
        while self.pool_bytes and self.nbytes + self.pool_bytes > self.max_bytes:
            size, free = next(iter(self._pool.items()))
            free.pop()
            self.pool_bytes -= size
            if not free:
                del self._pool[size]
