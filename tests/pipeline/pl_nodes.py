"""Node classes the pipeline tests name in their files (``class: pipeline.pl_nodes:Counter``) and in the
Python apps beside them: node processes are spawned, so the classes live at a module's top level."""

from __future__ import annotations

from edgeflow import ConsumerNode, FusionNode, ProducerNode, SinkNode


class Counter(ProducerNode):
    """A dict message per tick: ``{"n": 1, 2, ...}`` (the run's --frames ends it)."""

    def setup(self):
        self.n = 0

    def produce(self):
        self.n += 1
        return {"n": self.n}


class Scale(ConsumerNode):
    """``{"n", "value": n * factor + offset}``."""

    factor = 1.0
    offset = 0.0

    def process(self, data):
        return {"n": int(data["n"]), "value": data["n"] * self.factor + self.offset}


class Pair(FusionNode):
    """Fuses two inputs into one message."""

    def process(self, frames):
        return {"parts": len(frames)}


class Drop(SinkNode):
    """Takes every frame and keeps nothing."""

    def consume(self, data):
        pass
