"""The model block a user writes: ``init(context)`` once, ``process(msg)`` per message, ``shutdown()`` last.

    from edgeflow.models import ModelBlock

    class KalmanFilter(ModelBlock):
        def init(self, context):
            self.q = context.params.get("process_noise", 0.01)
            self.x, self.p = 0.0, 1.0

        def process(self, msg):
            ...
            return {"raw_value": z, "twin_estimate": self.x}

A model block is no node: it knows nothing of frames, rings or processes. ``edgeflow.models.ModelNode`` runs it
as a consumer node (see edgeflow/models/node.py), which is what makes hot reload possible: the node holds the
running instance and can put a new one in its place between two messages.
"""

from __future__ import annotations

import logging
from typing import Any, Callable


class ModelBlockContext:
    """What a model block's ``init(context)`` gets (also kept as ``self.context`` on the instance).

    Attributes:
        config: the model's parameters (the ``params`` option); ``params`` is the same dict.
        twin_id, asset_id: the digital twin's and the physical asset's identifiers (None when not given).
        version: the version of this instance's code: the ``version`` option, else the module's
            ``__version__``, else ``src-<hash>`` of its source file (``model_version`` is the same).
        node: the name of the node that runs the model; ``replica``: which of its replicas (0-based).
        log: a logger named after the node (``logger`` is the same).

    The positional order (asset_id, twin_id, version, config) is PyEdgeTwin's, so a model's own tests that
    build a context by hand keep working.
    """

    __slots__ = ("asset_id", "twin_id", "version", "config", "node", "replica", "log", "_frame")

    def __init__(self, asset_id: str | None = None, twin_id: str | None = None, version: str | None = None,
                 config: dict | None = None, *, node: str = "model", replica: int = 0,
                 log: logging.Logger | None = None, model_version: str | None = None,
                 frame: Callable[[], Any] | None = None) -> None:
        self.asset_id = asset_id
        self.twin_id = twin_id
        self.version = version if version is not None else model_version
        self.config = dict(config or {})
        self.node = node
        self.replica = replica
        self.log = log if log is not None else logging.getLogger(f"edgeflow.node.{node}")
        self._frame = frame

    @property
    def params(self) -> dict:
        """The model's parameters (the same dict as ``config``)."""
        return self.config

    @property
    def model_version(self) -> str | None:
        """PyEdgeTwin's name of ``version``."""
        return self.version

    @property
    def logger(self) -> logging.Logger:
        """Another name of ``log``."""
        return self.log

    @property
    def frame(self) -> Any:
        """The Frame whose message ``process()`` is handling (``topic``, ``timestamp``, ``meta``), or None."""
        return self._frame() if self._frame is not None else None

    def get(self, key: str, default: Any = None) -> Any:
        """A parameter with a default (PyEdgeTwin's ``context.get``)."""
        return self.config.get(key, default)

    def __repr__(self) -> str:
        return (f"ModelBlockContext(node={self.node!r}, replica={self.replica}, version={self.version!r}, "
                f"twin_id={self.twin_id!r}, asset_id={self.asset_id!r})")


class ModelBlock:
    """Base class of a model block. Override ``process``; ``init`` and ``shutdown`` when you need them.

    Lifecycle (in the node's process): the class is instantiated with no arguments, ``init(context)`` is called
    once, then ``process(msg)`` once per message, and ``shutdown()`` once at the end, also when a new version
    replaces this one (hot reload: the new instance's ``init`` ran before; nothing is shared between them).

    Register it like a node: ``app.node(MyModel, name="kalman", params={...})`` or ``@app.node(...)`` above
    the class; in YAML ``model: package.module:MyModel`` with ``params:``. The node class that runs it is
    ``edgeflow.models.ModelNode``: ``app.node(ModelNode, name="kalman", model=MyModel, params={...})`` is the
    same registration (see docs/models.md).
    """

    context: ModelBlockContext | None = None

    def init(self, context: ModelBlockContext) -> None:
        """Called once before the first message, with the parameters and identifiers (see the context)."""

    def process(self, msg: dict) -> dict | None:
        """One message in (a dict message; other payloads as ``{"data": payload}``), its result out: a dict
        goes on as a dict message, None sends nothing. Values may be read-only numpy views valid only during
        the call: copy what you keep."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(msg)")

    def shutdown(self) -> None:
        """Called once at the end (or when a newer version took over); release what ``init`` acquired."""

    def get_state(self) -> dict:
        """The model's internal state for inspection (PyEdgeTwin's hook; not used by the runtime)."""
        return {}

    @classmethod
    def __edgeflow_node__(cls, options: dict) -> tuple[type, dict]:
        """The node class that runs this model block and its options: what ``app.node(cls, **options)``
        registers (the graph's registration hook)."""
        from edgeflow.models.spec import model_node
        return model_node(cls, **options)
