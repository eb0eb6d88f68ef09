"""Settings from the environment, as the original EdgeFlow's ``edgeflow.config.settings``.

    from edgeflow.config import settings
    settings.REDIS_HOST, settings.DATA_REDIS_PORT, settings.GATEWAY_TCP_PORT

Each setting is read when it is asked for (not at import), so tests and containers can set them late. The
defaults are the original's: the gateway's HTTP port 8000 and its TCP frame port 8080.

Closed by default (docs/security.md): the gateway's listeners bind ``127.0.0.1`` unless a host is given
(``WebInterface(host=...)``, or ``$EDGEFLOW_BIND`` for both the web server and the TCP ingest), and one bound
beyond loopback needs a token (``$EDGEFLOW_GATEWAY_TOKEN`` or ``WebInterface(token=...)``); ``require_token``
is that rule, in one place.
"""

from __future__ import annotations

import ipaddress
import os

from edgeflow.errors import ConfigError

DEFAULT_GATEWAY_HTTP_PORT = 8000
DEFAULT_GATEWAY_TCP_PORT = 8080          # the original EdgeFlow's port for frames sent to the gateway
DEFAULT_REDIS_PORT = 6379
DEFAULT_DATA_REDIS_PORT = 6380           # DualRedisBroker's data instance (edgeflow.comms.brokers)
DEFAULT_BIND = "127.0.0.1"               # closed by default: only this host reaches the gateway's listeners


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


class Settings:
    """Read each setting from the environment when it is asked for (so tests and containers can set them)."""

    @property
    def GATEWAY_HTTP_PORT(self) -> int:          # noqa: N802 (the seed's spelling)
        """The gateway's web port: ``$GATEWAY_HTTP_PORT``, default 8000."""
        return _int("GATEWAY_HTTP_PORT", DEFAULT_GATEWAY_HTTP_PORT)

    @property
    def GATEWAY_TCP_PORT(self) -> int:           # noqa: N802
        """The port the gateway takes frames on from other hosts: ``$GATEWAY_TCP_PORT``, default 8080."""
        return _int("GATEWAY_TCP_PORT", DEFAULT_GATEWAY_TCP_PORT)

    @property
    def GATEWAY_HOST(self) -> str:               # noqa: N802
        """Where the gateway runs, for senders on other hosts: ``$GATEWAY_HOST``, default localhost."""
        return os.environ.get("GATEWAY_HOST") or "localhost"

    @property
    def EDGEFLOW_BIND(self) -> str | None:       # noqa: N802
        """The address the gateway's web server and TCP ingest bind when the code gives none:
        ``$EDGEFLOW_BIND`` (e.g. ``0.0.0.0``), None when unset (then 127.0.0.1; see docs/security.md)."""
        return os.environ.get("EDGEFLOW_BIND") or None

    @property
    def EDGEFLOW_GATEWAY_TOKEN(self) -> str | None:   # noqa: N802
        """The gateway's shared token (web API, streams, TCP ingest; the senders use it too):
        ``$EDGEFLOW_GATEWAY_TOKEN``, None when unset. ``WebInterface(token=...)`` takes precedence."""
        return os.environ.get("EDGEFLOW_GATEWAY_TOKEN") or None

    @property
    def EDGEFLOW_ALLOWED_ORIGINS(self) -> tuple[str, ...]:   # noqa: N802
        """Origins (``scheme://host[:port]``) allowed to open the gateway's WebSockets besides its own:
        ``$EDGEFLOW_ALLOWED_ORIGINS``, comma-separated; empty when unset (same origin only)."""
        raw = os.environ.get("EDGEFLOW_ALLOWED_ORIGINS") or ""
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    @property
    def REDIS_HOST(self) -> str:                 # noqa: N802
        """The control Redis: ``$REDIS_HOST``, default localhost."""
        return os.environ.get("REDIS_HOST") or "localhost"

    @property
    def REDIS_PORT(self) -> int:                 # noqa: N802
        """The control Redis's port: ``$REDIS_PORT``, default 6379."""
        return _int("REDIS_PORT", DEFAULT_REDIS_PORT)

    @property
    def DATA_REDIS_HOST(self) -> str:            # noqa: N802
        """DualRedisBroker's data Redis: ``$DATA_REDIS_HOST``, default the control Redis's host."""
        return os.environ.get("DATA_REDIS_HOST") or self.REDIS_HOST

    @property
    def DATA_REDIS_PORT(self) -> int:            # noqa: N802
        """The data Redis's port: ``$DATA_REDIS_PORT``, default 6380."""
        return _int("DATA_REDIS_PORT", DEFAULT_DATA_REDIS_PORT)

    @property
    def REDIS_KEY(self) -> str:                  # noqa: N802
        """The original's ``REDIS_KEY`` (``$REDIS_KEY``, default "default"); EdgeFlow's keys use the app name."""
        return os.environ.get("REDIS_KEY") or "default"

    @property
    def NODE_NAME(self) -> str | None:           # noqa: N802
        """The node a container runs (deploy sets it), or None."""
        return os.environ.get("NODE_NAME")


settings = Settings()


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``; an empty host, a
    wildcard (0.0.0.0, ::) and any other name count as reachable from other hosts."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token(what: str, host: str, port: int, token: object) -> None:
    """The closed-by-default rule: a listener bound beyond loopback must have a token.

    Args:
        what: the listener, as the message names it (``gateway 'gw': web server``).

    Raises:
        ConfigError: one line naming the listener and its address, and the two ways to fix it.
    """
    if token or is_loopback(host):
        return
    raise ConfigError(f"{what} on {host}:{port} is reachable from other hosts but has no token; set "
                      "EDGEFLOW_GATEWAY_TOKEN (or WebInterface(token=...)), or bind 127.0.0.1 "
                      "(WebInterface(host=...) / EDGEFLOW_BIND)")
