"""Node kinds. A node sees values (Frames, numpy arrays, bytes), never transports."""

from edgeflow.nodes.base import ConsumerNode, EndOfStream, FusionNode, Node, ProducerNode, SinkNode
from edgeflow.nodes.gateway import GatewayNode

KINDS = {"producer": ProducerNode, "consumer": ConsumerNode, "sink": SinkNode, "fusion": FusionNode,
         "gateway": GatewayNode}

__all__ = ["Node", "ProducerNode", "ConsumerNode", "SinkNode", "FusionNode", "GatewayNode", "EndOfStream",
           "KINDS"]
