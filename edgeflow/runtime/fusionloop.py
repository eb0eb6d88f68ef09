"""The FusionNode loop: frames from several inputs, matched by capture time, handed to ``process(frames)``.

Inputs are matched in the node's input order: the order of its links (``app.link("camera").to("fuse")`` before
``app.link("lidar").to("fuse")``), or the order of ``self.input_topics`` when the node sets it in ``setup()``.

Also watched here:
- a silent input: no frame for ``silent_timeout`` seconds (default 2) is reported once (log line naming it,
  statistics); with ``on_missing = "partial"`` the node then emits partial sets, ``None`` for silent inputs:
  each frame of the first live input, with the newest frame of every other live input within ``slop``;
- clock offsets: per input, a windowed minimum of (arrival time - capture stamp); an input whose offset is
  more than ``slop`` beyond the others' can never match, and is warned about once.
"""

from __future__ import annotations

import collections
import logging
import time
import weakref

from edgeflow.fusion import Matcher

OFFSET_WINDOW = 256          # arrivals per input in the clock-offset window

log = logging.getLogger("edgeflow.runtime")


class InputClock:
    """Windowed minimum of arrival - stamp for one input: its clock offset plus the fastest transport delay."""

    def __init__(self) -> None:
        self.window: collections.deque = collections.deque(maxlen=OFFSET_WINDOW)
        self.last_arrival = time.monotonic()
        self.silent_reported = False
        self.offset_warned = False

    def arrived(self, stamp: float) -> None:
        self.window.append(time.time() - stamp)
        self.last_arrival = time.monotonic()
        self.silent_reported = False

    @property
    def offset(self) -> float | None:
        return min(self.window) if self.window else None


class FusionState:
    """The matcher and the per-input bookkeeping of one fusion node replica."""

    def __init__(self, runner, node, labels: list[str]) -> None:
        self.runner, self.node, self.labels = runner, node, labels
        self.slop = float(getattr(node, "slop", 0.05))
        self.partial = getattr(node, "on_missing", None) == "partial"
        self.silent_timeout = float(getattr(node, "silent_timeout", 2.0))
        self.clocks = [InputClock() for _ in labels]
        self.newest: list = [None] * len(labels)
        self._silent: set[int] = set()
        self._next_silence_check = 0.0
        kwargs = {"slop": self.slop} if node.policy in ("approximate", "latest") else {}
        self.matcher = Matcher(len(labels), node.policy, queue_size=int(node.queue_size),
                               on_drop=self._dropped, **kwargs)

    def _dropped(self, stream: int, timestamp: float, item, reason: str) -> None:
        self.runner.metrics.dropped(reason, 1, self.labels[stream])

    def push(self, index: int, frame) -> list:
        self.clocks[index].arrived(frame.timestamp)
        self.newest[index] = frame
        self._silent.discard(index)
        silent = self.silent_inputs() if time.monotonic() >= self._next_silence_check else self._silent
        if self.partial and silent:
            return self._partial_set(index, frame, silent)
        return self.matcher.push(index, frame.timestamp, frame)

    def silent_inputs(self) -> set[int]:
        """Inputs with no frame for silent_timeout seconds (rechecked at most every 50 ms), reported once."""
        now = time.monotonic()
        self._next_silence_check = now + 0.05
        silent = self._silent = {i for i, c in enumerate(self.clocks) if now - c.last_arrival > self.silent_timeout}
        for i in silent:
            if not self.clocks[i].silent_reported:
                self.clocks[i].silent_reported = True
                log.warning("%s: input '%s' is silent (no frame for %.1f s)%s", self.runner.name,
                            self.labels[i], self.silent_timeout,
                            "; emitting partial sets" if self.partial else "; no set can complete")
        self.runner.metrics.extra["silent_inputs"] = sorted(self.labels[i] for i in silent)
        return silent

    def _partial_set(self, index: int, frame, silent: set[int]) -> list:
        live = [i for i in range(len(self.labels)) if i not in silent]
        if index != live[0]:
            return []
        out = []
        for i in range(len(self.labels)):
            other = self.newest[i]
            near = other is not None and i not in silent and abs(other.timestamp - frame.timestamp) < self.slop
            out.append(frame if i == index else (other if near else None))
        return [tuple(out)]

    def check_offsets(self) -> None:
        offsets = [c.offset for c in self.clocks]
        known = [o for o in offsets if o is not None]
        if len(known) < 2:
            return
        base = min(known)
        for i, off in enumerate(offsets):
            if off is not None and off - base > self.slop and not self.clocks[i].offset_warned:
                self.clocks[i].offset_warned = True
                log.warning("%s: input '%s' runs %.3f s behind the others (clock offset or delay), more than "
                            "slop %.3f s: sets wait that long for it, and none form if the queues cannot hold "
                            "that much", self.runner.name, self.labels[i], off - base, self.slop)

    def offsets_ms(self) -> dict:
        return {label: (None if c.offset is None else round(1e3 * c.offset, 3))
                for label, c in zip(self.labels, self.clocks)}


def input_labels(runner, node) -> list[str]:
    """The node's inputs in matching order: links, or the node's own ``input_topics`` list."""
    labels = [p.label for p in runner.job.plan.inputs]
    wanted = getattr(node, "input_topics", None)
    if wanted:
        unknown = [t for t in wanted if t not in labels]
        if unknown:
            raise ValueError(f"node '{runner.name}': input_topics names {unknown}, but its inputs are {labels}")
        labels = list(wanted)
    return labels


def fusion_loop(runner, node) -> None:
    """Run a FusionNode replica until its inputs end or it is stopped."""
    labels = input_labels(runner, node)
    state = FusionState(runner, node, labels)
    index_of = {label: i for i, label in enumerate(labels)}
    ring_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # frame -> its ring topic, while held
    next_offset_check = time.monotonic() + 1.0
    while not runner.stopping.is_set():
        frame, inp = runner.inputs.next(0.1)
        if frame is None:
            if runner.inputs.finished():
                return
            state.silent_inputs()
            runner._service()
            continue
        runner.metrics.received(inp.label)
        received = time.time()
        ring_of[frame] = inp.topic            # the frame id's namespace, for the set's parents (lineage)
        for matched in state.push(index_of[inp.label], frame):
            _emit(runner, node, list(matched), received, ring_of)
        if time.monotonic() >= next_offset_check:
            next_offset_check = time.monotonic() + 1.0
            state.check_offsets()
            runner.metrics.extra["clock_offset_ms"] = state.offsets_ms()
        runner._service()


def _emit(runner, node, frames: list, received: float, ring_of=None) -> None:
    """Call the node with a matched set and send what it returns, naming the set's frames as its parents
    (``ring_of``: frame -> the ring topic it came from; without it, each frame's topic)."""
    t0 = time.perf_counter()
    first = min((f for f in frames if f is not None), key=lambda f: f.timestamp)
    parents = [[ring_of.get(f, f.topic) if ring_of is not None else f.topic, f.frame_id]
               for f in frames if f is not None]
    node.context.current_frame = first
    try:
        result = node.process(frames)
    except Exception as exc:
        node.context.current_frame = None
        runner._hook_failed(exc)
        return
    try:
        runner._deliver(result, first, received, t0, parents=parents)     # back-pressure waits here, the frames still held
    finally:
        node.context.current_frame = None
