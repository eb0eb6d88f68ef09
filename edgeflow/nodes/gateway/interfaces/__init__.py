"""Gateway interfaces: plain descriptions of how the gateway talks to the outside world."""

from edgeflow.nodes.gateway.interfaces.web import WebInterface

__all__ = ["WebInterface"]
