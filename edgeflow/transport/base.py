"""What every transport implements: the Publisher and Subscriber protocols.

A transport (``shm``, ``redis``, ``tcp``) offers a publisher that sends frames of one topic and a subscriber
that receives them with a QoS. The router and ``tests/transport/test_contract.py`` rely only on what is
written here, so a node runs unchanged whichever transport carries its edges.

Beyond the methods, a transport class may declare ``SUPPORTED_QOS`` (a frozenset of QoS) when it cannot offer
every QoS (TCP is REALTIME only); asking it for another raises ConfigError. ``supported_qos()`` reads it.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol, runtime_checkable

from edgeflow.frame import Frame
from edgeflow.qos import QoS

__all__ = ["Publisher", "Subscriber", "supported_qos"]


@runtime_checkable
class Publisher(Protocol):
    """Sends the frames of one topic.

    Contract:
        - ``publish`` returns the frame's ``frame_id``; ids increase with every publish of this publisher.
        - A REALTIME publish never waits for a consumer. A DURABLE one may wait (back-pressure), bounded by a
          timeout that raises BackpressureTimeout.
        - ``close()`` is idempotent; any other call after it raises ClosedResourceError.
        - Publishers are context managers (``with`` closes them).
    """

    def publish(self, data: Any, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Send ``data`` (numpy array of any dtype/shape, bytes, or a Frame) with its capture ``timestamp``
        (seconds, default now) and ``meta`` (a small JSON-able dict); returns the frame_id.

        Raises:
            ClosedResourceError: after close().
            TypeError: data or meta of a type the transport cannot carry.
            FrameTooLarge: the frame or its meta exceeds a limit of the transport.
        """
        ...

    def statistics(self) -> Any:
        """A frozen dataclass snapshot of this publisher's counters (frames published, drops, ...)."""
        ...

    def close(self) -> None:
        """Release the publisher's resources; twice is fine."""
        ...


@runtime_checkable
class Subscriber(Protocol):
    """Receives the frames of one topic with a QoS.

    Contract (``tests/transport/test_contract.py`` checks it for every transport):
        - REALTIME: the newest frame not received yet; skipped frames count as drops. Frame ids strictly
          increase: never the same frame twice, never an older one. The newest frame published arrives.
        - DURABLE (where supported): every frame, in order, exactly once in normal operation.
        - A frame arrives bit-exact: same frame_id, timestamp, meta, dtype, shape and bytes (or bytes).
        - ``close()`` is idempotent; any other call after it raises ClosedResourceError.
    """

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame per the QoS, waiting at most ``timeout`` seconds (None: forever).

        Raises:
            ReceiveTimeout: nothing arrived in time (also a TimeoutError).
            BrokenResourceError: the other side went away and nothing is left to read.
            ClosedResourceError: after close().
        """
        ...

    def recv_nowait(self) -> Frame | None:
        """The next frame per the QoS, or None when nothing new is there. Never blocks."""
        ...

    async def arecv(self, timeout: float | None = None) -> Frame:
        """``recv`` for asyncio (and uvloop); never blocks the event loop."""
        ...

    def statistics(self) -> Any:
        """A frozen dataclass snapshot of this subscriber's counters (frames received, drops, ...)."""
        ...

    def close(self) -> None:
        """Stop receiving and release the subscriber's resources; twice is fine."""
        ...


def supported_qos(transport: Any) -> frozenset:
    """The QoS a publisher or subscriber (class or instance) offers: its ``SUPPORTED_QOS``, else every QoS."""
    return frozenset(getattr(transport, "SUPPORTED_QOS", frozenset(QoS)))


class OwnedResource:
    """Ownership boilerplate of a transport endpoint: ``with`` support and a ResourceWarning safety net.

    A subclass sets ``self._closed = False`` once it holds its resource and implements an idempotent
    ``close()``; garbage collection of an unclosed one warns and closes it.
    """

    _closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self.close()
