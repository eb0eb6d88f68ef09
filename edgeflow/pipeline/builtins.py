"""The node classes a pipeline file names by a short name: ``class: MqttSource``, ``class: GatewayNode``.

Every connector of ``edgeflow.connectors.__all__`` (imported only when a file names it), and the built-in
gateway: ``Gateway``, a GatewayNode that builds its interfaces from its options, so a file can say

    gateway:
      class: GatewayNode
      interfaces:
        web: {port: 8000, token: "${TOKEN}"}
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgeflow.errors import ConfigError
from edgeflow.nodes.gateway import GatewayNode

GATEWAY_NAME = "GatewayNode"


class Gateway(GatewayNode):
    """The built-in gateway of a pipeline file: ``web`` (WebInterface's keyword arguments, or None for no web
    server) becomes a WebInterface added in ``setup()``; the runtime then serves it as any gateway's."""

    pipeline_name: ClassVar[str] = GATEWAY_NAME
    web: dict[str, Any] | None = None

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """``web`` must be a mapping of WebInterface's arguments; nothing else is an option of this node."""
        for key, value in options.items():
            if key != "web":
                raise ConfigError(f"node '{name}': option '{key}': the built-in gateway takes only 'web' "
                                  "(its WebInterface's options)")
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"node '{name}': option 'web': expected a mapping of WebInterface options, "
                                  f"got {type(value).__name__}")

    def setup(self) -> None:
        """Add the configured interfaces."""
        from edgeflow.nodes.gateway.interfaces.web import WebInterface

        if self.web is not None:
            self.add_interface(WebInterface(**self.web))
        super().setup()


def short_names() -> tuple[str, ...]:
    """Every short name a file may give as ``class:``."""
    from edgeflow import connectors
    return (*connectors.__all__, GATEWAY_NAME)


def resolve(name: str) -> type | None:
    """The class of a short name, or None when it is none."""
    if name == GATEWAY_NAME:
        return Gateway
    from edgeflow import connectors
    if name in connectors.__all__:
        return getattr(connectors, name)
    return None


def short_name_of(cls: type) -> str | None:
    """The short name that gives ``cls`` (for export), or None."""
    if cls is Gateway:
        return GATEWAY_NAME
    from edgeflow import connectors
    name = cls.__name__
    if name in connectors.__all__ and cls.__module__.startswith("edgeflow.connectors"):
        return name
    return None
