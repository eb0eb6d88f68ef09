"""The base of every node: lifecycle hooks and configuration. No I/O here.

A node sees its inputs and outputs as values (numpy arrays, bytes, Frames). The runtime gives it a context
(``self.context``) that knows how frames really travel; a node class written once runs unchanged over shared
memory, Redis or TCP, in one process or spread across hosts.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, ClassVar

import numpy as np


class EndOfStream(Exception):
    """Raise from ``produce()`` (or return ``ProducerNode.END``) when a producer has nothing more to send, e.g. a
    video file that ran out. The runtime closes the node's output; consumers drain what is left and finish."""


class Node:
    """Base class of all nodes.

    Hooks (both naming styles work): ``setup()`` or ``configure()`` once in the node's process before the first
    frame; ``teardown()`` once at the end. Keyword arguments given to ``@app.node(...)`` (and a folder node's
    ``node.toml``) become attributes before ``setup()`` runs, e.g. ``self.fps``; all of them are also in
    ``self.config``.

    Attributes set by the runtime: ``name`` (the node's name), ``replica`` (0..replicas-1), ``hostname`` (the
    host or Pod the node runs on: ``$HOSTNAME``, else ``socket.gethostname()``; set before ``setup()``), ``log``
    (a logger named after the node), ``context`` (the runtime's side: outputs, the frame being processed,
    statistics).

    ``Node`` itself is the generic base (the original EdgeFlow's ``EdgeNode``): a direct subclass says its kind
    with ``type=`` (``@app.node(type="consumer")``, ``sys.node(..., type=...)``, node.toml ``[node] type``) or a
    ``node_type`` class attribute, and gets that kind's hooks.
    """

    node_kind: ClassVar[str] = ""
    node_type: ClassVar[str] = ""    # the original EdgeFlow's name of node_kind; a generic Node may set it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a kind's base class (ProducerNode, GatewayNode, ...) sets node_kind: node_type follows it, so code
        # written for the original, which read node_type, sees the same kind
        if "node_kind" in vars(cls) and "node_type" not in vars(cls):
            cls.node_type = cls.node_kind

    def __init__(self, name: str | None = None, **config: Any) -> None:
        self.name = name or type(self).__name__.lower()
        self.replica = 0
        # the original's nodes had it; in a Pod HOSTNAME is the Pod's name, which is what logs want
        self.hostname = os.environ.get("HOSTNAME") or socket.gethostname()
        self.config = dict(config)
        for key, value in config.items():
            setattr(self, key, value)
        self.log = logging.getLogger(f"edgeflow.node.{self.name}")
        self.context: Any = None
        self.stream_id: str | None = None     # the stream (edgeflow.streams) this node serves, set by the runtime

    # -- lifecycle (override what you need) ----------------------------------------------------------------
    def setup(self) -> None:
        """Called once before the first frame; the seed style's ``configure()`` is called when overridden."""
        self.configure()

    def configure(self) -> None:
        """Alias of ``setup()`` for nodes written in the original EdgeFlow style."""

    def teardown(self) -> None:
        """Called once after the last frame, also when the node is stopped."""

    def idle(self) -> None:
        """Called about every 0.1 s while a consumer or sink waits with no input frame: flush a batch that is
        due, look after a connection. Override what you need."""

    def on_params(self, params: dict[str, Any]) -> None:
        """A stream's params changed while it runs (the stream API's PUT, ``running.streams.update``): the
        default sets ``self.params``; override to rebuild what depends on them. Called between two frames."""
        self.params = dict(params)

    # -- your own metrics (statistics ``extra["user_metrics"]``, /metrics under their own names) -----------
    def gauge(self, name: str, value: float) -> None:
        """Set the gauge ``name`` (a Prometheus metric name) to ``value``; labelled with the node (and the
        stream) on /metrics. A no-op outside a runtime."""
        if self.context is not None:
            self.context.metrics.gauge(name, value)

    def count(self, name: str, n: float = 1) -> None:
        """Add ``n`` to the counter ``name`` (end it in ``_total``); a no-op outside a runtime."""
        if self.context is not None:
            self.context.metrics.count(name, n)

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Validate the options given to ``app.node(cls, ...)`` when the node is registered, before anything
        starts. ``options``: every option that is not a runtime field (fps, replicas, ...). Raise
        ``ConfigError("node 'NAME': option 'OPT': why")``; the default accepts everything."""

    # -- zero-copy output ----------------------------------------------------------------------------------
    def output(self, shape: tuple | int, dtype: Any = np.uint8) -> np.ndarray:
        """A writable array inside this node's output ring. Fill it and return it from the hook: the frame then
        reaches same-host consumers without a single copy. Outside a runtime it is an ordinary array."""
        if self.context is None:
            return np.empty(shape, dtype)
        return self.context.output(shape, dtype)

    @property
    def current_frame(self):
        """The Frame being processed (its frame_id, timestamp, meta, topic), or None outside a hook."""
        return None if self.context is None else self.context.current_frame

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class ProducerNode(Node):
    """Generates frames: ``produce()`` (or ``loop()``) is called ``fps`` times a second, drift-free; with
    ``fps = None`` it is called as fast as downstream takes frames.

    Return an ndarray, bytes, a ``Frame``, ``(data, meta)``, or None (nothing this tick). Raise ``EndOfStream``
    (or return ``ProducerNode.END``) to end the stream.
    """

    node_kind: ClassVar[str] = "producer"
    END: ClassVar[object] = EndOfStream
    fps: float | None = 30.0

    def produce(self) -> Any:
        """Return the next frame's data (see the class docstring)."""
        return self.loop()

    def loop(self) -> Any:
        """Alias of ``produce()``."""
        raise NotImplementedError(f"{type(self).__name__} must implement produce() or loop()")


class ConsumerNode(Node):
    """Processes frames: ``process(data)`` (or ``loop(data)``) gets each input payload, a read-only zero-copy view
    valid during the call (keep it longer with ``data.copy()``), and returns the output: data, ``(data, meta)``,
    a ``Frame``, or None (nothing sent). With several inputs, ``self.current_frame.topic`` says which one the
    data came from. Output frames keep the input's capture timestamp.
    """

    node_kind: ClassVar[str] = "consumer"

    def process(self, data: Any) -> Any:
        """Return the output for one input payload (see the class docstring)."""
        return self.loop(data)

    def loop(self, data: Any) -> Any:
        """Alias of ``process()``."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(data) or loop(data)")


class SinkNode(Node):
    """Consumes frames with no output: ``consume(data)`` (or ``loop(data)``, the original's name). Its inputs are
    DURABLE unless a link says otherwise."""

    node_kind: ClassVar[str] = "sink"
    max_held_frames: ClassVar[int] = 0
    """Frames one replica may hold unacknowledged past ``consume()`` with ``self.context.hold()`` (a batching
    sink acknowledges after its commit; a crash redelivers them). Up to 24, shared out between replicas; the
    upstream ring gets enough slots for them."""

    def consume(self, data: Any) -> None:
        """Handle one input payload."""
        self.loop(data)

    def loop(self, data: Any) -> None:
        """Alias of ``consume()`` (the original EdgeFlow's SinkNode hook)."""
        raise NotImplementedError(f"{type(self).__name__} must implement consume(data) or loop(data)")


class FusionNode(Node):
    """Fuses several inputs by timestamp: ``process(frames)`` gets one Frame per input, in input order.

    Class attributes (or ``@app.node(..., slop=0.05)``): ``slop`` (seconds), ``policy`` ("approximate",
    "optimal", "exact" or "latest"; see edgeflow.fusion.Matcher), ``queue_size``, ``silent_timeout`` (seconds
    without a frame before an input is reported silent) and ``on_missing`` (None, or "partial" to emit sets with
    ``None`` for silent inputs). Inputs come in the order of the node's links, or of ``self.input_topics``.
    """

    node_kind: ClassVar[str] = "fusion"
    slop: float = 0.05
    policy: str = "approximate"
    queue_size: int = 10
    silent_timeout: float = 2.0
    on_missing: str | None = None

    def process(self, frames: list) -> Any:
        """Return the output for one matched set of frames."""
        return self.loop(frames)

    def loop(self, frames: list) -> Any:
        """Alias of ``process()`` (the original EdgeFlow's FusionNode hook)."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(frames) or loop(frames)")


EdgeNode = Node
"""The original EdgeFlow's name of the generic node base class."""
