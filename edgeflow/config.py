"""Settings from the environment, as the original EdgeFlow's ``edgeflow.config.settings``."""

from __future__ import annotations

import os


class Settings:
    """Read each setting from the environment when it is asked for (so tests and containers can set them)."""

    @property
    def GATEWAY_HTTP_PORT(self) -> int:          # noqa: N802 (the seed's spelling)
        return int(os.environ.get("GATEWAY_HTTP_PORT", "8000"))

    @property
    def GATEWAY_TCP_PORT(self) -> int:           # noqa: N802
        return int(os.environ.get("GATEWAY_TCP_PORT", "8001"))

    @property
    def GATEWAY_HOST(self) -> str:               # noqa: N802
        return os.environ.get("GATEWAY_HOST", "localhost")

    @property
    def REDIS_HOST(self) -> str:                 # noqa: N802
        return os.environ.get("REDIS_HOST", "localhost")

    @property
    def REDIS_PORT(self) -> int:                 # noqa: N802
        return int(os.environ.get("REDIS_PORT", "6379"))

    @property
    def NODE_NAME(self) -> str | None:           # noqa: N802
        return os.environ.get("NODE_NAME")


settings = Settings()
