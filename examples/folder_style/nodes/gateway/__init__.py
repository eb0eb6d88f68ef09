"""The gateway: hands every frame it receives to its WebInterface (port: $GATEWAY_HTTP_PORT, default 8000)."""
from edgeflow import GatewayNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface


class Gateway(GatewayNode):
    def configure(self):
        self.add_interface(WebInterface())
