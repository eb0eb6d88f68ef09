"""BaseInterface: the original EdgeFlow's base class of gateway interfaces, and the host that runs one.

An interface written for the original runs unchanged::

    class Recorder(BaseInterface):
        def setup(self):                      # once, in the gateway's process, before the first frame
            self.seen = []

        async def on_frame(self, frame):      # every input frame (sync ``def on_frame`` works too)
            self.seen.append(frame.frame_id)

        async def run_loop(self):             # optional: a long-running task beside the frames
            while True:
                await asyncio.sleep(1)

    class Hub(GatewayNode):
        def setup(self):
            self.add_interface(Recorder())

The runtime starts ``serve(interface, runtime)`` (named by ``BaseInterface.server``) in the gateway's process,
after the node's own ``setup()``: it calls the interface's ``setup()``, runs an asyncio event loop in a thread
of its own for ``run_loop()`` and for an ``async def on_frame``, and hands it every frame. Frames handed to an
interface are copies it owns (the runtime's zero-copy views are released after the node's hook, while an async
interface reads them later), with ``meta["topic"]`` and the original's ``get_data_bytes()``.

An async ``on_frame`` is awaited one frame at a time, in order. When it falls behind by more than MAX_PENDING
frames the oldest waiting frame is dropped and counted (``host.dropped``): the node's loop never waits for an
interface.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any

from edgeflow.frame import Frame

log = logging.getLogger("edgeflow.gateway")

MAX_PENDING = 64              # frames waiting for a slow async on_frame before the oldest is dropped
STOP_TIMEOUT = 2.0            # seconds close() waits for the interface's loop thread


class BaseInterface:
    """Base class of gateway interfaces (the original's ``edgeflow.nodes.gateway.interfaces.base``).

    Override ``setup()`` (once, before the first frame), ``on_frame(frame)`` (sync or ``async def``; every
    input frame) and optionally ``async def run_loop()`` (runs beside the frames until the gateway stops).
    ``self.gateway`` is the GatewayNode the interface was added to.

    Unlike the original, none of the methods is abstract: an interface may implement only what it needs.
    """

    server = "edgeflow.nodes.gateway.interfaces.base:serve"   # what the runtime starts for this interface
    broker = None             # the original's attributes; set as there when the gateway knows them
    edge_app = None
    gateway = None

    def __init__(self) -> None:
        self.broker = None
        self.edge_app = None
        self.gateway = None

    def setup(self) -> None:
        """Prepare the interface (connections, state); called once in the gateway's process."""

    def on_frame(self, frame: Frame) -> Any:
        """Handle one input frame (may be ``async def``)."""

    async def run_loop(self) -> None:
        """A long-running task of the interface (e.g. a server); the default has none."""

    def set_broker(self, broker: Any) -> None:
        """The original's hook for the broker the gateway uses."""
        self.broker = broker


class InterfaceFrame(Frame):
    """A Frame an interface owns, with the original Frame's ``get_data_bytes()``."""

    __slots__ = ()

    def get_data_bytes(self) -> bytes:
        """The payload as bytes, as the original gave it to web viewers: JPEG for an image array, bytes as
        they are, b"" for anything else."""
        data = self.data
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        if hasattr(data, "shape") and hasattr(data, "dtype"):
            import cv2
            ok, buf = cv2.imencode(".jpg", data)
            return buf.tobytes() if ok else b""
        return b""


def owned_copy(frame: Frame) -> InterfaceFrame:
    """A copy of ``frame`` that pins no shared memory, with ``meta["topic"]`` set (as the original had it)."""
    copy = frame.copy()
    meta = dict(copy.meta)
    meta.setdefault("topic", frame.topic if frame.topic else "default")
    return InterfaceFrame(copy.data, frame_id=copy.frame_id, timestamp=copy.timestamp, meta=meta,
                          topic=copy.topic)


def _overrides(interface: Any, name: str) -> bool:
    """Whether the interface's class defines ``name`` itself (not just BaseInterface's empty default)."""
    method = getattr(type(interface), name, None)
    return method is not None and method is not getattr(BaseInterface, name, None)


class InterfaceHost:
    """Runs one original-style interface in the gateway's process (see the module docstring).

    Args:
        interface: the interface (a BaseInterface, or any object with ``setup``/``on_frame``/``run_loop``).
        runtime: the runtime object the gateway's servers get (unused here; kept for the signature).
    """

    def __init__(self, interface: Any, runtime: Any = None) -> None:
        self.interface = interface
        self.runtime = runtime
        # bound now: the runtime points interface.on_frame at this host's on_frame right after we return
        self._handler = getattr(interface, "on_frame", None) if _overrides(interface, "on_frame") else None
        self._async = inspect.iscoroutinefunction(self._handler)
        self.delivered = 0
        self.dropped = 0
        self.errors = 0
        self._logged: set = set()
        self._closed = False
        setup = getattr(interface, "setup", None)
        if callable(setup):
            setup()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        if self._async or _overrides(interface, "run_loop"):
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"edgeflow-interface:{type(interface).__name__}")
            self._thread.start()
            self._started.wait(STOP_TIMEOUT)

    # -- frames in (the node's loop thread) ------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        """Hand one frame to the interface: a sync ``on_frame`` is called now, an async one is queued."""
        if self._closed or self._handler is None:
            return
        owned = owned_copy(frame)
        if not self._async:
            result = self._handler(owned)
            if inspect.isawaitable(result):           # a sync function returning a coroutine: run it there
                self._submit(result)
            self.delivered += 1
            return
        self._submit(owned)

    def _submit(self, item: Any) -> None:
        loop = self._loop
        if loop is None:
            if inspect.iscoroutine(item):
                item.close()
            self.dropped += 1
            return
        try:
            loop.call_soon_threadsafe(self._enqueue, item)
        except RuntimeError:                            # the loop closed while frames still come: drop
            if inspect.iscoroutine(item):
                item.close()
            self.dropped += 1

    # -- the interface's event loop --------------------------------------------------------------------------
    def _enqueue(self, item: Any) -> None:
        queue = self._queue
        if queue is None:
            return
        if queue.full():
            old = queue.get_nowait()              # the oldest waiting frame goes: the newest matter most
            if inspect.iscoroutine(old):
                old.close()
            self.dropped += 1
        queue.put_nowait(item)

    def _run(self) -> None:
        from edgeflow._loopthread import new_event_loop
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _main(self) -> None:
        self._queue = asyncio.Queue(MAX_PENDING)
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(self._deliver())]
        if _overrides(self.interface, "run_loop"):
            tasks.append(asyncio.ensure_future(self._run_loop()))
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_loop(self) -> None:
        try:
            result = self.interface.run_loop()
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gateway: %s.run_loop() failed", type(self.interface).__name__)

    async def _deliver(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                result = item if inspect.iscoroutine(item) else self._handler(item)
                if inspect.isawaitable(result):
                    await result
                self.delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:               # one bad frame must not end the interface: log once, count
                self.errors += 1
                key = (type(exc).__name__, str(exc)[:80])
                if key not in self._logged:
                    self._logged.add(key)
                    log.exception("gateway: %s.on_frame failed", type(self.interface).__name__)

    def close(self) -> None:
        """Stop ``run_loop()`` and the frame queue, and join the interface's thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        from edgeflow._loopthread import stop_loop_thread
        stop = self._stop
        if not stop_loop_thread(self._loop, None if stop is None else stop.set, thread=self._thread,
                                timeout=STOP_TIMEOUT):
            log.warning("gateway: %s did not stop within %g s", type(self.interface).__name__, STOP_TIMEOUT)

    def __repr__(self) -> str:
        return f"<InterfaceHost {type(self.interface).__name__}{' closed' if self._closed else ''}>"


def serve(interface: Any, runtime: Any = None) -> InterfaceHost:
    """Start an original-style interface in this process (what ``BaseInterface.server`` names)."""
    return InterfaceHost(interface, runtime)
