"""Stream templates: what one stream of a camera fleet becomes when it is activated at run time.

``app.streams(source=VideoSource, workers=[FlowWorker], to="gateway")`` declares the template; each active
stream ``<id>`` is then the subgraph

    stream-<id>-source  ->  stream-<id>-<worker>  ->  ...  ->  <to>

whose source gets the stream's ``url`` (plus ``source_options``) and whose workers get its ``params`` (plus
``worker_options``), every node labelled with the stream's id (``NodeSpec.stream``, ``node.stream_id``, a
``stream_id`` on its statistics and metrics). The running app (or the gateway's stream API) adds and removes
these subgraphs without stopping anything else: see ``edgeflow.runtime.dynamic``.

Pure data and graph arithmetic: no processes here.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from edgeflow import _nodeload
from edgeflow.errors import GraphError
from edgeflow.qos import QoS

STREAM_PREFIX = "stream-"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}", re.ASCII)     # a UUID (36) fits; '.' is a name separator
MAX_ROLE = 64 - len(STREAM_PREFIX) - 40 - 1                       # what is left of a node name for its role


@dataclasses.dataclass(frozen=True)
class StreamTemplate:
    """What each active stream becomes (frozen, picklable).

    Attributes:
        source: the producer class (its ``url`` option is the stream's url).
        workers: the classes the frames go through, in order (each gets the stream's ``params``).
        to: the existing node(s) the last worker (or the source, without workers) links to.
        replicas: processes per worker.
        source_options, worker_options: options every stream's source / each worker gets as well.
        qos: the links' QoS (REALTIME: a live view skips stale frames).
    """

    source: type
    workers: tuple[type, ...] = ()
    to: tuple[str, ...] = ()
    replicas: int = 1
    source_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    worker_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    qos: QoS = QoS.REALTIME

    def roles(self) -> list[str]:
        """The role part of each node's name: ``source``, then each worker's snake_case class name."""
        roles, seen = ["source"], {"source"}
        for cls in self.workers:
            role = _nodeload.snake_case(cls.__name__).replace("_", "-")[:MAX_ROLE] or "worker"
            base, n = role, 2
            while role in seen:
                role, n = f"{base[:MAX_ROLE - 3]}-{n}", n + 1
            seen.add(role)
            roles.append(role)
        return roles

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: source and workers as ``module:Class``, to, replicas, options, qos."""
        return {"source": _class_path(self.source), "workers": [_class_path(w) for w in self.workers],
                "to": list(self.to), "replicas": self.replicas, "source_options": dict(self.source_options),
                "worker_options": dict(self.worker_options), "qos": self.qos.name}


def make_template(source: Any, workers: Any = (), to: Any = (), replicas: int = 1,
                  source_options: Mapping[str, Any] | None = None,
                  worker_options: Mapping[str, Any] | None = None, qos: Any = QoS.REALTIME) -> StreamTemplate:
    """A checked StreamTemplate (see ``EdgeApp.streams``).

    Raises:
        GraphError: a source that is no producer class, a worker that is no class, an invalid ``to``, or a bad
            ``replicas``.
    """
    if not isinstance(source, type) or getattr(source, "node_kind", "") != "producer":
        raise GraphError(f"streams(): source must be a producer node class, got {source!r}")
    workers = tuple([workers] if isinstance(workers, type) else workers or ())
    for cls in workers:
        if not isinstance(cls, type) or getattr(cls, "node_kind", "") not in ("consumer", ""):
            raise GraphError(f"streams(): each worker must be a consumer node class, got {cls!r}")
    targets = tuple([to] if isinstance(to, str) else to or ())
    for name in targets:
        if not _nodeload.is_valid_name(name):
            raise GraphError(f"streams(): to={name!r} is not a node name ({_nodeload.NAME_RULE})")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise GraphError(f"streams(): replicas={replicas!r}: a positive integer")
    return StreamTemplate(source, workers, targets, replicas, dict(source_options or {}),
                          dict(worker_options or {}), QoS.parse(qos))


def check_stream_id(stream_id: Any) -> str:
    """``stream_id`` if it can name nodes (letters, digits, '-', '_'; at most 40; a UUID fits).

    Raises:
        GraphError: naming the id.
    """
    if not isinstance(stream_id, str) or not _ID.fullmatch(stream_id):
        raise GraphError(f"stream {stream_id!r}: a stream id is 1-40 letters, digits, '-' or '_' (e.g. a UUID)")
    return stream_id


def node_names(template: StreamTemplate, stream_id: str) -> list[str]:
    """The names of stream ``stream_id``'s nodes, source first."""
    return [f"{STREAM_PREFIX}{stream_id}-{role}" for role in template.roles()]


def fragment(template: StreamTemplate, app: str, stream_id: str, url: Any, params: Mapping[str, Any] | None):
    """An EdgeApp holding stream ``stream_id``'s nodes and links (its last link names the ``to`` nodes, which
    the running app has): what ``RunningApp.add`` takes.

    Raises:
        GraphError, ConfigError: the stream id, or an option the node classes' checks refuse (one line).
    """
    from edgeflow.graph import EdgeApp
    check_stream_id(stream_id)
    names = node_names(template, stream_id)
    part = EdgeApp(app)
    part._stream_id = stream_id          # the nodes registered below carry it (NodeSpec.stream)
    part.node(template.source, name=names[0], url=url, **dict(template.source_options))
    for cls, name in zip(template.workers, names[1:]):
        part.node(cls, name=name, replicas=template.replicas, params=dict(params or {}),
                  **dict(template.worker_options))
    for source, target in zip(names, names[1:]):
        part.link(source).to(target, qos=template.qos)
    for target in template.to:
        part.link(names[-1]).to(target, qos=template.qos)
    return part


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
