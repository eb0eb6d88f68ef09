"""The stream API's HTTP routes (aiohttp), its OpenAPI description and docs page.

    GET    /api/streams                    every stream (a JSON array)
    POST   /api/streams                    add one (201; activated at once with ``"is_active": true``)
    GET    /api/streams/{id}               one, with its workers' state
    PUT    /api/streams/{id}               change it (live when active: new params without a restart, a new
                                           url with one)
    DELETE /api/streams/{id}               remove it (deactivated first)
    POST   /api/streams/{id}/activate      start its source and workers
    POST   /api/streams/{id}/deactivate    stop them
    GET    /api/openapi.json               the OpenAPI 3.0 description (schema.openapi())
    GET    /api/docs                       a page that shows it (static, no CDN) with a try-it form
    WS     /ws/frames?stream_id=<id>       its live frames and metrics (edgeflow.gateway.streams.frames)

Bodies: JSON objects of at most MAX_BODY bytes (413 beyond, before anything is decoded), ``application/json``
when a Content-Type is given (415 otherwise), checked against schema.py (422 with one line naming the field;
400 when the body is not JSON at all). Unknown ids answer 404. Errors are ``{"error", "status", ...}``.
Every route here is behind the gateway's token when it has one, except the description and the docs page,
which hold no data.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from edgeflow.gateway.routes import STATIC, dumps, json_response
from edgeflow.gateway.streams import schema
from edgeflow.gateway.streams.service import StreamError, StreamService

SERVICE: web.AppKey[StreamService] = web.AppKey("edgeflow_streams", StreamService)
OPEN = frozenset({"/api/openapi.json", "/api/docs"})     # open even with a token: they carry no data
SEED_PARAMS = ("grid_size", "threshold")                  # top-level fields of the seed that are params


def error_response(exc: StreamError) -> web.Response:
    """A StreamError as the API's JSON error."""
    return json_response({"error": str(exc), "status": exc.status, **exc.details}, status=exc.status)


def _invalid(exc: schema.Invalid) -> StreamError:
    return StreamError(422, str(exc), **({"field": exc.field} if exc.field else {}))


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: web.Request) -> Any:
    """The request's JSON body, bounded and decoded (module docstring).

    Raises:
        StreamError: 400 not JSON, 413 too large, 415 not application/json.
    """
    given = request.headers.get("Content-Type")
    if given and not (request.content_type == "application/json" or request.content_type.endswith("+json")):
        raise StreamError(415, f"the body must be application/json, got {given[:60]!r}")
    if request.content_length is not None and request.content_length > schema.MAX_BODY:
        raise StreamError(413, f"the body is {request.content_length} bytes; at most {schema.MAX_BODY}")
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(1 << 16)
        if not chunk:
            break
        size += len(chunk)
        if size > schema.MAX_BODY:
            raise StreamError(413, f"the body is over {schema.MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise StreamError(400, "the body is empty; send a JSON object, e.g. {\"name\": \"cam-1\", "
                               "\"url\": \"rtsp://...\"}")
    try:
        return json.loads(raw.decode("utf-8"), parse_float=_finite, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise StreamError(400, "the body is not UTF-8 text") from None
    except RecursionError:
        raise StreamError(400, "the body is nested too deeply") from None
    except ValueError as exc:
        raise StreamError(400, f"the body is not JSON: {str(exc).splitlines()[0][:120]}") from None


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        kind = "null" if body is None else type(body).__name__
        raise StreamError(422, f"the body must be a JSON object, got {kind}")
    return body


def _fields(body: dict, target: dict) -> dict:
    """The stored fields a checked body gives: ``rtsp_url`` as ``url``, the seed's params into ``params``."""
    out: dict = {}
    if "name" in body:
        out["name"] = body["name"]
    url, rtsp = body.get("url"), body.get("rtsp_url")
    if url is not None and rtsp is not None and url != rtsp:
        raise StreamError(422, "url and rtsp_url differ: give one of them", field="rtsp_url")
    if url is not None or rtsp is not None:
        out["url"] = url if url is not None else rtsp
    seed = {k: body[k] for k in SEED_PARAMS if k in body}
    if "params" in body or seed:
        params = dict(body["params"]) if "params" in body else dict(target.get("params") or {})
        params.update(seed)
        try:
            schema.validate(schema.STREAM_CREATE["properties"]["params"], params, "params")
        except schema.Invalid as exc:
            raise _invalid(exc) from None
        out["params"] = params
    return out


def _stream_id(request: web.Request) -> str:
    return request.match_info["id"]


def _handler(function):
    """A route whose StreamErrors become JSON error responses."""
    @functools.wraps(function)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await function(request, request.app[SERVICE])
        except StreamError as exc:
            return error_response(exc)
    return wrapper


@_handler
async def list_streams(request: web.Request, service: StreamService) -> web.Response:
    """``GET /api/streams``."""
    return json_response(await service.list())


@_handler
async def create_stream(request: web.Request, service: StreamService) -> web.Response:
    """``POST /api/streams``."""
    body = _object(await read_body(request))
    try:
        schema.validate(schema.STREAM_CREATE, body)
    except schema.Invalid as exc:
        raise _invalid(exc) from None
    fields = _fields(body, {})
    view = await service.create(fields["name"], fields["url"], fields.get("params", {}),
                                bool(body.get("is_active", False)))
    return json_response(view, status=201, headers={"Location": f"/api/streams/{view['id']}"})


@_handler
async def get_stream(request: web.Request, service: StreamService) -> web.Response:
    """``GET /api/streams/{id}``."""
    return json_response(await service.get(_stream_id(request)))


@_handler
async def update_stream(request: web.Request, service: StreamService) -> web.Response:
    """``PUT /api/streams/{id}``: the fields given replace the stored ones."""
    stream_id = _stream_id(request)
    record = await service.record(stream_id)           # 404 before the body is judged
    body = _object(await read_body(request))
    try:
        schema.validate(schema.STREAM_UPDATE, body)
    except schema.Invalid as exc:
        raise _invalid(exc) from None
    changes = _fields(body, {"params": record.params})
    if "is_active" in body:
        changes["is_active"] = bool(body["is_active"])
    return json_response(await service.update(stream_id, changes))


@_handler
async def delete_stream(request: web.Request, service: StreamService) -> web.Response:
    """``DELETE /api/streams/{id}``."""
    stream_id = _stream_id(request)
    await service.delete(stream_id)
    return json_response({"id": stream_id, "deleted": True})


@_handler
async def activate_stream(request: web.Request, service: StreamService) -> web.Response:
    """``POST /api/streams/{id}/activate``."""
    return json_response(await service.activate(_stream_id(request)))


@_handler
async def deactivate_stream(request: web.Request, service: StreamService) -> web.Response:
    """``POST /api/streams/{id}/deactivate``."""
    return json_response(await service.deactivate(_stream_id(request)))


@functools.lru_cache(maxsize=1)
def _description() -> bytes:
    from edgeflow import __version__
    return dumps(schema.openapi(__version__)).encode()


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /api/openapi.json``."""
    return web.Response(body=_description(), content_type="application/json",
                        headers={"Cache-Control": "no-cache"})


@functools.lru_cache(maxsize=1)
def _docs_page() -> bytes:
    return (STATIC / "apidocs.html").read_bytes()


async def docs_page(request: web.Request) -> web.Response:
    """``GET /api/docs``: the description rendered by a static page (apidocs.js), no CDN."""
    return web.Response(body=_docs_page(), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


ROUTES = (("GET", "/api/streams", list_streams), ("POST", "/api/streams", create_stream),
          ("GET", "/api/streams/{id}", get_stream), ("PUT", "/api/streams/{id}", update_stream),
          ("DELETE", "/api/streams/{id}", delete_stream),
          ("POST", "/api/streams/{id}/activate", activate_stream),
          ("POST", "/api/streams/{id}/deactivate", deactivate_stream),
          ("GET", "/api/openapi.json", openapi_json), ("GET", "/api/docs", docs_page))


def add_routes(app: web.Application, skip=frozenset()) -> None:
    """Register the stream routes and the WebSocket ``/ws/frames`` on ``app`` (``app[SERVICE]`` must be set),
    except those in ``skip`` ((method, path) pairs the user's custom routes took)."""
    from edgeflow.gateway.streams import frames
    for method, path, handler in ROUTES:
        if (method, path) in skip:
            continue
        if method == "GET":
            app.router.add_get(path, handler, allow_head=("HEAD", path) not in skip)
        else:
            app.router.add_route(method, path, handler)
    if ("GET", "/ws/frames") not in skip:
        app.router.add_get("/ws/frames", frames.ws_frames, allow_head=False)
