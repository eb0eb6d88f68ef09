"""Live video and statistics: MJPEG over HTTP, JPEG and JSON over WebSocket, single snapshots.

    GET /video, /video/{topic}     multipart/x-mixed-replace MJPEG (``/video``: ``?topic=`` or the first)
    GET /snapshot/{topic}          the newest frame as one JPEG
    GET /ws/video/{topic}          one binary message per frame (a JPEG); a non-image frame as a JSON text
    GET /ws/stats                  JSON text every ``stats_interval`` seconds (status, graph, topics)

Size and quality: native size unless ``?width=N`` (8-8192 pixels, aspect kept) or ``?scale=F`` (0 < F <= 4);
``?quality=Q`` (1-100). Each viewer runs its own loop: "the newest frame newer than the one I sent". A slow
socket only delays its own loop (aiohttp waits for the socket to drain after at most 64 KiB), frames that
arrive meanwhile replace each other in the hub, so a viewer never builds a queue and never slows another.

Origin (the WebSockets only: browsers apply no same-origin rule to them, so any page a user opens could read
a loopback gateway's streams): a request with an ``Origin`` header is served when that origin is the server's
own (its host and port equal the ``Host`` header) or is in the allowed list (``WebInterface(allowed_origins=
[...])``, else $EDGEFLOW_ALLOWED_ORIGINS; ``*`` allows any). A request without ``Origin`` comes from a
non-browser client: it is served when a token protects the server (and it passed the token check) or when
it arrived on a loopback address. Anything else is refused with 403 and a JSON error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import Awaitable, Callable

from aiohttp import WSMsgType, web

from edgeflow.gateway.hub import BOUNDARY, Encoded, Entry, Hub, Topic, Variant
from edgeflow.gateway.routes import HUB, ORIGINS, TOKEN_SET, VIEWS, add_get, dumps, find_topic, json_error

log = logging.getLogger("edgeflow.gateway")

SOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("edgeflow_sockets", weakref.WeakSet)
STATS_INTERVAL: web.AppKey[float] = web.AppKey("edgeflow_stats_interval", float)
IDLE_CHECK = 2.0            # seconds a viewer waits for a frame before it checks that its client is there
MAX_WIDTH = 8192
MAX_SCALE = 4.0


def parse_variant(request: web.Request, hub: Hub) -> Variant:
    """The size and quality a request asks for.

    Raises:
        HTTPBadRequest: (JSON) a malformed or out-of-range parameter, or both width and scale.
    """
    query = request.query
    if "width" in query and "scale" in query:
        raise json_error(400, "give width or scale, not both")
    width = _number(query, "width", int, 8, MAX_WIDTH)
    scale = _number(query, "scale", float, 0.0, MAX_SCALE)
    if scale is not None and scale <= 0:
        raise json_error(400, "scale must be above 0", parameter="scale")
    quality = _number(query, "quality", int, 1, 100)
    return Variant(width, scale, hub.quality if quality is None else quality)


def _number(query, name: str, kind: type, low: float, high: float):
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise json_error(400, f"{name} must be {'an integer' if kind is int else 'a number'}",
                         parameter=name) from None
    if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
        raise json_error(400, f"{name} must be between {low:g} and {high:g}", parameter=name)
    return value


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def pump(hub: Hub, topic: Topic, variant: Variant, request: web.Request,
               send_image: Callable[[Encoded], Awaitable[None]],
               send_data: Callable[[Entry], Awaitable[None]] | None = None) -> None:
    """Send ``topic``'s frames to one viewer, newest first, at the viewer's pace, until it or the hub goes.

    Images go through ``send_image`` (encoded once per frame and size, shared with every other viewer);
    non-image frames through ``send_data``, or are skipped when it is None (MJPEG cannot show them).
    """
    last = 0
    while not hub.closing:
        entry = await hub.next_entry(topic, last, timeout=IDLE_CHECK)
        if entry is None:
            if _client_gone(request):
                return
            continue
        if entry.kind == "data":
            if send_data is not None:
                await send_data(entry)
            last = entry.seq
            continue
        try:
            encoded = await hub.encoded(topic, entry, variant)
        except ConnectionAbortedError:                # the gateway is closing
            return
        except (ValueError, OSError) as exc:          # a payload OpenCV cannot encode: skip it, keep serving
            _log_once(topic, f"gateway: {topic.name}: frame {entry.frame_id} not shown: {exc}")
            last = entry.seq
            continue
        await send_image(encoded)
        hub.delivered(topic, encoded, last)
        last = encoded.seq


_logged: set = set()


def _log_once(topic: Topic, message: str) -> None:
    if topic.name not in _logged:
        _logged.add(topic.name)
        log.warning(message)


# -- MJPEG and snapshots ------------------------------------------------------------------------------------
async def mjpeg(request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace JPEG stream of one topic."""
    hub = request.app[HUB]
    topic = find_topic(request)
    variant = parse_variant(request, hub)
    if topic.latest is not None and topic.latest.kind == "data":
        raise json_error(415, "topic carries data, not images; see /api/topics/" + topic.name,
                         topic=topic.name)
    response = web.StreamResponse(headers={
        "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
        "X-Accel-Buffering": "no"})                 # a reverse proxy must not buffer a live stream
    await response.prepare(request)
    topic.viewers["mjpeg"] += 1
    try:
        await pump(hub, topic, variant, request, lambda encoded: response.write(encoded.part))
    except ConnectionError:                         # the viewer went away mid-write: normal for a stream
        pass
    finally:
        topic.viewers["mjpeg"] -= 1
    return response


async def snapshot(request: web.Request) -> web.Response:
    """The topic's newest frame as one JPEG (waits up to 5 s for a first frame)."""
    hub = request.app[HUB]
    topic = find_topic(request)
    variant = parse_variant(request, hub)
    entry = await hub.next_entry(topic, 0, timeout=5.0)
    if entry is None:
        raise json_error(503, "no frame yet", topic=topic.name)
    if entry.kind == "data":
        raise json_error(415, "topic carries data, not images", topic=topic.name)
    try:
        encoded = await hub.encoded(topic, entry, variant)
    except ValueError as exc:
        raise json_error(415, str(exc), topic=topic.name) from None
    return web.Response(body=encoded.jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "no-cache", "X-Frame-Id": str(encoded.frame_id)})


# -- WebSocket -----------------------------------------------------------------------------------------------
def normalise_origin(origin: str) -> str:
    """An origin as compared: lowercase, without a trailing slash (``https://Ops.Example.com/`` ->
    ``https://ops.example.com``)."""
    return origin.strip().rstrip("/").lower()


def check_origin(request: web.Request) -> None:
    """Refuse a WebSocket whose ``Origin`` is neither the server's own nor allowed (module docstring).

    Raises:
        HTTPForbidden: (JSON) a foreign origin, or no origin on a server reached beyond loopback without a
            token.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        if request.app.get(TOKEN_SET) or _arrived_on_loopback(request):
            return
        raise _forbidden("a WebSocket without an Origin header needs the gateway's token")
    norm = normalise_origin(origin)
    allowed = request.app.get(ORIGINS) or frozenset()
    if "*" in allowed or norm in allowed:
        return
    _, sep, netloc = norm.partition("://")
    if sep and netloc == (request.host or "").lower():
        return
    raise _forbidden(f"origin {origin[:200]!r} may not open this WebSocket (same origin only, or add it to "
                     "WebInterface(allowed_origins=...) / EDGEFLOW_ALLOWED_ORIGINS)")


def _arrived_on_loopback(request: web.Request) -> bool:
    from edgeflow.config import is_loopback
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return bool(sockname) and is_loopback(str(sockname[0]))


def _forbidden(message: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(text=dumps({"error": message, "status": 403}), content_type="application/json")


async def _serve_socket(request: web.Request, sender: Callable[[web.WebSocketResponse], Awaitable[None]]):
    """Open a WebSocket, run ``sender`` beside a reader that notices the client closing, then clean up."""
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    task = asyncio.ensure_future(_send_until_done(ws, sender))
    try:
        async for msg in ws:                        # clients have nothing to say; read to see close frames
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():               # we were cancelled ourselves, not just the sender
                raise
        await ws.close()
    return ws


async def _send_until_done(ws: web.WebSocketResponse, sender) -> None:
    try:
        await sender(ws)
    except ConnectionError:
        pass
    if not ws.closed:
        await ws.close(code=1001, message=b"gateway closing")


async def ws_video(request: web.Request) -> web.WebSocketResponse:
    """One topic as WebSocket messages: binary JPEG per image frame, JSON text per data frame."""
    check_origin(request)                           # first: a foreign page learns nothing, not even topics
    hub = request.app[HUB]
    views = request.app[VIEWS]
    topic = find_topic(request)
    variant = parse_variant(request, hub)

    async def sender(ws: web.WebSocketResponse) -> None:
        async def send_data(entry: Entry) -> None:
            await ws.send_str(dumps({"type": "data", **views.topic(topic), "frame_id": entry.frame_id}))

        topic.viewers["ws"] += 1
        try:
            await pump(hub, topic, variant, request, lambda encoded: ws.send_bytes(encoded.jpeg), send_data)
        finally:
            topic.viewers["ws"] -= 1

    return await _serve_socket(request, sender)


async def ws_stats(request: web.Request) -> web.WebSocketResponse:
    """The dashboard's feed: the stats message every ``stats_interval`` seconds."""
    check_origin(request)
    views = request.app[VIEWS]
    hub = request.app[HUB]
    interval = request.app[STATS_INTERVAL]

    async def sender(ws: web.WebSocketResponse) -> None:
        while not hub.closing and not ws.closed:
            await ws.send_str(views.message())
            await asyncio.sleep(interval)

    return await _serve_socket(request, sender)


def add_routes(app: web.Application, skip=frozenset()) -> None:
    """Register the video, snapshot and WebSocket routes (HEAD would start a stream: not offered), except
    those in ``skip`` ((method, path) pairs the user's custom routes took)."""
    for path, handler in (("/video", mjpeg), ("/video/{topic}", mjpeg), ("/snapshot/{topic}", snapshot),
                          ("/ws/video/{topic}", ws_video), ("/ws/stats", ws_stats)):
        add_get(app, path, handler, skip, allow_head=False)


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: tell every open WebSocket the gateway is going away (all at once, one second at most: a
    client that stopped reading must not hold the shutdown)."""
    closing = [asyncio.ensure_future(ws.close(code=1001, message=b"gateway closing")) for ws in app[SOCKETS]]
    if not closing:
        return
    done, pending = await asyncio.wait(closing, timeout=1.0)
    for task in pending:
        task.cancel()
    for task in (*done, *pending):
        try:
            await task
        except (asyncio.CancelledError, ConnectionError):
            pass
