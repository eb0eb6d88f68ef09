"""Cross-host communication settings: which Redis the app's nodes use between hosts.

``RedisBroker`` and ``DualRedisBroker`` are configuration only (URLs, never connections); the transports that
use them live in ``edgeflow.transport``. Both import paths of the original EdgeFlow work:
``from edgeflow.comms import RedisBroker`` and ``from edgeflow.comms.brokers import DualRedisBroker``.
``edgeflow.comms.Frame`` is ``edgeflow.frame.Frame`` (the original kept its Frame here).
"""

from edgeflow.comms.brokers import DualRedisBroker, RedisAddress, RedisBroker
from edgeflow.frame import Frame

__all__ = ["RedisBroker", "DualRedisBroker", "RedisAddress", "Frame"]
