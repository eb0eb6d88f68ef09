"""Nodes and model blocks the model tests run in real node processes (importable by name: nodes start with
"spawn"). The sink writes one JSON line per message (one write per line, so replicas sharing a file never
interleave)."""

from __future__ import annotations

import json
import os

import numpy as np

from edgeflow import EndOfStream, GatewayNode, ProducerNode, SinkNode
from edgeflow.models import META_KEY, ModelBlock


class Numbers(ProducerNode):
    """Sends ``{"n": i}`` for i = 0 .. count-1 at ``fps``, then ends the stream; ``array=True`` sends
    ``int64 [i]`` arrays instead."""

    fps = 200.0
    count = 10
    array = False

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= self.count:
            raise EndOfStream
        i, self.i = self.i, self.i + 1
        return np.array([i], np.int64) if self.array else {"n": i}


class Lines(SinkNode):
    """Appends each message as a JSON line to ``out``, with the version the frame's meta names (``meta_v``)."""

    out = None

    def setup(self):
        self.file = open(self.out, "a", buffering=1)

    def consume(self, data):
        meta = self.current_frame.meta or {}
        self.file.write(json.dumps({**data, "meta_v": meta.get(META_KEY), "pid": os.getpid()}) + "\n")

    def teardown(self):
        self.file.close()


class WebGateway(GatewayNode):
    """A gateway with the web interface on ``port`` (loopback) and ``token``."""

    port = 0
    token = None

    def configure(self):
        from edgeflow.nodes.gateway.interfaces.web import WebInterface
        self.add_interface(WebInterface(port=self.port, token=self.token))


class Echo(ModelBlock):
    """Says what it got and what its context holds; ``shutdown()`` appends a line to ``params["events"]``."""

    def init(self, context):
        self.seen = 0
        self.fields = {"twin_id": context.twin_id, "asset_id": context.asset_id, "version": context.version,
                       "node": context.node, "replica": context.replica, "params": dict(context.params),
                       "same_config": context.config is context.params, "logger": context.log.name}
        self.events = context.params.get("events")
        _note(self.events, f"init {context.replica}")

    def process(self, msg):
        self.seen += 1
        data = msg.get("data")
        n = int(data[0]) if data is not None else msg["n"]
        topic = self.context.frame.topic if self.context.frame is not None else None
        return {"n": n, "kind": "array" if data is not None else "dict", "seen": self.seen, "topic": topic,
                **self.fields}

    def shutdown(self):
        _note(self.events, f"shutdown {self.fields['replica']} {self.seen}")


class Skipper(ModelBlock):
    """Returns None (nothing sent) for odd numbers."""

    def process(self, msg):
        return None if msg["n"] % 2 else {"n": msg["n"]}


def _note(path, text):
    if path:
        with open(path, "a") as file:
            file.write(text + "\n")
