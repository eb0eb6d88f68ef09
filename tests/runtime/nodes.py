"""Node classes the runtime tests run in real node processes.

They live at module level in their own module because node processes are started with multiprocessing's
"spawn": a child imports the class by name (``runtime.nodes.Counter``), and this module is much lighter to
import than a test module. Per-test settings arrive as node options (``out=``, ``delay=`` ...), which the
runtime sets as attributes. Nodes report what they saw by appending one line per frame to a file (one write
per line, so replicas sharing a file never interleave and a SIGKILL loses no line already written).

Payload convention: a frame's data is ``int64 [source_replica, counter]``; relays pass it on unchanged.
At the end: helpers the tests (the parent side) use to read those files.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from edgeflow import ConsumerNode, EndOfStream, Frame, FusionNode, ProducerNode, SinkNode


def append(path: str | None, text: str) -> None:
    """Append one line to path (one write() call, flushed on close)."""
    if path:
        with open(path, "a") as file:
            file.write(text + "\n")


def note_pid(node) -> None:
    append(getattr(node, "pidfile", None), f"{node.replica} {os.getpid()} {time.time():.6f}")


class Counter(ProducerNode):
    """Emits ``[replica, i]`` for i = 0, 1, ...; ``count`` ends the stream (EndOfStream) after that many."""

    fps = None
    count = None
    pidfile = None

    def setup(self):
        self.i = 0
        note_pid(self)

    def produce(self):
        if self.count is not None and self.i >= self.count:
            raise EndOfStream
        value = np.array([self.replica, self.i], dtype=np.int64)
        self.i += 1
        return value


class Recorder(SinkNode):
    """Appends ``source_replica counter own_replica frame_id`` per frame to ``out``; sleeps ``delay`` seconds
    on every ``every``-th frame (a slow consumer)."""

    out = None
    delay = 0.0
    every = 1
    pidfile = None
    events = None

    def setup(self):
        self.seen = 0
        note_pid(self)
        append(self.events, "setup")
        self.file = open(self.out, "a", buffering=1)       # line-buffered: one write() per line

    def consume(self, data):
        frame = self.current_frame
        self.file.write(f"{int(data[0])} {int(data[1])} {self.replica} {frame.frame_id}\n")
        self.seen += 1
        if self.delay and self.seen % self.every == 0:
            time.sleep(self.delay)

    def teardown(self):
        self.file.close()
        append(self.events, "teardown")


class Relay(ConsumerNode):
    """Passes each payload on (a copy); writes its pid to ``pidfile`` at setup; appends ``pid counter`` to
    ``taken`` as each frame arrives; sleeps ``delay`` per frame (holding the frame)."""

    delay = 0.0
    pidfile = None
    taken = None

    def setup(self):
        note_pid(self)

    def process(self, data):
        append(self.taken, f"{os.getpid()} {int(data[1])}")
        if self.delay:
            time.sleep(self.delay)
        return data.copy()


class SeedCounter(ProducerNode):
    """The original EdgeFlow style: configure() and loop() instead of setup() and produce()."""

    fps = None

    def configure(self):
        self.i = 0

    def loop(self):
        self.i += 1
        return np.array([0, self.i - 1], dtype=np.int64)


class SeedRelay(ConsumerNode):
    """The original EdgeFlow style: loop(data) instead of process(data)."""

    def loop(self, data):
        return data + np.array([0, 1000], dtype=np.int64)


class BadReturner(ConsumerNode):
    """Returns something unsendable for counters 1, 2, 3 (mod 4): a str, a message holding a set, an object
    array. (A plain dict or list is a message, and sendable.)"""

    def process(self, data):
        i = int(data[1])
        if i % 4 == 1:
            return f"counter {i}"
        if i % 4 == 2:
            return {"counter": {i}}
        if i % 4 == 3:
            return np.array([object(), i], dtype=object)
        return data.copy()


class Raiser(ConsumerNode):
    """Raises ValueError("boom") on every counter divisible by 5, passes the rest on."""

    def process(self, data):
        if int(data[1]) % 5 == 0:
            raise ValueError("boom")
        return data.copy()


class RaisingRecorder(Recorder):
    """A Recorder whose consume() raises ValueError("boom") on every counter divisible by 5."""

    def consume(self, data):
        if int(data[1]) % 5 == 0:
            raise ValueError("boom")
        super().consume(data)


class RaisingCounter(Counter):
    """A Counter whose produce() raises ValueError("boom") on every counter divisible by 5 (that tick sends
    nothing; the next tick goes on with the next counter)."""

    def produce(self):
        if self.count is not None and self.i >= self.count:
            raise EndOfStream
        self.i += 1
        if (self.i - 1) % 5 == 0:
            raise ValueError("boom")
        return np.array([self.replica, self.i - 1], dtype=np.int64)


class SetupCrasher(ConsumerNode):
    """Appends the time to ``out``, then fails in setup() (only in its first ``times`` starts when given);
    with ``after``, it first waits (at most 10 s) until that file exists."""

    out = None
    times = None
    after = None

    def setup(self):
        deadline = time.monotonic() + 10
        while self.after and not os.path.exists(self.after) and time.monotonic() < deadline:
            time.sleep(0.01)
        append(self.out, f"{time.time():.6f}")
        if self.times is None or len(read_lines(self.out)) <= self.times:
            raise RuntimeError("setup failed on purpose")

    def process(self, data):
        return data


class ExitCrasher(ConsumerNode):
    """Appends the time to ``out`` at setup, then exits the process (code 3) on its first frame."""

    out = None

    def setup(self):
        append(self.out, f"{time.time():.6f}")

    def process(self, data):
        os._exit(3)


class Stamper(ProducerNode):
    """Returns Frames with a capture time 1 s in the past and meta {"seq", "captured"}."""

    fps = None
    count = None

    def setup(self):
        self.i = 0

    def produce(self):
        if self.count is not None and self.i >= self.count:
            raise EndOfStream
        captured = time.time() - 1.0
        frame = Frame(np.array([0, self.i], dtype=np.int64), timestamp=captured,
                      meta={"seq": self.i, "captured": captured})
        self.i += 1
        return frame


class Ticker(ProducerNode):
    """Returns Frames ``[offset + i]`` stamped exactly ``1000 + i`` s: two Tickers' frames pair up by time."""

    fps = None
    count = None
    offset = 0

    def setup(self):
        self.i = 0

    def produce(self):
        if self.count is not None and self.i >= self.count:
            return self.END                                  # the other way to end a stream
        frame = Frame(np.array([self.offset + self.i], dtype=np.int64), timestamp=1000.0 + self.i)
        self.i += 1
        return frame


class Tagger(ConsumerNode):
    """Returns a new array with (data, meta): meta {"tagged": counter}."""

    def process(self, data):
        return data * 1, {"tagged": int(data[1])}


class FrameLogger(SinkNode):
    """Appends a JSON line per frame: timestamp, meta, frame_id, topic, data, and the time it arrived."""

    out = None

    def consume(self, data):
        frame = self.current_frame
        append(self.out, json.dumps({"ts": frame.timestamp, "meta": frame.meta, "id": frame.frame_id,
                                     "topic": frame.topic, "data": np.asarray(data).tolist(),
                                     "arrived": time.time()}))


class Grid(ProducerNode):
    """Emits a (16, 16) int32 grid filled with the counter."""

    fps = None
    count = None

    def setup(self):
        self.i = 0

    def produce(self):
        if self.count is not None and self.i >= self.count:
            raise EndOfStream
        grid = np.full((16, 16), self.i, dtype=np.int32)
        grid[0, 0] = -1
        self.i += 1
        return grid


class LoanDoubler(ConsumerNode):
    """Writes 2 * input + 1 into a loaned output slot (self.output) and returns it; records per frame
    whether writing into the input view raised (``readonly``) or succeeded (``WRITABLE``)."""

    out = None

    def process(self, data):
        try:
            data[1, 1] = 12345
            outcome = "WRITABLE"
        except ValueError:
            outcome = "readonly"
        append(self.out, outcome)
        result = self.output(data.shape, np.int64)
        np.multiply(data, 2, out=result)
        result += 1
        return result


class GridChecker(SinkNode):
    """Appends ``counter ok`` when a doubled grid is exactly 2 * counter + 1 everywhere but [0, 0] (-1)."""

    out = None

    def consume(self, data):
        i = (int(data[1, 1]) - 1) // 2
        expected = np.full((16, 16), 2 * i + 1, dtype=np.int64)
        expected[0, 0] = -1
        ok = data.dtype == np.int64 and data.shape == (16, 16) and np.array_equal(data, expected)
        append(self.out, f"{i} {'ok' if ok else 'BAD ' + repr(data.dtype) + repr(data.shape)}")


class Fuse(FusionNode):
    """Concatenates the matched payloads, in input order."""

    def process(self, frames):
        return np.concatenate([np.asarray(f.data) for f in frames])


# -- parent side: reading what the nodes wrote ---------------------------------------------------------------

def read_lines(path) -> list[str]:
    """The complete lines of path so far ([] while it does not exist)."""
    try:
        with open(path) as file:
            text = file.read()
    except FileNotFoundError:
        return []
    return text.split("\n")[:-1]           # a line still being written (no newline yet) is not counted


def counters(path) -> list[tuple[int, int]]:
    """(source_replica, counter) per line a Recorder wrote, in arrival order."""
    return [(int(a), int(b)) for a, b, *_ in (line.split() for line in read_lines(path))]


def wait_for(predicate, timeout: float, what: str):
    """Poll predicate() every 20 ms until it returns something truthy; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def edge(stats: dict, source: str, target: str) -> dict:
    """The statistics entry of the link source -> target."""
    found = [e for e in stats["edges"] if e["source"] == source and e["target"] == target]
    assert len(found) == 1, f"no single edge {source} -> {target} in {stats['edges']}"
    return found[0]
