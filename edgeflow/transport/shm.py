"""Shared-memory transport: Publisher and Subscriber over the compiled ring (edgeflow._fast.ring).

One ring per (app, topic), in /dev/shm as ``edgeflow.<app>.<topic>.ctl`` plus ``edgeflow.<app>.<topic>.g<N>``
(one data segment per generation). Frames travel raw: a reader's ``frame.data`` is a read-only numpy array that
views the writer's slot (no copy at any size), or ``bytes`` when bytes were published. A message (a dict or
list with arrays nested, edgeflow.transport.message) is written straight into one slot (slot kind 2) and read
back as the same dict or list whose arrays are read-only views of the slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import re
import time
from typing import Any

import numpy as np

from edgeflow._fast import ring as _ring
from edgeflow.config import settings
from edgeflow.errors import (ClosedResourceError, ConfigError, FrameTooLarge, ProtocolError, ReceiveTimeout,
                             WriterGone)
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import codecs, message
from edgeflow.transport.base import OwnedResource

__all__ = ["Publisher", "Subscriber", "Loan", "PublisherStats", "SubscriberStats", "ring_name",
           "declare_group", "remove_topic", "sweep_app", "live_writers", "writer_status", "wait_any", "peek_meta",
           "MAX_META_BYTES", "DEFAULT_APP",
           "DEFAULT_MAX_LAG"]

MAX_META_BYTES = codecs.MAX_META_BYTES   #: JSON meta limit per frame (bytes, encoded), every transport's
if MAX_META_BYTES > _ring.MAX_META:      # the slot's meta area must hold what every other transport accepts
    raise ImportError(f"edgeflow: meta limit {MAX_META_BYTES} exceeds the ring's {_ring.MAX_META}")
DEFAULT_APP = "default"
#: How a Subscriber waits for a frame (``wait=``): seconds it spins (checking the ring, with a CPU pause) before
#: it sleeps on the futex. "adaptive" (the default) spins 50 µs: a frame that comes that soon is taken without
#: the writer's wake-up system call and a trip through the scheduler, and an idle subscriber costs one such spin
#: per wait (0.1 s) and nothing more. "sleep" never spins (the least CPU: for many idle subscribers on a small
#: machine); "spin" never sleeps (the lowest latency, one CPU core busy while it waits: for a control loop that
#: owns a core).
WAIT_SPIN_S = {"adaptive": 50e-6, "sleep": 0.0, "spin": -1.0}
DEFAULT_MAX_LAG = 2                      #: BALANCED: frames waiting beyond which a subscriber skips to the newest
_KIND_BYTES, _KIND_ARRAY, _KIND_MESSAGE = 0, 1, 2      # a slot descriptor's kind
_TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_APP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")   # no '.': it separates app and topic in segment names


def ring_name(app: str | None, topic: str) -> str:
    """The segment prefix of a topic: ``edgeflow.<app>.<topic>``; ConfigError for a bad name.

    Topics may use letters, digits, ``-``, ``_`` and ``.``; app names the same but ``.`` (so that app ``a`` with
    topic ``b.c`` and app ``a.b`` with topic ``c`` can never collide).
    """
    app = app if app is not None else settings.EDGEFLOW_APP
    if not isinstance(app, str) or not _APP.fullmatch(app):
        raise ConfigError(f"app name {app!r}: use 1-64 letters, digits, '-' or '_' (no '.')")
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise ConfigError(f"topic {topic!r}: use 1-100 letters, digits, '-', '_' or '.', not starting with '.'")
    return f"edgeflow.{app}.{topic}"


_dtype_codes: dict[np.dtype, bytes] = {}
_dtypes: dict[bytes, np.dtype] = {}


def _dtype_code(dtype: np.dtype) -> bytes:
    code = _dtype_codes.get(dtype)
    if code is None:
        if dtype.fields is None and dtype.subdtype is None:
            code = dtype.str.encode()
        else:            # structured or sub-array dtypes keep their full description, padding included
            code = b"D:" + repr(np.lib.format.dtype_to_descr(dtype)).encode()
        _dtype_codes[dtype] = code
    return code


def _dtype_of(code: bytes) -> np.dtype:
    dtype = _dtypes.get(code)
    if dtype is None:
        if code.startswith(b"D:"):
            import ast
            dtype = np.lib.format.descr_to_dtype(ast.literal_eval(code[2:].decode()))
        else:
            dtype = np.dtype(code.decode())
        _dtypes[code] = dtype
    return dtype


def _encode_meta(topic: str, meta: dict | None) -> bytes:
    return codecs.encode_meta(topic, meta, MAX_META_BYTES)


def _check_array(topic: str, dtype: np.dtype, ndim: int) -> None:
    if dtype.hasobject:
        raise TypeError(f"{topic}: arrays of Python objects (dtype {dtype}) cannot be shared; "
                        "use a numeric dtype, bytes, or JSON in meta")
    if ndim > _ring.MAX_NDIM:
        raise ValueError(f"{topic}: {ndim} dimensions, the limit is {_ring.MAX_NDIM}")


@dataclasses.dataclass(frozen=True)
class PublisherStats:
    """Snapshot of a Publisher: frames published, ring geometry, back-pressure and the attached readers."""
    topic: str
    published: int
    generation: int
    slots: int
    slot_bytes: int
    pinned_slots: int
    backpressure_waits: int
    readers: tuple
    groups: tuple


@dataclasses.dataclass(frozen=True)
class SubscriberStats:
    """Snapshot of a Subscriber: frames received, skipped (drops), copied instead of pinned, held now, lag."""
    topic: str
    received: int
    drops: int
    copies: int
    held: int
    lag: int


class Loan:
    """A writable array inside a free slot of the ring: fill it in place, then ``commit()`` (or ``abort()``).

    Used as a context manager (``with pub.loan(shape, dtype) as buf:``) it commits when the block ends without an
    exception and aborts otherwise. The slot is handed out as it is, not cleared. After commit the array is made
    read-only; arrays derived from it before must not be written any more.
    """

    def __init__(self, publisher: "Publisher", shape: tuple, dtype: Any, timestamp: float | None,
                 meta: dict | None) -> None:
        self.timestamp = time.time() if timestamp is None else float(timestamp)   # capture starts now
        self._pub = publisher
        self.dtype = dtype if type(dtype) is np.dtype else np.dtype(dtype)
        self.shape = shape = (shape,) if type(shape) is int else tuple(shape)
        if self.dtype.hasobject or len(shape) > _ring.MAX_NDIM or min(shape, default=0) < 0:
            _check_array(publisher.topic, self.dtype, len(shape))
            raise ValueError(f"{publisher.topic}: loan shape {shape} has a negative dimension")
        self._meta = _encode_meta(publisher.topic, meta)
        buf = publisher._writer_or_raise().begin(math.prod(shape) * self.dtype.itemsize)
        # np.ndarray over the buffer: one call (frombuffer + reshape is two, 4x the time for a small frame)
        self.array = np.ndarray(shape, self.dtype, buf)
        self.frame_id: int | None = None

    def commit(self, *, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Publish the filled slot; returns its frame_id."""
        if meta is not None:
            self._meta = _encode_meta(self._pub.topic, meta)
        ts = self.timestamp if timestamp is None else float(timestamp)
        self.frame_id = self._pub._writer_or_raise().commit(
            _KIND_ARRAY, _dtype_code(self.dtype), self.shape, ts, self._meta)
        self.array.flags.writeable = False
        self._pub._published += 1
        return self.frame_id

    def abort(self) -> None:
        """Give the slot back unpublished."""
        if self.frame_id is None and not self._pub.is_closed():
            self._pub._writer.abort()
        self.array.flags.writeable = False

    def __enter__(self) -> np.ndarray:
        return self.array

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Publisher(OwnedResource):
    """The one writer of a topic's shared-memory ring.

    Args:
        topic: the topic name (letters, digits, ``-``, ``_``, ``.``).
        app: the app namespace (default: ``$EDGEFLOW_APP`` or ``"default"``); two apps never collide.
        slots: slots in the ring (3 to 64). DURABLE readers can lag by up to this many frames before back-pressure.
        slot_bytes: payload bytes per slot; 0 sizes the ring from the first frame. Larger frames grow the ring
            to a new generation (readers follow without losing a frame) unless ``grow=False``.
        backpressure_timeout: seconds a publish waits for a DURABLE reader that is a whole ring behind before it
            raises BackpressureTimeout naming that reader.

    Raises:
        ConfigError: bad name or option, or the topic already has a live publisher.
        LayoutMismatch: /dev/shm holds a segment of that name that is not a ring of this version.

    Example:
        >>> with Publisher("camera", app="demo") as pub:
        ...     fid = pub.publish(np.zeros((480, 640, 3), np.uint8), meta={"exposure": 0.01})
    """

    def __init__(self, topic: str, *, app: str | None = None, slots: int = 8, slot_bytes: int = 0,
                 grow: bool = True, backpressure_timeout: float = 5.0) -> None:
        self._closed = True
        self.name = ring_name(app, topic)
        self.topic = topic
        self.app = self.name.split(".")[1]
        self._published = 0
        self._writer = _ring.RingWriter.create(self.name, slots=slots, slot_bytes=slot_bytes, grow=grow,
                                               backpressure_timeout=backpressure_timeout)
        self._closed = False

    def _writer_or_raise(self) -> "_ring.RingWriter":
        if self._closed:
            raise ClosedResourceError(f"{self.topic}: publisher is closed")
        return self._writer

    def publish(self, data: Any, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Copy ``data`` (ndarray, bytes-like, a dict/list message, or Frame) into a slot and publish it;
        returns its frame_id.

        Non-contiguous arrays are accepted and copied once into the slot; a message's arrays are copied once
        each, straight into the slot. ``timestamp`` is the capture time in seconds (default: now); ``meta`` a
        JSON-able dict of at most MAX_META_BYTES once encoded.
        """
        writer = self._writer_or_raise()
        if isinstance(data, Frame):
            timestamp = data.timestamp if timestamp is None else timestamp
            meta = data.meta if meta is None else meta
            data = data.data
        ts = time.time() if timestamp is None else float(timestamp)
        blob = _encode_meta(self.topic, meta)
        if isinstance(data, np.ndarray):
            _check_array(self.topic, data.dtype, data.ndim)
            if not data.flags.c_contiguous:   # strided views are copied once, straight into the slot
                loan = Loan(self, data.shape, data.dtype, ts, None)
                np.copyto(loan.array, data)
                loan._meta = blob
                return loan.commit()
            fid = writer.publish(data, _KIND_ARRAY, _dtype_code(data.dtype), data.shape, ts, blob)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            fid = writer.publish(data, _KIND_BYTES, b"", (), ts, blob)
        elif isinstance(data, (dict, list)):
            fid = self._publish_message(writer, data, ts, blob)
        else:
            raise TypeError(f"{self.topic}: cannot publish {type(data).__name__}; "
                            "publish a numpy array, bytes, a dict/list message, or a Frame")
        self._published += 1
        return fid

    def _publish_message(self, writer: "_ring.RingWriter", data: Any, ts: float, blob: bytes) -> int:
        encoded = message.encode(data, self.topic)
        if not encoded.buffers:                  # JSON only: its head is the whole encoding, one copy in
            return writer.publish(encoded.head, _KIND_MESSAGE, b"", (), ts, blob)
        buf = writer.begin(encoded.nbytes)
        try:
            encoded.write_into(buf)
        except BaseException:
            writer.abort()
            raise
        return writer.commit(_KIND_MESSAGE, b"", (), ts, blob)

    def loan(self, shape: tuple, dtype: Any = np.uint8, *, timestamp: float | None = None,
             meta: dict | None = None) -> Loan:
        """A writable array of ``shape`` and ``dtype`` inside a slot, for zero-copy producing.

        ``with pub.loan((1080, 1920, 3), "uint8") as buf: cv2.resize(src, (1920, 1080), dst=buf)`` publishes
        when the block exits without an error. A Publisher has one open loan at a time. The timestamp defaults to
        the moment the loan was taken (capture starts then).
        """
        return Loan(self, shape, dtype, timestamp, meta)

    def declare_group(self, group: str, qos: QoS | str = QoS.DURABLE, *, max_lag: int = DEFAULT_MAX_LAG) -> None:
        """Create a subscriber group now, before any member attaches, and keep it while no member is attached.

        A declared DURABLE group receives every frame published from now on, even before its first member
        subscribes (how the runtime makes durable links deliver from the producer's very first frame).
        """
        qos = QoS.parse(qos)
        self._writer_or_raise().declare_group(group, durable=qos is QoS.DURABLE,
                                              max_lag=max_lag if qos is QoS.BALANCED else 0)

    def statistics(self) -> PublisherStats:
        """A snapshot of this publisher and its ring."""
        s = self._writer_or_raise().statistics()
        return PublisherStats(self.topic, self._published, s["generation"], s["slots"], s["slot_bytes"],
                              s["pinned_slots"], s["backpressure_waits"], tuple(s["readers"]),
                              tuple(s["groups"]))

    def is_closed(self) -> bool:
        """True after close()."""
        return self._closed

    @property
    def backpressure_timeout(self) -> float:
        """Seconds a publish waits for a lagging DURABLE reader before BackpressureTimeout (settable)."""
        return self._writer.backpressure_timeout

    @backpressure_timeout.setter
    def backpressure_timeout(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ConfigError(f"{self.topic}: backpressure_timeout={seconds!r}: seconds, >= 0")
        self._writer.backpressure_timeout = float(seconds)

    def skip_oldest(self) -> int:
        """Drop the oldest frame a lagging DURABLE group has not taken yet (counted in that group's drops), to
        make room now; returns how many groups moved on (0: nothing to skip). The runtime's "drop_oldest"."""
        return self._writer_or_raise().skip_oldest()

    def cancel_wait(self) -> None:
        """Make a publish blocked on a lagging DURABLE subscriber give up now with BackpressureTimeout (safe to
        call from a signal handler: how a stopping node gets out of back-pressure at once)."""
        if not self._closed:
            self._writer.cancel_wait()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every DURABLE group has received every frame; True if it has."""
        return self._writer_or_raise().drain(timeout)

    def close(self, timeout: float = 0.0) -> None:
        """Stop publishing. Attached subscribers drain what is left, then see WriterGone; the ring is removed
        when the last of them closes (at once when none is attached), or taken over by the next Publisher.

        With ``timeout`` > 0, first wait that long for DURABLE groups to take every frame (``drain``), so a
        subscriber that has not attached yet to its declared group still gets everything.
        """
        if not self._closed:
            try:
                if timeout > 0:
                    self._writer.drain(timeout)
            finally:
                self._closed = True
                self._writer.close()

    terminate = close

    def abandon(self) -> None:
        """Let go of the ring as if this process had crashed: subscribers see the publisher dead (WriterGone with
        ``clean=False``), keep their place, and go on when a new Publisher takes the ring over. Used by a node
        that fails and will be restarted, so its consumers do not mistake the failure for the end of the stream.
        """
        if not self._closed:
            self._closed = True
            self._writer.abandon()

    def __repr__(self) -> str:
        return f"<Publisher {self.name}{' closed' if self._closed else ''}>"


class Subscriber(OwnedResource):
    """A reader of a topic's shared-memory ring. It may start before its Publisher (it waits for frames).

    Args:
        topic, app: as for Publisher.
        qos: REALTIME (newest frame not seen yet; skipped frames are counted as drops), DURABLE (every frame
            published after attaching, in order, exactly once; at least once across a crash of a group member),
            or BALANCED (every frame in order while at most ``max_lag`` frames wait, then skip to the newest;
            never slows the publisher).
        group: subscribers with the same group name share the stream: each frame goes to exactly one member.
            A DURABLE group's position survives the death of its members; it ends when the last member closes.
        max_held: frames this subscriber may hold (pin) at once; one more raises HeldFramesError.
        max_lag: BALANCED only (default DEFAULT_MAX_LAG = 2).
        wait: "adaptive" (default), "sleep" or "spin": how ``recv`` waits (WAIT_SPIN_S: spin briefly, then sleep).

    ``frame.data`` of a received frame is a read-only numpy array viewing the slot (bytes when bytes were
    published; a dict or list, its arrays viewing the slot, when a message was). It stays valid while referenced; ``frame.release()`` or leaving ``with sub.recv() as frame:``
    lets the writer reuse the slot. Keep data longer with ``frame.copy()``.

    Example:
        >>> with Subscriber("camera", app="demo", qos=QoS.DURABLE) as sub:
        ...     with sub.recv(timeout=1.0) as frame:
        ...         print(frame.frame_id, frame.data.shape)
    """

    def __init__(self, topic: str, *, app: str | None = None, qos: QoS | str = QoS.REALTIME,
                 group: str | None = None, max_held: int = 4, max_lag: int | None = None,
                 wait: str = "adaptive") -> None:
        self._closed = True
        if wait not in WAIT_SPIN_S:
            raise ConfigError(f"{topic}: wait={wait!r}: one of {', '.join(map(repr, WAIT_SPIN_S))}")
        self.wait_mode = wait
        self.name = ring_name(app, topic)
        self.topic = topic
        self.app = self.name.split(".")[1]
        self.qos = QoS.parse(qos)
        if max_lag is not None and (self.qos is not QoS.BALANCED or max_lag < 1):
            raise ConfigError(f"{topic}: max_lag={max_lag!r} needs qos=BALANCED and a value >= 1")
        self.max_lag = (max_lag or DEFAULT_MAX_LAG) if self.qos is QoS.BALANCED else 0
        self.group = group
        self._max_held = max_held
        self._carried = (0, 0, 0)          # counts of readers replaced after a ring was removed
        self._reported_epoch = 0           # the writer whose end was already raised as WriterGone
        self._reader = self._attach()
        self._closed = False

    def _attach(self) -> "_ring.RingReader":
        reader = _ring.RingReader.attach(self.name, durable=self.qos is QoS.DURABLE, group=self.group,
                                         max_held=self._max_held, max_lag=self.max_lag)
        reader.spin_s = WAIT_SPIN_S[self.wait_mode]
        return reader

    def _reader_or_raise(self) -> "_ring.RingReader":
        if self._closed:
            raise ClosedResourceError(f"{self.topic}: subscriber is closed")
        return self._reader

    def _frame(self, view: "_ring.SlotView") -> Frame:
        meta = view.meta
        meta = codecs.loads_json(meta) if meta else {}
        kind = view.kind
        if kind == _KIND_ARRAY:
            data: Any = np.ndarray(view.shape, _dtype_of(view.dtype), view)     # read-only: the view is
        elif kind == _KIND_BYTES:
            data = bytes(view)
        else:
            data = self._message(view, kind)
        frame = Frame(data, frame_id=view.seq, timestamp=view.timestamp, meta=meta, topic=self.topic)
        if kind != _KIND_ARRAY:
            # bytes and messages are decoded out of the slot, but the frame still holds it until released: a
            # DURABLE consumer that dies before that gets the frame again (at-least-once for every payload)
            frame._pin = view
        return frame

    def _message(self, view: "_ring.SlotView", kind: int) -> Any:
        if kind != _KIND_MESSAGE:
            raise ProtocolError(f"{self.topic}: frame {view.seq} has slot kind {kind}, which this EdgeFlow "
                                "does not know (a newer publisher?)")
        return message.decode(view, self.topic)     # arrays view the slot; they keep it pinned while alive

    def recv_nowait(self) -> Frame | None:
        """The next frame (per the QoS), or None when there is nothing new. Never blocks."""
        view = self._reader_or_raise().take_nowait()
        return None if view is None else self._frame(view)

    def recv(self, timeout: float | None = None) -> Frame:
        """Wait for the next frame, at most ``timeout`` seconds (None waits forever).

        Raises:
            ReceiveTimeout: nothing arrived in time (a TimeoutError).
            WriterGone: the publisher closed (``.clean``) or died, and nothing is left to read. The subscriber
                stays usable: it receives again once a publisher is back.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self.recv_nowait()
            if frame is not None:
                return frame
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            status = self._reader.wait(remaining, self._reported_epoch)
            if status == _ring.TIMEOUT:
                raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")
            if status != _ring.READY:
                frame = self.recv_nowait()        # drain what the writer left before saying it is gone
                if frame is not None:
                    return frame
                self._writer_gone(status)

    async def arecv(self, timeout: float | None = None) -> Frame:
        """``recv`` for asyncio (and uvloop): waits in a worker thread, never blocking the event loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self.recv_nowait()
            if frame is not None:
                return frame
            remaining = 0.25 if deadline is None else min(0.25, max(0.0, deadline - time.monotonic()))
            status = await asyncio.to_thread(self._reader_or_raise().wait, remaining, self._reported_epoch)
            if status == _ring.TIMEOUT and deadline is not None and time.monotonic() >= deadline:
                raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")
            if status in (_ring.WRITER_CLOSED, _ring.WRITER_DEAD):
                frame = self.recv_nowait()
                if frame is not None:
                    return frame
                self._writer_gone(status)

    def _writer_gone(self, status: int) -> None:
        """Raise WriterGone, once per publisher, after everything it published was drained. The next publisher
        of the topic takes the same ring over and this subscriber goes on where it stood (a DURABLE one misses
        nothing). Only a ring that was removed meanwhile is replaced by attaching to the topic anew."""
        self._reported_epoch = self._reader.writer_epoch()
        if status == _ring.WRITER_CLOSED and self._reader.is_orphaned():
            old = self._reader.statistics()
            self._carried = tuple(a + b for a, b in zip(self._carried, (old["taken"], old["drops"], old["copies"])))
            self._reader.close()
            self._reader = self._attach()
            self._reported_epoch = 0
        if status == _ring.WRITER_CLOSED:
            raise WriterGone(f"{self.topic}: the publisher closed", clean=True)
        raise WriterGone(f"{self.topic}: the publisher died; waiting for a new one to take the ring over",
                         clean=False)

    def writer_status(self) -> str:
        """'none' (no publisher yet), 'running', 'closed' or 'dead'."""
        return self._reader_or_raise().writer_status()

    def writer_state(self) -> str:
        """'none', 'running' or 'closed' as the publisher last said: no check that a running one is alive
        (cheap; ``writer_status`` reads /proc for that)."""
        return self._reader_or_raise().writer_state()

    def statistics(self) -> SubscriberStats:
        """A snapshot of this subscriber."""
        s = self._reader_or_raise().statistics()
        taken, drops, copies = self._carried
        return SubscriberStats(self.topic, taken + s["taken"], drops + s["drops"], copies + s["copies"],
                               s["held"], s["lag"])

    def is_closed(self) -> bool:
        """True after close()."""
        return self._closed

    def close(self) -> None:
        """Detach: drop this subscriber's pins (frames it still holds stay readable but unprotected)."""
        if not self._closed:
            self._closed = True
            self._reader.close()

    def __repr__(self) -> str:
        return f"<Subscriber {self.name} {self.qos.name}{' closed' if self._closed else ''}>"


def declare_group(topic: str, group: str, qos: QoS | str = QoS.DURABLE, *, app: str | None = None,
                  max_lag: int = DEFAULT_MAX_LAG) -> None:
    """Create a topic's ring (if needed) and a persistent subscriber group in it, before any publisher exists.

    A DURABLE group declared this way keeps every frame from the publisher's very first. Whoever declares owns the
    cleanup of a ring no publisher ever closes: ``remove_topic`` or ``sweep_app``.
    """
    qos = QoS.parse(qos)
    _ring.declare_group(ring_name(app, topic), group, durable=qos is QoS.DURABLE,
                        max_lag=max_lag if qos is QoS.BALANCED else 0)


def drop_group(topic: str, group: str, *, app: str | None = None) -> str:
    """Free a topic's subscriber group once it has no member (its consumer was removed from a running app), so
    a DURABLE group no longer holds the publisher back: 'dropped', 'absent', or 'busy' (members still
    attached: try again later)."""
    return _ring.drop_group(ring_name(app, topic), group)


def remove_topic(topic: str, *, app: str | None = None) -> int:
    """Unlink a topic's ring segments; returns how many were removed. Mapped copies stay valid."""
    return _ring.remove_ring(ring_name(app, topic))


def sweep_app(app: str) -> list[str]:
    """Unlink every shared-memory segment of an app (after its processes are gone); returns their names."""
    prefix = ring_name(app, "x")[:-1]
    removed = []
    for name in sorted(os.listdir("/dev/shm")):
        if name.startswith(prefix) and _ring.unlink_segment(name):
            removed.append(name)
    return removed


def writer_status(topic: str, *, app: str | None = None) -> str:
    """The state of a topic's ring as seen from this process, without attaching: 'absent' (no such ring
    here), 'none' (no publisher yet), 'running', 'closed' or 'dead'."""
    return _ring.writer_of(ring_name(app, topic))[0]


def peek_meta(app: str | None, topic: str, frame_id: int) -> tuple[float, dict] | None:
    """(timestamp, meta) of frame ``frame_id`` of a topic's ring while a slot still holds it, else None (also
    when the ring does not exist). Joins no subscriber group and pins nothing, so delivery to the topic's
    subscribers is untouched; a frame the publisher overwrote while it was being read is None, never a mix.
    ConfigError for a bad app or topic name."""
    if isinstance(frame_id, bool) or not isinstance(frame_id, int) or not 0 < frame_id < 1 << 63:
        raise ConfigError(f"{topic}: frame id {frame_id!r}: a whole number >= 1")
    found = _ring.peek(ring_name(app, topic), frame_id)
    if found is None:
        return None
    timestamp, blob = found
    return timestamp, (json.loads(blob) if blob else {})


def live_writers(app: str) -> list[tuple[str, int]]:
    """(segment, pid) of every ring of ``app`` on this host whose writer process is alive."""
    prefix = ring_name(app, "x")[:-1]
    found = []
    for name in sorted(os.listdir("/dev/shm")):
        if name.startswith(prefix) and name.endswith(".ctl"):
            status, pid = _ring.writer_of(name[:-4])
            if status == "running":
                found.append((name, pid))
    return found


def wait_any(subscribers: list["Subscriber"], timeout: float | None = None) -> int:
    """Sleep until one of several subscribers may have a frame; its index, or -1 after the timeout.

    Wakes at least every 0.1 s; call ``writer_status()`` on the subscribers between calls to notice dead writers.
    """
    return _ring.wait_any([s._reader_or_raise() for s in subscribers], timeout)
