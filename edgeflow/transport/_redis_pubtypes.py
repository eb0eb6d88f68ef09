"""What RedisPublisher hands out and signals inside: its statistics, its loans, and the two exceptions of
its sending path (split from ``_redis_pub`` to keep modules short)."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgeflow.transport._redis_pub import RedisPublisher


@dataclasses.dataclass(frozen=True)
class RedisPublisherStats:
    """Snapshot of a RedisPublisher.

    ``published`` frames were handed to ``publish``; of those ``sent`` reached Redis, ``dropped``
    (non-durable, Redis unreachable) never will, and ``spooled`` wait for Redis. ``retained`` durable frames
    are in Redis but not yet acknowledged by every group; spooled + retained stay within ``spool_frames`` and
    ``spool_bytes`` (the bound), and ``held_bytes`` is their size now. ``republished`` frames were published
    again after Redis lost them; ``trimmed`` unacknowledged frames were trimmed from the stream (MAXLEN)
    before every group read them.

    ``state`` is ``"up"`` (Redis takes frames), ``"down"`` (unreachable) or ``"full"`` (Redis refuses writes for
    memory: ``maxmemory`` reached with ``noeviction``). While full, DURABLE frames are kept here (within the
    bound; then publish raises BackpressureTimeout) and sent as space frees; other frames are dropped and
    counted in ``dropped`` and ``dropped_full``. ``full_events`` counts the times Redis became full, and
    ``full_seconds`` the time spent full (the current stretch included).
    """
    topic: str
    published: int
    sent: int
    dropped: int
    spooled: int
    retained: int
    held_bytes: int
    spool_frames: int
    spool_bytes: int
    republished: int
    trimmed: int
    backpressure_waits: int
    disconnects: int
    connected: bool
    groups: tuple
    codec: str
    state: str = "up"
    full_events: int = 0
    full_seconds: float = 0.0
    dropped_full: int = 0


class RedisFull(Exception):
    """Redis refused a send for memory (maxmemory, noeviction): ``entries`` were taken before it did."""

    def __init__(self, entries: list, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.entries, self.cause = entries, cause


class StreamVanished(Exception):
    """XADD NOMKSTREAM found no stream: Redis restarted empty or the app was reset while we were sending."""


class RedisLoan:
    """A writable array that ``commit()`` publishes (``abort()`` drops it); a context manager like shm's Loan:
    ``with pub.loan((480, 640, 3)) as buf:`` publishes when the block ends without an exception."""

    def __init__(self, publisher: RedisPublisher, shape: Any, dtype: Any, timestamp: float | None,
                 meta: dict | None) -> None:
        self.timestamp = time.time() if timestamp is None else float(timestamp)   # capture starts now
        self._pub, self._meta = publisher, meta
        self.array = np.empty((shape,) if isinstance(shape, int) else tuple(shape), dtype)
        self.frame_id: int | None = None

    def commit(self, *, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Publish the array; returns its frame_id."""
        ts = self.timestamp if timestamp is None else timestamp
        self.frame_id = self._pub.publish(self.array, timestamp=ts, meta=self._meta if meta is None else meta)
        self.array.flags.writeable = False
        return self.frame_id

    def abort(self) -> None:
        """Publish nothing."""
        self.array.flags.writeable = False

    def __enter__(self) -> np.ndarray:
        return self.array

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
