"""The TCP sender's frames: what a frame waiting to be sent holds, the loaned buffer a producer fills in place,
and the sender's statistics (split from edgeflow.transport._tcp_sender; edgeflow.transport.tcp documents the
protocol)."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeflow.errors import ClosedResourceError
from edgeflow.transport import _wire

if TYPE_CHECKING:
    from edgeflow.transport._tcp_sender import TcpSender

_EMPTY = np.empty(0, np.uint8)     # the payload of an empty array


@dataclasses.dataclass(frozen=True)
class TcpSenderStats:
    """Snapshot of a TcpSender.

    ``published = sent + dropped + too_large + encode_errors + (the frame pending or on the wire)``.
    ``dropped`` counts frames superseded by a newer one before they were sent (gateway slow or away) and
    frames cut off mid-send when a connection broke; ``too_large`` frames over the gateway's limit;
    ``encode_errors`` frames the codec refused. ``reconnects`` counts connections after the first;
    ``connect_failures`` failed attempts (refused, timed out, or rejected: ``last_error`` says which).
    """
    topic: str
    published: int
    sent: int
    dropped: int
    too_large: int
    encode_errors: int
    bytes_sent: int
    connects: int
    reconnects: int
    connect_failures: int
    connected: bool
    last_error: str | None


@dataclasses.dataclass
class _Outgoing:
    """A frame on its way: pending, on the wire (the sender thread's), or being written by a publish."""
    frame_id: int
    timestamp: float
    kind: int
    dtype: np.dtype | None
    shape: tuple
    meta: bytes
    payload: Any                      # a flat uint8 ndarray (pooled, a loan's, or a view of the caller's) or bytes
    pooled: bool
    rest: list | None = None          # a frame a publishing thread began to write: the wire bytes still to go
    resend: bool = True               # False: ``payload`` holds only the unsent tail (cannot be sent anew)
    size: int = 0                     # payload bytes on the wire (for bytes_sent)


class TcpLoan:
    """A writable array in one of the sender's buffers: fill it in place, then ``commit()`` (or ``abort()``).

    The zero-copy way to publish: ``publish`` copies what the socket does not take at once (the caller may
    reuse its array as soon as publish returns), a loan never copies. As a context manager (``with sender.loan(shape, dtype) as buf:``) it commits when the block
    ends without an exception and aborts otherwise. The buffer is handed out as it is, not cleared (a reused
    buffer holds an older frame). After commit the array is read-only, and arrays derived from it before must
    not be written any more: the buffer is the sender's until the frame is sent, then reused.
    """

    def __init__(self, sender: "TcpSender", shape: Any, dtype: Any, timestamp: float | None,
                 meta: dict | None) -> None:
        self.timestamp = time.time() if timestamp is None else float(timestamp)   # capture starts now
        self._sender = sender
        self.dtype = np.dtype(dtype)
        self.shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
        if (self.dtype.hasobject or self.dtype.itemsize == 0 or len(self.shape) > _wire.MAX_NDIM
                or min(self.shape, default=0) < 0):
            raise ValueError(f"{sender.topic}: cannot loan {self.dtype}{list(self.shape)} (object or zero-size "
                             f"dtype, more than {_wire.MAX_NDIM} dimensions or a negative one)")
        self._meta = _wire.encode_meta(sender.topic, meta)
        nbytes = math.prod(self.shape) * self.dtype.itemsize
        core = sender._core_or_raise()
        sender._check_size(core, nbytes)
        self._buf, _ = core.buffer(nbytes)
        self.array = (np.ndarray(self.shape, self.dtype, buffer=self._buf) if self.dtype.itemsize
                      else np.empty(self.shape, self.dtype))
        self.frame_id: int | None = None

    def commit(self, *, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Hand the filled buffer to the sender (never blocks); returns its frame_id."""
        if self.frame_id is not None or not self.array.flags.writeable:
            raise ClosedResourceError(f"{self._sender.topic}: this loan was committed or aborted already")
        if meta is not None:
            self._meta = _wire.encode_meta(self._sender.topic, meta)
        ts = self.timestamp if timestamp is None else float(timestamp)
        item = _Outgoing(0, ts, _wire.KIND_ARRAY, self.dtype, self.shape, self._meta, self._buf, True)
        core = self._sender._core_or_raise()
        fid = core.write_direct(item, owned=True) if core.sock is not None else None
        self.frame_id = fid if fid is not None else core.hand_over(item)
        self.array.flags.writeable = False
        return self.frame_id

    def abort(self) -> None:
        """Give the buffer back unpublished."""
        if self.frame_id is None and self.array.flags.writeable and not self._sender.is_closed():
            core = self._sender._core
            with core.cond:
                core.recycle(_Outgoing(0, 0.0, _wire.KIND_ARRAY, None, (), b"", self._buf, True))
        self.array.flags.writeable = False

    def __enter__(self) -> np.ndarray:
        return self.array

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
