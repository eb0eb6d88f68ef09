"""The hub: the newest frame of every topic, JPEG-encoded at most once per requested size, fanned out to
viewers.

Threads: ``publish()`` runs on the gateway node's loop thread (the runtime calls ``server.on_frame``). It only
stores the newest entry of the topic and, when someone waits on that topic, schedules one wake-up on the event
loop (``call_soon_threadsafe``); it never blocks and never encodes. Everything else runs on the event loop;
JPEG encoding runs in a small thread pool (OpenCV releases the GIL while it encodes).

Viewers never queue: each one asks for "a frame newer than the one I sent", gets the newest, and while it
is busy writing (its socket is slow) newer frames simply replace older ones. Encoding is on demand and
shared: the first viewer that asks for frame N at size S starts the encode, every other viewer awaits the
same result, so a frame is encoded at most once per size, and never when nobody watches.

Play-out buffer (``buffer_delay`` > 0, ``WebInterface(buffer_delay=0.5)``): instead of becoming the newest at
once, a frame is copied (the runtime's zero-copy view is released after the hook) and held, and becomes the
topic's newest at its slot ``t0_shown + (timestamp - t0_capture) + buffer_delay``: anchored on the topic's
first frame (perf_counter when it arrived, its capture timestamp), so frames captured at an even cadence but
arriving in bursts are shown at that cadence, ``buffer_delay`` late. Slots are kept by a timer on the event
loop. Rules:

* a frame that arrives after its slot (jitter above ``buffer_delay``) is shown at once, counted ``late``; if a
  frame captured after it was shown already it is dropped instead (viewers never go back in time), counted
  ``late_drops``;
* at most ``queue_size`` frames are held per topic; one more drops the oldest held, counted
  ``overflow_drops``;
* the anchor is set again (``reanchors``) after a silence of ``max(1 s, 2 x buffer_delay)`` with nothing held
  (a paused producer, a restart), and when a frame's slot is more than REANCHOR_S away from where it should
  be (its capture clock jumped, or the link stalled): slot more than ``buffer_delay + REANCHOR_S`` ahead, or
  more than ``max(REANCHOR_S, buffer_delay)`` behind.

With ``buffer_delay`` 0 nothing is copied or held: the newest frame is shown at once, as always.

Bounded (docs/limits.md): at most ``max_topics`` topics (default MAX_TOPICS, 1024) are kept. A frame of a new
topic beyond that is not shown and is counted (``topics_refused``). A topic no viewer watches, that the graph
does not name, with nothing held, and without a frame for ``topic_idle`` seconds (default TOPIC_IDLE, 300) is
forgotten (``topics_forgotten``), with its newest frame: so a flood of distinct names leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import heapq
import itertools
import json
import logging
import math
import threading
import time
from typing import Any

import numpy as np

from edgeflow._series import Series      # the one latency series (also node statistics)
from edgeflow.gateway.fields import FieldHistory

log = logging.getLogger("edgeflow.gateway")

JPEG_MAGIC = b"\xff\xd8\xff"
MIN_IMAGE_SIDE = 8            # smaller 2-D arrays are data (a 4x4 matrix is not a picture)
MAX_VARIANTS = 8              # distinct sizes kept per topic; more distinct requests than this evict old ones
BOUNDARY = "edgeflowframe"    # MJPEG part boundary
REANCHOR_S = 1.0              # seconds a slot may be off before the play-out buffer anchors again
SLOT_SLACK = 0.0005           # seconds: a timer that fires this early still shows the frame (timer rounding)
MAX_TOPICS = 1024             # topics kept at once; a new one beyond this is refused (counted)
TOPIC_IDLE = 300.0            # seconds without a frame after which an unwatched, unnamed topic is forgotten


@dataclasses.dataclass(frozen=True)
class Variant:
    """What a viewer asked for: ``width`` (pixels), ``scale`` (factor) or neither (native size); quality."""
    width: int | None = None
    scale: float | None = None
    quality: int = 80

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The output size for a frame of ``width`` x ``height`` (aspect ratio kept, at least 1 pixel)."""
        if self.width is not None:
            factor = self.width / width
        elif self.scale is not None:
            factor = self.scale
        else:
            return width, height
        return max(1, round(width * factor)), max(1, round(height * factor))


NATIVE = Variant()


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One frame as the hub keeps it: the payload (zero-copy view or bytes) and what the pages show of it.

    ``seq`` counts frames shown on this topic in this hub (frame ids alone are not unique when a topic is
    written by several replicas); ``handed`` is ``time.perf_counter()`` when the frame became the topic's
    newest (shown), ``arrived`` when it reached the hub (the same without a play-out buffer).
    """
    seq: int
    frame_id: int
    timestamp: float
    meta: dict
    data: Any
    kind: str                  # "image" (an array to encode), "jpeg" (bytes already JPEG) or "data"
    width: int
    height: int
    channels: int
    dtype: str
    handed: float
    wall: float
    arrived: float = 0.0


@dataclasses.dataclass(slots=True)
class Held:
    """A frame in the play-out buffer: its owned copy and its slot (perf_counter) in anchor ``epoch``."""
    due: float
    epoch: int
    frame_id: int
    timestamp: float
    meta: dict
    data: Any
    arrived: float
    late: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """A JPEG of one entry at one size, and its MJPEG part (headers + JPEG + CRLF), built once for all."""
    seq: int
    frame_id: int
    handed: float
    jpeg: bytes
    part: bytes
    width: int
    height: int
    encode_s: float
    passthrough: bool = False     # the payload already was this JPEG: nothing was encoded


class Topic:
    """One topic's newest entry, arrival rate, encode cache and viewer counts."""

    def __init__(self, name: str, expected: bool = False) -> None:
        self.name = name
        self.expected = expected                     # named by the graph before its first frame
        self.latest: Entry | None = None
        self.frames = 0
        self._seq = itertools.count(1)
        self._arrivals: collections.deque = collections.deque(maxlen=128)
        self._lock = threading.Lock()                # arrivals: appended by the node thread, read by the loop
        self.waiters = 0                             # coroutines waiting for a newer entry (loop thread only)
        self.wake_pending = False
        self.changed: asyncio.Event | None = None
        self.cache: dict[Variant, tuple[int, asyncio.Future]] = {}
        self.viewers: collections.Counter = collections.Counter()   # kind ("mjpeg", "ws") -> open viewers
        self.sent = 0                                # frames written to viewers
        self.skipped = 0                             # frames a viewer was too slow for (replaced before sent)
        self.encodes = 0
        self.encode_errors = 0
        self.encode_time = Series()
        self.delivery = Series()                     # shown (newest) -> written to a viewer's socket
        # the play-out buffer (buffer_delay > 0), under _lock: filled by the node thread, emptied by the loop
        self.held: list = []                         # heap of (due, order, Held)
        self._order = itertools.count()
        self.anchor: tuple[int, float, float] | None = None     # (epoch, capture timestamp, perf_counter)
        self.epoch = 0
        self.last_arrival: float | None = None
        self.shown_epoch = -1                        # epoch and capture time of the newest frame shown
        self.shown_timestamp = float("-inf")
        self.late = 0
        self.late_drops = 0
        self.overflow_drops = 0
        self.reanchors = 0
        self.timer: asyncio.TimerHandle | None = None    # loop thread only
        self.timer_due: float | None = None
        self.seen = time.perf_counter()              # the last frame (or creation): for forgetting idle topics
        self.forgotten = False                       # dropped from its hub: a publish racing that retries
        self.fields: FieldHistory | None = None      # numeric fields of its dict messages (the live plot)

    def next_seq(self) -> int:
        """The next shown number (the node thread without a play-out buffer, the event loop with one)."""
        return next(self._seq)

    def arrived(self, now: float) -> None:
        """Count an arrival at ``now`` (perf_counter) for the rate."""
        with self._lock:
            self._arrivals.append(now)
            self.frames += 1

    def fps(self, now: float | None = None) -> float:
        """Frames per second over the last two seconds (0 when the topic went quiet)."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            recent = [t for t in self._arrivals if now - t <= 2.0]
        if len(recent) < 2 or recent[-1] == recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])


class Hub:
    """Newest frame per topic, encode-once JPEG cache and viewer fan-out (see the module docstring).

    Args:
        quality: default JPEG quality (1-100).
        encoders: threads that encode JPEG.
        buffer_delay: seconds of play-out buffer (0: the newest frame is shown at once); see the module
            docstring.
        queue_size: the most frames the play-out buffer holds per topic (the oldest is dropped beyond).
        on_show: optional ``callback(topic_name, entry)`` run as each frame becomes its topic's newest (on the
            node thread without a play-out buffer, on the event loop with one); for tests and embedding.
        max_topics: topics kept at once (the graph's named topics always are); frames of more are refused.
        topic_idle: seconds after which a topic without frames, viewers or a name in the graph is forgotten.

    ``publish`` may be called from any thread; everything else from the event loop the hub is attached to.
    """

    def __init__(self, *, quality: int = 80, encoders: int = 2, buffer_delay: float = 0.0,
                 queue_size: int = 60, on_show=None, max_topics: int = MAX_TOPICS,
                 topic_idle: float = TOPIC_IDLE) -> None:
        self.quality = quality
        self.buffer_delay = float(buffer_delay)
        self.queue_size = int(queue_size)
        self.on_show = on_show         # called (topic name, Entry) as each frame becomes its topic's newest
        self.topics: dict[str, Topic] = {}
        self._topics_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._encoders = encoders
        self.closing = False
        self.accepting = True          # False once the server closed: a late frame must not pin memory again
        self.started = time.time()
        self.max_topics, self.topic_idle = int(max_topics), float(topic_idle)
        self.topics_refused = 0        # frames not shown because max_topics topics were kept already
        self.topics_forgotten = 0
        self._sweeper: asyncio.TimerHandle | None = None

    # -- lifecycle (event loop) ------------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve from ``loop``: from now on ``publish`` wakes that loop's viewers."""
        self._executor = concurrent.futures.ThreadPoolExecutor(self._encoders,
                                                               thread_name_prefix="edgeflow-jpeg")
        self.closing = False
        self._loop = loop
        for topic in list(self.topics.values()):       # frames held before the loop ran get their timers now
            if topic.held:
                loop.call_soon(self._arm, topic)
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def _sweep_interval(self) -> float:
        return min(10.0, max(0.05, self.topic_idle / 4))

    def _sweep(self) -> None:
        """Event loop: forget idle topics now and then."""
        self._sweeper = None
        if self._loop is None or self.closing:
            return
        self.forget_idle()
        self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)

    def forget_idle(self, now: float | None = None) -> int:
        """Forget every topic idle for more than ``topic_idle`` seconds that no viewer watches, the graph does
        not name and that holds nothing; returns how many (any thread; the event loop's sweep calls it)."""
        now = time.perf_counter() if now is None else now
        with self._topics_lock:
            idle = [t for t in self.topics.values()
                    if not t.expected and not t.waiters and not any(t.viewers.values()) and not t.held
                    and now - t.seen > self.topic_idle]
            for topic in idle:
                topic.forgotten = True
                topic.latest = None                    # its newest frame may pin a shared-memory slot
                topic.cache.clear()
                del self.topics[topic.name]
            if idle:
                self.topics = dict(self.topics)        # a dict keeps its grown table: a new one gives it back
        self.topics_forgotten += len(idle)
        return len(idle)

    def stop_waiting(self) -> None:
        """Wake every waiting viewer so that it ends (event loop thread)."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for topic in list(self.topics.values()):
            if topic.timer is not None:
                topic.timer.cancel()
                topic.timer = topic.timer_due = None
            if topic.changed is not None:
                event, topic.changed = topic.changed, None
                event.set()

    def close(self) -> None:
        """End every viewer and stop the encoders (idempotent; event loop thread)."""
        self.stop_waiting()
        if self._executor is not None:
            # the encoders may still read pinned frames: let a running encode finish before the rings close
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._loop = None

    def clear(self) -> None:
        """Forget every stored frame and take no more, so nothing here pins shared memory (any thread)."""
        self.accepting = False
        for topic in list(self.topics.values()):
            with topic._lock:
                topic.held.clear()
            topic.latest = None
            topic.cache.clear()

    # -- frames in (any thread) ------------------------------------------------------------------------------
    def publish(self, frame: Any) -> None:
        """Make ``frame`` the newest of its topic, or hold a copy until its slot with a play-out buffer. Never
        blocks, never encodes.

        Without a buffer it keeps ``frame.data`` (not the Frame: the runtime releases the Frame after the
        hook, while the array, a zero-copy view, stays valid and pins its slot until this entry is replaced).
        """
        if not self.accepting:
            return
        name = frame.topic if frame.topic else "frames"
        for _ in range(2):                 # twice only if the sweep forgot the topic between lookup and show
            topic = self._bounded_topic(name)
            if topic is None:
                return
            now = topic.seen = time.perf_counter()
            if self.buffer_delay <= 0:
                self._show(topic, int(frame.frame_id), float(frame.timestamp), frame.meta or {}, frame.data,
                           now, now)
            else:
                self._hold(topic, frame, now)
            topic.arrived(now)
            if not topic.forgotten:
                return

    def _bounded_topic(self, name: str) -> Topic | None:
        """The topic for a frame, made if there is room; None (counted) when max_topics are kept already."""
        topic = self.topics.get(name)
        if topic is not None:
            return topic
        with self._topics_lock:
            topic = self.topics.get(name)
            if topic is None:
                if len(self.topics) >= self.max_topics:
                    self.topics_refused += 1
                    n = self.topics_refused
                    if n & (n - 1) == 0:      # 1, 2, 4 ...: loud but bounded
                        log.warning("gateway: frame of topic %r not shown: %d topics kept already (max_topics; "
                                    "%d refused so far)", name[:100], len(self.topics), n)
                    return None
                topic = self.topics[name] = Topic(name)
        return topic

    def _show(self, topic: Topic, frame_id: int, timestamp: float, meta: dict, data: Any, arrived: float,
              now: float) -> None:
        """Make one payload the topic's newest entry and wake its viewers (the caller's thread)."""
        kind, width, height, channels, dtype = classify(data)
        entry = Entry(topic.next_seq(), frame_id, timestamp, meta, data, kind, width, height, channels, dtype,
                      now, time.time(), arrived)
        topic.latest = entry
        if kind == "data" and isinstance(data, dict):      # a dict message: its numbers for the live plot
            if topic.fields is None:
                topic.fields = FieldHistory()
            topic.fields.add(frame_id, timestamp, data)
        if self.on_show is not None:
            self.on_show(topic.name, entry)
        # latest is set before waiters is read; a waiter counts itself before it reads latest: none is missed
        if topic.waiters and not topic.wake_pending and self._loop is not None:
            topic.wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._wake, topic)
            except RuntimeError:            # the loop closed while the runtime still delivers: nobody waits
                topic.wake_pending = False

    # -- the play-out buffer ---------------------------------------------------------------------------------
    def _hold(self, topic: Topic, frame: Any, now: float) -> None:
        """Node thread: copy the frame, give it its slot, keep it (dropping the oldest held when full)."""
        try:
            owned = frame.copy().data          # the view is released after the hook; we show it later
        except (TypeError, ValueError):
            owned = frame.data                 # something Frame.copy cannot copy: it is not a shm view either
        timestamp = float(frame.timestamp)
        delay = self.buffer_delay
        with topic._lock:
            quiet = (topic.last_arrival is not None and not topic.held
                     and now - topic.last_arrival > max(1.0, 2 * delay))
            due = None
            if topic.anchor is not None and not quiet:
                _, capture0, shown0 = topic.anchor
                due = shown0 + (timestamp - capture0) + delay
                if due - now > delay + REANCHOR_S or now - due > max(REANCHOR_S, delay):
                    due = None                 # the capture clock jumped or the link stalled: anchor again
            if due is None:
                if topic.anchor is not None:
                    topic.reanchors += 1
                topic.epoch += 1
                topic.anchor = (topic.epoch, timestamp, now)
                due = now + delay
            topic.last_arrival = now
            late = due < now
            if late:
                topic.late += 1
            held = Held(due, topic.epoch, int(frame.frame_id), timestamp, dict(frame.meta or {}), owned, now,
                        late)
            if len(topic.held) >= self.queue_size:
                heapq.heappop(topic.held)          # the oldest held frame (earliest slot) makes room
                topic.overflow_drops += 1
            heapq.heappush(topic.held, (due, next(topic._order), held))
            first = topic.held[0][2] is held
        if first and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._arm, topic)
            except RuntimeError:                   # the loop closed: nobody watches any more
                pass

    def _arm(self, topic: Topic) -> None:
        """Event loop: a timer for the earliest held slot (earlier than the one set, if any)."""
        if self._loop is None or self.closing:
            return
        with topic._lock:
            due = topic.held[0][0] if topic.held else None
        if due is None or (topic.timer is not None and topic.timer_due is not None
                           and topic.timer_due <= due):
            return
        if topic.timer is not None:
            topic.timer.cancel()
        topic.timer_due = due
        topic.timer = self._loop.call_later(max(0.0, due - time.perf_counter()), self._release, topic)

    def _release(self, topic: Topic) -> None:
        """Event loop: show every held frame whose slot came, then wait for the next slot."""
        topic.timer = topic.timer_due = None
        self.release_due(topic)
        self._arm(topic)

    def release_due(self, topic: Topic, now: float | None = None) -> int:
        """Show the held frames of ``topic`` whose slot is at or before ``now``; returns how many were shown.

        The event loop's timers call it; without a loop (a hub never attached) a caller may.
        """
        now = time.perf_counter() if now is None else now
        with topic._lock:
            ready = []
            while topic.held and topic.held[0][0] <= now + SLOT_SLACK:
                ready.append(heapq.heappop(topic.held)[2])
        shown = 0
        for held in ready:
            if held.epoch == topic.shown_epoch and held.timestamp < topic.shown_timestamp:
                topic.late_drops += 1              # a newer frame was shown already: never go back in time
                continue
            topic.shown_epoch, topic.shown_timestamp = held.epoch, held.timestamp
            self._show(topic, held.frame_id, held.timestamp, held.meta, held.data, held.arrived,
                       time.perf_counter())
            shown += 1
        return shown

    def buffer_state(self, topic: Topic) -> dict:
        """The topic's play-out buffer figures (JSON-able)."""
        with topic._lock:
            depth = len(topic.held)
        return {"delay_s": self.buffer_delay, "queue_size": self.queue_size, "depth": depth,
                "late": topic.late, "late_drops": topic.late_drops, "overflow_drops": topic.overflow_drops,
                "reanchors": topic.reanchors}

    def topic(self, name: str, create: bool = False) -> Topic | None:
        """The Topic called ``name``; created when ``create`` (any thread)."""
        topic = self.topics.get(name)
        if topic is None and create:
            with self._topics_lock:
                topic = self.topics.get(name)
                if topic is None:
                    topic = self.topics[name] = Topic(name)
        return topic

    def expect(self, names) -> None:
        """Topics the graph says will come: listed (and waited for by viewers) before their first frame."""
        for name in names:
            self.topic(name, create=True).expected = True

    # -- viewers (event loop) --------------------------------------------------------------------------------
    def _wake(self, topic: Topic) -> None:
        topic.wake_pending = False
        if topic.changed is not None:
            event, topic.changed = topic.changed, None
            event.set()

    async def next_entry(self, topic: Topic, after: int, timeout: float | None = None) -> Entry | None:
        """The newest entry of ``topic`` with seq > ``after``, waiting for one; None when closing or timed
        out."""
        topic.waiters += 1
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.closing:
                entry = topic.latest
                if entry is not None and entry.seq > after:
                    return entry
                if topic.changed is None:
                    topic.changed = asyncio.Event()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(topic.changed.wait(), remaining)
                except TimeoutError:
                    return None
            return None
        finally:
            topic.waiters -= 1

    async def encoded(self, topic: Topic, entry: Entry, variant: Variant = NATIVE) -> Encoded:
        """``entry`` as JPEG at ``variant``'s size: encoded once, whoever asks (a newer cached one may be
        returned instead: a viewer never gets an older frame than it asked for).

        Raises:
            ValueError: the entry is not an image.
        """
        cached = topic.cache.get(variant)
        if cached is not None and cached[0] >= entry.seq:
            return await asyncio.shield(cached[1])
        if entry.kind == "data":
            raise ValueError(f"{topic.name}: frame {entry.frame_id} is not an image")
        if self._loop is None or self._executor is None:
            raise ConnectionAbortedError("gateway is closing")
        future = self._loop.run_in_executor(self._executor, self._encode, entry, variant)
        future.add_done_callback(functools.partial(self._count_encode, topic))
        if len(topic.cache) >= MAX_VARIANTS and variant not in topic.cache:
            topic.cache.pop(next(iter(topic.cache)))
        topic.cache[variant] = (entry.seq, future)
        return await asyncio.shield(future)

    @staticmethod
    def _encode(entry: Entry, variant: Variant) -> Encoded:
        """Runs in an encoder thread."""
        t0 = time.perf_counter()
        passthrough = entry.kind == "jpeg" and variant.width is None and variant.scale is None
        if passthrough:
            jpeg, width, height = bytes(entry.data), entry.width, entry.height
        else:
            jpeg, width, height = encode_jpeg(entry, variant)
        head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                f"X-Frame-Id: {entry.frame_id}\r\nX-Timestamp: {entry.timestamp:.6f}\r\n\r\n").encode()
        return Encoded(entry.seq, entry.frame_id, entry.handed, jpeg, head + jpeg + b"\r\n", width, height,
                       time.perf_counter() - t0, passthrough)

    @staticmethod
    def _count_encode(topic: Topic, future: asyncio.Future) -> None:
        """Done-callback on the event loop, so the counters have one writer. Retrieving the exception here
        also keeps asyncio quiet when every viewer of a failed encode has gone."""
        if future.cancelled() or future.exception() is not None:
            topic.encode_errors += 1
            return
        encoded = future.result()
        if not encoded.passthrough:
            topic.encodes += 1
            topic.encode_time.add(encoded.encode_s)

    def delivered(self, topic: Topic, encoded: Encoded, previous: int) -> None:
        """Count one frame written to a viewer whose previous frame was seq ``previous``."""
        topic.sent += 1
        if previous:
            topic.skipped += max(0, encoded.seq - previous - 1)
        topic.delivery.add(time.perf_counter() - encoded.handed)

    # -- views -----------------------------------------------------------------------------------------------
    def describe(self, topic: Topic, *, value: bool = False) -> dict:
        """A JSON-able summary of a topic for the API and the dashboard (``value``: a non-image's data)."""
        entry = topic.latest
        out = {"name": topic.name, "kind": None, "frame_id": None, "frames": topic.frames,
               "fps": round(topic.fps(), 2), "width": None, "height": None, "channels": None, "dtype": None,
               "age_s": None, "timestamp": None, "meta": {}, "viewers": sum(topic.viewers.values()),
               "encodes": topic.encodes, "buffer": self.buffer_state(topic)}
        if entry is not None:
            out.update(kind=entry.kind, frame_id=entry.frame_id, width=entry.width or None,
                       height=entry.height or None, channels=entry.channels or None, dtype=entry.dtype,
                       age_s=round(time.perf_counter() - entry.handed, 3), timestamp=entry.timestamp,
                       meta=jsonable(entry.meta))
            if value and entry.kind == "data":
                out["value"] = data_value(entry.data)
        return out


def classify(data: Any) -> tuple[str, int, int, int, str]:
    """(kind, width, height, channels, dtype) of a payload; kind is "image", "jpeg" or "data"."""
    if isinstance(data, np.ndarray):
        shape = data.shape
        image = (data.ndim == 2 or (data.ndim == 3 and shape[2] in (1, 3, 4))) and data.dtype.kind in "uifb"
        if image and min(shape[0], shape[1]) >= MIN_IMAGE_SIDE:
            channels = 1 if data.ndim == 2 else int(shape[2])
            return "image", int(shape[1]), int(shape[0]), channels, str(data.dtype)
        return "data", 0, 0, 0, str(data.dtype)
    if isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:3]) == JPEG_MAGIC:
        width, height = jpeg_size(bytes(data[:65536]))
        return "jpeg", width, height, 3, "jpeg"
    return "data", 0, 0, 0, type(data).__name__


def jpeg_size(head: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's SOF marker, (0, 0) when not found in ``head``."""
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return 0, 0
        marker = head[i + 1]
        length = int.from_bytes(head[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
        i += 2 + length
    return 0, 0


def displayable(data: np.ndarray, meta: dict) -> np.ndarray:
    """An 8-bit grey or BGR image from an image-like array of any numeric dtype."""
    img = data
    if img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    elif img.dtype.kind == "f":
        finite = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
        top = float(finite.max()) if finite.size else 1.0
        img = np.clip(finite * (255.0 if top <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    import cv2
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGR if meta.get("color") == "rgb" else cv2.COLOR_BGRA2BGR)
    elif img.ndim == 3 and meta.get("color") == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    return img


def encode_jpeg(entry: Entry, variant: Variant) -> tuple[bytes, int, int]:
    """(jpeg, width, height) of an entry at a variant's size."""
    import cv2
    if entry.kind == "jpeg":
        img = cv2.imdecode(np.frombuffer(entry.data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError("undecodable JPEG payload")
    else:
        img = displayable(entry.data, entry.meta)
    height, width = img.shape[:2]
    out_w, out_h = variant.size_for(width, height)
    if (out_w, out_h) != (width, height):
        shrink = out_w < width
        img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, variant.quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), out_w, out_h


MAX_VALUE_ITEMS = 256         # a non-image array larger than this is summarised, not listed; also the most
                              # keys or items of a message shown
MAX_VALUE_DEPTH = 8           # nesting levels of a message shown
MAX_TEXT = 4096               # characters of a text shown


def data_value(data: Any) -> Any:
    """A JSON-able view of a non-image payload: small arrays listed, large ones summarised, bytes decoded,
    and a message (dict or list, arrays nested in it) with each array as ``{"dtype", "shape"}``. Never
    raises."""
    try:
        if isinstance(data, np.ndarray):
            return _array_value(data)
        if isinstance(data, (dict, list, tuple)):
            return message_summary(data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return _bytes_value(bytes(data))
        return jsonable(data)
    except Exception as exc:                 # a payload we cannot describe must not break the API or the page
        return {"error": f"cannot show {type(data).__name__}: {type(exc).__name__}"}


def _array_value(data: np.ndarray) -> Any:
    if data.size <= MAX_VALUE_ITEMS and data.dtype.kind in "biuf":
        return jsonable(data.tolist())
    summary: dict = {"shape": list(data.shape), "dtype": str(data.dtype), "size": int(data.size)}
    if data.size and data.dtype.kind in "biuf":
        summary.update(min=jsonable(data.min().item()), max=jsonable(data.max().item()),
                       mean=jsonable(float(data.mean())))
    return summary


def _bytes_value(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or any(ord(c) < 32 and c not in "\t\n\r" for c in text[:MAX_TEXT]):
        return {"bytes": len(raw), "hex": raw[:64].hex()}
    try:
        return jsonable(json.loads(text))
    except ValueError:
        return text[:MAX_TEXT]


def message_summary(value: Any, depth: int = 0) -> Any:
    """A message (dict/list with arrays nested in it) as JSON: arrays as ``{"dtype", "shape"}``, at most
    MAX_VALUE_ITEMS keys or items per level (``{"more": n}`` says how many were left out) and MAX_VALUE_DEPTH
    levels, long texts cut."""
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_VALUE_DEPTH:
        return "..."
    if isinstance(value, dict):
        shown = itertools.islice(value.items(), MAX_VALUE_ITEMS)
        out = {str(k): message_summary(v, depth + 1) for k, v in shown}
        if len(value) > MAX_VALUE_ITEMS:
            out["more"] = len(value) - MAX_VALUE_ITEMS
        return out
    if isinstance(value, (list, tuple)):
        items = [message_summary(v, depth + 1) for v in value[:MAX_VALUE_ITEMS]]
        if len(value) > MAX_VALUE_ITEMS:
            items.append({"more": len(value) - MAX_VALUE_ITEMS})
        return items
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": len(value)}
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return jsonable(value)


def jsonable(value: Any) -> Any:
    """``value`` with NaN/inf as None and unknown objects as their repr, so json.dumps always works."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return repr(value)
