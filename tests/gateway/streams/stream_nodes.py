"""Node classes of the stream API tests, run in real node processes (importable by a spawned child).

``Synthetic`` is the stream source (any producer class can be): ``url="synthetic://<level>"`` paints frames
grey ``level`` with the frame number in a corner; ``Annotate`` is the worker: it marks the top-left block
white (so a frame that went through it is told apart) and reports its ``params["threshold"]`` as a gauge and
its frames as a counter (``extra["user_metrics"]``). Both note ``pid <name> <pid>`` in ``out`` when they
start.
"""

from __future__ import annotations

import os

import numpy as np

from edgeflow import ConsumerNode, ProducerNode
from edgeflow.errors import ConfigError
from edgeflow.nodes.gateway import GatewayNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface

SCHEME = "synthetic://"
MARK = 16                   # pixels of the white block Annotate paints


def append(path: str | None, line: str) -> None:
    if path:
        with open(path, "a") as file:
            file.write(line + "\n")


def level_of_url(url: str) -> int:
    return int(url[len(SCHEME):] or 0)


class Synthetic(ProducerNode):
    """Frames of one grey level (the url's), ``width`` x ``height``, numbered."""

    fps = 10
    url = ""
    width, height = 96, 64
    out = None

    @classmethod
    def check_options(cls, name, options):
        url = options.get("url")
        if not isinstance(url, str) or not url.startswith(SCHEME) or not url[len(SCHEME):].isdigit() \
                or not 0 <= int(url[len(SCHEME):]) <= 255:
            raise ConfigError(f"node '{name}': option 'url': expected synthetic://<0-255>, got {url!r}")

    def setup(self):
        self.level = level_of_url(self.url)
        self.n = 0
        append(self.out, f"pid {self.name} {os.getpid()}")

    def produce(self):
        self.n += 1
        img = np.full((self.height, self.width, 3), self.level, np.uint8)
        img[-4:, : (self.n % self.width)] = 255 - self.level       # a moving bar: frames differ
        return img


class Annotate(ConsumerNode):
    """The worker: marks each frame (top-left block white), gauges its threshold, counts its frames."""

    params: dict = {}
    out = None

    @classmethod
    def check_options(cls, name, options):
        params = options.get("params") or {}
        threshold = params.get("threshold", 0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigError(f"node '{name}': option 'params': threshold must be a number, "
                              f"got {threshold!r}")

    def setup(self):
        append(self.out, f"pid {self.name} {os.getpid()}")

    def on_params(self, params):
        super().on_params(params)
        append(self.out, f"params {self.name} {params.get('threshold')}")

    def process(self, data):
        img = data.copy()
        img[:MARK, :MARK] = 255
        self.gauge("test_stream_threshold", float(self.params.get("threshold", 0)))
        self.count("test_stream_frames_total")
        return img


class ApiGateway(GatewayNode):
    """The gateway with its web server on 127.0.0.1:``port`` (``token`` when given)."""

    port = 0
    token = None

    def configure(self):
        self.add_interface(WebInterface(host="127.0.0.1", port=self.port, token=self.token,
                                        stats_interval=0.2))
