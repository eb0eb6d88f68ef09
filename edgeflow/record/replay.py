"""Replay a recording: its frames published again with their recorded timing, into rings or through a pipeline.

    edgeflow replay run.mcap --speed 1          # into the topics of the app the file was recorded from
    app.node(ReplaySource, name="camera", path="run.mcap", topic="camera")   # a pipeline on recorded data

Timing follows the recorded log times (the frames' capture timestamps): frame ``k`` is due ``(t_k - t_0) /
speed`` seconds after the first one, on the monotonic clock, so errors never add up. Waiting sleeps until
SPIN_S before the due time, then spins: sleeps alone overshoot by 0.1-0.3 ms (p99; more on a loaded machine),
a spin of the last 0.75 ms keeps the inter-frame intervals within a few hundred microseconds. ``speed="max"``
publishes as fast as the rings take frames (DURABLE consumers set the pace). When playback falls behind by
more than RESYNC_S (the rings were full, the process was paused), the schedule restarts from the late frame
instead of bursting to catch up.

What a replayed frame keeps: data (bit-exact), capture timestamp and meta as recorded (trace, parents and
origin included). Frame ids are the ring's to give (``seq`` numbers counted by the ring, 1, 2, ... on a new
ring): the recorded id travels in meta as ``RECORDED_KEY`` = ``[recorded ring topic, recorded frame id]``, the
same shape as ``edgeflow.origin`` and ``edgeflow.parents`` entries. A recording of a whole run replayed into
new rings gets the very same ids (a producer's ids run 1, 2, ... without gaps); filtered by start/end or
topics they are renumbered, and meta says which frame each one was.

Looping: pass ``k`` (from 0) shifts every timestamp by ``k`` times the recording's span plus one mean interval,
so time keeps increasing for fusion nodes and sinks that rotate by capture time, and drops the recorded
``edgeflow.origin`` (a DURABLE consumer would take the second pass for duplicates of the first).

``ReplaySource`` (a ProducerNode) is the same playback inside a pipeline: its frames are the head of their
chains in the new run, so the recorded ``edgeflow.trace``, ``edgeflow.parents`` and ``edgeflow.origin`` are left
out (they name frames of the recorded run; ``RECORDED_KEY`` leads back to them in the file).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from edgeflow.errors import BackpressureTimeout, ConfigError
from edgeflow.frame import Frame
from edgeflow.nodes.base import EndOfStream, ProducerNode
from edgeflow.record.lineage import match_topics

__all__ = ["RECORDED_KEY", "Pacer", "Player", "PlayStats", "ReplaySource", "pace", "parse_speed", "parse_time",
           "wait_until"]

RECORDED_KEY = "edgeflow.recorded"   #: meta: [ring topic, frame id] the replayed frame had in the recording
TRACE_KEY = "edgeflow.trace"         # runtime/outputs.py's names (not imported: replay needs no runtime)
PARENTS_KEY = "edgeflow.parents"
ORIGIN_KEY = "edgeflow.origin"
SPIN_S = 0.00075         # the last part of a wait is spun, not slept (a sleep overshoots by 0.1-0.3 ms, p99)
RESYNC_S = 0.5           # behind schedule by more than this: restart the schedule instead of bursting
SLICE_S = 0.1            # longest sleep at once, so a stop request is seen promptly
OFFSET_LIMIT = 1e9       # a start/end below this is seconds from the recording's first frame, else epoch seconds


def parse_speed(value: Any, where: str = "speed") -> float:
    """A playback speed: a number > 0 (1.0 real time, 2.0 twice as fast) or "max" (math.inf).

    Raises:
        ConfigError: naming ``where``, for anything else.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "max":
            return math.inf
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{where}={value!r}: a number > 0 or 'max'") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isnan(value):
        raise ConfigError(f"{where}={value!r}: a number > 0 or 'max'")
    return float(value)


def parse_time(value: Any, first: float | None, where: str) -> float | None:
    """A start/end bound in epoch seconds: None stays None; a number below OFFSET_LIMIT (1e9, 2001) counts from
    the recording's first frame (``first``), a larger one is seconds since the epoch.

    Raises:
        ConfigError: naming ``where``, for a value that is not a number.
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}={value!r}: seconds (from the recording's start, or since the epoch)") from None
    if isinstance(value, bool) or math.isnan(seconds):
        raise ConfigError(f"{where}={value!r}: seconds (from the recording's start, or since the epoch)")
    if seconds < OFFSET_LIMIT:
        return None if first is None else first + seconds
    return seconds


def wait_until(due: float, stop: threading.Event | None = None) -> bool:
    """Wait until ``time.perf_counter()`` reaches ``due``: sleep in slices until SPIN_S before it, then spin.
    Returns False when ``stop`` was set meanwhile (then it returns at once)."""
    while True:
        left = due - time.perf_counter()
        if left <= 0:
            return True
        if stop is not None and stop.is_set():
            return False
        if left > SPIN_S:
            time.sleep(min(SLICE_S, left - SPIN_S))
        # else: spin; a bare loop, a yield would hand the core away for a whole scheduler slice


def first_time(frames: Iterable[tuple[str, Frame]]) -> float | None:
    """The timestamp of the first frame (None for none)."""
    for _, frame in frames:
        return frame.timestamp
    return None


class Pacer:
    """The playback clock: when each frame is due (``time.perf_counter()`` seconds), from its timestamp.

    Anchored at the first frame (drift-free); a frame handed out more than RESYNC_S after its due time
    re-anchors the schedule at that frame (``done``). ``speed`` inf: every frame is due at once.
    """

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._wall = self._ts = None
        self.late: list[float] = []          # seconds each frame was handed out after its due time
        self.handed: list[float] = []        # perf_counter() (CLOCK_MONOTONIC) when each was handed out

    def due(self, timestamp: float) -> float:
        """When the frame with this capture timestamp is due."""
        if self.speed == math.inf:
            return -math.inf
        if self._wall is None:
            self._wall, self._ts = time.perf_counter(), timestamp
        return self._wall + max(0.0, timestamp - self._ts) / self.speed

    def done(self, due: float) -> None:
        """The frame due at ``due`` was handed out now: note how late, re-anchor when far behind."""
        if self.speed == math.inf:
            return
        now = time.perf_counter()
        late = now - due
        self.late.append(late)
        self.handed.append(now)
        if late > RESYNC_S:
            self._wall, self._ts = None, None


def pace(frames: Iterable[tuple[str, Frame]], speed: float = 1.0, *,
         stop: threading.Event | None = None, pacer: Pacer | None = None) -> Iterator[tuple[str, Frame]]:
    """Yield ``(topic, frame)`` pairs at the pace their timestamps say, divided by ``speed`` (inf: at once);
    stops early when ``stop`` is set. ``pacer``: the clock to use (its ``late`` list has the lateness)."""
    pacer = pacer if pacer is not None else Pacer(speed)
    for topic, frame in frames:
        due = pacer.due(frame.timestamp)
        if not wait_until(due, stop):
            return
        if stop is not None and stop.is_set():
            return
        pacer.done(due)
        yield topic, frame


@dataclasses.dataclass
class PlayStats:
    """What a playback did: frames published (per topic), passes over the recording, seconds it took."""
    frames: int = 0
    per_topic: dict = dataclasses.field(default_factory=dict)
    passes: int = 0
    seconds: float = 0.0
    span: float = 0.0                  # recorded seconds covered by one pass
    stopped: bool = False              # ended by stop() (Ctrl-C) rather than the end of the recording

    def line(self) -> str:
        """``replayed 120 frames (camera 60, lidar 60) in 2.0 s, 1 pass``."""
        topics = ", ".join(f"{t} {n}" for t, n in self.per_topic.items())
        how = " (stopped)" if self.stopped else ""
        return (f"replayed {self.frames} frames ({topics or 'none'}) in {self.seconds:.2f} s, "
                f"{self.passes} pass{'es' if self.passes != 1 else ''}{how}")


class Player:
    """Plays a recording: ``frames()`` yields its frames at their recorded pace; ``publish()`` sends them into
    the rings of an app (one Publisher per recorded ring topic).

    Args:
        recording: a path (or list of rotated files) or an open ``edgeflow.record.reader.Recording``.
        topics: ring topics or node names (a node name stands for all its replica rings); None: every topic.
        speed: a number > 0 or "max" (see parse_speed).
        loop: start again at the end, forever (until ``stop()``).
        start, end: bounds on the capture time: seconds from the recording's first frame, or epoch seconds.
        for_pipeline: leave the recorded trace, parents and origin out of meta (ReplaySource).

    Raises:
        ConfigError: a missing file, an unknown topic (with a did-you-mean), a bad speed or bound.
    """

    def __init__(self, recording: Any, *, topics: Iterable[str] | str | None = None, speed: Any = 1.0,
                 loop: bool = False, start: Any = None, end: Any = None, for_pipeline: bool = False) -> None:
        self.recording = open_source(recording)
        self.speed = parse_speed(speed)
        self.loop = bool(loop)
        self.for_pipeline = for_pipeline
        self.topics = resolve_topics(self.recording, topics)
        needs_first = any(v is not None and not isinstance(v, bool) and isinstance(v, (int, float, str))
                          for v in (start, end))
        self.first = first_time(self.recording.frames(topics=self.topics)) if needs_first else None
        self.start = parse_time(start, self.first, "start")
        self.end = parse_time(end, self.first, "end")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ConfigError(f"end={end!r} is before start={start!r}")
        self.stats = PlayStats()
        self.pacer = Pacer(self.speed)
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop playing: ``frames()`` ends before its next frame, a publish waiting for room gives up."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stop.is_set()

    def _one_pass(self, k: int, shift: float) -> Iterator[tuple[str, Frame]]:
        # the bounds are applied here, not by the reader: its start/end go to mcap's deprecated
        # start_time/end_time arguments (a DeprecationWarning with mcap 1.6); frames come in log-time order
        for topic, frame in self.recording.frames(topics=self.topics):
            if self.start is not None and frame.timestamp < self.start:
                continue
            if self.end is not None and frame.timestamp >= self.end:
                break
            meta = dict(frame.meta) if frame.meta else {}
            if self.for_pipeline:
                for key in (TRACE_KEY, PARENTS_KEY, ORIGIN_KEY):
                    meta.pop(key, None)
            elif k:
                meta.pop(ORIGIN_KEY, None)
            meta[RECORDED_KEY] = [topic, frame.frame_id]
            yield topic, Frame(frame.data, frame_id=frame.frame_id, timestamp=frame.timestamp + shift,
                               meta=meta, topic=topic)

    def _passes(self) -> Iterator[tuple[str, Frame]]:
        k, shift = 0, 0.0
        while True:
            first = last = None
            n = 0
            for topic, frame in self._one_pass(k, shift):
                if first is None:
                    first = frame.timestamp
                last = frame.timestamp
                n += 1
                yield topic, frame
            self.stats.passes = k + 1
            if first is not None:
                self.stats.span = last - first
            if not self.loop or n == 0 or self._stop.is_set():
                return
            # the next pass starts one mean interval after this one's last frame (a single frame: 0.1 s)
            step = (last - first) / (n - 1) if n > 1 else 0.1
            shift += (last - first) + step
            k += 1

    def frames(self) -> Iterator[tuple[str, Frame]]:
        """``(ring topic, Frame)`` in log-time order, each handed out at its due time (see the module doc)."""
        return pace(self._passes(), self.speed, stop=self._stop, pacer=self.pacer)

    def publish(self, app: str, *, slots: int = 8, wait: float = 0.0, on_start=None) -> PlayStats:
        """Publish every frame into ring ``ring_name(app, topic)`` of its recorded topic, then close the rings
        (consumers drain what is left, then see the stream end). Waits for room as long as a DURABLE consumer
        holds the ring full (until ``stop()``).

        Args:
            app: the app whose rings receive the frames.
            slots: slots per ring made here.
            wait: seconds to wait, before the first frame, until every topic has a reader (0: start at once).
            on_start: called with {topic: readers} once the wait is over (e.g. to print who listens).

        Raises:
            ConfigError: a topic has a live publisher (the app's own node is running: replay the others).
        """
        from edgeflow.transport import shm       # here: ReplaySource runs without the transport layer
        pubs: dict[str, Any] = {}
        t0 = time.perf_counter()
        try:
            for topic in self.topics:
                try:
                    pubs[topic] = shm.Publisher(topic, app=app, slots=slots, backpressure_timeout=0.25)
                except ConfigError as exc:
                    if "live" not in str(exc) and "publisher" not in str(exc):
                        raise
                    others = [t for t in self.topics if t != topic]
                    hint = f" (e.g. --topics {','.join(others)})" if others else ""
                    raise ConfigError(f"replay: topic '{topic}' of app '{app}' already has a live publisher "
                                      f"(its node is running): replay only topics nobody publishes{hint}") from None
            readers = self._wait_for_readers(pubs, wait)
            if on_start is not None:
                on_start(readers)
            t0 = time.perf_counter()
            for topic, frame in self.frames():
                pub = pubs[topic]
                while True:
                    try:
                        pub.publish(frame.data, timestamp=frame.timestamp, meta=frame.meta)
                        break
                    except BackpressureTimeout:
                        if self._stop.is_set():      # Ctrl-C while a DURABLE consumer held the ring full
                            raise _Stopped() from None
                self.stats.frames += 1
                self.stats.per_topic[topic] = self.stats.per_topic.get(topic, 0) + 1
        except _Stopped:
            pass
        finally:
            self.stats.stopped = self._stop.is_set()
            self.stats.seconds = time.perf_counter() - t0
            for pub in pubs.values():
                pub.close()
        return self.stats

    def _wait_for_readers(self, pubs: dict, wait: float) -> dict[str, int]:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            readers = {}
            for topic, pub in pubs.items():
                s = pub.statistics()
                readers[topic] = max(len(s.readers), len(s.groups))
            if all(readers.values()) or time.monotonic() >= deadline or self._stop.is_set():
                return readers
            time.sleep(0.02)


class _Stopped(Exception):
    """Playback was stopped while a publish waited for room."""


def open_source(recording: Any):
    """An open Recording from a path (a file, a folder, ``run.mcap`` for its rotated parts), a list of files,
    or a Recording (returned as it is).

    Raises:
        ConfigError: nothing to read at that path (named).
    """
    if hasattr(recording, "frames") and hasattr(recording, "topics"):
        return recording
    from edgeflow.record.reader import open_recording
    return open_recording(recording)


def resolve_topics(recording, topics: Iterable[str] | str | None) -> list[str]:
    """The ring topics of ``recording`` that ``topics`` names (ring topics or node names, a string may be
    comma-separated); every topic for None.

    Raises:
        ConfigError: a name that matches no recorded topic, with a did-you-mean and the recorded topics.
    """
    available = list(recording.topics)
    if topics is None:
        return available
    if isinstance(topics, str):
        topics = [topics]
    names = [n.strip() for t in topics for n in str(t).split(",") if n.strip()]
    if not names:
        return available
    chosen: list[str] = []
    for name in names:
        for topic in match_topics(name, available, getattr(recording, "nodes", None)):
            if topic not in chosen:
                chosen.append(topic)
    return chosen


class ReplaySource(ProducerNode):
    """A producer that sends a recorded topic's frames with their recorded timing, in place of a live source.

        app.node(ReplaySource, name="camera", path="run.mcap", topic="camera", speed=1.0)

    Options: ``path`` (the .mcap file, required), ``topic`` (a recorded ring topic or node name; default: this
    node's name), ``speed`` (a number > 0 or "max"), ``loop`` (start again at the end), ``start`` / ``end``
    (seconds from the recording's first frame, or epoch seconds). Frames keep their data, capture timestamp
    and meta; ``meta["edgeflow.recorded"]`` is ``[ring topic, frame id]`` of the frame in the recording (the
    recorded trace, parents and origin are left out: this node heads the new run's chains). The stream ends
    at the end of the recording (``loop=False``), so a ``--frames``-less run finishes by itself.
    """

    fps: ClassVar[float | None] = None            # the recording sets the pace, not a tick
    OPTIONS: ClassVar[tuple[str, ...]] = ("path", "topic", "speed", "loop", "start", "end")

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Every option at registration: the file exists and holds the topic (one line naming node and option)."""
        from edgeflow.connectors._base import opt_bool, option_error, unknown_options
        unknown_options(name, options, cls.OPTIONS)
        path = options.get("path")
        if path is None:
            raise option_error(name, "path", "required (a recording, e.g. 'run.mcap')")
        if not isinstance(path, (str, Path)):
            raise option_error(name, "path", f"expected a file path, got {path!r}")
        try:
            parse_speed(options.get("speed", 1.0))
        except ConfigError:
            raise option_error(name, "speed", f"{options.get('speed')!r}: a number > 0 or 'max'") from None
        opt_bool(name, options, "loop")
        for key in ("start", "end"):
            try:
                parse_time(options.get(key), 0.0, key)
            except ConfigError:
                raise option_error(name, key, f"{options.get(key)!r}: seconds from the recording's first "
                                              "frame, or since the epoch") from None
        topic = options.get("topic", name)
        if not isinstance(topic, str) or not topic:
            raise option_error(name, "topic", f"expected a recorded topic name, got {topic!r}")
        try:
            recording = open_source(path)
        except ConfigError as exc:
            raise option_error(name, "path", str(exc)) from None
        except Exception as exc:        # not a recording at all: the reader's own reason, on one line
            raise option_error(name, "path", f"{str(path)!r} is not a readable recording: {exc}") from None
        try:
            resolve_topics(recording, topic)
        except ConfigError as exc:
            raise option_error(name, "topic", str(exc)) from None
        finally:
            close = getattr(recording, "close", None)
            if close is not None:
                close()

    def setup(self) -> None:
        """Open the recording and start the clock at the first frame."""
        self.player = Player(self.config["path"], topics=self.config.get("topic", self.name),
                             speed=self.config.get("speed", 1.0), loop=bool(self.config.get("loop", False)),
                             start=self.config.get("start"), end=self.config.get("end"), for_pipeline=True)
        self._frames = None
        self._pending = None            # (frame, due) not handed out yet

    def produce(self) -> Any:
        """The next recorded frame at its due time; None (nothing this tick) while it is more than SLICE_S
        away, so that the runtime sees a stop request between two calls; ends the stream at the end."""
        if self._frames is None:
            self._frames = self.player._passes()
        if self._pending is None:
            try:
                _, frame = next(self._frames)
            except StopIteration:
                raise EndOfStream from None
            self._pending = (frame, self.player.pacer.due(frame.timestamp))
        frame, due = self._pending
        if due - time.perf_counter() > SLICE_S + SPIN_S:
            time.sleep(SLICE_S)
            return None
        wait_until(due)
        self.player.pacer.done(due)
        self._pending = None
        return Frame(frame.data, timestamp=frame.timestamp, meta=frame.meta)

    def teardown(self) -> None:
        """Stop the playback and close the file."""
        player = getattr(self, "player", None)
        if player is not None:
            player.stop()
            close = getattr(player.recording, "close", None)
            if close is not None:
                close()
