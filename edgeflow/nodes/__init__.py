"""Node kinds. A node sees values (Frames, numpy arrays, bytes), never transports.

``EdgeNode`` is the original EdgeFlow's name of the generic ``Node`` base (a subclass of it says its kind with
``type=``); both spellings are importable from here.
"""

from edgeflow.nodes.base import ConsumerNode, EdgeNode, EndOfStream, FusionNode, Node, ProducerNode, SinkNode
from edgeflow.nodes.gateway import GatewayNode

KINDS = {"producer": ProducerNode, "consumer": ConsumerNode, "sink": SinkNode, "fusion": FusionNode,
         "gateway": GatewayNode}

__all__ = ["Node", "EdgeNode", "ProducerNode", "ConsumerNode", "SinkNode", "FusionNode", "GatewayNode",
           "EndOfStream", "KINDS"]
