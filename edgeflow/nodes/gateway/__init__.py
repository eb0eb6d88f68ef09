"""GatewayNode: where frames leave the pipeline for people and other systems.

The node hosts interfaces (``self.add_interface(WebInterface(port=8000))`` in ``setup()``/``configure()``). An
interface is a plain description; the server it names (``interface.server``, "module:function") is started by
the runtime inside the gateway's process, after the node's ``setup()``, so this layer never imports a web
framework. ``WebInterface`` names the web server; an interface written in the original EdgeFlow's style (a
``BaseInterface`` subclass with ``setup()``, ``on_frame(frame)``, ``run_loop()``) is run by
``edgeflow.nodes.gateway.interfaces.base``. Any interface with an ``on_frame(frame)`` method receives every
input frame.

``from edgeflow.nodes.gateway import GatewayNode, WebInterface, BaseInterface`` works as in the original.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, ClassVar

from edgeflow.nodes.base import Node
from edgeflow.nodes.gateway.interfaces import BaseInterface, WebInterface

__all__ = ["GatewayNode", "WebInterface", "BaseInterface"]


class GatewayNode(Node):
    """Receives the frames of all its inputs and hands each to its interfaces' ``on_frame(frame)``.

    ``active_clients`` is kept for code written for the original (its TCP clients); EdgeFlow's gateway takes
    frames from the runtime, not from TCP clients of its own, so it stays empty.
    """

    node_kind: ClassVar[str] = "gateway"

    def __init__(self, name: str | None = None, **config: Any) -> None:
        super().__init__(name, **config)
        self.interfaces: list = []
        self.active_clients: set = set()

    def add_interface(self, interface: Any) -> Any:
        """Attach an interface (e.g. WebInterface, or a BaseInterface subclass); returns it."""
        if isinstance(interface, BaseInterface) and interface.gateway is None:
            interface.gateway = self                 # the original's interfaces may reach their gateway
        self.interfaces.append(interface)
        return interface

    def process(self, frame: Any) -> None:
        """Hand one input Frame to every interface that takes frames."""
        for interface in self.interfaces:
            on_frame = getattr(interface, "on_frame", None)
            if on_frame is None:
                continue
            result = on_frame(frame)
            if inspect.isawaitable(result):
                # an async on_frame of an interface no runtime hosts (the node used directly): run it here
                asyncio.run(_awaited(result))


async def _awaited(result: Any) -> Any:
    return await result
