"""Connectors: nodes that bring data in from, and out to, the world outside the pipeline.

    from edgeflow.connectors import (MqttSource, MqttSink, CsvSink, JsonlSink, VideoSink, PostgresSink,
                                     InfluxSink)
    app.node(MqttSource, name="sensors", url="mqtt://127.0.0.1:1883", topics=["sensors/+/temperature"], qos=1)
    app.node(PostgresSink, name="db", url="postgresql://user@127.0.0.1:5432/db", table="estimates")

Each is an ordinary node class: its options are keyword arguments, checked when the node is registered (one
line naming the node and the option), and its docstring says in one sentence what it guarantees. Sinks take
DURABLE inputs; a connection's state is in the node's statistics, the gateway's ``/metrics`` and ``/readyz``.
See docs/connectors.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "MqttSource": "edgeflow.connectors.mqtt_source",
    "MqttSink": "edgeflow.connectors.mqtt_sink",
    "CsvSink": "edgeflow.connectors.files",
    "JsonlSink": "edgeflow.connectors.files",
    "VideoSink": "edgeflow.connectors.video",
    "PostgresSink": "edgeflow.connectors.postgres",
    "InfluxSink": "edgeflow.connectors.influx",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    # imported on first use: a pipeline with no database does not import its driver
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeflow.connectors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
