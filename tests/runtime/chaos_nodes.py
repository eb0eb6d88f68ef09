"""Node classes of the DURABLE fault tests (tests/runtime/test_durable.py), in their own light module because
node processes are started with "spawn" and import their class by name.

Every frame's data is ``int64 [pid, counter]``; a sink writes one line per frame: ``origin_frame_id value``,
where the origin frame id is the id the producer's ring gave the frame at the head of the chain (meta
``edgeflow.origin``, set by the runtime on every hop), so the test can tell lost frames (ids missing) from
duplicates (ids twice) whatever crashed in between.
"""

from __future__ import annotations

import os
import time

import numpy as np

from edgeflow import ConsumerNode, EndOfStream, ProducerNode, SinkNode
from edgeflow.runtime.delivered import ORIGIN_KEY

from .nodes import append, note_pid


class ChaosSource(ProducerNode):
    """Counts up until ``stopfile`` exists; then sends one marker frame ``[-1, -1]`` and ends its stream.
    The marker's origin id is the last id the ring gave out, so a lost tail shows too."""

    fps = None
    stopfile = None
    pidfile = None
    count = None

    def setup(self):
        note_pid(self)
        self.i = 0
        self.ending = False

    def produce(self):
        if self.ending:
            raise EndOfStream
        if (self.stopfile and os.path.exists(self.stopfile)) or (self.count is not None and self.i >= self.count):
            self.ending = True
            return np.array([-1, -1], np.int64)
        self.i += 1
        return np.array([os.getpid(), self.i], np.int64)


class ChaosWorker(ConsumerNode):
    """Passes each frame on (a copy) after ``delay`` seconds.

    With ``crash_after_send`` (a frame counter value) and ``once`` (a file), the first process that meets that
    frame SIGKILLs itself right after the runtime sent the result and before the input is released: the input
    is redelivered and its result travels twice (the duplicate the runtime must count or drop).
    """

    delay = 0.0
    pidfile = None
    crash_after_send = None
    once = None

    def setup(self):
        note_pid(self)
        if self.crash_after_send is None:
            return
        output = self.context._output
        send = output.send

        def send_then_die(result, *args, **kwargs):
            fid = send(result, *args, **kwargs)
            value = int(result[1]) if isinstance(result, np.ndarray) else None
            if value == self.crash_after_send and not os.path.exists(self.once):
                append(self.once, str(os.getpid()))
                os.kill(os.getpid(), 9)
            return fid
        output.send = send_then_die

    def process(self, data):
        if self.delay:
            time.sleep(self.delay)
        return data.copy()


class ChaosSink(SinkNode):
    """Writes ``origin_frame_id value`` per frame to ``out`` (line-buffered: a SIGKILL loses no written line),
    after sleeping ``delay`` seconds. With ``keep``, it keeps the last frame's array (a zero-copy view that pins
    its slot) until the next one: if it dies, that frame, consumed already, is handed out again."""

    out = None
    pidfile = None
    delay = 0.0
    keep = False

    def setup(self):
        note_pid(self)
        self.file = open(self.out, "a", buffering=1)

    def consume(self, data):
        frame = self.current_frame
        origin = (frame.meta or {}).get(ORIGIN_KEY) or [None, frame.frame_id]     # straight from the producer
        if self.delay:
            time.sleep(self.delay)
        self.file.write(f"{origin[1]} {int(data[1])}\n")
        if self.keep:
            self.kept = data

    def teardown(self):
        self.file.close()
