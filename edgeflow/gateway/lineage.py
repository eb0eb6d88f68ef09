"""``GET /api/lineage/{topic}/{frame_id}``: where a frame came from, read from the rings of this host.

Every output frame names its parents in its meta (``edgeflow.parents``: [[ring topic, frame id], ...], see
edgeflow/runtime/outputs.py). Following them from a frame back to frames without parents (a producer's) is its
lineage. The gateway reads the meta of each frame with ``shm.peek_meta``: straight from the frame's slot while
its ring still holds it, joining no subscriber group and pinning nothing, so looking never changes what the
pipeline's nodes receive. A parent its ring no longer holds (overwritten since, or its node runs on another
host) is in the tree with ``"missing": true``.

``topic`` is a ring topic of the app (``camera``, ``detector.r1`` for replica 1 of a node with several
replicas, ``node.channel``), or a topic as the dashboard names it (the node, ``detector``): then every replica's
ring is looked in, and ``?sent_us=`` (the ``sent_us`` of the frame's last hop in ``edgeflow.trace``, which the
dashboard has from the meta it shows) tells apart frames of two replicas with the same id; without it the
gateway's own newest frame of that topic does, if it is that one. Only the app's own rings (from its graph) are
looked up. The answer (JSON)::

    {"app": "demo", "truncated": false,
     "topic": "detector.r1", "frame_id": 57, "node": "detector", "timestamp": 1733612345.12, "missing": false,
     "source": "ring",                         # or "gateway": its ring moved on, the gateway's copy answered
     "origin": ["camera", 112],
     "hops": [{"node": "camera", "received_us": ..., "sent_us": ..., "ms": 0.21, "wait_ms": null},
              {"node": "detector", "received_us": ..., "sent_us": ..., "ms": 11.9, "wait_ms": 0.4}],
     "received_us": ..., "sent_us": ..., "processing_ms": 11.9, "age_ms": 14.2,     # the frame's own hop
     "parents": [{"topic": "camera", "frame_id": 112, "node": "camera", ..., "link_ms": 0.4, "parents": []}]}

``hops`` is the frame's whole trace: ``ms`` the time a hop's node spent on the frame (received to sent),
``wait_ms`` the time from the previous hop's send to this hop's receive (the link and the queue). The frame's
own hop is also given with the names ``edgeflow lineage`` uses (edgeflow/record/lineage.py): ``processing_ms``,
``age_ms`` (sent - capture time) and, on each parent read, ``link_ms`` (this hop's receive - its send).
At most MAX_NODES frames and MAX_DEPTH levels are read (``"truncated": true`` past them); a frame reached
twice (fusion sets sharing an ancestor) is expanded once, then listed with ``"seen": true``.

Errors (JSON): 400 a malformed topic or frame id, 404 an unknown topic or a frame no ring holds any more, 409
a frame id two replicas' rings hold (name the ring topic or pass ``?sent_us=``). The route is behind the
gateway's token like every /api route.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiohttp import web

from edgeflow.errors import ConfigError, TransportError
from edgeflow.gateway.routes import HUB, RUNTIME, VIEWS, dumps, json_error, json_response
from edgeflow.runtime.delivered import ORIGIN_KEY
from edgeflow.runtime.outputs import PARENTS_KEY, TRACE_KEY
from edgeflow.runtime.plan import output_topic
from edgeflow.transport import shm

__all__ = ["PATH", "MAX_NODES", "MAX_DEPTH", "lineage", "rings_of", "walk"]

PATH = "/api/lineage/{topic}/{frame_id}"
MAX_NODES = 64                 # frames read for one answer (each is a few system calls)
MAX_DEPTH = 32                 # levels of parents
MAX_PARENTS = 64               # parents of one frame looked at (a fusion set has one per input)
MAX_ID = (1 << 63) - 1
_TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")       # shm.ring_name's rule for topics
_NUMBER = re.compile(r"[0-9]{1,19}")
_PUBLISHING = ("producer", "consumer", "fusion")               # node types that write a ring
log = logging.getLogger("edgeflow.gateway")
_reported: set[str] = set()                                    # rings whose read failed, logged once


def rings_of(graph: dict) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(ring topic -> node name, topic label -> its ring topics) of the app a graph dict describes.

    A node writes one ring per replica (``name.r<i>`` with several replicas) and per channel its links name;
    the label of those rings is how consumers and the dashboard know them (``name`` or ``name.channel``).
    """
    nodes = {}
    for spec in graph.get("nodes") or ():
        if isinstance(spec, dict) and isinstance(spec.get("name"), str) \
                and spec.get("type", "consumer") in _PUBLISHING:
            replicas = spec.get("replicas")
            nodes[spec["name"]] = replicas if isinstance(replicas, int) and 1 <= replicas <= 1024 else 1
    channels: dict[str, set] = {name: {None} for name in nodes}
    for edge in graph.get("edges") or ():
        if isinstance(edge, dict) and edge.get("source") in channels and isinstance(edge.get("channel"), str):
            channels[edge["source"]].add(edge["channel"])
    rings: dict[str, str] = {}
    labels: dict[str, list[str]] = {}
    for name, replicas in nodes.items():
        for channel in channels[name]:
            topics = [output_topic(name, replicas, i, channel) for i in range(replicas)]
            labels[name if channel is None else f"{name}.{channel}"] = topics
            rings.update((t, name) for t in topics)
    return rings, labels


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def hops(meta: dict) -> list[dict]:
    """A frame's hop trace as the API shows it: node, received_us, sent_us, ms (in the node), wait_ms (since
    the previous hop's send)."""
    out: list[dict] = []
    previous = None
    trace = meta.get(TRACE_KEY)
    for hop in trace if isinstance(trace, list) else ():
        if not (isinstance(hop, list) and len(hop) == 3 and isinstance(hop[0], str)):
            continue
        received, sent = _int(hop[1]), _int(hop[2])
        if received is None or sent is None:
            continue
        out.append({"node": hop[0], "received_us": received, "sent_us": sent,
                    "ms": round((sent - received) / 1000, 3),
                    "wait_ms": None if previous is None else round((received - previous) / 1000, 3)})
        previous = sent
    return out


def last_sent(meta: dict) -> int | None:
    """``sent_us`` of a frame's last hop: when its node sent it, which tells one frame from another."""
    trace = meta.get(TRACE_KEY) if isinstance(meta, dict) else None
    if isinstance(trace, list) and trace and isinstance(trace[-1], list) and len(trace[-1]) == 3:
        return _int(trace[-1][2])
    return None


def parents_of(meta: dict) -> list[tuple[str, int]]:
    """The well-formed [ring topic, frame id] pairs of a frame's ``edgeflow.parents`` (at most MAX_PARENTS)."""
    found = meta.get(PARENTS_KEY)
    out = []
    for item in found[:MAX_PARENTS] if isinstance(found, list) else ():
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _TOPIC.fullmatch(item[0]):
            fid = _int(item[1])
            if fid is not None and 0 < fid <= MAX_ID:
                out.append((item[0], fid))
    return out


class _Walk:
    """One lineage answer being built: the rings it may read, and how many frames it read so far."""

    def __init__(self, app: str, rings: dict[str, str]) -> None:
        self.app = app
        self.rings = rings
        self.read = 0
        self.truncated = False
        self.expanded: set[tuple[str, int]] = set()

    def peek(self, topic: str, frame_id: int) -> tuple[float, dict] | None:
        """The frame's (timestamp, meta) if it is one of the app's rings and still there (counted)."""
        if topic not in self.rings:
            return None
        self.read += 1
        try:
            return shm.peek_meta(self.app, topic, frame_id)
        except (ConfigError, ValueError):      # a bad app name; meta that is not JSON (not ours): not there
            return None
        except TransportError as exc:          # a segment of another layout, or one we may not open: say so once
            if topic not in _reported:
                _reported.add(topic)
                log.warning("gateway: lineage: ring %r not readable: %s", topic, exc)
            return None

    def node(self, topic: str, frame_id: int, found: tuple[float, dict], depth: int) -> dict:
        """The tree below one frame we have the meta of."""
        timestamp, meta = found
        trace = hops(meta)
        own = trace[-1] if trace else None
        out = {"topic": topic, "frame_id": frame_id,
               "node": self.rings.get(topic) or (own["node"] if own else None),
               "timestamp": timestamp, "missing": False, "hops": trace,
               # the names edgeflow.record.lineage.to_dict uses (edgeflow lineage --json), for the frame's own hop
               "received_us": own["received_us"] if own else None, "sent_us": own["sent_us"] if own else None,
               "processing_ms": own["ms"] if own else None,
               "age_ms": round((own["sent_us"] - timestamp * 1e6) / 1000, 3) if own else None, "parents": []}
        self.expanded.add((topic, frame_id))
        for parent, pid in parents_of(meta):
            stub = {"topic": parent, "frame_id": pid, "node": self.rings.get(parent)}
            if (parent, pid) in self.expanded:
                out["parents"].append({**stub, "seen": True})
            elif depth >= MAX_DEPTH or self.read >= MAX_NODES:
                self.truncated = True
                out["parents"].append({**stub, "truncated": True})
            else:
                got = self.peek(parent, pid)
                if got is None:
                    out["parents"].append({**stub, "missing": True})
                    continue
                item = self.node(parent, pid, got, depth + 1)
                # the link: this frame's hop received it - the parent's hop sent it (transport and queue)
                item["link_ms"] = (round((own["received_us"] - item["sent_us"]) / 1000, 3)
                                   if own and item["sent_us"] is not None else None)
                out["parents"].append(item)
        return out


def walk(app: str, rings: dict[str, str], topic: str, frame_id: int, found: tuple[float, dict],
         source: str = "ring") -> dict:
    """The lineage tree of a frame whose (timestamp, meta) is ``found``, its parents read from the rings."""
    w = _Walk(app, rings)
    w.read = 1
    tree = w.node(topic, frame_id, found, 0)
    origin = found[1].get(ORIGIN_KEY)
    return {"app": app, **tree, "source": source, "origin": origin if isinstance(origin, list) else None,
            "truncated": w.truncated}


def _resolve(app: str, rings: dict[str, str], labels: dict[str, list[str]], topic: str, frame_id: int,
             sent_us: int | None, shown: Any) -> dict:
    """Find the asked frame (see the module docstring) and walk its parents; raises the JSON errors."""
    candidates = [topic] if topic in rings else labels.get(topic)
    if not candidates:
        raise json_error(404, "unknown topic", topic=topic, topics=sorted(set(rings) | set(labels)))
    # the gateway's newest frame of this topic, when it is the one asked for: with no hint, the one shown
    if shown is not None and (shown.frame_id != frame_id or not isinstance(shown.meta, dict)
                              or (sent_us is not None and last_sent(shown.meta) != sent_us)):
        shown = None
    wanted = sent_us if sent_us is not None or shown is None else last_sent(shown.meta)
    w = _Walk(app, rings)
    hits = []
    for ring in candidates:
        got = w.peek(ring, frame_id)
        if got is not None and (wanted is None or last_sent(got[1]) == wanted):
            hits.append((ring, got))
    if len(hits) > 1:
        raise web.HTTPConflict(text=dumps({
            "error": f"frame {frame_id} is in several rings of {topic!r}: name the ring topic or pass ?sent_us=",
            "status": 409, "topic": topic, "frame_id": frame_id, "candidates": [h[0] for h in hits]}),
            content_type="application/json")
    if hits:
        return walk(app, rings, hits[0][0], frame_id, hits[0][1])
    if shown is not None:              # its ring moved on (the gateway keeps a copy with a play-out buffer)
        ring = candidates[0] if len(candidates) == 1 else topic
        return walk(app, rings, ring, frame_id, (float(shown.timestamp), dict(shown.meta)), source="gateway")
    raise json_error(404, f"frame {frame_id} of {topic!r} is no longer in its ring", topic=topic,
                     frame_id=frame_id, missing=True)


def _number(text: str | None, name: str) -> int | None:
    """A whole number 1..2**63-1 from the path or query (400 otherwise); None when absent."""
    if text is None:
        return None
    if not _NUMBER.fullmatch(text) or not 0 < int(text) <= MAX_ID:
        raise json_error(400, f"{name} must be a whole number >= 1", parameter=name)
    return int(text)


async def lineage(request: web.Request) -> web.Response:
    """``GET /api/lineage/{topic}/{frame_id}[?sent_us=N]``: the frame's lineage tree (module docstring)."""
    topic = request.match_info["topic"]
    if len(topic) > 100 or not _TOPIC.fullmatch(topic):       # checked before it names any segment
        raise json_error(400, "topic must be 1-100 letters, digits, '-', '_' or '.'", parameter="topic")
    frame_id = _number(request.match_info["frame_id"], "frame_id")
    sent_us = _number(request.query.get("sent_us"), "sent_us")
    views = request.app[VIEWS]
    app = str(getattr(request.app[RUNTIME], "app", "") or "")
    rings, labels = rings_of(views.graph_dict())
    hub_topic = request.app[HUB].topics.get(topic)
    shown = hub_topic.latest if hub_topic is not None else None
    # a few system calls per frame read: off the event loop, so the video streams never wait for it
    tree = await asyncio.to_thread(_resolve, app, rings, labels, topic, frame_id, sent_us, shown)
    return json_response(tree)


def add_routes(app: web.Application, skip=frozenset()) -> None:
    """Register ``GET /api/lineage/{topic}/{frame_id}`` unless a custom route took it."""
    from edgeflow.gateway.routes import add_get
    add_get(app, PATH, lineage, skip)
