"""Gateway interfaces: plain descriptions of how the gateway talks to the outside world.

``WebInterface`` (the web server) and ``BaseInterface`` (the original EdgeFlow's base class for interfaces
of one's own).
"""

from edgeflow.nodes.gateway.interfaces.base import BaseInterface
from edgeflow.nodes.gateway.interfaces.web import WebInterface

__all__ = ["BaseInterface", "WebInterface"]
