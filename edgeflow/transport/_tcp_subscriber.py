"""The TCP server's per-topic subscribers (split from edgeflow.transport._tcp_server; edgeflow.transport.tcp
documents the protocol)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import TYPE_CHECKING

from edgeflow.errors import ClosedResourceError, ReceiveTimeout
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport._tcp_common import _REALTIME_ONLY

if TYPE_CHECKING:
    from edgeflow.transport._tcp_server import _ServerCore

@dataclasses.dataclass(frozen=True)
class TcpSubscriberStats:
    """Snapshot of a TcpSubscriber: frames received, and frames replaced by a newer one unread (drops)."""
    topic: str
    received: int
    drops: int


class TcpSubscriber:
    """The frames a TcpServer receives for one topic, REALTIME: ``recv`` gives the newest frame not taken yet.

    Made by ``TcpServer.subscriber(topic)``; several may watch one topic (each gets every frame). Frame ids
    strictly increase per sender; a frame older than one already delivered for the topic is discarded.
    ``frame.data`` is a read-only array owned by the frame (nothing is pinned); ``frame.copy()`` makes it
    writable. Closed by ``close()`` or by closing its server.
    """

    SUPPORTED_QOS = _REALTIME_ONLY
    qos = QoS.REALTIME

    def __init__(self, core: "_ServerCore", topic: str) -> None:
        self.topic = topic
        self._core = core
        self._lock = threading.Lock()     # guards the fields below
        self._frame: Frame | None = None
        self._bells: list = []            # one locked lock per blocked recv; released to wake it
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._received = self._drops = 0
        self._closed = False

    def _put(self, frame: Frame) -> None:
        """From the server's loop: make ``frame`` the newest; wake whoever waits."""
        with self._lock:
            if self._closed:
                return
            if self._frame is not None:
                self._drops += 1
            self._frame = frame
            bells, self._bells = self._bells, []
            waiters, self._waiters = self._waiters, []
        self._wake(bells, waiters)

    @staticmethod
    def _wake(bells: list, waiters: list) -> None:
        # outside the lock (unlike Condition.notify): the woken thread does not block on it again at once,
        # which costs a context switch per frame when the loop and the consumer share few cores
        for bell in bells:
            bell.release()
        _wake_all(waiters)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self.topic}: subscriber is closed")

    def _take(self) -> Frame | None:
        """The newest frame, or None (caller holds the lock)."""
        self._check_open()
        frame, self._frame = self._frame, None
        if frame is not None:
            self._received += 1
        return frame

    def recv_nowait(self) -> Frame | None:
        """The newest frame not received yet, or None. Never blocks."""
        with self._lock:
            return self._take()

    def recv(self, timeout: float | None = None) -> Frame:
        """Wait at most ``timeout`` seconds (None: forever) for a frame newer than the last one received.

        Raises:
            ReceiveTimeout: nothing arrived in time (a TimeoutError).
            ClosedResourceError: the subscriber or its server was closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                frame = self._take()
                if frame is not None:
                    return frame
                remaining = -1 if deadline is None else deadline - time.monotonic()
                if deadline is not None and remaining <= 0:
                    raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")
                bell = threading.Lock()
                bell.acquire()
                self._bells.append(bell)
            if not bell.acquire(timeout=remaining):
                with self._lock:
                    if bell in self._bells:
                        self._bells.remove(bell)

    async def arecv(self, timeout: float | None = None) -> Frame:
        """``recv`` for asyncio (any loop, uvloop included): awaits a wake-up, never blocks the loop."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self.recv_nowait()
            if frame is not None:
                return frame
            fut = loop.create_future()
            with self._lock:
                if self._frame is not None or self._closed:
                    continue
                self._waiters.append((loop, fut))
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s") from None
            finally:
                with self._lock:
                    if (loop, fut) in self._waiters:
                        self._waiters.remove((loop, fut))

    def statistics(self) -> TcpSubscriberStats:
        """A snapshot: frames received and drops."""
        with self._lock:
            self._check_open()
            return TcpSubscriberStats(self.topic, self._received, self._drops)

    def is_closed(self) -> bool:
        """True after close() (or after the server closed)."""
        return self._closed

    def close(self) -> None:
        """Stop receiving; a recv waiting in another thread raises ClosedResourceError. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._frame = None
            bells, self._bells = self._bells, []
            waiters, self._waiters = self._waiters, []
        self._wake(bells, waiters)
        self._core.unsubscribe(self)

    def __enter__(self) -> "TcpSubscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TcpSubscriber {self.topic}{' closed' if self._closed else ''}>"


def _wake_all(waiters: list) -> None:
    for loop, fut in waiters:
        try:
            loop.call_soon_threadsafe(_set_done, fut)
        except RuntimeError:              # that loop is closed: nobody is waiting any more
            pass


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
