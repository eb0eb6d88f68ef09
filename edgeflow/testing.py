"""Helpers for users' tests: run a node class in this process, without processes or shared memory.

    from edgeflow.testing import run_node
    result = run_node(Detector, [frame0, frame1], threshold=0.5)
    assert len(result.outputs) == 2
    print(result.statistics["processing_ms"]["p50"])
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Iterable

import numpy as np

from edgeflow.errors import NodeError
from edgeflow.frame import Frame
from edgeflow.nodes.base import EndOfStream
from edgeflow.runtime.metrics import NodeMetrics
from edgeflow.runtime.outputs import check_message, hop_meta, normalize


@dataclasses.dataclass
class RunResult:
    """What ``run_node`` returns: the frames the node sent, the errors its hooks raised, and its statistics."""
    outputs: list
    errors: list
    statistics: dict


class _LocalContext:
    """The runtime side of a node for in-process runs: outputs are plain arrays."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics
        self.current_frame: Frame | None = None
        self.current_topic: str | None = None     # the ring topic current_frame came from (the input's topic here)

    def output(self, shape, dtype) -> np.ndarray:
        return np.empty(shape, dtype)


def _as_frame(item: Any, index: int, topic: str) -> Frame:
    """An input as the runtime would deliver it: a Frame whose array is read-only."""
    if isinstance(item, Frame):
        frame = item
    else:
        frame = Frame(item, frame_id=index + 1, topic=topic)
    if isinstance(frame.data, (np.ndarray, dict, list)):
        frame = Frame(_read_only(frame.data), frame_id=frame.frame_id, timestamp=frame.timestamp,
                      meta=frame.meta, topic=frame.topic or topic)
    return frame


def _read_only(data: Any) -> Any:
    """``data`` with every array (also inside a dict/list message) a read-only view, as received frames are."""
    if isinstance(data, np.ndarray):
        if not data.flags.writeable:
            return data
        view = data.view()
        view.flags.writeable = False
        return view
    if isinstance(data, dict):
        return {k: _read_only(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_read_only(v) for v in data]
    return data


def _default_name(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def run_node(node_class: type, inputs: Iterable[Any] = (), *, frames: int | None = None, name: str | None = None,
             topic: str = "input", **config: Any) -> RunResult:
    """Run ``node_class`` in this process and collect what it sends.

    Args:
        node_class: a ProducerNode, ConsumerNode, SinkNode, FusionNode or GatewayNode subclass.
        inputs: for consumers, sinks and gateways: payloads (arrays, bytes, dict/list messages) or Frames,
            one per call, their arrays (those in messages too) made read-only as the runtime does; for fusion
            nodes: sequences of Frames (one matched set per call); ignored for producers.
        frames: producers only: how many times to call ``produce()`` (default: until EndOfStream, at most 1000).
        name: the node's name (default: the class name in snake_case).
        topic: the input topic name consumers see on ``current_frame.topic``.
        **config: options, set as attributes as ``@app.node(**config)`` would.

    Returns:
        RunResult with ``outputs`` (Frames, carrying the hop trace), ``errors`` (exceptions the hooks raised,
        including NodeError for unsendable results) and ``statistics`` (as the runtime reports them).
    """
    node_name = name or _default_name(node_class)
    node = node_class(name=node_name, **config)
    metrics = NodeMetrics(node_name)
    node.context = _LocalContext(metrics)
    outputs, errors = [], []
    node.setup()
    try:
        if node.node_kind == "producer":
            for _ in range(frames if frames is not None else 1000):
                if not _step(node, node.produce, None, metrics, outputs, errors):
                    break
        else:
            for i, item in enumerate(inputs):
                _feed(node, i, item, topic, metrics, outputs, errors)
    finally:
        node.teardown()
    return RunResult(outputs, errors, metrics.snapshot())


def _feed(node, index: int, item: Any, topic: str, metrics, outputs: list, errors: list) -> None:
    kind = node.node_kind
    if kind == "fusion":
        group = [_as_frame(f, index, topic) for f in item]
        source = min(group, key=lambda f: f.timestamp)
        _step(node, lambda: node.process(group), source, metrics, outputs, errors)
        return
    frame = _as_frame(item, index, topic)
    metrics.received(frame.topic or topic)
    hook = node.consume if kind == "sink" else node.process
    arg = frame if kind == "gateway" else frame.data
    _step(node, lambda: hook(arg), frame, metrics, outputs, errors)


def _step(node, call, source: Frame | None, metrics, outputs: list, errors: list) -> bool:
    """One hook call; False when a producer ended its stream."""
    received, t0 = time.time(), time.perf_counter()
    node.context.current_frame = source
    node.context.current_topic = source.topic if source is not None else None
    try:
        result = call()
        if result is EndOfStream:
            return False
        if node.node_kind not in ("sink", "gateway"):
            data, meta, timestamp = normalize(node.name, result)
            check_message(node.name, data)            # a message the runtime could not encode: NodeError
            if data is not None:
                ts = timestamp if timestamp is not None else (source.timestamp if source else received)
                outputs.append(Frame(data, frame_id=len(outputs) + 1, timestamp=ts,
                                     meta=hop_meta(node.name, source, meta, received), topic=node.name))
                metrics.frames_out += 1
        elif source is not None:
            metrics.frames_out += 1
    except EndOfStream:
        return False
    except NodeError as exc:
        errors.append(exc)
        metrics.errors += 1
        metrics.dropped("unsendable")
    except Exception as exc:                      # as in the runtime: recorded, and the run goes on
        errors.append(exc)
        metrics.errors += 1
        metrics.dropped("error")
    finally:
        node.context.current_frame = None
        metrics.processing.add(time.perf_counter() - t0)
        if source is not None:
            metrics.latency.add(time.time() - source.timestamp)
    return True
