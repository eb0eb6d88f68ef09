"""The app graph: EdgeApp (alias System), node(), link().to(), validation, and the frozen Graph to run.

    app = EdgeApp("demo")

    @app.node(name="camera", fps=30)
    class Camera(ProducerNode): ...

    detector = app.node("nodes/detector", replicas=2)   # a folder: one node class and an optional node.toml
    app.link("camera").to(detector).to("gateway")
    graph = app.graph()                       # validated and immutable; GraphError names the node or link

Nothing here starts a process, opens a socket or imports the runtime: ``EdgeApp.run()`` hands the app to
``edgeflow.runtime.launcher``, which runs the Graph.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Union

from edgeflow import _graphcheck, _nodeload
from edgeflow.comms.brokers import DualRedisBroker, RedisBroker
from edgeflow.errors import ConfigError, GraphError
from edgeflow.qos import QoS

__all__ = ["EdgeApp", "System", "Graph", "NodeSpec", "EdgeSpec", "NodeHandle", "Linker", "CODECS",
           "DEFAULT_MAX_LAG", "run", "run_all"]

CODECS = ("jpeg", "png", "lz4")
"""Codecs a link may ask for; None (the default) sends arrays raw."""
DEFAULT_MAX_LAG = 2
"""How many frames a BALANCED consumer may fall behind before it skips to the newest, unless a link says."""

# The CLI sets this (when EDGEFLOW_CAPTURE_GRAPH is set) to capture the app instead of running it: run() calls
# _run_hook(app, argv) when it is not None. Looked up at call time, so setting it after import works.
_run_hook: Callable[[EdgeApp, Any], Any] | None = None


class _Default:
    # A link without qos= is REALTIME, or DURABLE into a sink; the target may be registered later, so the
    # choice waits for graph(). A sentinel (not None, not REALTIME) keeps an explicit REALTIME into a sink.
    def __repr__(self) -> str:
        return "QoS.REALTIME (DURABLE into a sink)"


_DEFAULT: Any = _Default()


class _FrozenMap(Mapping):
    """A read-only dict that pickles (MappingProxyType does not): NodeSpec.config and NodeSpec.options."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __reduce__(self) -> tuple:
        return (type(self), (self._data,))

    def __repr__(self) -> str:
        return repr(self._data)


@dataclass(frozen=True)
class NodeSpec:
    """One node of a Graph, everything the runtime needs to run it in any process (frozen, picklable).

    Attributes:
        name: unique in the app. kind: ``producer``, ``consumer``, ``sink``, ``fusion`` or ``gateway``.
        fps: a producer's rate (default: the class's ``fps``, 30 on ProducerNode; None means as fast as its
            consumers take frames); None for other kinds unless given.
        replicas: processes sharing the node's input; each frame is handled by exactly one of them.
        device: deployment target (Kubernetes label ``edgeflow.io/device``), or None.
        node_port: a port to expose (the gateway's NodePort), or None.
        group: shared-memory group: nodes of one group are deployed into one Pod, or None.
        config: the options that are none of the above (read-only mapping).
        options: every option given, the fields above included (read-only); they become instance attributes.
        class_ref: the node class (pickled by reference), or None for a folder node.
        folder: the folder node's absolute path, or None.
        description: node.toml's ``[node] description`` (or ``description=``), or None.
        base_image: node.toml's ``[build] base``: the image ``edgeflow deploy`` builds this node's image from,
            or None (the default image).
        dependencies: node.toml's ``[build] dependencies``: pip requirements installed into that image.
        gpu: node.toml's ``[runtime] gpu``: deploy asks for one ``nvidia.com/gpu`` for the node's container.
        stream: the id of the stream (edgeflow.streams) the node belongs to, or None.

    Raises:
        GraphError: on construction, naming the node, for an invalid field.
    """

    name: str
    kind: str
    fps: float | None = None
    replicas: int = 1
    device: str | None = None
    node_port: int | None = None
    group: str | None = None
    config: Mapping[str, Any] = field(default_factory=_FrozenMap, hash=False)
    options: Mapping[str, Any] = field(default_factory=_FrozenMap, hash=False)
    class_ref: type | None = None
    folder: str | None = None
    description: str | None = None
    base_image: str | None = None
    dependencies: tuple[str, ...] = ()
    gpu: bool = False
    stream: str | None = None

    def __post_init__(self) -> None:
        fields = _nodeload.check_fields(self.name, self.kind, self.fps, self.replicas, self.device,
                                        self.node_port, self.group)
        fields.update(_nodeload.deploy_fields(self.name, self.description,
                                              {"base": self.base_image, "dependencies": self.dependencies},
                                              {"gpu": self.gpu}))
        for key, value in fields.items():
            object.__setattr__(self, key, value)     # frozen: normalise through object.__setattr__
        object.__setattr__(self, "config", _FrozenMap(self.config))
        object.__setattr__(self, "options", _FrozenMap(self.options))
        if (self.class_ref is None) == (self.folder is None):
            raise GraphError(f"node {self.name!r}: give exactly one of class_ref and folder", node=self.name)

    def load_class(self) -> type:
        """The node class: ``class_ref``, or the folder's package imported from its absolute path under a
        stable module name (cached in sys.modules); this works in a child process that never ran main.py.
        A generic ``Node`` subclass comes back combined with its kind's base (see ``_nodeload.kind_class``).

        Raises:
            ConfigError: the folder no longer holds exactly one node class, or importing it failed.
        """
        cls = self.class_ref if self.class_ref is not None else _nodeload.load_folder_class(self.folder)
        return _nodeload.kind_class(cls, self.kind)

    def make_instance(self, replica: int = 0) -> Any:
        """A new node object: ``cls(name=self.name, **self.options)`` with ``.replica`` set.

        Args:
            replica: which of the node's ``replicas`` processes this is (0-based).
        """
        node = self.load_class()(name=self.name, **self.options)
        node.replica = replica
        node.stream_id = self.stream
        return node

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: name, type, replicas, device, fps, node_port, group, config (odd values as repr),
        description, build (``{"base", "dependencies"}``), gpu, and ``stream`` for a stream's node."""
        return {"name": self.name, "type": self.kind, "replicas": self.replicas, "device": self.device,
                "fps": self.fps, "node_port": self.node_port, "group": self.group,
                "config": _redacted(_jsonable(self.config)), "description": self.description,
                "build": {"base": self.base_image, "dependencies": list(self.dependencies)}, "gpu": self.gpu,
                **({"stream": self.stream} if self.stream else {})}

    def same_node(self, other: NodeSpec) -> bool:
        """True when ``other`` defines the same node: same name, kind and class or folder, and the same options
        (or one of them gave none, as a second ``sys.node("nodes/camera")`` that only refers to it)."""
        return (self.name == other.name and self.kind == other.kind and self.class_ref is other.class_ref
                and self.folder == other.folder
                and (self == other or not self.options or not other.options))


@dataclass(frozen=True)
class EdgeSpec:
    """One link of a Graph: frames of ``source`` go to ``target`` (frozen, picklable).

    Attributes:
        source, target: node names.
        qos: QoS (a name string is accepted and parsed).
        channel: a name that tells two links between the same nodes apart, or None.
        codec: None (raw arrays), ``"jpeg"``, ``"png"`` or ``"lz4"``; used when the link crosses hosts.
        max_lag: for BALANCED only, frames the consumer may fall behind (default DEFAULT_MAX_LAG); else None.

    Raises:
        GraphError: on construction, naming the link, for an invalid qos, channel, codec or max_lag.
    """

    source: str
    target: str
    qos: QoS = QoS.REALTIME
    channel: str | None = None
    codec: str | None = None
    max_lag: int | None = None

    def __post_init__(self) -> None:
        values = _link_options(self.link, self.qos, self.channel, self.codec, self.max_lag)
        for key, value in zip(("qos", "channel", "codec", "max_lag"), values):
            object.__setattr__(self, key, value)

    @property
    def link(self) -> tuple[str, str]:
        """``(source, target)``, as GraphError.link names it."""
        return (self.source, self.target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: source, target, qos (its name), channel, codec, max_lag."""
        return {"source": self.source, "target": self.target, "qos": self.qos.name, "channel": self.channel,
                "codec": self.codec, "max_lag": self.max_lag}


@dataclass(frozen=True)
class Graph:
    """A validated, immutable pipeline: what the runtime, the CLI and deploy work from (picklable).

    Attributes:
        app: the app's name. nodes: NodeSpecs in registration order. edges: EdgeSpecs in link order.
        broker: the RedisBroker or DualRedisBroker for cross-host links, or None.
        streams: the app's StreamTemplate (edgeflow.streams), or None.

    Raises:
        GraphError: on construction, for the first problem (see ``_graphcheck.check_graph``), in one line
            naming the node or link.
    """

    app: str
    nodes: tuple[NodeSpec, ...]
    edges: tuple[EdgeSpec, ...] = ()
    broker: RedisBroker | DualRedisBroker | None = None
    streams: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple(self.edges))
        _check_app(self.app, self.broker)
        fed_later = self.streams.to if self.streams is not None else ()
        _graphcheck.check_graph(self.app, self.nodes, self.edges, fed_later)

    def node(self, name: str) -> NodeSpec:
        """The NodeSpec called name.

        Raises:
            GraphError: no such node (with a did-you-mean).
        """
        for spec in self.nodes:
            if spec.name == name:
                return spec
        hint = _nodeload.did_you_mean(name, [spec.name for spec in self.nodes])
        raise GraphError(f"unknown node {name!r}{hint}", node=name)

    def inputs_of(self, name: str) -> tuple[EdgeSpec, ...]:
        """Links into the node, in link order: the input order a fusion node's ``process(frames)`` gets."""
        self.node(name)
        return tuple(edge for edge in self.edges if edge.target == name)

    def outputs_of(self, name: str) -> tuple[EdgeSpec, ...]:
        """Links out of the node, in link order."""
        self.node(name)
        return tuple(edge for edge in self.edges if edge.source == name)

    def producers(self) -> tuple[NodeSpec, ...]:
        """The producer nodes, in registration order."""
        return tuple(spec for spec in self.nodes if spec.kind == "producer")

    def topological_order(self) -> tuple[str, ...]:
        """All node names, ordered so that every link points forward; ties keep registration order.

        Returns names (not NodeSpecs): callers look specs up with ``node(name)`` as they need them.
        """
        return tuple(_graphcheck.topological_order([spec.name for spec in self.nodes], self.edges))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view: ``{"app", "broker", "nodes": [...], "edges": [...]}``, one edge per link (replicas
        are not expanded); the broker without passwords."""
        out = {"app": self.app, "broker": None if self.broker is None else self.broker.to_dict(),
               "nodes": [spec.to_dict() for spec in self.nodes],
               "edges": [edge.to_dict() for edge in self.edges]}
        if self.streams is not None:
            out["streams"] = self.streams.to_dict()
        return out


@dataclass(frozen=True)
class NodeHandle:
    """What ``node(cls)`` and ``node("nodes/x")`` return: pass it to ``link()`` or ``to()``.

    Attributes:
        name: the node's name. app: the name of the app it was registered in.
        spec: the NodeSpec it stands for (so another System can ``share()`` it).
    """

    name: str
    app: str
    spec: NodeSpec | None = field(default=None, compare=False, repr=False)


_End = Union[str, NodeHandle, type]


class _PendingLink(NamedTuple):
    source: _End
    target: _End
    qos: Any              # QoS, or _DEFAULT until graph() knows the target's kind
    channel: str | None
    codec: str | None
    max_lag: int | None


class Linker:
    """What ``link()`` returns; ``to()`` adds a link and returns the target's Linker, so calls chain:
    ``app.link("camera").to("filter").to("gateway")`` makes two links."""

    def __init__(self, app: EdgeApp, source: _End) -> None:
        self._app = app
        self._source = source

    def to(self, target: _End, qos: QoS | str = _DEFAULT, channel: str | None = None,
           codec: str | None = None, max_lag: int | None = None) -> Linker:
        """Link the source to target; the target may be registered later (names resolve in ``graph()``).

        Args:
            target: a node name, the handle node() returned, or a registered node class.
            qos: QoS or its name; default REALTIME, or DURABLE when the target is a sink.
            channel: a name telling two links between the same nodes apart.
            codec: None (raw), "jpeg", "png" or "lz4", for the frames' trip across hosts.
            max_lag: BALANCED only: frames the consumer may fall behind before it skips (default 2).

        Returns:
            The target's Linker, to chain another ``to()``.

        Raises:
            GraphError: an invalid end, qos, channel, codec or max_lag (naming the link).
        """
        self._app._add_link(self._source, target, qos, channel, codec, max_lag)
        return Linker(self._app, target)

    def __repr__(self) -> str:
        return f"<Linker from {self._app._display(self._source)!r}>"


class EdgeApp:
    """An EdgeFlow app: nodes and the links between them. ``System`` is the same class.

    Args:
        name: 1-64 letters, digits, '-' or '_' (it prefixes shared-memory and Redis names).
        broker: None (one host, shared memory only), a RedisBroker or a DualRedisBroker for cross-host links.
        broker_config: the original EdgeFlow's ``{"host": ..., "port": ...}`` instead of ``broker``: a
            RedisBroker with that address.

    Raises:
        ConfigError: an invalid name or broker, or both broker and broker_config.

    Example:
        app = EdgeApp("my-robot", broker=RedisBroker())

        @app.node(name="camera", type="producer", fps=30)
        class Camera(ProducerNode):
            def produce(self):
                return np.zeros((480, 640, 3), np.uint8)

        gpu = app.node("nodes/yolo", device="gpu", replicas=2)
        app.link("camera").to(gpu, qos=QoS.REALTIME)

        if __name__ == "__main__":
            app.run()
    """

    def __init__(self, name: str, broker: RedisBroker | DualRedisBroker | None = None, *,
                 broker_config: Mapping[str, Any] | None = None) -> None:
        if broker_config is not None:
            broker = _broker_from_config(name, broker, broker_config)
        _check_app(name, broker)
        self.name = name
        self.broker = broker
        self._specs: dict[str, NodeSpec] = {}
        self._classes: dict[str, type] = {}          # name -> class, folder nodes' classes included
        self._links: list[_PendingLink] = []
        self._streams = None                         # a StreamTemplate (streams())
        self._stream_id: str | None = None           # set on a stream's fragment (edgeflow.streams)

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        """The nodes registered so far, in registration order."""
        return tuple(self._specs.values())

    def node(self, target: Any = None, /, **options: Any) -> Any:
        """Register a node: from a folder, from a class, or as a class decorator.

        Args:
            target: a folder path (a package defining exactly one node class, optional ``node.toml``; relative
                paths resolve against the calling file's directory, then the cwd), a node class, or nothing
                (decorator use: ``@app.node(name=..., ...)``, with parentheses).
            **options: ``name`` (default: the class name in snake_case, or the folder's name); ``type``
                (producer, consumer, sink, fusion, gateway; default: the class's base); ``fps``, ``replicas``,
                ``device``, ``node_port``, ``group``; ``config`` (a mapping merged like node.toml's
                ``[config]``); anything else is config too. All reach the instance as attributes; they win
                over node.toml.

        Returns:
            A NodeHandle for a folder or class; as a decorator, the class itself (unchanged, not created).

        Raises:
            GraphError: a duplicate name, unknown or contradicting type, or invalid option (naming the node).
            ConfigError: a folder that is missing, is no package, or does not define exactly one node class.
        """
        if target is None:
            return self._decorator(options)
        if isinstance(target, type):
            return self._handle(self._register(target, None, options))
        if isinstance(target, (str, os.PathLike)):
            caller = sys._getframe(1).f_code.co_filename   # "nodes/x" means next to the file that says it
            folder = _nodeload.find_folder(target, caller)
            return self._handle(self._register(_nodeload.load_folder_class(folder), folder, options))
        raise ConfigError(f"node() takes a folder path, a node class or keyword arguments, got {target!r}")

    def share(self, handle: NodeHandle) -> NodeHandle:
        """Add a node of another System to this one (the original EdgeFlow's ``System.share``): this System's
        links may then use it, and ``edgeflow.run(a, b)`` runs it once for both.

        Args:
            handle: what the other System's ``node()`` returned.

        Returns:
            A handle of the node in this System.

        Raises:
            GraphError: not a handle from ``node()``, or this System has a different node of that name.
        """
        if not isinstance(handle, NodeHandle) or handle.spec is None:
            raise GraphError(f"share() takes the handle another System's node() returned, got {handle!r}")
        spec = handle.spec
        mine = self._specs.get(spec.name)
        if mine is not None and not mine.same_node(spec):
            raise GraphError(f"node {spec.name!r}: share() from system {handle.app!r}, but system "
                             f"{self.name!r} already has a different node of that name", node=spec.name)
        if mine is None or not mine.options:
            self._specs[spec.name] = spec
            self._classes[spec.name] = spec.class_ref or _nodeload.load_folder_class(spec.folder)
        return self._handle(self._specs[spec.name])

    def link(self, source: _End) -> Linker:
        """Start a link from source: a node name, the handle node() returned, or a registered node class.

        Returns:
            A Linker; call ``.to(target, qos=...)`` on it.

        Raises:
            GraphError: source is none of the above.
        """
        self._check_end(source)
        return Linker(self, source)

    def graph(self) -> Graph:
        """Resolve every link and validate the whole pipeline.

        Returns:
            The frozen Graph.

        Raises:
            GraphError: unknown or duplicate node, cycle, link into a producer or out of a sink, duplicate
                link, fusion node with fewer than two inputs, node no producer reaches (one line naming it).
        """
        edges = tuple(self._resolve(link) for link in self._links)
        return Graph(self.name, tuple(self._specs.values()), edges, self.broker, self._streams)

    def streams(self, source: type, workers: Any = (), to: Any = (), *, replicas: int = 1,
                source_options: Mapping[str, Any] | None = None,
                worker_options: Mapping[str, Any] | None = None, qos: QoS | str = QoS.REALTIME) -> Any:
        """Declare what each stream becomes when it is activated at run time (a camera fleet managed over the
        gateway's stream API, or ``running.streams.activate(id, url, params)``): the source class (its ``url``
        option is the stream's url), the worker classes in order (each gets the stream's ``params`` and an
        ``on_params(params)`` hook for changes), and the node(s) of this app the last one feeds (``to``, e.g.
        the gateway). Each stream's nodes are ``stream-<id>-source``, ``stream-<id>-<worker>`` (see
        edgeflow.streams). One template per app.

        Returns:
            The StreamTemplate.

        Raises:
            GraphError: a second template, or an invalid class, ``to`` or ``replicas``.
        """
        from edgeflow.streams import make_template
        if self._streams is not None:
            raise GraphError(f"app {self.name!r}: streams() is declared already (one template per app)")
        self._streams = make_template(source, workers, to, replicas, source_options, worker_options, qos)
        return self._streams

    def run(self, argv: list[str] | None = None) -> Any:
        """Run the app (``python main.py``, or ``--node X`` for one node): see edgeflow.runtime.launcher.

        Args:
            argv: command-line arguments; None reads sys.argv.
        """
        return _launch(self, argv)

    def start(self, *, frames: int | None = None, duration: float | None = None) -> Any:
        """Start every node on this host in the background and return the running app.

        For robotics code that embeds a pipeline, and for tests. The returned object has ``statistics()``,
        ``wait(timeout=None)`` (the exit code, or None while running) and ``stop()``; it is a context manager
        that stops the app on exit. Signals are left to the caller.

        Example:
            >>> with app.start(frames=100) as running:
            ...     code = running.wait(timeout=30)
        """
        from edgeflow.runtime import launcher
        return launcher.start_app(self, frames=frames, duration=duration)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self._specs)} nodes, {len(self._links)} links>"

    # -- registration ----------------------------------------------------------------------------------------
    def _decorator(self, options: dict[str, Any]) -> Callable[[type], type]:
        def register(cls: type) -> type:
            if not isinstance(cls, type):
                raise ConfigError(f"@app.node(...) decorates a node class, got {cls!r}")
            self._register(cls, None, options)
            return cls
        return register

    def _register(self, cls: type, folder: Path | None, options: dict[str, Any]) -> NodeSpec:
        given = _merge_options(folder, options)
        user_cls = cls
        adapt = getattr(cls, "__edgeflow_node__", None) if folder is None else None
        if adapt is not None:      # a class run by a node class of its own (a ModelBlock): it says which
            given.setdefault("name", _nodeload.snake_case(cls.__name__))
            cls, given = adapt(given)
        name = given.pop("name", None) or (folder.name if folder else _nodeload.snake_case(cls.__name__))
        if not _nodeload.is_valid_name(name):
            raise GraphError(f"node {name!r}: invalid node name: {_nodeload.NAME_RULE}", node=str(name))
        if name in self._specs:
            raise GraphError(f"node {name!r}: duplicate node name (already registered)", node=name)
        kind = _nodeload.resolve_kind(name, cls, given.pop("type", None))
        deploy = _nodeload.deploy_fields(name, *(given.pop(key, None) for key in _nodeload.DEPLOY_KEYS))
        fields, config, opts = _nodeload.split_options(name, kind, cls, given)
        check = getattr(cls, "check_options", None)
        if check is not None:
            check(name, dict(config))      # a connector's options fail here, before anything starts
        spec = NodeSpec(name=name, kind=kind, **fields, config=config, options=opts,
                        class_ref=None if folder else cls, folder=str(folder) if folder else None, **deploy,
                        stream=self._stream_id)
        self._specs[name] = spec
        self._classes[name] = user_cls     # link(MyModel) finds the node by the class the user registered
        return spec

    def _handle(self, spec: NodeSpec) -> NodeHandle:
        return NodeHandle(spec.name, self.name, spec)

    # -- links -----------------------------------------------------------------------------------------------
    def _add_link(self, source: _End, target: _End, qos: Any, channel: Any, codec: Any, max_lag: Any) -> None:
        self._check_end(target)
        link = (self._display(source), self._display(target))
        self._links.append(_PendingLink(source, target, *_link_options(link, qos, channel, codec, max_lag)))

    def _check_end(self, end: Any) -> None:
        if not isinstance(end, (str, NodeHandle, type)):
            raise GraphError(f"link: expected a node name, a handle from node() or a node class, got {end!r}")

    def _display(self, end: _End) -> str:
        """A link end's name for messages, before names are resolved."""
        if isinstance(end, type):
            names = [name for name, cls in self._classes.items() if cls is end]
            return names[0] if len(names) == 1 else end.__name__
        return end.name if isinstance(end, NodeHandle) else end

    def _resolve(self, link: _PendingLink, specs: Mapping[str, NodeSpec] | None = None) -> EdgeSpec:
        """The link as an EdgeSpec; ``specs``: the nodes to resolve against (a merged run's, else this app's)."""
        specs = self._specs if specs is None else specs
        shown = (self._display(link.source), self._display(link.target))
        source, target = self._name_of(link.source, shown, specs), self._name_of(link.target, shown, specs)
        qos = link.qos
        if qos is _DEFAULT:
            spec = specs.get(target)
            qos = QoS.DURABLE if spec is not None and spec.kind == "sink" else QoS.REALTIME
        return EdgeSpec(source, target, qos, link.channel, link.codec, link.max_lag)

    def _name_of(self, end: _End, shown: tuple[str, str], specs: Mapping[str, NodeSpec]) -> str:
        text = f"link {shown[0]} -> {shown[1]}"
        if isinstance(end, str):
            return end
        if isinstance(end, NodeHandle):
            known = specs.get(end.name)
            # another System's handle is fine once that very node is here too (share(), the same folder); in a
            # merged run a bare reference and the definition with options are one node
            foreign_ok = known is not None and (end.spec is None or known == end.spec
                                                or (specs is not self._specs and known.same_node(end.spec)))
            if end.app != self.name and not foreign_ok:
                raise GraphError(f"{text}: {end.name!r} is a node of app {end.app!r}, not {self.name!r}",
                                 node=end.name, link=shown)
            return end.name
        names = [name for name, cls in self._classes.items() if cls is end]
        if len(names) == 1:
            return names[0]
        if not names:
            raise GraphError(f"{text}: class {end.__name__} is not a registered node", link=shown)
        listed = ", ".join(map(repr, names))
        raise GraphError(f"{text}: class {end.__name__} is registered as {len(names)} nodes ({listed}); "
                         "link by name or handle", link=shown)


System = EdgeApp
"""The original EdgeFlow's name for EdgeApp (seed 001's folder style): the same class."""


def run(*systems: EdgeApp, argv: list[str] | None = None) -> Any:
    """Run one or several Systems in one launch (the original EdgeFlow's ``edgeflow.run(sys1, sys2)``).

    Their nodes (unique by name: the same folder or class under one name in two Systems, or one ``share()``d,
    is one node) and links are merged into one graph (see ``edgeflow._merge``) under one supervisor; Ctrl-C
    stops all. The merged app takes the first System's name. ``python main.py --node X`` runs one node of it.

    Raises:
        GraphError: no Systems, or two of them define one name differently (one line naming both).
    """
    from edgeflow import _merge
    return _launch(_merge.AppSet(systems), argv)


run_all = run
"""Another name of ``run`` (the original EdgeFlow had both)."""


def _launch(app: Any, argv: list[str] | None) -> Any:
    """``app.run()``'s body, for an EdgeApp and for merged Systems alike."""
    if _reimported_by_spawn():
        # a node process re-imports main.py as __mp_main__; an unguarded module-level run() must not start
        # the app again in there (it would spawn node processes of its own, without end)
        return None
    if _run_hook is not None:
        return _run_hook(app, argv)
    from edgeflow.runtime import launcher      # imported here: the graph layer never imports the runtime
    code = launcher.run_app(app, argv)
    if code:
        raise SystemExit(code)                 # `python main.py` exits non-zero when the run failed
    return code


def _reimported_by_spawn() -> bool:
    """True while multiprocessing's "spawn" start method re-runs the parent's main script in a child, under
    the name ``__mp_main__``: a module-level frame of that module is on the stack. A genuine run (``python
    main.py``, ``--node X``, ``edgeflow run``) runs the script as ``__main__``, and a function of main.py called
    later in a child has no module-level frame of it below, so neither is mistaken for a re-import."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            return True
        frame = frame.f_back
    return False


# -- helpers -------------------------------------------------------------------------------------------------

def _check_app(name: Any, broker: Any) -> None:
    if not _nodeload.is_valid_name(name):
        raise ConfigError(f"invalid app name {name!r}: {_nodeload.NAME_RULE}")
    if broker is not None and not isinstance(broker, (RedisBroker, DualRedisBroker)):
        hint = " (wrap a URL: RedisBroker(url))" if isinstance(broker, str) else ""
        raise ConfigError(f"app {name!r}: broker must be None, a RedisBroker or a DualRedisBroker, "
                          f"got {type(broker).__name__}{hint}")


def _broker_from_config(app: Any, broker: Any, config: Any) -> RedisBroker:
    """The original's ``System(name, broker_config={"host": ..., "port": ...})`` as a RedisBroker."""
    if broker is not None:
        raise ConfigError(f"app {app!r}: give broker or broker_config, not both")
    if not isinstance(config, Mapping) or set(config) - {"host", "port", "password", "db"}:
        raise ConfigError(f"app {app!r}: broker_config must be a mapping of host, port (password, db), "
                          f"got {config!r}")
    return RedisBroker(host=config.get("host"), port=config.get("port"), password=config.get("password"),
                       db=config.get("db", 0))


def _merge_options(folder: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """node.toml, then keyword arguments (which win); both ``config`` tables are merged into the top level."""
    toml = _nodeload.read_node_toml(folder) if folder else {}
    options = dict(options)          # a decorator's options are reused if it is applied again
    kw_config = options.pop("config", None) or {}
    if not isinstance(kw_config, Mapping):
        raise ConfigError(f"node(config=...) must be a mapping, got {type(kw_config).__name__}")
    return {**toml.pop("config", {}), **toml, **kw_config, **options}


def _link_options(link: tuple[str, str], qos: Any, channel: Any, codec: Any, max_lag: Any) -> tuple:
    """Validated (qos, channel, codec, max_lag) of one link; qos may stay the _DEFAULT sentinel."""
    text = f"link {link[0]} -> {link[1]}"
    if qos is not _DEFAULT:
        try:
            qos = QoS.parse(qos)
        except ValueError as exc:
            raise GraphError(f"{text}: {exc}", link=link) from None
    if channel is not None and not _nodeload.is_valid_name(channel):
        raise GraphError(f"{text}: invalid channel {channel!r}: {_nodeload.NAME_RULE}", link=link)
    if codec is not None:
        if not isinstance(codec, str) or codec.lower() not in CODECS:
            raise GraphError(f"{text}: unknown codec {codec!r} (expected None for raw, or one of "
                             f"{', '.join(CODECS)})", link=link)
        codec = codec.lower()
    if max_lag is None:
        return qos, channel, codec, DEFAULT_MAX_LAG if qos is QoS.BALANCED else None
    if qos is not QoS.BALANCED:
        raise GraphError(f"{text}: max_lag applies only to QoS.BALANCED links (pass qos=QoS.BALANCED)",
                         link=link)
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or max_lag < 1:
        raise GraphError(f"{text}: max_lag must be an integer >= 1, got {max_lag!r}", link=link)
    return qos, channel, codec, max_lag


_SECRET = re.compile(r"password|passwd|token|secret|api_key", re.I)


def _redacted(config: Any) -> Any:
    """A node's config for views (/api/graph, `edgeflow graph`): secrets as ``***``, URL passwords too."""
    if not isinstance(config, dict):
        return config
    out = {}
    for key, value in config.items():
        if _SECRET.search(str(key)) and value is not None:
            out[key] = "***"
        elif isinstance(value, str) and "://" in value and "@" in value and _redact_url(value) != value:
            out[key] = _redact_url(value)         # the password masked, the rest shown
        elif getattr(value, "secret", False):
            out[key] = "***"              # a value a pipeline file marked secret (it came from ${API_KEY})
        elif isinstance(value, list):
            out[key] = ["***" if getattr(item, "secret", False) else item for item in value]
        else:
            out[key] = _redacted(value) if isinstance(value, dict) else value
    return out


def _redact_url(url: str) -> str:
    from edgeflow.connectors._base import redact      # the one rule for passwords in URLs
    return redact(url)


def _jsonable(value: Any) -> Any:
    """value with mappings as dicts, sequences as lists, and anything JSON cannot hold as its repr."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return repr(value)
