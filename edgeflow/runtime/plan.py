"""What a run wires where: the rings each node replica writes and reads, the groups to declare first, and the
one line per edge that says which route it took. Pure functions of the Graph: no processes, no I/O."""

from __future__ import annotations

import dataclasses
import hashlib

from edgeflow.errors import ConfigError
from edgeflow.qos import QoS

MAX_GROUP_NAME = 47          # bytes a ring's group name may have
ON_ERROR = ("skip", "restart", "stop")   # what a node does when a hook raises (option ``on_error``)


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """One input of a node: the rings (one per replica of the source) read as one subscriber group."""
    source: str              # the source node's name
    label: str               # how the input is known inside the node (frame.topic): source or source.channel
    topics: tuple[str, ...]  # ring topics, one per source replica
    group: str               # the consuming node's group: its replicas share these rings
    qos: QoS
    max_lag: int
    codec: str | None


@dataclasses.dataclass(frozen=True)
class NodePlan:
    """Everything one node needs to run: its output topics (per replica) and its inputs."""
    name: str
    kind: str
    replicas: int
    outputs: tuple[str, ...]         # output ring topic of each replica
    inputs: tuple[InputPlan, ...]
    on_error: str = "skip"           # ON_ERROR: go on with the next frame, crash (restarted), or stop the run


def output_topic(node: str, replicas: int, replica: int, channel: str | None = None) -> str:
    """The ring topic replica ``replica`` of ``node`` writes (channel: a named sub-stream of its output)."""
    base = node if channel is None else f"{node}.{channel}"
    return base if replicas == 1 else f"{base}.r{replica}"


def group_name(node: str) -> str:
    """The ring group a consuming node's replicas share; hashed when the node name is too long for a group."""
    if len(node.encode()) <= MAX_GROUP_NAME:
        return node
    digest = hashlib.sha1(node.encode()).hexdigest()[:10]
    return f"{node.encode()[:MAX_GROUP_NAME - 11].decode(errors='ignore')}~{digest}"


def on_error_policy(spec) -> str:
    """A node's ``on_error`` policy: the option, else the class attribute, else "skip".

    Raises:
        ConfigError: naming the node, for a value that is not one of ON_ERROR.
    """
    value = spec.options.get("on_error")
    if value is None and spec.class_ref is not None:
        value = getattr(spec.class_ref, "on_error", None)
    if value is None:
        return "skip"
    if not isinstance(value, str) or value not in ON_ERROR:
        raise ConfigError(f"node '{spec.name}': on_error={value!r} is not one of "
                          f"{', '.join(repr(v) for v in ON_ERROR)}")
    return value


def plan(graph) -> dict[str, NodePlan]:
    """A NodePlan for every node of a validated Graph, in registration order.

    Raises:
        ConfigError: a node's ``on_error`` option is invalid (before anything starts).
    """
    plans = {}
    for spec in graph.nodes:
        inputs = []
        for edge in graph.inputs_of(spec.name):
            src = graph.node(edge.source)
            label = edge.source if edge.channel is None else f"{edge.source}.{edge.channel}"
            topics = tuple(output_topic(src.name, src.replicas, i, edge.channel) for i in range(src.replicas))
            inputs.append(InputPlan(edge.source, label, topics, group_name(spec.name),
                                    edge.qos, edge.max_lag or 0, edge.codec))
        outputs = tuple(output_topic(spec.name, spec.replicas, i) for i in range(spec.replicas))
        plans[spec.name] = NodePlan(spec.name, spec.kind, spec.replicas, outputs, tuple(inputs),
                                    on_error_policy(spec))
    return plans


def groups_to_declare(plans: dict[str, NodePlan]) -> list[tuple[str, str, QoS, int]]:
    """(topic, group, qos, max_lag) for every DURABLE or BALANCED input: declared before any producer starts,
    so those links deliver from the producer's very first frame."""
    out = []
    for node in plans.values():
        for inp in node.inputs:
            if inp.qos is not QoS.REALTIME:
                out.extend((topic, inp.group, inp.qos, inp.max_lag) for topic in inp.topics)
    return out


def edge_lines(graph, transports: dict[tuple[str, str], tuple[str, str]] | None = None) -> list[str]:
    """One line per link: ``camera -> detector: shm (same host), REALTIME``.

    ``transports`` maps (source, target) to (transport, reason); every edge is shm on this host by default.
    """
    lines = []
    for edge in graph.edges:
        transport, reason = (transports or {}).get((edge.source, edge.target), ("shm", "same host"))
        extra = f", channel {edge.channel}" if edge.channel else ""
        extra += f", max_lag {edge.max_lag}" if edge.qos is QoS.BALANCED else ""
        extra += f", codec {edge.codec}" if edge.codec else ""
        lines.append(f"{edge.source} -> {edge.target}: {transport} ({reason}), {edge.qos.name}{extra}")
    return lines
