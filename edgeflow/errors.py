"""Every exception EdgeFlow raises. This module imports nothing from edgeflow.

    EdgeFlowError
    ├── ConfigError(EdgeFlowError, ValueError)   bad app definition, name or flag; raised before anything starts
    │   └── GraphError                           cycle, unknown or duplicate node; has .node and .link
    ├── NodeError                                user code raised or returned an unsupported type; has .node
    ├── TransportError
    │   ├── ClosedResourceError                  this process already closed it: a caller bug
    │   ├── BrokenResourceError                  peer, network or Redis went away; cause in __cause__
    │   │   └── WriterGone                       the ring's writer closed or died (.clean tells which)
    │   ├── ReceiveTimeout(TransportError, TimeoutError)
    │   ├── BackpressureTimeout(TransportError, TimeoutError)   durable publish waited too long
    │   ├── FrameTooLarge(TransportError, ValueError)
    │   ├── LayoutMismatch                       shm segment with another magic, version or layout
    │   ├── ProtocolError                        malformed bytes from TCP or a ring header
    │   └── HeldFramesError                      a subscriber holds more frames than it may pin
    └── InternalError                            one of our invariants broke: a bug to report
"""

from __future__ import annotations


class EdgeFlowError(Exception):
    """Base class of every error EdgeFlow raises on purpose."""


class ConfigError(EdgeFlowError, ValueError):
    """A bad app definition, name, option or flag; raised before anything starts."""


class GraphError(ConfigError):
    """The pipeline graph is invalid (cycle, unknown or duplicate node, bad link).

    Attributes:
        node: the node the error concerns, or None.
        link: the link as ``(source, target)``, or None.
    """

    def __init__(self, message: str, *, node: str | None = None, link: tuple[str, str] | None = None):
        super().__init__(message)
        self.node = node
        self.link = link


class NodeError(EdgeFlowError):
    """User code in a node raised, or returned something EdgeFlow cannot send. ``.node`` names the node."""

    def __init__(self, message: str, *, node: str | None = None):
        super().__init__(message)
        self.node = node


class TransportError(EdgeFlowError):
    """Moving a frame failed."""


class ClosedResourceError(TransportError):
    """The publisher, subscriber or ring was already closed by this process: a caller bug."""


class BrokenResourceError(TransportError):
    """The other side (writer, peer, network, Redis) went away; the cause is in ``__cause__``."""


class WriterGone(BrokenResourceError):
    """The ring's writer is gone. ``.clean`` is True when it closed, False when it died.

    A subscriber stays usable: once a writer publishes on the topic again, receiving resumes.
    """

    def __init__(self, message: str, *, clean: bool):
        super().__init__(message)
        self.clean = clean


class ReceiveTimeout(TransportError, TimeoutError):
    """Nothing arrived within the timeout given to ``recv``."""


class BackpressureTimeout(TransportError, TimeoutError):
    """A durable reader stayed a whole ring behind for longer than the publisher's back-pressure timeout."""


class FrameTooLarge(TransportError, ValueError):
    """A frame (or its metadata) does not fit and the ring may not grow."""


class LayoutMismatch(TransportError):
    """A shared-memory segment has another magic, layout version or layout than this EdgeFlow expects."""


class ProtocolError(TransportError):
    """Malformed bytes: from a TCP peer, or a ring header that is not consistent."""


class HeldFramesError(TransportError):
    """A subscriber holds as many zero-copy frames as it may pin; release one or keep copies."""


class InternalError(EdgeFlowError):
    """One of EdgeFlow's own invariants broke: a bug, please report it."""
