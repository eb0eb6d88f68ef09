"""Node classes for the MQTT tests (importable by the node processes)."""

from __future__ import annotations

import os

from edgeflow import ConsumerNode, GatewayNode, ProducerNode, SinkNode
from edgeflow.connectors import MqttSource


class Passthrough(ConsumerNode):
    """Sends each dict message on unchanged, with the MQTT topic's asset as a field."""

    def process(self, data):
        meta = self.current_frame.meta
        out = dict(data)
        out["asset"] = meta["mqtt_topic"].split("/")[1]
        return out


class LineSink(SinkNode):
    """Appends ``<mqtt_topic> <seq>`` per frame to the file ``path`` (flushed each frame)."""

    def setup(self):
        self._file = open(self.path, "a", buffering=1)

    def consume(self, data):
        meta = self.current_frame.meta
        self._file.write(f"{meta.get('mqtt_topic')} {data.get('seq')} {self.current_frame.timestamp!r}\n")

    def teardown(self):
        self._file.close()


class PidMqttSource(MqttSource):
    """An MqttSource that writes its pid to ``pidfile`` on every start (the fault tests kill it)."""

    OPTIONS = (*MqttSource.OPTIONS, "pidfile")

    def setup(self):
        with open(self.config["pidfile"], "a") as f:
            f.write(f"{os.getpid()}\n")
        super().setup()


class Recorder(SinkNode):
    """One JSON line per frame: timestamp, meta, and the data (dicts as they are, bytes as hex)."""

    def setup(self):
        import json
        self._json = json
        self._file = open(self.path, "a", buffering=1)

    def consume(self, data):
        frame = self.current_frame
        row = {"timestamp": frame.timestamp, "meta": {k: v for k, v in frame.meta.items()
                                                      if not k.startswith("edgeflow.")}}
        if isinstance(data, (bytes, bytearray, memoryview)):
            row["hex"] = bytes(data).hex()
        else:
            row["data"] = data
        self._file.write(self._json.dumps(row) + "\n")

    def teardown(self):
        self._file.close()


class Counter(ProducerNode):
    """{"seq": i, "asset": "a<i%2>"} per frame."""

    def setup(self):
        self.i = 0

    def produce(self):
        i, self.i = self.i, self.i + 1
        return {"seq": i, "asset": f"a{i % 2}", "value": i * 0.5}


class Images(ProducerNode):
    """A small BGR test image per frame; even frames carry meta {"kind": "even"}."""

    @staticmethod
    def image(i):
        import numpy as np
        img = np.zeros((24, 32, 3), np.uint8)
        img[:, :, 0] = np.arange(32, dtype=np.uint8) * 8
        img[:, :, 1] = (np.arange(24, dtype=np.uint8) * 10)[:, None]
        img[:, :, 2] = i
        return img

    def setup(self):
        self.i = 0

    def produce(self):
        i, self.i = self.i, self.i + 1
        img = self.image(i)
        return (img, {"kind": "even"}) if i % 2 == 0 else img


class WebGateway(GatewayNode):
    """A gateway with the web interface on ``port`` (loopback)."""

    def configure(self):
        from edgeflow.nodes.gateway.interfaces.web import WebInterface
        self.add_interface(WebInterface(port=self.port))
