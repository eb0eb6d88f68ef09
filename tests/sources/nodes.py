"""Nodes for the source tests (importable by the spawned node processes)."""

from __future__ import annotations

import hashlib
import json

from edgeflow.nodes.base import ConsumerNode, SinkNode
from edgeflow.nodes.gateway import GatewayNode


def digest(image) -> str:
    """A frame's pixels, shape and dtype as one short string (bit-exact comparisons across processes)."""
    return hashlib.sha1(repr((image.shape, str(image.dtype))).encode() + image.tobytes()).hexdigest()


class Recorder(SinkNode):
    """Writes one JSON line per frame to ``path``: digest, shape, timestamp and the meta VideoSource sets."""

    path: str = ""

    def setup(self):
        self._file = open(self.path, "a", buffering=1)

    def consume(self, data):
        frame = self.current_frame
        meta = {k: v for k, v in frame.meta.items() if not k.startswith("edgeflow.")}
        self._file.write(json.dumps({"digest": digest(data), "shape": list(data.shape), "t": frame.timestamp,
                                     "meta": meta}) + "\n")

    def teardown(self):
        self._file.close()


class Pass(ConsumerNode):
    """Sends every frame on (between a source and a gateway, as a worker would)."""

    def process(self, data):
        return data


class WebGateway(GatewayNode):
    """A gateway with the web interface on ``port`` (loopback)."""

    port: int = 0

    def configure(self):
        from edgeflow.nodes.gateway.interfaces.web import WebInterface
        self.add_interface(WebInterface(port=self.port))


def records(path) -> list[dict]:
    """The complete lines a Recorder wrote so far."""
    try:
        with open(path) as file:
            text = file.read()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1]]


class TopicRecorder(GatewayNode):
    """A gateway that writes one JSON line per frame to ``path``: topic, digest and VideoSource's meta."""

    path: str = ""

    def setup(self):
        self._file = open(self.path, "a", buffering=1)

    def process(self, frame):
        meta = {k: v for k, v in frame.meta.items() if k.startswith(("source_", "frame_"))}
        line = {"topic": frame.topic, "digest": digest(frame.data), "meta": meta}
        self._file.write(json.dumps(line) + "\n")

    def teardown(self):
        self._file.close()
