"""``WS /ws/frames?stream_id=<id>``: one stream's live annotated frames and its metrics.

Messages, server to client:

* binary: one JPEG per frame of the stream's topic (the frames its last worker sends the gateway), at the
  client's pace, newest first; encoded once per frame and size for every viewer (the hub's cache), as
  ``/ws/video/{topic}``. ``?width=``, ``?scale=``, ``?quality=`` as there.
* text: ``{"type": "metrics", "stream_id", "worker_state", "source_state", "fps", "nodes": {name: figures},
  "user_metrics": {"gauges", "counters"}, "time"}`` at once and then at least once a second (every
  ``stats_interval``, at most 1 s): the stream's nodes' statistics with their ``extra["user_metrics"]``.

The socket stays open while the stream is inactive (its state says ``stopped``; frames come once it is
activated again) and follows the stream across a restart (a new url: new processes, maybe new topics). An
unknown id is refused with 404 before the upgrade; Origin and token as every WebSocket of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from aiohttp import web

from edgeflow.gateway.hub import Hub, Topic, Variant
from edgeflow.gateway.routes import HUB, dumps, json_error
from edgeflow.gateway.stream import STATS_INTERVAL, _serve_socket, check_origin, parse_variant
from edgeflow.gateway.streams.api import SERVICE, error_response
from edgeflow.gateway.streams.service import StreamError, StreamService

WAIT = 0.5                   # seconds a viewer waits for a frame before it looks at the stream's topics again
NODE_FIGURES = ("fps", "frames_in", "frames_out", "errors", "restarts", "drops", "processing_ms",
                "latency_ms", "states")


async def ws_frames(request: web.Request) -> web.StreamResponse:
    """The WebSocket (module docstring)."""
    check_origin(request)             # first: a foreign page learns nothing, not even whether an id exists
    service = request.app[SERVICE]
    hub = request.app[HUB]
    stream_id = request.query.get("stream_id")
    if not stream_id:
        raise json_error(400, "stream_id is required: /ws/frames?stream_id=<id>", parameter="stream_id")
    try:
        await service.record(stream_id)
    except StreamError as exc:
        return error_response(exc)
    variant = parse_variant(request, hub)
    interval = min(1.0, float(request.app[STATS_INTERVAL]))

    async def sender(ws: web.WebSocketResponse) -> None:
        metrics = asyncio.ensure_future(_send_metrics(ws, service, stream_id, interval))
        try:
            await _send_frames(ws, hub, service, stream_id, variant)
        finally:
            metrics.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await metrics

    return await _serve_socket(request, sender)


def metrics_message(service: StreamService, stream_id: str) -> dict:
    """The metrics text message of one stream, from the runtime's newest statistics."""
    stats = service.live_statistics()
    info = (stats.get("streams") or {}).get(stream_id)
    nodes_stats = stats.get("nodes") or {}
    nodes, gauges, counters = {}, {}, {}
    for name in (info or {}).get("nodes") or ():
        node = nodes_stats.get(name) or {}
        user = (node.get("extra") or {}).get("user_metrics") or {}
        nodes[name] = {**{k: node.get(k) for k in NODE_FIGURES}, "user_metrics": user}
        gauges.update(user.get("gauges") or {})
        counters.update(user.get("counters") or {})
    return {"type": "metrics", "stream_id": stream_id,
            "worker_state": str(info.get("state")) if info else "stopped",
            "source_state": info.get("source_state") if info else None,
            "fps": info.get("fps") if info else None, "topics": list((info or {}).get("topics") or ()),
            "nodes": nodes, "user_metrics": {"gauges": gauges, "counters": counters}, "time": time.time()}


async def _send_metrics(ws: web.WebSocketResponse, service: StreamService, stream_id: str,
                        interval: float) -> None:
    while not ws.closed:
        await ws.send_str(dumps(metrics_message(service, stream_id)))
        await asyncio.sleep(interval)


def _pick(hub: Hub, names: list[str]) -> str | None:
    """The topic to show: the first of the stream's topics that has a frame, else its first."""
    for name in names:
        topic = hub.topic(name)
        if topic is not None and topic.latest is not None:
            return name
    return names[0] if names else None


async def _send_frames(ws: web.WebSocketResponse, hub: Hub, service: StreamService, stream_id: str,
                       variant: Variant) -> None:
    topic: Topic | None = None
    last = 0
    try:
        while not hub.closing and not ws.closed:
            info = service.live().get(stream_id) or {}
            name = _pick(hub, [str(t) for t in info.get("topics") or ()])
            if name is None:
                if topic is not None:
                    topic.viewers["ws"] -= 1
                    topic = None
                await asyncio.sleep(WAIT / 2)       # inactive: the runtime's snapshot says when it runs again
                continue
            if topic is None or topic.name != name:
                if topic is not None:
                    topic.viewers["ws"] -= 1
                topic = hub.topic(name, create=True)
                topic.viewers["ws"] += 1            # watched: the hub will not forget it meanwhile
                last = 0
            entry = await hub.next_entry(topic, last, timeout=WAIT)
            if entry is None:
                continue
            if entry.kind == "data":                # a stream's frames are pictures; data has its own routes
                last = entry.seq
                continue
            try:
                encoded = await hub.encoded(topic, entry, variant)
            except ConnectionAbortedError:          # the gateway is closing
                return
            except (ValueError, OSError):           # a payload OpenCV cannot encode: skip it
                last = entry.seq
                continue
            await ws.send_bytes(encoded.jpeg)
            hub.delivered(topic, encoded, last)
            last = encoded.seq
    finally:
        if topic is not None:
            topic.viewers["ws"] -= 1

