"""EdgeFlow: multi-node frame pipelines for video, AI inference and sensor fusion.

Fast pub/sub between processes on one host, over zero-copy shared memory:

    import edgeflow as ef
    with ef.Publisher("camera", app="demo") as pub, \\
         ef.Subscriber("camera", app="demo", qos=ef.QoS.DURABLE) as sub:
        pub.publish(np.zeros((480, 640, 3), np.uint8))
        with sub.recv(timeout=1.0) as frame:
            print(frame.frame_id, frame.data.shape)

Pipelines: ``EdgeApp`` (alias ``System``), node classes, and ``edgeflow.run(system1, system2, ...)`` to run
several Systems in one launch (``run_all`` is the same function).
"""

from edgeflow import _fast  # noqa: F401  (fails with one sentence when the compiled core is not built)
from edgeflow.errors import (BackpressureTimeout, BrokenResourceError, ClosedResourceError, ConfigError,
                             EdgeFlowError, FrameTooLarge, GraphError, HeldFramesError, InternalError,
                             LayoutMismatch, NodeError, ProtocolError, ReceiveTimeout, TransportError,
                             WriterGone)
from edgeflow.comms import DualRedisBroker, RedisBroker
from edgeflow.frame import Frame
from edgeflow.graph import EdgeApp, System, run, run_all
from edgeflow.nodes import (ConsumerNode, EdgeNode, EndOfStream, FusionNode, GatewayNode, Node, ProducerNode,
                            SinkNode)
from edgeflow.qos import QoS
from edgeflow.transport.shm import Loan, Publisher, PublisherStats, Subscriber, SubscriberStats

__version__ = "0.2.0"

__all__ = [
    "EdgeApp", "System", "run", "run_all", "RedisBroker", "DualRedisBroker",
    "Node", "EdgeNode", "ProducerNode", "ConsumerNode", "SinkNode", "FusionNode", "GatewayNode", "EndOfStream",
    "Publisher", "Subscriber", "Loan", "PublisherStats", "SubscriberStats", "Frame", "QoS",
    "EdgeFlowError", "ConfigError", "GraphError", "NodeError", "TransportError", "ClosedResourceError",
    "BrokenResourceError", "WriterGone", "ReceiveTimeout", "BackpressureTimeout", "FrameTooLarge",
    "LayoutMismatch", "ProtocolError", "HeldFramesError", "InternalError", "__version__",
]
__all__ += ["load"]


def __getattr__(name: str):
    # edgeflow.load(path_or_paths): a pipeline file (YAML, JSON) as an EdgeApp; lazy, so `import edgeflow`
    # does not import PyYAML (see edgeflow.pipeline)
    if name == "load":
        from edgeflow.pipeline import load
        return load
    raise AttributeError(f"module 'edgeflow' has no attribute {name!r}")
