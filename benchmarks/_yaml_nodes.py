"""The nodes of bench_pipeline_yaml.py (a module of their own: a YAML pipeline names them by path)."""

from __future__ import annotations

import pathlib
import time

from edgeflow import ConsumerNode, ProducerNode, SinkNode


class Telemetry(ProducerNode):
    """``messages`` small dict messages, as fast as the ring takes them."""

    fps = None

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= self.messages:
            from edgeflow import EndOfStream
            return EndOfStream
        self.i += 1
        return {"i": self.i, "v": self.i * 0.5, "asset": "m1"}


class Scale(ConsumerNode):
    """A worker that does a little arithmetic per message."""

    def process(self, data):
        return {"i": data["i"], "v": data["v"] * 2.0}


class Stamp(SinkNode):
    """Writes the perf_counter() of its first and ``messages``-th message to ``path``; checks the order."""

    def setup(self):
        self.seen = 0
        self.first = None

    def consume(self, data):
        self.seen += 1
        if data["i"] != self.seen:
            raise AssertionError(f"message {data['i']} where {self.seen} was expected")
        if self.first is None:
            self.first = time.perf_counter()
        if self.seen == self.messages:
            pathlib.Path(self.path).write_text(f"{self.first!r} {time.perf_counter()!r}\n")
