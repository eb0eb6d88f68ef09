"""What a DURABLE consumer already received: duplicates after a crash are counted, and dropped for sinks that
ask for exactly-once delivery.

DURABLE is at-least-once across a crash: a frame a node took but had not released when it died is handed out
again, and if the node had already sent its result, that result travels twice. Every frame is known by its
*origin*: the ring topic and frame id of the frame at the head of its chain (a producer's frame), carried in
meta under ORIGIN_KEY by every hop. Two deliveries of one origin to a node are a duplicate.

Memory per origin ring is a window of WINDOW entries indexed by ``frame_id % WINDOW``, each holding the frame id
stored there last: a lookup is one array read, and an 8-byte aligned store is atomic, so a process that dies
between two stores leaves a consistent table. A duplicate more than WINDOW frames older than the newest frame of
its origin is not recognised (it is counted as a first delivery): the window bounds memory at 8 bytes x WINDOW
per origin ring.

``Delivered.local()`` keeps the table in this process (counting only); ``Delivered.shared(app, node)`` keeps
it in a shared-memory file per origin, named after the app so the supervisor's sweep removes it with the rings:
it survives the sink's SIGKILL, which is what makes a restarted exactly-once sink skip what it already did.
"""

from __future__ import annotations

import hashlib
import mmap
import os

import numpy as np

ORIGIN_KEY = "edgeflow.origin"     # meta: [ring topic, frame id] of the frame at the head of this one's chain
WINDOW = 1 << 14                   # frames per origin ring remembered (128 KiB each)
MAX_ORIGINS = 256                  # origin rings tracked per node; more are not checked (counted as new)
SHM_DIR = "/dev/shm"


def origin_of(frame, ring_topic: str) -> tuple[str, int]:
    """The origin of a received frame: from its meta when an upstream hop set it, else this frame itself."""
    meta = frame.meta
    if meta:
        origin = meta.get(ORIGIN_KEY)
        if type(origin) is list and len(origin) == 2:
            return origin[0], origin[1]
    return ring_topic, frame.frame_id


class Delivered:
    """A table of origins delivered to one node (see the module docstring)."""

    def __init__(self, prefix: str | None) -> None:
        self._prefix = prefix                        # shared-memory file prefix, None: in this process only
        self._tables: dict[str, np.ndarray] = {}
        self._maps: list[mmap.mmap] = []

    @classmethod
    def local(cls) -> "Delivered":
        """A table in this process: it forgets everything when the process ends (counting duplicates only)."""
        return cls(None)

    @classmethod
    def shared(cls, app: str, node: str) -> "Delivered":
        """A table in shared memory that outlives the process (exactly-once sinks); ``remove()`` deletes it."""
        return cls(f"{SHM_DIR}/edgeflow.{app}.~once.{hashlib.sha1(node.encode()).hexdigest()[:12]}.")

    def _table(self, topic: str) -> np.ndarray | None:
        table = self._tables.get(topic)
        if table is None and len(self._tables) < MAX_ORIGINS:
            table = self._tables[topic] = self._make(topic)
        return table

    def _make(self, topic: str) -> np.ndarray:
        if self._prefix is None:
            return np.zeros(WINDOW, np.uint64)
        path = self._prefix + hashlib.sha1(topic.encode()).hexdigest()[:16]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size != WINDOW * 8:
                os.ftruncate(fd, WINDOW * 8)          # a fresh file reads as zeros: nothing delivered yet
            m = mmap.mmap(fd, WINDOW * 8)
        finally:
            os.close(fd)
        self._maps.append(m)
        return np.frombuffer(m, np.uint64)

    def seen(self, origin: tuple[str, int]) -> bool:
        """True when ``origin`` was marked delivered before (within the window)."""
        topic, fid = origin
        table = self._table(topic)
        return table is not None and type(fid) is int and fid > 0 and int(table[fid % WINDOW]) == fid

    def mark(self, origin: tuple[str, int]) -> None:
        """Remember ``origin`` as delivered."""
        topic, fid = origin
        table = self._table(topic)
        if table is not None and type(fid) is int and fid > 0:
            table[fid % WINDOW] = fid

    def close(self) -> None:
        """Unmap the tables (shared files stay for the next process of this node)."""
        self._tables.clear()
        for m in self._maps:
            try:
                m.close()
            except BufferError:                       # a view still exported: the map goes with the process
                pass
        self._maps.clear()

    def remove(self) -> None:
        """Close and delete the shared files (the node finished its stream: nothing will be redelivered)."""
        self.close()
        if self._prefix is None:
            return
        folder, _, start = self._prefix.rpartition("/")
        for name in os.listdir(folder):
            if name.startswith(start):
                try:
                    os.unlink(os.path.join(folder, name))
                except FileNotFoundError:
                    pass
