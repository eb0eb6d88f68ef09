"""WebInterface: the description of the gateway's web server (dashboard, MJPEG video, REST, metrics).

The server itself lives in ``edgeflow.gateway`` and is named here as a string, so the node layer never imports
aiohttp; the runtime imports it inside the gateway's process.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from edgeflow.nodes.gateway.interfaces.base import BaseInterface

DEFAULT_BUFFER_DELAY = 0.0     # the original v0.2.0's default: viewers see the newest frame at once
DEFAULT_QUEUE_SIZE = 60        # frames held per topic by the play-out buffer (2 s of 30 fps)


class WebInterface(BaseInterface):
    """Serve the gateway's frames and statistics over HTTP.

    Args:
        port: TCP port (default: ``settings.GATEWAY_HTTP_PORT``, from $GATEWAY_HTTP_PORT, 8000).
        host: address to bind (default ``$EDGEFLOW_BIND``, else 127.0.0.1: this host only). An address
            beyond loopback (e.g. "0.0.0.0") needs a token, or the gateway refuses to start.
        token: the shared token that protects the API, the streams and the TCP ingest (default
            ``$EDGEFLOW_GATEWAY_TOKEN``).
        allowed_origins: origins (``"https://ops.example.com"``) whose pages may open the WebSockets besides
            the gateway's own (default ``$EDGEFLOW_ALLOWED_ORIGINS``, comma-separated).
        buffer_delay: seconds of play-out (jitter) buffer. 0 (the default, as in the original): viewers get
            the newest frame at once. Above 0: each topic's frames are shown ``buffer_delay`` seconds late,
            paced by their capture timestamps, so frames that arrive in bursts are shown evenly.
        queue_size: the most frames the play-out buffer holds per topic (default 60); when it is full the
            oldest held frame is dropped (and counted). Unused when ``buffer_delay`` is 0.
        options: server options (``jpeg_quality``, ``encoders``, ``stats_interval``, ``access_log``).

    Custom routes, either style: ``@web.route("GET", "/hello")`` or the original's ``@web.route("/hello")`` /
    ``@web.route("/hello", methods=["GET", "POST"])``, on a function with or without a ``request`` parameter,
    sync or async, returning a dict/list (JSON), str, bytes or an aiohttp response. A custom route with the
    method and path of a built-in one (e.g. ``/api/status``) replaces it.
    """

    server = "edgeflow.gateway.app:serve"

    def __init__(self, port: int | None = None, buffer_delay: float = DEFAULT_BUFFER_DELAY,
                 queue_size: int = DEFAULT_QUEUE_SIZE, host: str | None = None, token: str | None = None,
                 allowed_origins: Iterable[str] | None = None, **options: Any) -> None:
        super().__init__()
        from edgeflow.config import DEFAULT_BIND, settings
        if port is None:
            port = settings.GATEWAY_HTTP_PORT
        self.port = int(port)
        # closed by default: only this host reaches the server unless the code or $EDGEFLOW_BIND says more
        self.host = host if host is not None else (settings.EDGEFLOW_BIND or DEFAULT_BIND)
        self.token = token
        self.allowed_origins = tuple(allowed_origins) if allowed_origins is not None else None
        self.buffer_delay = buffer_delay
        self.queue_size = queue_size
        self.options = options
        self.routes: list[tuple[str, str, Callable]] = []
        self.frames_seen = 0

    def route(self, method_or_path: str, path: str | Iterable[str] | None = None, *,
              methods: Iterable[str] | None = None) -> Callable:
        """Decorator adding a custom route to the server.

        ``route("GET", "/hello")``, ``route("/hello")`` (GET), ``route("/hello", methods=["GET", "POST"])``
        and ``route("/hello", ["POST"])`` all work: a first argument starting with "/" is the path.
        """
        if method_or_path.startswith("/"):
            where = method_or_path
            given = methods if methods is not None else path
            if given is None:
                verbs = ["GET"]
            elif isinstance(given, str):
                verbs = [given]
            else:
                verbs = list(given)
        else:
            if not isinstance(path, str) or methods is not None:
                raise TypeError('route("GET", "/path") or route("/path", methods=["GET"])')
            where, verbs = path, [method_or_path]
        if not verbs:
            raise TypeError(f"route {where!r}: no methods")

        def register(handler: Callable) -> Callable:
            for verb in verbs:
                self.routes.append((str(verb).upper(), where, handler))
            return handler
        return register

    def setup(self) -> None:
        """Nothing to prepare here (the original registered its routes here; the server does it at start)."""

    def on_frame(self, frame: Any) -> None:
        """Count frames until the runtime attaches the real server (which replaces this method's effect)."""
        self.frames_seen += 1

    def __repr__(self) -> str:
        return f"<WebInterface {self.host}:{self.port}>"
