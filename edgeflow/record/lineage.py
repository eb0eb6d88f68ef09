"""Lineage: the tree of frames a frame was made from, back to its source frames, with per-hop latencies.

Every frame a node sends names its parents in meta (``edgeflow.parents`` = ``[[ring topic, frame id], ...]``:
one for a consumer's output, one per member for a fusion set; none for a producer's frame) and carries the hop
trace (``edgeflow.trace`` = ``[[node, received_us, sent_us], ...]``, the last hop its own). Following parents
from a frame until frames without any gives its lineage.

The core (``build``) knows no file: it takes a ``lookup(topic, frame_id)`` that returns ``(timestamp, meta)``
or None, so a recording (``from_recording``), frames still in a ring (the gateway's read-only peek) or plain
dicts (``lookup_of``) all serve. ``render_text`` / ``to_dict`` present a tree.

Timing per tree node (microseconds since the epoch in the trace, milliseconds in the results):
- ``processing_ms``: sent - received of the node's hop (time in its hook, or waiting for a fusion partner);
- per parent link ``link_ms``: this hop's received - the parent's hop sent (transport and queueing);
- ``age_ms``: sent - the frame's capture timestamp (end-to-end latency when it left the node).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any

from edgeflow.errors import ConfigError

__all__ = ["LineageNode", "build", "lookup_of", "from_recording", "to_dict", "render_text", "match_topics",
           "parents_of", "own_hop", "TRACE_KEY", "PARENTS_KEY"]

TRACE_KEY = "edgeflow.trace"      # edgeflow.runtime.outputs' names, repeated: lineage needs no runtime
PARENTS_KEY = "edgeflow.parents"
MAX_DEPTH = 64                    # hops followed at most (a trace holds 16; a recording may chain more)
_REPLICA = re.compile(r"^(?P<node>.+)\.r\d+$")

Lookup = Callable[[str, int], "tuple[float, dict] | None"]


@dataclasses.dataclass
class LineageNode:
    """One frame of a lineage tree.

    Attributes:
        topic, frame_id: the ring topic and frame id.
        found: False when the lookup did not know the frame (not recorded, or no longer in its ring).
        timestamp: capture time (epoch seconds), None when not found.
        node: the node whose hop made this frame (the trace's last hop), None when unknown.
        received_us, sent_us: that hop's times.
        parents: the parent frames' nodes (empty for a source frame).
        link_ms: per parent (same order): this hop's received - the parent's sent, None when unknown.
        cycle: True when this frame was met already higher in the tree (not followed again).
    """
    topic: str
    frame_id: int
    found: bool = False
    timestamp: float | None = None
    node: str | None = None
    received_us: int | None = None
    sent_us: int | None = None
    parents: list["LineageNode"] = dataclasses.field(default_factory=list)
    link_ms: list[float | None] = dataclasses.field(default_factory=list)
    cycle: bool = False

    @property
    def processing_ms(self) -> float | None:
        """sent - received of this frame's hop."""
        if self.received_us is None or self.sent_us is None:
            return None
        return (self.sent_us - self.received_us) / 1000.0

    @property
    def age_ms(self) -> float | None:
        """sent - capture timestamp: how old the data was when this frame left its node."""
        if self.sent_us is None or self.timestamp is None:
            return None
        return (self.sent_us - self.timestamp * 1e6) / 1000.0

    def sources(self) -> list["LineageNode"]:
        """The leaves: the source frames (and frames not found) this one came from, depth first."""
        if not self.parents:
            return [self]
        return [leaf for p in self.parents for leaf in p.sources()]

    def walk(self) -> Iterable["LineageNode"]:
        """This node, then every node below it, depth first."""
        yield self
        for p in self.parents:
            yield from p.walk()


def parents_of(meta: dict | None) -> list[tuple[str, int]]:
    """``[(ring topic, frame id), ...]`` a frame's meta names as its parents (empty for a source frame)."""
    out = []
    for entry in (meta or {}).get(PARENTS_KEY) or ():
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
            try:
                out.append((entry[0], int(entry[1])))
            except (TypeError, ValueError):
                continue
    return out


def own_hop(meta: dict | None) -> tuple[str, int, int] | None:
    """The frame's own hop ``(node, received_us, sent_us)``: the trace's last, None without a trace."""
    trace = (meta or {}).get(TRACE_KEY)
    if not trace:
        return None
    hop = trace[-1]
    try:
        return str(hop[0]), int(hop[1]), int(hop[2])
    except (TypeError, ValueError, IndexError):
        return None


def build(topic: str, frame_id: int, lookup: Lookup, *, max_depth: int = MAX_DEPTH) -> LineageNode:
    """The lineage tree of frame ``frame_id`` of ring ``topic``.

    Args:
        lookup: ``(topic, frame_id) -> (timestamp, meta)`` or None for a frame it does not know.
        max_depth: levels followed at most.
    """
    return _build(topic, int(frame_id), lookup, max_depth, frozenset())


def _build(topic: str, frame_id: int, lookup: Lookup, depth: int, above: frozenset) -> LineageNode:
    node = LineageNode(topic, frame_id)
    if (topic, frame_id) in above:
        node.cycle = True
        return node
    found = lookup(topic, frame_id)
    if found is None:
        return node
    timestamp, meta = found
    node.found, node.timestamp = True, float(timestamp)
    hop = own_hop(meta)
    if hop is not None:
        node.node, node.received_us, node.sent_us = hop
    if depth <= 0:
        return node
    above = above | {(topic, frame_id)}
    for ptopic, pid in parents_of(meta):
        parent = _build(ptopic, pid, lookup, depth - 1, above)
        node.parents.append(parent)
        link = None
        if node.received_us is not None and parent.sent_us is not None:
            link = (node.received_us - parent.sent_us) / 1000.0
        node.link_ms.append(link)
    return node


def lookup_of(frames: Iterable[Any]) -> Lookup:
    """A lookup over frames in memory: Frames (their ``topic`` is the ring topic), ``(topic, Frame)`` pairs, or
    dicts ``{"topic", "frame_id", "timestamp", "meta"}``."""
    table: dict[tuple[str, int], tuple[float, dict]] = {}
    for item in frames:
        if isinstance(item, tuple) and len(item) == 2:
            topic, f = item
            table[(topic, int(f.frame_id))] = (f.timestamp, f.meta)
        elif isinstance(item, dict):
            table[(item["topic"], int(item["frame_id"]))] = (item["timestamp"], item.get("meta") or {})
        else:
            table[(item.topic, int(item.frame_id))] = (item.timestamp, item.meta)
    return lambda topic, frame_id: table.get((topic, int(frame_id)))


def from_recording(recording: Any) -> Lookup:
    """A lookup over every frame of an open recording (``edgeflow.record.reader.Recording``): one pass over
    the file keeps each frame's timestamp and meta, not its data."""
    table: dict[tuple[str, int], tuple[float, dict]] = {}
    for topic, frame in recording.frames():
        table[(topic, int(frame.frame_id))] = (frame.timestamp, frame.meta)
    return lambda topic, frame_id: table.get((topic, int(frame_id)))


def match_topics(name: str, topics: Iterable[str], nodes: dict[str, str] | None = None) -> list[str]:
    """The ring topics ``name`` stands for: itself when it is one, else every replica ring of the node of that
    name (``detector`` -> ``detector.r0``, ``detector.r1``), by the recorded node names (``nodes``: {ring topic:
    node}) or else by the ``<node>.r<i>`` pattern.

    Raises:
        ConfigError: nothing matches; with a did-you-mean and the topics there are.
    """
    topics = list(topics)
    if name in topics:
        return [name]
    found = [t for t in topics if (nodes or {}).get(t) == name]
    if not found:
        found = [t for t in topics if (m := _REPLICA.match(t)) and m.group("node") == name]
    if found:
        return sorted(found, key=_replica_order)
    choices = topics + sorted({n for n in (nodes or {}).values() if n})
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"topic {name!r} is not in the recording{hint}; recorded topics: "
                      f"{', '.join(topics) or 'none'}")


def _replica_order(topic: str) -> tuple:
    m = _REPLICA.match(topic)
    return (m.group("node"), int(topic.rsplit(".r", 1)[1])) if m else (topic, -1)


# -- presenting a tree ---------------------------------------------------------------------------------------

def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="microseconds")


def to_dict(tree: LineageNode) -> dict:
    """A JSON-able dict of the tree: topic, frame_id, found, node, timestamp (float and ISO), received_us,
    sent_us, processing_ms, age_ms, cycle, and parents (each with its ``link_ms``)."""
    out = {"topic": tree.topic, "frame_id": tree.frame_id, "found": tree.found, "node": tree.node,
           "timestamp": tree.timestamp, "time": _iso(tree.timestamp), "received_us": tree.received_us,
           "sent_us": tree.sent_us, "processing_ms": _round(tree.processing_ms), "age_ms": _round(tree.age_ms)}
    if tree.cycle:
        out["cycle"] = True
    parents = []
    for parent, link in zip(tree.parents, tree.link_ms):
        entry = to_dict(parent)
        entry["link_ms"] = _round(link)
        parents.append(entry)
    out["parents"] = parents
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _label(node: LineageNode, link: float | None) -> str:
    head = f"{node.topic} #{node.frame_id}"
    if node.cycle:
        return f"{head}  (met above: a cycle, not followed)"
    if not node.found:
        return f"{head}  (not found: not recorded, or no longer kept)"
    parts = [head]
    if node.node is not None:
        parts.append(f"node {node.node}")
    parts.append(f"captured {_iso(node.timestamp)}")
    times = []
    if link is not None:
        times.append(f"link {link:.3f} ms")
    if node.processing_ms is not None:
        times.append(f"in node {node.processing_ms:.3f} ms")
    if node.age_ms is not None:
        times.append(f"age {node.age_ms:.3f} ms")
    if not node.parents:
        times.append("source")
    return "  ".join(parts) + (f"  ({', '.join(times)})" if times else "")


def render_text(tree: LineageNode) -> str:
    """The tree as indented lines, the frame first and its parents below::

        fusion #12  node fusion  captured 2026-...  (in node 0.210 ms, age 3.100 ms)
        ├── detector.r1 #6  node detector  captured ...  (link 0.150 ms, in node 1.002 ms, age 2.500 ms)
        │   └── camera #12  node camera  captured ...  (link 0.120 ms, in node 0.020 ms, age 0.100 ms, source)
        └── lidar #4  ...
    """
    lines = [_label(tree, None)]

    def below(node: LineageNode, prefix: str) -> None:
        for i, (parent, link) in enumerate(zip(node.parents, node.link_ms)):
            last = i == len(node.parents) - 1
            lines.append(prefix + ("└── " if last else "├── ") + _label(parent, link))
            below(parent, prefix + ("    " if last else "│   "))

    below(tree, "")
    return "\n".join(lines)
