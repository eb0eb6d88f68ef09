"""The node classes a pipeline file names by a short name: ``class: MqttSource``, ``class: GatewayNode``.

Every connector of ``edgeflow.connectors.__all__`` and every source of ``edgeflow.sources.__all__``
(``VideoSource``; each package imported only when a file names one of its classes), and the built-in gateway:
``Gateway``, a GatewayNode that builds its interfaces from its options, so a file can say

    gateway:
      class: GatewayNode
      interfaces:
        web: {port: 8000, token: "${TOKEN}"}
"""

from __future__ import annotations

import importlib
import importlib.util
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


PACKAGES = ("edgeflow.connectors", "edgeflow.sources")
"""The packages whose ``__all__`` are short names (a package this EdgeFlow lacks is skipped)."""


def _packages() -> list[Any]:
    found = []
    for name in PACKAGES:
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name))
    return found


def short_names() -> tuple[str, ...]:
    """Every short name a file may give as ``class:``."""
    return (*(name for package in _packages() for name in package.__all__), GATEWAY_NAME)


def resolve(name: str) -> type | None:
    """The class of a short name, or None when it is none."""
    if name == GATEWAY_NAME:
        return Gateway
    for package in _packages():
        if name in package.__all__:
            return getattr(package, name)
    return None


def short_name_of(cls: type) -> str | None:
    """The short name that gives ``cls`` (for export), or None."""
    if cls is Gateway:
        return GATEWAY_NAME
    for package in _packages():
        if cls.__name__ in package.__all__ and cls.__module__.startswith(package.__name__) \
                and getattr(package, cls.__name__) is cls:
            return cls.__name__
    return None
