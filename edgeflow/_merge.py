"""Several Systems as one launch: ``edgeflow.run(realtime, logging)`` (the original EdgeFlow's multi-System run).

    realtime = System("realtime")
    cam = realtime.node("nodes/camera", fps=30)
    realtime.link(cam).to(realtime.node("nodes/yolo"))
    logging = System("logging")
    logging.share(cam)                                  # or logging.node("nodes/camera"): the same node
    logging.link(cam).to(logging.node("nodes/logger"))
    edgeflow.run(realtime, logging)                     # camera runs once and feeds both

``AppSet(systems).graph()`` is one Graph: nodes unique by name (a name two Systems define is one node when
both define the same thing: same class or folder and options, or one of them gave no options), links of
every System in order (the same link twice is kept once), the first System's name (it names the shared
memory), and the one broker they have. Anything contradictory is a one-line GraphError naming both Systems.
The launcher runs an AppSet as it runs an EdgeApp: anything with ``graph()``.
"""

from __future__ import annotations

from typing import Any, Sequence

from edgeflow.errors import GraphError
from edgeflow.graph import EdgeApp, EdgeSpec, Graph, NodeSpec


class AppSet:
    """Systems run together. Attributes: ``systems`` (in the order given), ``name`` (the first's)."""

    def __init__(self, systems: Sequence[EdgeApp]) -> None:
        systems = tuple(systems)
        if not systems:
            raise GraphError("run() needs at least one System")
        for app in systems:
            if not isinstance(app, EdgeApp):
                raise GraphError(f"run() takes Systems (EdgeApp objects), got {app!r}")
        self.systems = systems
        self.name = systems[0].name

    @property
    def broker(self) -> Any:
        """The broker of the Systems (they may not disagree)."""
        return _broker(self.systems)

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        """The merged nodes, in the order they were first registered."""
        return tuple(_nodes(self.systems).values())

    def graph(self) -> Graph:
        """The merged, validated Graph.

        Raises:
            GraphError: conflicting definitions (naming both Systems), or whatever the merged graph breaks.
        """
        specs = _nodes(self.systems)
        edges: dict[tuple, tuple[EdgeSpec, str]] = {}
        for app in self.systems:
            for link in app._links:
                edge = app._resolve(link, specs)
                key = (edge.source, edge.target, edge.channel)
                if key in edges and edges[key][0] != edge:
                    first, where = edges[key]
                    raise GraphError(f"link {edge.source} -> {edge.target}: system {where!r} links it with "
                                     f"{first.qos.name} and system {app.name!r} with {edge.qos.name} "
                                     "(give both the same options, or a channel= to tell them apart)",
                                     link=edge.link)
                edges.setdefault(key, (edge, app.name))
        return Graph(self.name, tuple(specs.values()), tuple(e for e, _ in edges.values()), self.broker)

    def run(self, argv: list[str] | None = None) -> Any:
        """Run the Systems together, as ``edgeflow.run(*systems)``."""
        from edgeflow import graph as graph_module
        return graph_module.run(*self.systems, argv=argv)

    def start(self, *, frames: int | None = None, duration: float | None = None) -> Any:
        """Start them in the background (see ``EdgeApp.start``)."""
        from edgeflow.runtime import launcher
        return launcher.start_app(self, frames=frames, duration=duration)

    def __repr__(self) -> str:
        return f"<AppSet {', '.join(repr(app.name) for app in self.systems)}>"


def _nodes(systems: Sequence[EdgeApp]) -> dict[str, NodeSpec]:
    merged: dict[str, NodeSpec] = {}
    owner: dict[str, str] = {}
    for app in systems:
        for spec in app.nodes:
            known = merged.get(spec.name)
            if known is None:
                merged[spec.name], owner[spec.name] = spec, app.name
            elif not known.same_node(spec):
                raise GraphError(f"node {spec.name!r}: systems {owner[spec.name]!r} and {app.name!r} define it "
                                 f"differently ({_difference(known, spec)}); give one of them another name, "
                                 "or share() the node", node=spec.name)
            elif not known.options and spec.options:
                merged[spec.name] = spec            # the definition with options wins over a bare reference
    return merged


def _difference(a: NodeSpec, b: NodeSpec) -> str:
    if a.kind != b.kind:
        return f"a {a.kind} and a {b.kind}"
    if a.class_ref is not b.class_ref or a.folder != b.folder:
        return f"{_source(a)} and {_source(b)}"
    for key in sorted(set(a.options) | set(b.options)):
        if a.options.get(key) != b.options.get(key):
            return f"{key}={a.options.get(key)!r} and {key}={b.options.get(key)!r}"
    return "different settings"


def _source(spec: NodeSpec) -> str:
    return f"folder {spec.folder}" if spec.folder else f"class {spec.class_ref.__qualname__}"


def _broker(systems: Sequence[EdgeApp]) -> Any:
    chosen, where = None, None
    for app in systems:
        if app.broker is None:
            continue
        if chosen is None:
            chosen, where = app.broker, app.name
        elif app.broker != chosen:
            raise GraphError(f"systems {where!r} and {app.name!r} have different brokers "
                             f"({chosen.redacted()} and {app.broker.redacted()}); one launch uses one broker")
    return chosen
