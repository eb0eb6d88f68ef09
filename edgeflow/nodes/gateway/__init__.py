"""GatewayNode: where frames leave the pipeline for people and other systems.

The node hosts interfaces (``self.add_interface(WebInterface(port=8000))`` in ``configure()``). An interface is a
plain description; the server it names is loaded by the runtime inside the gateway's process, so this layer never
imports a web framework. Any interface with an ``on_frame(frame)`` method receives every input frame.
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgeflow.nodes.base import Node


class GatewayNode(Node):
    """Receives the frames of all its inputs and hands each to its interfaces' ``on_frame(frame)``."""

    node_kind: ClassVar[str] = "gateway"

    def __init__(self, name: str | None = None, **config: Any) -> None:
        super().__init__(name, **config)
        self.interfaces: list = []

    def add_interface(self, interface: Any) -> Any:
        """Attach an interface (e.g. WebInterface); returns it."""
        self.interfaces.append(interface)
        return interface

    def process(self, frame: Any) -> None:
        """Hand one input Frame to every interface that takes frames."""
        for interface in self.interfaces:
            on_frame = getattr(interface, "on_frame", None)
            if on_frame is not None:
                on_frame(frame)
