"""Node classes the PostgreSQL sink tests run in real node processes (importable by name: node processes are
started with "spawn"). Per-test settings arrive as node options."""

from __future__ import annotations

import os
import time

import numpy as np

from edgeflow import EndOfStream, Frame, ProducerNode
from edgeflow.connectors.postgres import PostgresSink


class Script(ProducerNode):
    """Sends ``messages`` (one frame each: a dict or a list of dicts), then ends the stream, or with
    ``linger`` keeps it open sending nothing. ``stamps``: capture timestamps per frame; ``meta``: the frames'
    meta; ``numpy``: numpy values added to every dict message (a scalar and a small array)."""

    fps = None
    messages: list = []
    stamps = None
    meta = None
    numpy = False
    linger = False

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= len(self.messages):
            if self.linger:
                return None
            raise EndOfStream
        message = self.messages[self.i]
        if self.numpy and isinstance(message, dict):
            message = dict(message, n32=np.float32(0.5), arr=np.arange(3, dtype=np.int16))
        stamp = self.stamps[self.i] if self.stamps else None
        self.i += 1
        if stamp is None and self.meta is None:
            return message
        return Frame(message, timestamp=stamp, meta=dict(self.meta or {}))


class Steady(ProducerNode):
    """``{"i": i, "v": i / 2, "asset": "m<i % 4>"}`` for i = 0 .. count-1 at ``fps``, then the end of the
    stream; ``rows`` > 1 sends a list of that many messages per frame (``i`` counts messages); ``array`` adds
    ``"a": int64 [i]`` (an array views its ring slot, which pins the slot while the frame is held)."""

    fps = 200.0
    count = 100
    rows = 1
    array = False

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= self.count:
            raise EndOfStream
        batch = []
        for _ in range(min(self.rows, self.count - self.i)):
            message = {"i": self.i, "v": self.i / 2, "asset": f"m{self.i % 4}"}
            if self.array:
                message["a"] = np.array([self.i], np.int64)
            batch.append(message)
            self.i += 1
        return batch[0] if self.rows == 1 else batch


class WatchedSink(PostgresSink):
    """A PostgresSink that writes its pid to ``pidfile`` in setup. Its first process (while ``stallfile`` does
    not exist yet) stops once it has committed ``stall_after`` batches, and waits to be SIGKILLed, having
    written ``stallfile`` ("pid rows"): with ``stall="after_commit"`` right after that COMMIT, before the
    batch's frames are acknowledged (committed rows whose frames come again); with ``stall="mid_batch"`` once
    the next batch holds 10 frames (accepted frames whose rows are not written yet)."""

    OPTIONS = PostgresSink.OPTIONS + ("pidfile", "stall", "stall_after", "stallfile")
    pidfile = None
    stall = None
    stall_after = 3
    stallfile = None

    def setup(self):
        with open(self.pidfile, "a") as file:
            file.write(f"{os.getpid()}\n")
        self._batches = 0
        if self.stall and os.path.exists(self.stallfile):
            self.stall = None                  # the restarted process runs normally
        super().setup()

    def consume(self, data):
        super().consume(data)
        if self.stall == "mid_batch" and self._batches >= self.stall_after and len(self._batch.held) >= 10:
            self._stop_here(len(self._batch.held))

    def _write(self, rows):
        ok = super()._write(rows)
        self._batches += 1
        if ok and self.stall == "after_commit" and self._batches >= self.stall_after:
            self._stop_here(len(rows))
        return ok

    def _stop_here(self, rows: int) -> None:
        with open(self.stallfile + ".tmp", "w") as file:
            file.write(f"{os.getpid()} {rows}\n")
        os.rename(self.stallfile + ".tmp", self.stallfile)
        while True:                            # the test SIGKILLs us here
            time.sleep(1)
