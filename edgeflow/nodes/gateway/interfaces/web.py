"""WebInterface: the description of the gateway's web server (dashboard, MJPEG video, REST, metrics).

The server itself lives in ``edgeflow.gateway`` and is named here as a string, so the node layer never imports
aiohttp; the runtime imports it inside the gateway's process.
"""

from __future__ import annotations

from typing import Any, Callable


class WebInterface:
    """Serve the gateway's frames and statistics over HTTP.

    Args:
        port: TCP port (default: ``settings.GATEWAY_HTTP_PORT``, from $GATEWAY_HTTP_PORT, 8000).
        host: address to bind (default all interfaces).
        token: optional shared token that protects the API and the streams.

    Custom routes: ``@web.route("GET", "/hello")`` on a function ``(request) -> response``.
    """

    server = "edgeflow.gateway.app:serve"

    def __init__(self, port: int | None = None, host: str = "0.0.0.0", token: str | None = None,
                 **options: Any) -> None:
        if port is None:
            from edgeflow.config import settings
            port = settings.GATEWAY_HTTP_PORT
        self.port = int(port)
        self.host = host
        self.token = token
        self.options = options
        self.routes: list[tuple[str, str, Callable]] = []
        self.frames_seen = 0

    def route(self, method: str, path: str) -> Callable:
        """Decorator adding a custom route to the server."""
        def register(handler: Callable) -> Callable:
            self.routes.append((method.upper(), path, handler))
            return handler
        return register

    def on_frame(self, frame: Any) -> None:
        """Count frames until the runtime attaches the real server (which replaces this method's effect)."""
        self.frames_seen += 1

    def __repr__(self) -> str:
        return f"<WebInterface {self.host}:{self.port}>"
