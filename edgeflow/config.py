"""Settings from the environment, as the original EdgeFlow's ``edgeflow.config.settings``.

    from edgeflow.config import settings
    settings.REDIS_HOST, settings.DATA_REDIS_PORT, settings.GATEWAY_TCP_PORT

Each setting is read when it is asked for (not at import), so tests and containers can set them late. The
defaults are the original's: the gateway's HTTP port 8000 and its TCP frame port 8080.
"""

from __future__ import annotations

import os

DEFAULT_GATEWAY_HTTP_PORT = 8000
DEFAULT_GATEWAY_TCP_PORT = 8080          # the original EdgeFlow's port for frames sent to the gateway
DEFAULT_REDIS_PORT = 6379
DEFAULT_DATA_REDIS_PORT = 6380           # DualRedisBroker's data instance (edgeflow.comms.brokers)


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
