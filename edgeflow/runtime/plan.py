"""What a run wires where: the rings each node replica writes and reads, the groups to declare first, and the
one line per edge that says which route it took. Pure functions of the Graph: no processes, no I/O."""

from __future__ import annotations

import dataclasses
import hashlib

from edgeflow.errors import ConfigError
from edgeflow.qos import QoS

MAX_GROUP_NAME = 47          # bytes a ring's group name may have
ON_ERROR = ("skip", "restart", "stop")   # what a node does when a hook raises (option ``on_error``)
# what a node does when a DURABLE consumer is a whole ring behind (option ``on_backpressure``): wait for it, or
# drop (and count) the oldest frame it has not taken yet, or the new one
ON_BACKPRESSURE = ("block", "drop_oldest", "drop_newest")


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
    on_backpressure: str = "block"   # ON_BACKPRESSURE
    exactly_once: bool = False       # a sink: the runtime drops frames it already delivered (by origin frame id)
    durable_consumers: tuple[str, ...] = ()   # nodes reading this one over DURABLE links
    slots: int = 8                   # slots of each output ring: more when a DURABLE consumer holds frames
    hold_limit: int = 0              # frames one replica may hold past its hook (context.hold(): batching sinks)
    fed_later: bool = False          # a stream template's target: inputs are added and removed while it runs


MIN_SLOTS = 8
MAX_SLOTS = 64          # the ring's limit (EF_MAX_SLOTS)
MAX_HELD_PER_GROUP = 24  # a DURABLE group requeues up to 32 frames of a crashed member: stay below it


def hold_limit(spec) -> int:
    """Frames one replica of ``spec`` may keep past its hook (its class's ``max_held_frames``, shared out
    between its replicas so that a crash of every one can still be redelivered)."""
    try:
        wanted = int(getattr(spec.load_class(), "max_held_frames", 0) or 0)
    except Exception:                 # a class that does not load fails later, with its own message
        return 0
    return max(0, min(wanted, MAX_HELD_PER_GROUP // max(1, spec.replicas)))


def output_slots(graph, spec, holds: dict[str, int]) -> int:
    """Slots for ``spec``'s output rings: a consumer holding frames needs that many more for the writer, and
    room for its next batch besides, so the writer goes on while the consumer writes its batch out (measured
    with PostgresSink at one row per frame: 28 slots left the producer 4 frames ahead, and the two took turns;
    52 let them overlap: 1.6x the rows/s)."""
    need = MIN_SLOTS
    for edge in graph.outputs_of(spec.name):
        target = graph.node(edge.target)
        held = holds.get(target.name, 0)
        if held and edge.qos is QoS.DURABLE:
            need = max(need, 2 * held * target.replicas + 4)
    return min(MAX_SLOTS, need)


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


def _option(spec, name: str):
    """A node option, else the node class's attribute of that name, else None."""
    value = spec.options.get(name)
    if value is None and spec.class_ref is not None:
        value = getattr(spec.class_ref, name, None)
    return value


def on_backpressure_policy(spec) -> str:
    """A node's ``on_backpressure`` policy (option, else class attribute, else "block").

    Raises:
        ConfigError: naming the node, for a value that is not one of ON_BACKPRESSURE, or set on a node that has
            no output (a sink or a gateway).
    """
    value = _option(spec, "on_backpressure")
    if value is None:
        return "block"
    if not isinstance(value, str) or value not in ON_BACKPRESSURE:
        raise ConfigError(f"node '{spec.name}': on_backpressure={value!r} is not one of "
                          f"{', '.join(repr(v) for v in ON_BACKPRESSURE)}")
    if spec.kind in ("sink", "gateway") and value != "block":
        raise ConfigError(f"node '{spec.name}': on_backpressure={value!r}: a {spec.kind} has no output to drop from")
    return value


def exactly_once_option(spec) -> bool:
    """A node's ``exactly_once`` option (sinks only).

    Raises:
        ConfigError: naming the node, for a value that is not a bool, or exactly_once=True on a node that is
            not a sink.
    """
    value = _option(spec, "exactly_once")
    if value is None or value is False:
        return False
    if value is not True:
        raise ConfigError(f"node '{spec.name}': exactly_once={value!r}: True or False")
    if spec.kind != "sink":
        raise ConfigError(f"node '{spec.name}': exactly_once=True is for sink nodes (this one is a {spec.kind}): "
                          "a sink's delivery is what the runtime can make exactly-once")
    return True


def plan(graph) -> dict[str, NodePlan]:
    """A NodePlan for every node of a validated Graph, in registration order.

    Raises:
        ConfigError: a node's ``on_error``, ``on_backpressure`` or ``exactly_once`` option is invalid (before
            anything starts).
    """
    plans = {}
    holds = {spec.name: hold_limit(spec) for spec in graph.nodes if spec.kind == "sink"}
    fed_later = set(graph.streams.to) if getattr(graph, "streams", None) is not None else set()
    for spec in graph.nodes:
        inputs = []
        for edge in graph.inputs_of(spec.name):
            src = graph.node(edge.source)
            label = edge.source if edge.channel is None else f"{edge.source}.{edge.channel}"
            topics = tuple(output_topic(src.name, src.replicas, i, edge.channel) for i in range(src.replicas))
            inputs.append(InputPlan(edge.source, label, topics, group_name(spec.name),
                                    edge.qos, edge.max_lag or 0, edge.codec))
        outputs = tuple(output_topic(spec.name, spec.replicas, i) for i in range(spec.replicas))
        durable = tuple(dict.fromkeys(e.target for e in graph.outputs_of(spec.name) if e.qos is QoS.DURABLE))
        plans[spec.name] = NodePlan(spec.name, spec.kind, spec.replicas, outputs, tuple(inputs),
                                    on_error_policy(spec), on_backpressure_policy(spec),
                                    exactly_once_option(spec), durable, output_slots(graph, spec, holds),
                                    holds.get(spec.name, 0), spec.name in fed_later)
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
