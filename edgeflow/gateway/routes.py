"""REST, health, metrics and dashboard routes of the gateway's web server.

    GET /                 302 to /dashboard (query string kept, so ?token= survives)
    GET /dashboard        the dashboard page (static; it fetches everything else with the page's token)
    GET /static/{name}    the dashboard's script and stylesheet
    GET /health           {"status": "ok"} (the seed's route; open, as /healthz and /readyz)
    GET /healthz          liveness; /readyz: 200 once the gateway's inputs are attached and connectors are up
    GET /api/status       app, node, ready, uptime, topics, viewers, streams (template, total, active)
    GET /api/fps          {"topics": {topic: fps}, "nodes": {node: fps}}
    GET /api/graph        {"nodes": [...], "edges": [...]}: the graph with live figures
    GET /api/topics       every topic (auto-discovered, plus those the graph announces) with its newest frame
    GET /api/topics/{t}   one topic; ``value`` holds the data of a non-image payload (a dict message: the
                          newest message), ``history`` a dict-message topic's numeric fields over its last
                          messages (``?since=N``: the points after number N; ``?points=N``: the newest N)
    GET /api/lineage/{topic}/{frame_id}   the frame's lineage tree, read from the rings (gateway/lineage.py)
    GET /metrics          Prometheus text (see metrics.py), plus the gateway's own guard figures (GuardCollector:
                          malformed HTTP requests, and the TCP ingest's connections, frames and rejections)
    POST /api/nodes/{name}/reload   a model node loads its model afresh (edgeflow.models): body
                          ``{"version": "1.3"}`` optional, ``?timeout=`` seconds (30); 200 with each replica's
                          answer, 422 when the new version failed (the old one runs on), 404 unknown node, 400
                          a node that takes no control messages, 504 no answer in time, 501 in a --node run

The stream API (/api/streams..., /api/openapi.json, /api/docs, /ws/frames) is in edgeflow.gateway.streams.

Every response is JSON except the page, the health texts and the metrics. Handlers read the runtime through
the object the runtime passed in; a runtime call that raises is logged once and answered from empty figures,
never with a crash.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import mimetypes
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from edgeflow.gateway import metrics
from edgeflow.gateway.hub import Hub, Topic, jsonable

log = logging.getLogger("edgeflow.gateway")

HUB: web.AppKey[Hub] = web.AppKey("edgeflow_hub", Hub)
RUNTIME: web.AppKey[Any] = web.AppKey("edgeflow_runtime", object)
INTERFACE: web.AppKey[Any] = web.AppKey("edgeflow_interface", object)
VIEWS: web.AppKey["Views"] = web.AppKey("edgeflow_views", object)
TOKEN_SET: web.AppKey[bool] = web.AppKey("edgeflow_token_set", bool)          # a token protects this server
ORIGINS: web.AppKey[frozenset] = web.AppKey("edgeflow_allowed_origins", frozenset)   # WebSocket origins
BAD_REQUESTS: web.AppKey[Any] = web.AppKey("edgeflow_bad_requests", object)   # app.BadRequests

STATIC = Path(__file__).parent / "static"
# served by name: no path reaches the filesystem
STATIC_FILES = ("dashboard.js", "plot.js", "streams.js", "lineage.js", "dashboard.css", "apidocs.js", "apidocs.css")
MAX_TOPIC = 200                                        # characters; longer names are not topics


def dumps(value: Any) -> str:
    """JSON for responses: NaN and odd objects made safe (a browser's JSON.parse rejects NaN)."""
    return json.dumps(jsonable(value), separators=(",", ":"))


def json_response(value: Any, status: int = 200, **kwargs: Any) -> web.Response:
    """A JSON response written with ``dumps`` (NaN-safe)."""
    return web.json_response(value, status=status, dumps=dumps, **kwargs)


def json_error(status: int, message: str, **details: Any) -> web.HTTPException:
    """An HTTPException with a JSON body ``{"error", "status", ...}`` (raise it)."""
    cls = _ERRORS.get(status, web.HTTPInternalServerError)
    return cls(text=dumps({"error": message, "status": cls.status_code, **details}),
               content_type="application/json")


_ERRORS = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound,
           415: web.HTTPUnsupportedMediaType, 503: web.HTTPServiceUnavailable}


class Views:
    """What the routes, the metrics and the stats socket show, computed from the runtime and the hub.

    The stats message is built at most once per ``period`` however many dashboards are open.
    """

    def __init__(self, runtime: Any, hub: Hub, period: float = 0.25, bad_requests: Any = None,
                 streams: Any = None) -> None:
        self.runtime = runtime
        self.hub = hub
        self.period = period
        self.bad_requests = bad_requests              # app.BadRequests (``.count``), or None
        self.streams = streams                        # streams.service.StreamService, or None
        self.registry = metrics.registry_for(self, hub)
        self.registry.register(GuardCollector(self))
        if streams is not None:
            self.registry.register(metrics.StreamsCollector(streams))
        self._edge_history: dict[str, collections.deque] = {}
        self._message: tuple[float, str] = (0.0, "")
        self._failed: set[str] = set()
        self._expected_from: dict | None = None

    # -- the runtime, defensively ----------------------------------------------------------------------------
    def _call(self, name: str, default: Any) -> Any:
        try:
            value = getattr(self.runtime, name)()
        except Exception as exc:            # a runtime hiccup must not take the web server down: log once
            if name not in self._failed:
                self._failed.add(name)
                log.error("gateway: runtime.%s() failed: %s: %s", name, type(exc).__name__, exc)
            return default
        return default if value is None else value

    def statistics(self) -> dict:
        """The runtime's statistics snapshot (empty when the call fails)."""
        return self._call("statistics", {"nodes": {}, "edges": []})

    def graph_dict(self) -> dict:
        """The runtime's graph dict (empty when the call fails)."""
        return self._call("graph", {"nodes": [], "edges": []})

    def ready(self) -> bool:
        """The runtime's readiness (False when the call fails)."""
        return bool(self._call("ready", False))

    def connections_down(self) -> list[str]:
        """``node: target state (error)`` for every connector connection that is not up (empty: all up).

        A stream's nodes do not count: one camera lost out of a fleet must not take the platform (and its stream
        API) out of service; each stream's state is in /api/streams and /metrics."""
        out = []
        for name, node in sorted((self.statistics().get("nodes") or {}).items()):
            if node.get("stream_id"):
                continue
            if node.get("connections_pending"):
                out.append(f"node '{name}': starting (its connection state has not arrived yet)")
            for target, conn in sorted(((node.get("extra") or {}).get("connections") or {}).items()):
                if conn.get("state") != "up":
                    why = f" ({conn['error']})" if conn.get("error") else ""
                    out.append(f"node '{name}': {target} {conn.get('state')}{why}")
        return out

    def _expect(self) -> None:
        """Announce the topics the graph says this gateway receives (input labels: ``source[.channel]``), so
        pages list them and viewers can wait for them before the first frame. The graph may come late."""
        graph = self.graph_dict()
        if graph is self._expected_from:
            return
        self._expected_from = graph
        node = self.runtime.node
        self.hub.expect(e["source"] if not e.get("channel") else f"{e['source']}.{e['channel']}"
                        for e in graph.get("edges") or () if e.get("target") == node and e.get("source"))

    # -- payloads --------------------------------------------------------------------------------------------
    def topics(self) -> list[Topic]:
        """Topics in display order: those the graph announces first, then the others, by name."""
        self._expect()
        ordered = sorted(self.hub.topics.values(), key=lambda t: (not t.expected, t.name))
        return [t for t in ordered if t.expected or t.latest is not None]

    def status(self) -> dict:
        """The /api/status payload."""
        topics = self.topics()
        return {"status": "ok", "app": self.runtime.app, "node": self.runtime.node, "ready": self.ready(),
                "uptime_s": round(time.time() - self.hub.started, 3), "time": time.time(),
                "topics": [t.name for t in topics],
                "viewers": sum(sum(t.viewers.values()) for t in topics),
                "buffer_delay_s": self.hub.buffer_delay, "queue_size": self.hub.queue_size,
                "bad_requests": self.bad_requests.count if self.bad_requests is not None else 0,
                "tcp_ingest": self.tcp_ingest(), "streams": self.streams_status()}

    def streams_status(self) -> dict | None:
        """The stream API at a glance: the app's template (None: it declares none), streams stored, active."""
        if self.streams is None:
            return None
        total, active = self.streams.counts
        return {"template": self.streams.template(), "total": total, "active": active}

    def tcp_ingest(self) -> dict | None:
        """The gateway's TCP ingest figures (listening address, token, connections, frames, rejections per
        reason) as the router reports them in this node's statistics; None when it has no TCP ingest (an
        all-in-one run)."""
        node = (self.statistics().get("nodes") or {}).get(self.runtime.node) or {}
        found = (node.get("extra") or {}).get("tcp_ingest")
        return found if isinstance(found, dict) else None

    def fps(self) -> dict:
        """The /api/fps payload."""
        stats = self.statistics()
        return {"topics": {t.name: round(t.fps(), 2) for t in self.topics()},
                "nodes": {name: s.get("fps", 0.0) for name, s in (stats.get("nodes") or {}).items()}}

    def graph(self) -> dict:
        """The graph's nodes and edges, each with its live figures."""
        stats, graph = self.statistics(), self.graph_dict()
        live = stats.get("nodes") or {}
        nodes, seen = [], set()
        for spec in graph.get("nodes") or ():
            seen.add(spec.get("name"))
            nodes.append(_live_node(spec, live.get(spec.get("name"), {})))
        nodes.extend(_live_node({"name": name}, s) for name, s in live.items() if name not in seen)
        edges = metrics.merge_edges(stats, graph)
        now = time.monotonic()
        for edge in edges:
            edge["edge"] = metrics.edge_label(edge)
            edge["fps"] = self._edge_rate(edge["edge"], edge.get("frames") or 0, now)
        return {"app": stats.get("app", self.runtime.app), "nodes": nodes, "edges": edges}

    def _edge_rate(self, label: str, frames: int, now: float) -> float:
        """Frames per second over the link, from the counts seen in the last few seconds."""
        history = self._edge_history.setdefault(label, collections.deque(maxlen=64))
        if not history or history[-1][1] != frames or now - history[-1][0] > 0.5:
            history.append((now, frames))
        while len(history) > 2 and now - history[1][0] >= 1.0:
            history.popleft()                # keep one sample at least a second old
        (t0, f0), (t1, f1) = history[0], history[-1]
        return round((f1 - f0) / (now - t0), 2) if now - t0 >= 0.5 and f1 >= f0 else 0.0

    def topic(self, topic: Topic, history: tuple[int, int | None] | None = None) -> dict:
        """One topic as the API shows it (with ``value`` for data, and its stream URLs); ``history`` =
        (since, points) adds a dict-message topic's numeric fields (gateway/fields.py) as ``history``."""
        out = self.hub.describe(topic, value=True)
        out.update(video=f"/video/{topic.name}", ws=f"/ws/video/{topic.name}")
        if history is not None and topic.fields is not None:
            out["history"] = topic.fields.columns(*history)
        return out

    def message(self) -> str:
        """The /ws/stats message: status, graph with live figures, topics (cached for ``period``)."""
        now = time.monotonic()
        if now - self._message[0] >= self.period:
            payload = {"type": "stats", **self.status(), **self.graph(),
                       "topics": [self.topic(t) for t in self.topics()]}
            self._message = (now, dumps(payload))
        return self._message[1]


def _live_node(spec: dict, s: dict) -> dict:
    out = dict(spec)
    out["target_fps"] = out.pop("fps", None)
    for key in ("frames_in", "frames_out", "errors", "restarts"):
        out[key] = s.get(key, 0)
    out.update(fps=s.get("fps", 0.0), drops=s.get("drops", {}), edge_drops=s.get("edge_drops", {}),
               processing_ms=s.get("processing_ms", {}), latency_ms=s.get("latency_ms", {}),
               states=s.get("states", []), extra=s.get("extra", {}))
    return out


def find_topic(request: web.Request, name: str | None = None) -> Topic:
    """The topic a request names (path ``{topic}``, else ``?topic=``, else the first one).

    Raises:
        HTTPNotFound: (JSON) no such topic, with the list of known ones.
    """
    views = request.app[VIEWS]
    name = name if name is not None else request.match_info.get("topic") or request.query.get("topic")
    topics = views.topics()
    if name is None:
        if not topics:
            raise json_error(404, "no topics yet")
        return topics[0]
    topic = views.hub.topic(name) if len(name) <= MAX_TOPIC else None
    if topic is None or (topic.latest is None and not topic.expected):
        raise json_error(404, "unknown topic", topic=name[:MAX_TOPIC], topics=[t.name for t in topics])
    return topic


# -- handlers -----------------------------------------------------------------------------------------------
async def index(request: web.Request) -> web.StreamResponse:
    """``/``: redirect to the dashboard."""
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPFound(f"/dashboard{query}")


@functools.lru_cache(maxsize=None)
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


async def dashboard(request: web.Request) -> web.Response:
    """``/dashboard``: the page (static; its script fetches the rest)."""
    return web.Response(body=_static("dashboard.html"), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.Response:
    """``/static/{name}``: the dashboard's script and stylesheet, by name."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise json_error(404, "no such file")
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return web.Response(body=_static(name), content_type=kind, charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def health(request: web.Request) -> web.Response:
    """``/health``: ``{"status": "ok"}``, the seed's route."""
    return json_response({"status": "ok"})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answering at all means the event loop runs."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 once the gateway's inputs are attached and every connector's connection (MQTT broker,
    database, ...) is up; 503 with the reasons, one per line, before."""
    views = request.app[VIEWS]
    if not views.ready():
        return web.Response(status=503, text="not ready: inputs not attached yet\n")
    down = views.connections_down()
    if down:
        return web.Response(status=503, text="".join(f"not ready: {line}\n" for line in down))
    return web.Response(text="ready\n")


async def status(request: web.Request) -> web.Response:
    """``/api/status``."""
    return json_response(request.app[VIEWS].status())


async def fps(request: web.Request) -> web.Response:
    """``/api/fps``."""
    return json_response(request.app[VIEWS].fps())


async def graph(request: web.Request) -> web.Response:
    """``/api/graph``: nodes and edges with live figures."""
    return json_response(request.app[VIEWS].graph())


async def topics(request: web.Request) -> web.Response:
    """``/api/topics``."""
    views = request.app[VIEWS]
    return json_response({"topics": [views.topic(t) for t in views.topics()]})


async def topic(request: web.Request) -> web.Response:
    """``/api/topics/{topic}``, with ``value`` for a non-image payload and ``history`` for a dict-message
    topic (``?since=``, ``?points=``)."""
    since, points = _count(request, "since", 0), _count(request, "points", None)
    return json_response(request.app[VIEWS].topic(find_topic(request), history=(since, points)))


def _count(request: web.Request, name: str, default: int | None) -> int | None:
    """A query parameter that is a whole number >= 0 (400 otherwise)."""
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 18:
        raise json_error(400, f"{name} must be a whole number >= 0", parameter=name)
    return int(text)


async def prometheus(request: web.Request) -> web.Response:
    """``/metrics``: Prometheus text."""
    body = metrics.render(request.app[VIEWS].registry)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


class GuardCollector:
    """The gateway's guard figures for /metrics, read at scrape time (kept apart from gateway/metrics.py, which
    exports the pipeline's statistics):

        edgeflow_gateway_bad_requests_total              malformed HTTP requests (answered 400 or dropped)
        edgeflow_gateway_tcp_connections                 TCP ingest connections open now
        edgeflow_gateway_tcp_frames_total                frames the TCP ingest delivered
        edgeflow_gateway_tcp_authenticated_total         connections that passed the hello (token checked)
        edgeflow_gateway_tcp_rejected_total{reason}      connections the TCP ingest rejected, per reason
                                                         (``unauthenticated``: a missing or wrong MAC)

    The TCP series are there only when the gateway has a TCP ingest (``--node`` runs with a broker).
    """

    def __init__(self, views: Views) -> None:
        self.views = views

    def collect(self):
        """Every guard family, read now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        bad = CounterMetricFamily("edgeflow_gateway_bad_requests",
                                  "Malformed HTTP requests the gateway's web server refused.")
        counter = self.views.bad_requests
        bad.add_metric([], float(counter.count if counter is not None else 0))
        yield bad
        tcp = self.views.tcp_ingest()
        if tcp is None:
            return
        conns = GaugeMetricFamily("edgeflow_gateway_tcp_connections", "TCP ingest connections open now.")
        conns.add_metric([], float(tcp.get("connections") or 0))
        frames = CounterMetricFamily("edgeflow_gateway_tcp_frames", "Frames the TCP ingest delivered.")
        frames.add_metric([], float(tcp.get("frames") or 0))
        auth = CounterMetricFamily("edgeflow_gateway_tcp_authenticated",
                                   "TCP ingest connections that passed the hello.")
        auth.add_metric([], float(tcp.get("authenticated") or 0))
        rejected = CounterMetricFamily("edgeflow_gateway_tcp_rejected",
                                       "TCP ingest connections rejected, per reason.", labels=["reason"])
        for reason, n in sorted((tcp.get("rejected") or {}).items()):
            rejected.add_metric([str(reason)], float(n))
        yield from (conns, frames, auth, rejected)


RELOAD_TIMEOUT = 30.0          # seconds the reload route waits for every replica's answer, unless ?timeout=


async def reload_node(request: web.Request) -> web.Response:
    """``POST /api/nodes/{name}/reload``: a control message to every replica of the node (through the
    supervisor; see edgeflow.runtime.control), answered once all replicas answered."""
    name = request.match_info["name"]
    body: Any = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            raise json_error(400, "the body must be JSON, e.g. {\"version\": \"1.3\"}") from None
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(body, dict) or (version is not None and (isinstance(version, bool)
                                                               or not isinstance(version, (str, int, float)))):
        raise json_error(400, "the body must be a JSON object; \"version\" a string")
    try:
        timeout = float(request.query.get("timeout", RELOAD_TIMEOUT))
    except ValueError:
        raise json_error(400, "timeout must be a number of seconds", parameter="timeout") from None
    if not 0 < timeout <= 600:
        raise json_error(400, "timeout must be 0-600 seconds", parameter="timeout")
    names = [n.get("name") for n in request.app[VIEWS].graph_dict().get("nodes") or ()]
    if names and name not in names:
        raise json_error(404, f"unknown node '{name}'", node=name)
    control = getattr(request.app[RUNTIME], "control", None)
    message = {"action": "reload", **({"version": str(version)} if version is not None else {})}
    try:
        if control is None:
            raise NotImplementedError("this runtime relays no control messages")
        future = control(name, message)
    except NotImplementedError as exc:
        return json_response({"error": str(exc), "status": 501, "node": name}, status=501)
    try:
        answer = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except asyncio.TimeoutError:
        return json_response({"error": f"node '{name}' did not answer within {timeout:g} s", "status": 504,
                              "node": name}, status=504)
    if answer.get("error"):
        status = int(answer.get("status") or 500)
        return json_response({"error": answer["error"], "status": status, "node": name}, status=status)
    results = answer.get("results") or []
    failed = [r for r in results if not r.get("ok")]
    status = max(int(r.get("status") or 500) for r in failed) if failed else 200
    out = {"node": name, "action": "reload", "ok": not failed, "replicas": results}
    if failed:
        out.update(error=failed[0].get("error"), status=status)
    return json_response(out, status=status)


def add_get(app: web.Application, path: str, handler, skip=frozenset(), **kwargs) -> None:
    """``app.router.add_get`` unless the user's own route took ``GET path`` (then theirs is served)."""
    if ("GET", path) in skip:
        log.info("gateway: the custom route GET %s replaces the built-in one", path)
        return
    if ("HEAD", path) in skip:
        kwargs["allow_head"] = False
    app.router.add_get(path, handler, **kwargs)


def add_routes(app: web.Application, skip=frozenset()) -> None:
    """Register the REST, health, metrics and dashboard routes on ``app``, except those in ``skip``
    ((method, path) pairs the user's custom routes took)."""
    for path, handler in (("/", index), ("/dashboard", dashboard), ("/static/{name}", static),
                          ("/health", health), ("/healthz", healthz), ("/readyz", readyz),
                          ("/api/status", status), ("/api/fps", fps), ("/api/graph", graph),
                          ("/api/topics", topics), ("/api/topics/{topic}", topic), ("/metrics", prometheus)):
        add_get(app, path, handler, skip)
    from edgeflow.gateway import lineage          # it imports this module: imported here, not at the top
    lineage.add_routes(app, skip)
    if ("POST", "/api/nodes/{name}/reload") not in skip:
        app.router.add_post("/api/nodes/{name}/reload", reload_node)     # behind the token (not an open path)
