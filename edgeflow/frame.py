"""Frame: one unit of data moving between nodes (frame_id, timestamp, meta, data)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgeflow.errors import ClosedResourceError

_RELEASED = object()


class Frame:
    """One frame of a topic.

    Attributes:
        frame_id: increasing per topic (uint64); 0 for a frame that was never published.
        timestamp: capture time in seconds since the epoch (float), kept through the whole pipeline.
        meta: a small JSON-able dict.
        topic: the topic it was received from, or None.
        data: a numpy array (read-only and zero-copy when it came from shared memory), bytes, or a message: a
            dict or list of JSON-able values with numpy arrays nested in it (its arrays read-only, zero-copy
            views when it came from shared memory; see edgeflow.transport.message).

    A received frame pins its shared-memory slot while ``data``, or any array derived from it, is alive.
    ``release()`` (or leaving a ``with`` block) drops the frame's own hold; arrays you derived stay valid and keep
    the slot pinned until the last of them is gone. Call ``copy()`` to keep the data without pinning anything.

    Example:
        >>> f = Frame(np.zeros((2, 2), np.uint8), meta={"camera": "left"})
        >>> f.data.shape
        (2, 2)
    """

    __slots__ = ("frame_id", "timestamp", "meta", "topic", "_data", "_pin", "__weakref__")

    def __init__(self, data: Any, *, frame_id: int = 0, timestamp: float | None = None,
                 meta: dict | None = None, topic: str | None = None) -> None:
        self._data = data
        self._pin = None          # a received slot this frame holds while its data does not (bytes, messages)
        self.frame_id = frame_id
        self.timestamp = time.time() if timestamp is None else float(timestamp)
        self.meta = {} if meta is None else meta
        self.topic = topic

    @property
    def data(self) -> Any:
        """The payload; raises ClosedResourceError after ``release()``."""
        if self._data is _RELEASED:
            raise ClosedResourceError(
                f"{self._where()}: frame {self.frame_id} was released; call frame.copy() before release() "
                "to keep its data")
        return self._data

    def is_released(self) -> bool:
        """True once ``release()`` was called."""
        return self._data is _RELEASED

    def release(self) -> None:
        """Drop this frame's hold on its slot (idempotent). Derived arrays stay valid while they live."""
        self._data = _RELEASED
        self._pin = None

    def copy(self) -> "Frame":
        """A new Frame that owns a writable copy of the data and pins nothing (a message is copied deeply)."""
        data = self.data
        if isinstance(data, np.ndarray):
            owned = data.copy()
        elif isinstance(data, (dict, list)):
            from edgeflow.transport.message import copy_message     # here: transport imports this module
            owned = copy_message(data)
        else:
            owned = bytes(data)
        return Frame(owned, frame_id=self.frame_id, timestamp=self.timestamp,
                     meta=dict(self.meta), topic=self.topic)

    def __enter__(self) -> "Frame":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _where(self) -> str:
        return self.topic if self.topic is not None else "frame"

    def __repr__(self) -> str:
        if self._data is _RELEASED:
            what = "released"
        elif isinstance(self._data, np.ndarray):
            what = f"{self._data.dtype}{list(self._data.shape)}"
        else:
            what = f"{type(self._data).__name__}[{len(self._data)}]"
        topic = f" topic={self.topic!r}" if self.topic else ""
        return f"<Frame{topic} id={self.frame_id} t={self.timestamp:.6f} {what}>"
