"""The gateway's web server: the aiohttp Application factory and the Server the runtime starts by name.

The runtime, in the gateway node's process, does for each interface that names a server::

    server = edgeflow.gateway.app.serve(interface, runtime)   # binds, serves from its own thread
    server.on_frame(frame)                                     # per input frame, from the node's loop thread
    server.close()                                             # at teardown

``runtime`` offers ``.app``, ``.node``, ``.statistics()``, ``.graph()`` and ``.ready()``; ``StaticRuntime``
below is a stand-in for tests, benchmarks and embedding. ``make_app`` builds the same Application without any
thread, for aiohttp's test client.

Play-out buffer: ``WebInterface(buffer_delay=0.5, queue_size=60)`` shows each topic's frames half a second
late, paced by their capture timestamps (see edgeflow.gateway.hub); ``buffer_delay=0`` (the default) shows the
newest at once. /api/topics shows each topic's ``buffer`` (depth, late, late_drops, overflow_drops,
reanchors).

WebInterface options (``WebInterface(port=..., jpeg_quality=70)``):
    jpeg_quality    default JPEG quality, 1-100 (80)
    encoders        JPEG encoder threads (2)
    stats_interval  seconds between /ws/stats messages (0.5)
    access_log      log every request (False: the log would repeat ?token= and grow with every frame poll)

The token (``WebInterface(token=...)``, else $EDGEFLOW_GATEWAY_TOKEN) protects the API, the metrics, the
streams and custom routes: ``Authorization: Bearer <token>`` or ``?token=<token>``. /healthz, /readyz and
/health stay open for probes, and so do the dashboard's page and static files and the stream API's
description (/api/openapi.json, /api/docs), which carry no data (the pages pass their own ``?token=`` on to
everything they fetch).

The stream API (``/api/streams``, ``/ws/frames``: edgeflow.gateway.streams, docs/streams.md) keeps its streams
in a store of its own, opened on first use (or at start, to activate again the streams stored active).

Closed by default (docs/security.md): the server binds 127.0.0.1 unless ``WebInterface(host=...)`` or
$EDGEFLOW_BIND says otherwise, and refuses to start (ConfigError) when bound beyond loopback without a token.
It logs one line saying where it listens and whether a token protects it. WebSockets check ``Origin`` (see
edgeflow.gateway.stream). Malformed HTTP requests (garbage on the port, oversized lines) are counted
(``/metrics``: ``edgeflow_gateway_bad_requests_total``; ``/api/status``: ``bad_requests``) and logged at most
once per BAD_REQUEST_LOG_INTERVAL seconds, never one traceback each.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import inspect
import logging
import re
import threading
import time
import warnings
import weakref
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from edgeflow.config import is_loopback, require_token, settings
from edgeflow.errors import ConfigError
from edgeflow.gateway import routes, stream
from edgeflow.gateway.hub import Hub
from edgeflow.gateway.routes import (BAD_REQUESTS, HUB, INTERFACE, ORIGINS, RUNTIME, TOKEN_SET, VIEWS, Views,
                                     dumps, json_error, json_response)
from edgeflow.gateway.streams import api as streams_api
from edgeflow.gateway.streams.service import StreamService

log = logging.getLogger("edgeflow.gateway")

OPTIONS = {"jpeg_quality": 80, "encoders": 2, "stats_interval": 0.5, "access_log": False}
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/health", "/", "/dashboard", "/favicon.ico",
                        *streams_api.OPEN})
STARTUP_TIMEOUT = 10.0        # seconds to bind and start serving
SHUTDOWN_GRACE = 1.0          # seconds open requests get to finish at close (streams end at once anyway)
BAD_REQUEST_LOG_INTERVAL = 10.0   # seconds between log lines about malformed HTTP requests (a flood: a few lines)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",            # a topic name echoed in JSON is never sniffed as HTML
    "Referrer-Policy": "no-referrer",               # URLs may carry ?token=
    "X-Frame-Options": "DENY",
    # the page runs only its own script: even if some text slipped into the DOM as markup it could not run
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                               "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
}


class StaticRuntime:
    """A stand-in for the runtime object: fixed (or test-mutated) statistics, graph and readiness.

    Args:
        app, node: the app's and the gateway node's names.
        stats: the statistics snapshot to serve (``{"nodes": {}, "edges": []}`` when omitted).
        graph: the graph dict to serve.
        ready: what ``ready()`` returns.

    Example:
        >>> rt = StaticRuntime("demo", graph={"nodes": [], "edges": []})
        >>> rt.ready()
        True
    """

    def __init__(self, app: str = "app", node: str = "gateway", *, stats: dict | None = None,
                 graph: dict | None = None, ready: bool = True) -> None:
        self.app = app
        self.node = node
        self.stats = stats if stats is not None else {"app": app, "nodes": {}, "edges": []}
        self.graph_dict = graph if graph is not None else {"nodes": [], "edges": []}
        self.is_ready = ready

    def statistics(self) -> dict:
        """The statistics snapshot."""
        return self.stats

    def graph(self) -> dict:
        """The graph dict."""
        return self.graph_dict

    def ready(self) -> bool:
        """Whether the gateway's inputs are attached."""
        return self.is_ready


def options_of(interface: Any) -> dict:
    """The interface's options merged over OPTIONS.

    Raises:
        ConfigError: an unknown option, or a value of the wrong kind.
    """
    given = dict(getattr(interface, "options", None) or {})
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"gateway: unknown WebInterface option {unknown[0]!r} "
                          f"(known: {', '.join(OPTIONS)})")
    out = {**OPTIONS, **given}
    if not (isinstance(out["jpeg_quality"], int) and 1 <= out["jpeg_quality"] <= 100):
        raise ConfigError(f"gateway: jpeg_quality={out['jpeg_quality']!r}: must be an integer 1-100")
    if not (isinstance(out["encoders"], int) and out["encoders"] >= 1):
        raise ConfigError(f"gateway: encoders={out['encoders']!r}: must be an integer >= 1")
    if not (isinstance(out["stats_interval"], (int, float)) and 0.05 <= out["stats_interval"] <= 60):
        raise ConfigError(f"gateway: stats_interval={out['stats_interval']!r}: must be 0.05-60 seconds")
    return out


MAX_BUFFER_DELAY = 30.0       # seconds; a longer play-out delay is a mistake, not a wish


def playout_of(interface: Any) -> tuple[float, int]:
    """(buffer_delay, queue_size) of the interface, checked.

    Raises:
        ConfigError: buffer_delay not a number 0-30 s, or queue_size not an integer >= 1.
    """
    delay = getattr(interface, "buffer_delay", 0.0)
    size = getattr(interface, "queue_size", 60)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_BUFFER_DELAY:
        raise ConfigError(f"gateway: buffer_delay={delay!r}: must be 0-{MAX_BUFFER_DELAY:g} seconds")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"gateway: queue_size={size!r}: must be an integer >= 1")
    return float(delay), size


def new_hub(interface: Any) -> Hub:
    """The Hub the interface's options describe (JPEG quality, encoders, play-out buffer)."""
    options = options_of(interface)
    delay, size = playout_of(interface)
    return Hub(quality=options["jpeg_quality"], encoders=options["encoders"], buffer_delay=delay,
               queue_size=size)


def make_app(interface: Any, runtime: Any, hub: Hub | None = None) -> web.Application:
    """The gateway's aiohttp Application: every route, the token check, JSON errors, security headers.

    Args:
        interface: the WebInterface (token, options, custom routes).
        runtime: the runtime object (see the module docstring), e.g. a StaticRuntime.
        hub: the Hub frames are published to (a new one when omitted: ``app[routes.HUB]``).

    Raises:
        ConfigError: a bad option, or a bad custom route (a custom route with the method and path of a
            built-in one replaces it).

    Example:
        >>> app = make_app(WebInterface(port=0), StaticRuntime())   # doctest: +SKIP
        >>> async with TestClient(TestServer(app)) as client: ...
    """
    options = options_of(interface)
    hub = hub if hub is not None else new_hub(interface)
    token = token_of(interface)
    app = web.Application(middlewares=[_errors, _auth(token)], client_max_size=1 << 20)
    app[HUB], app[RUNTIME], app[INTERFACE] = hub, runtime, interface
    app[TOKEN_SET] = token is not None
    app[ORIGINS] = origins_of(interface)
    app[BAD_REQUESTS] = BadRequests(str(getattr(runtime, "node", "gateway")))
    app[streams_api.SERVICE] = service = StreamService(runtime, hub)
    app[VIEWS] = Views(runtime, hub, bad_requests=app[BAD_REQUESTS], streams=service)
    app[stream.SOCKETS] = weakref.WeakSet()
    app[stream.STATS_INTERVAL] = float(options["stats_interval"])
    custom = _add_custom_routes(app, getattr(interface, "routes", ()))
    routes.add_routes(app, skip=custom)
    stream.add_routes(app, skip=custom)
    streams_api.add_routes(app, skip=custom)
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    app.on_response_prepare.append(_security_headers)
    return app


def token_of(interface: Any) -> str | None:
    """The web server's token: ``WebInterface(token=...)``, else $EDGEFLOW_GATEWAY_TOKEN, else None."""
    return getattr(interface, "token", None) or settings.EDGEFLOW_GATEWAY_TOKEN


def origins_of(interface: Any) -> frozenset:
    """The origins allowed to open WebSockets besides the server's own: ``WebInterface(allowed_origins=)``,
    else $EDGEFLOW_ALLOWED_ORIGINS; normalised (lowercase, no trailing slash) as browsers send them.

    Raises:
        ConfigError: an entry that is not ``scheme://host[:port]`` (nor ``*``).
    """
    given = getattr(interface, "allowed_origins", None)
    raw = settings.EDGEFLOW_ALLOWED_ORIGINS if given is None else tuple(given)
    out = set()
    for origin in raw:
        norm = stream.normalise_origin(str(origin))
        if norm != "*" and not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+", norm):
            raise ConfigError(f"gateway: allowed origin {origin!r}: expected scheme://host[:port], "
                              "e.g. https://ops.example.com")
        out.add(norm)
    return frozenset(out)


class BadRequests:
    """Malformed HTTP requests the server answered 400 (or dropped): counted, and logged at most once per
    ``interval`` seconds with the count, instead of aiohttp's one traceback per request.

    ``logger`` goes to aiohttp's RequestHandler (``AppRunner(logger=...)``): it takes the records about
    malformed requests and passes every other record on to ``aiohttp.server`` unchanged.
    """

    def __init__(self, node: str, interval: float = BAD_REQUEST_LOG_INTERVAL) -> None:
        self.node = node
        self.interval = interval
        self.count = 0
        self._unreported = 0
        self._last_log = -float("inf")
        self._last = ""
        self._timer: asyncio.TimerHandle | None = None
        self.logger = _BadRequestFilter(self)

    def note(self, exc: BaseException, peer: Any) -> None:
        """Count one malformed request (server loop); log now if the last line is ``interval`` old."""
        self.count += 1
        self._last = f"{type(exc).__name__} from {peer or '?'}"
        now = time.monotonic()
        if now - self._last_log >= self.interval:
            self._last_log = now
            log.warning("gateway %s: malformed HTTP request (%s: %s); further ones are counted "
                        "(edgeflow_gateway_bad_requests_total) and reported every %g s", self.node,
                        self._last, str(getattr(exc, "message", "") or exc).splitlines()[0][:120],
                        self.interval)
            return
        self._unreported += 1
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return                                  # reported with the next one instead
            self._timer = loop.call_later(max(0.0, self._last_log + self.interval - now), self.flush)

    def flush(self) -> None:
        """Log the requests counted since the last line (one line), if any."""
        self._timer = None
        if self._unreported:
            log.warning("gateway %s: %d more malformed HTTP requests in the last %g s (%d in all; last: %s)",
                        self.node, self._unreported, self.interval, self.count, self._last)
            self._unreported = 0
            self._last_log = time.monotonic()

    def cancel(self) -> None:
        """Stop the pending report (the server is closing) after logging what it would have said."""
        if self._timer is not None:
            self._timer.cancel()
        self.flush()


class _BadRequestFilter(logging.LoggerAdapter):
    """aiohttp.server's logger with malformed-request records taken out (counted by BadRequests)."""

    def __init__(self, counter: BadRequests) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.counter = counter

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if exc is True:
            import sys
            exc = sys.exc_info()[1]
        elif isinstance(exc, tuple):
            exc = exc[1]
        if isinstance(exc, HttpProcessingError):
            peer = args[0] if args else None            # aiohttp: "Error handling request from %s", remote
            self.counter.note(exc, peer)
            return
        super().log(level, msg, *args, **kwargs)


async def _startup(app: web.Application) -> None:
    app[HUB].attach(asyncio.get_running_loop())
    app[streams_api.SERVICE].start()          # streams stored active are activated again, in the background


async def _shutdown(app: web.Application) -> None:
    app[HUB].stop_waiting()                # every viewer loop ends now, not when the grace time runs out
    await stream.close_sockets(app)


async def _cleanup(app: web.Application) -> None:
    await app[streams_api.SERVICE].close()    # the store; the streams run on (the app decides)
    app[HUB].close()


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error as JSON; an unexpected exception is logged (once per route) and answered 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        return json_response({"error": exc.reason.lower(), "status": exc.status}, status=exc.status,
                             headers=headers)
    except (asyncio.CancelledError, ConnectionError):
        raise                                       # the client went away: nothing to answer
    except Exception as exc:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
        if route not in _failed_routes:
            _failed_routes.add(route)
            log.exception("gateway: %s %s failed", request.method, route)
        return json_response({"error": f"internal error: {type(exc).__name__}", "status": 500}, status=500)


_failed_routes: set = set()


def _auth(token: str | None):
    """The token check (a no-op without a token)."""
    expected = token.encode() if token else None

    @web.middleware
    async def auth(request: web.Request, handler) -> web.StreamResponse:
        if expected is None or request.path in OPEN_PATHS or request.path.startswith("/static/"):
            return await handler(request)
        supplied = request.headers.get("Authorization", "")
        if supplied[:7].lower() == "bearer ":
            supplied = supplied[7:].strip()
        else:
            supplied = request.query.get("token", "")
        if not hmac.compare_digest(supplied.encode(), expected):      # constant time: no guessing by timing
            raise web.HTTPUnauthorized(text=dumps({"error": "missing or wrong token", "status": 401}),
                                       content_type="application/json",
                                       headers={"WWW-Authenticate": 'Bearer realm="edgeflow"'})
        return await handler(request)

    return auth


def _add_custom_routes(app: web.Application, custom) -> set:
    """Register the user's routes (before the built-in ones, so that one with the same method and path wins:
    the original's main2.py replaces /api/status). Returns the (method, path) pairs taken.

    Raises:
        ConfigError: two custom routes with the same method and path, or a path aiohttp refuses.
    """
    taken: set = set()
    for method, path, handler in custom:
        if (method, path) in taken:
            raise ConfigError(f"gateway: custom route {method} {path}: defined twice")
        taken.add((method, path))
        try:
            app.router.add_route(method, path, _custom_handler(handler, path))
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"gateway: custom route {method} {path}: {exc}") from exc
    return taken


_REQUEST_TYPES = (web.Request, web.BaseRequest)


def _plan_call(handler, path: str) -> list:
    """How to call a route function: one (kind, name, annotation, default) per parameter.

    kind is "request" (the aiohttp request), "path" (``{name}`` in the route's path), or "query" (``?name=``).
    A function with no parameter is called with none; a single parameter that is not a path variable and has
    no scalar annotation is the request (today's ``(request) -> response``); a parameter named ``request`` or
    annotated with aiohttp's Request is the request. Others come from the path or the query string, as
    FastAPI would pass them in the original.
    """
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):                 # a builtin without a signature: give it the request
        return [("request", "request", None, inspect.Parameter.empty)]
    variables = set(re.findall(r"{(\w+)(?::[^}]*)?}", path))
    plan = []
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation
        if isinstance(annotation, str):             # from __future__ import annotations: names, not types
            annotation = {"int": int, "float": float, "str": str, "bool": bool}.get(annotation, annotation)
        is_request = param.name in ("request", "req") or (isinstance(annotation, type)
                                                           and issubclass(annotation, _REQUEST_TYPES))
        if not is_request and len(params) == 1 and param.name not in variables \
                and annotation not in (int, float, str, bool):
            is_request = True
        if is_request:
            plan.append(("request", param.name, None, param.default))
        else:
            plan.append(("path" if param.name in variables else "query", param.name,
                         annotation if annotation in (int, float, str, bool) else None, param.default))
    return plan


def _argument(request: web.Request, kind: str, name: str, annotation, default):
    if kind == "request":
        return request
    source = request.match_info if kind == "path" else request.query
    if name not in source:
        if default is inspect.Parameter.empty:
            raise json_error(400, f"missing parameter {name!r}", parameter=name)
        return default
    raw = source[name]
    if annotation is None or annotation is str:
        return raw
    if annotation is bool:
        return raw.lower() in ("1", "true", "yes", "on")
    try:
        return annotation(raw)
    except ValueError:
        raise json_error(400, f"{name} must be {'an integer' if annotation is int else 'a number'}",
                         parameter=name) from None


def _custom_handler(handler, path: str = "/"):
    """Wrap a user's route function: with or without a request parameter (or path/query parameters by name),
    sync (run in a worker thread, as FastAPI did, so it cannot stall the streams) or async; it may return a
    response, a dict/list (JSON), str (text), bytes, or None (204)."""
    plan = _plan_call(handler, path)
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None))

    async def call(request: web.Request) -> web.StreamResponse:
        args = [_argument(request, *step) for step in plan]
        names = [step[1] for step in plan]
        kwargs = dict(zip(names, args))
        if is_async:
            result = handler(**kwargs)
        else:
            result = await asyncio.to_thread(handler, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        if isinstance(result, (dict, list, tuple)):
            return json_response(result)
        if isinstance(result, str):
            return web.Response(text=result)
        if isinstance(result, (bytes, bytearray, memoryview)):
            return web.Response(body=bytes(result), content_type="application/octet-stream")
        raise TypeError(f"route returned {type(result).__name__}; "
                        "return a response, dict, list, str or bytes")
    call.__name__ = getattr(handler, "__name__", "custom_route")
    return call


class Server:
    """The web server of one WebInterface, serving from its own event loop (uvloop) in a daemon thread.

    Args:
        interface: the WebInterface (host, port, token, options, routes). Port 0 picks a free port
            (``.port`` says which).
        runtime: the runtime object.

    Raises:
        ConfigError: the port is taken (``gateway: port 8000 is in use``), the address cannot be bound, or an
            option or custom route is bad.
    """

    def __init__(self, interface: Any, runtime: Any) -> None:
        self._closed = True                        # keeps __del__ quiet if construction fails
        self.interface = interface
        self.runtime = runtime
        self.host = interface.host
        self.port = int(interface.port)
        self.runtime_node = str(getattr(runtime, "node", "gateway"))
        # closed by default: refuse to serve beyond loopback without a token, before anything binds
        require_token(f"gateway {self.runtime_node!r}: web server", self.host, self.port, token_of(interface))
        options = options_of(interface)
        self.hub = new_hub(interface)
        self._app = make_app(interface, runtime, self.hub)
        self._access_log = options["access_log"]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"edgeflow-gateway:{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(STARTUP_TIMEOUT):
            self._closed = False
            self.close()
            raise ConfigError(f"gateway: {self.host}:{self.port} did not start within {STARTUP_TIMEOUT:g} s")
        if self._error is not None:
            self._thread.join(STARTUP_TIMEOUT)
            raise self._error
        self._closed = False

    @property
    def url(self) -> str:
        """``http://host:port`` (loopback when bound to every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}"

    def on_frame(self, frame: Any) -> None:
        """Hand one frame to the server (node loop thread; never blocks)."""
        self.hub.publish(frame)

    def _run(self) -> None:
        loop = _new_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:               # noqa: BLE001 - reported to the constructor or logged
            if not self._started.is_set():
                self._error = exc
            else:
                log.exception("gateway: the web server stopped")
        finally:
            self._started.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        bad = self._app[BAD_REQUESTS]
        runner = web.AppRunner(self._app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE,
                               access_log=log if self._access_log else None, logger=bad.logger)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, self.host, self.port).start()
            except OSError as exc:
                raise _bind_error(self.host, self.port, exc) from exc
            self.port = runner.addresses[0][1]
            log.info("%s", self.listening())
            self._started.set()
            await self._stop.wait()
        finally:
            bad.cancel()
            await runner.cleanup()

    def listening(self) -> str:
        """The startup line: where the web server listens and whether a token protects it."""
        reach = "this host only" if is_loopback(self.host) else "reachable from other hosts"
        guard = "token required" if self._app[TOKEN_SET] else "no token"
        return (f"gateway {self.runtime_node}: web server listening on {self.host}:{self.port} ({reach}; "
                f"{guard}); dashboard at {self.url}/dashboard")

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving (open streams end, sockets close) and drop every held frame; idempotent."""
        if self._closed:
            return
        from edgeflow._loopthread import stop_loop_thread     # the one loop-thread shutdown (TCP server too)
        self._closed = True
        stop = self._stop
        if not stop_loop_thread(self._loop, None if stop is None else stop.set, thread=self._thread,
                                timeout=timeout):
            log.warning("gateway: the web server did not stop within %g s", timeout)
        self.hub.clear()

    terminate = close

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self.close(timeout=0.0)

    def __repr__(self) -> str:
        return f"<gateway Server {self.host}:{self.port}{' closed' if self._closed else ''}>"


def _bind_error(host: str, port: int, exc: OSError) -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        # say which settings move it: the port comes from WebInterface(port=) or else $GATEWAY_HTTP_PORT
        return ConfigError(f"gateway: port {port} is in use; choose another with WebInterface(port=...) or "
                           f"the GATEWAY_HTTP_PORT environment variable")
    if exc.errno == errno.EACCES:
        return ConfigError(f"gateway: port {port} needs privileges (use a port above 1023)")
    return ConfigError(f"gateway: cannot listen on {host}:{port}: {exc.strerror or exc}")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:                            # uvloop is a dependency; stay usable where it cannot build
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(interface: Any, runtime: Any) -> Server:
    """Start the web server of ``interface`` in this process (what ``WebInterface.server`` names).

    Returns:
        The running Server: give it frames with ``on_frame(frame)``, stop it with ``close()``.

    Raises:
        ConfigError: the port is in use (``gateway: port 8000 is in use``) or the interface is misconfigured.
    """
    return Server(interface, runtime)
