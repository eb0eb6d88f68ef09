"""Node classes the dynamic-graph tests run in real node processes (importable by a spawned child).

Each notes what it does by appending lines to a file (``out=``): ``pid <name> <pid>`` once, then one line per
frame it receives (``<topic> <value>``), so the test sees from outside what every process got.
"""

from __future__ import annotations

import os

import numpy as np

from edgeflow import ConsumerNode, ProducerNode, SinkNode
from edgeflow.errors import ConfigError
from edgeflow.nodes.gateway import GatewayNode

from .nodes import append


class Tick(ProducerNode):
    """``[value, i]`` at ``fps``; ``url`` (a stream's) is read as the value when it is a number."""

    fps = 50
    url = None
    value = 1
    out = None

    def setup(self):
        self.i = 0
        append(self.out, f"pid {self.name} {os.getpid()}")
        if self.url == "refuse":                  # a source that cannot run as configured (a bad camera)
            raise ConfigError(f"node '{self.name}': option 'url': cannot open {self.url!r}")
        if isinstance(self.url, (int, str)) and str(self.url).isdigit():
            self.value = int(self.url)

    def produce(self):
        self.i += 1
        return np.array([self.value, self.i], np.int64)


class Scale(ConsumerNode):
    """Multiplies the value by ``params["k"]`` (1 by default); ``on_params`` notes the new params."""

    params: dict = {}
    out = None

    @classmethod
    def check_options(cls, name, options):
        if (options.get("params") or {}).get("k") == "unchecked":
            raise ConfigError(f"node '{name}': option 'params': k must be a number")

    def setup(self):
        append(self.out, f"pid {self.name} {os.getpid()}")

    def on_params(self, params):
        if params.get("k") == "refuse":
            raise ValueError("k must be a number")
        super().on_params(params)
        append(self.out, f"params {self.name} {params.get('k')}")

    def process(self, data):
        k = int(self.params.get("k", 1))
        self.gauge("scale_k", k)
        self.count("scaled_total")
        return np.array([data[0] * k, data[1]], np.int64)


class Collect(SinkNode):
    """Writes ``<topic> <value>`` for every 10th frame of each topic (to keep files small)."""

    out = None

    def setup(self):
        append(self.out, f"pid {self.name} {os.getpid()}")
        self.seen = {}

    def consume(self, data):
        topic = self.current_frame.topic
        n = self.seen[topic] = self.seen.get(topic, 0) + 1
        if n % 10 == 1:
            append(self.out, f"{topic} {int(data[0])}")


class Hub(GatewayNode):
    """A gateway that notes each frame's topic and value (every 10th per topic)."""

    out = None

    def setup(self):
        append(self.out, f"pid {self.name} {os.getpid()}")
        self.seen = {}

    def process(self, frame):
        n = self.seen[frame.topic] = self.seen.get(frame.topic, 0) + 1
        if n % 10 == 1:
            append(self.out, f"{frame.topic} {int(frame.data[0])}")
