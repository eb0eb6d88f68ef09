"""The schema of a pipeline file, checked before anything is imported or started.

Every problem is one line naming the file, the line and column of the key (or list item), and the key path,
with a did-you-mean for a misspelt key or node name::

    pipeline.yaml:12:5: nodes.detector.replicas: expected an integer >= 1, got 'two'
    pipeline.yaml:20:5: links[1]: unknown node 'detectr' (did you mean 'detector'?)

All the problems of a file are reported at once. What passes becomes a ``Pipeline``: the app's name and
broker, one ``NodeDecl`` per node and one ``LinkDecl`` per link, and the ``streams:`` section (the stream
template, a ``StreamsDecl``), each with its marks, for load.py to build the EdgeApp from (and to map the
graph's own errors back to a line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgeflow._nodeload import NAME_RULE, did_you_mean, is_valid_name
from edgeflow.errors import ConfigError
from edgeflow.nodes import KINDS
from edgeflow.pipeline.errors import PipelineError
from edgeflow.pipeline.tree import Map, Mark, Seq, in_file_order, problem

TOP_KEYS = ("app", "broker", "nodes", "links", "streams")
SOURCE_KEYS = ("class", "path", "model")
FIELD_KEYS = ("type", "fps", "replicas", "device", "group", "node_port", "description", "build", "runtime")
MODEL_KEYS = ("params", "version", "twin_id", "asset_id", "watch", "watch_interval", "python_path")
"""Keys of a ``model:`` node besides the common ones, handed to ``edgeflow.models.node_for``."""
NODE_KEYS = (*SOURCE_KEYS, *FIELD_KEYS, "options", "interfaces", *MODEL_KEYS)
LINK_KEYS = ("from", "to", "qos", "codec", "max_lag", "channel")
QOS_NAMES = ("realtime", "durable", "balanced")
CODEC_NAMES = ("jpeg", "png", "lz4")
INTERFACE_KEYS = ("web",)
WEB_KEYS = ("port", "host", "token", "allowed_origins", "buffer_delay", "queue_size", "jpeg_quality",
            "encoders", "stats_interval", "access_log")
BROKER_KEYS = {"redis": ("kind", "url", "host", "port", "password", "db"),
               "dual-redis": ("kind", "url", "data_url", "ctrl_host", "ctrl_port", "data_host", "data_port",
                              "password")}
RESERVED_OPTIONS = (*FIELD_KEYS, "name", "config")   # what app.node() takes as anything but an option
STREAM_KEYS = ("source", "workers", "to", "replicas", "source_options", "worker_options", "qos")
STREAM_GIVEN = {"source_options": "url", "worker_options": "params"}   # what each stream gives its nodes
GATEWAY = "GatewayNode"                     # the built-in gateway's short name: the only one with interfaces


@dataclass
class NodeDecl:
    """One node of the file. ``source``: "class", "path" or "model"; ``ref``: what it names; ``fields``: the
    node keys given (type, fps, ...); ``entry``: its mapping (for marks); ``path``: ``("nodes", name)``."""

    name: str
    entry: Map
    path: tuple
    source: str
    ref: str
    fields: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    interfaces: dict[str, Any] | None = None


@dataclass
class LinkDecl:
    """One link of the file (a chain ``a -> b -> c`` gives two), with the mark and path of its list item."""

    source: str
    target: str
    mark: Mark
    path: tuple
    qos: str | None = None
    codec: str | None = None
    max_lag: int | None = None
    channel: str | None = None


@dataclass
class ClassDecl:
    """A class the ``streams:`` section names (its source or a worker): ``ref`` (``module:Class`` or a short
    name), where it was written (``mark``, ``path``)."""

    ref: str
    mark: Mark
    path: tuple


@dataclass
class StreamsDecl:
    """The ``streams:`` section: what ``app.streams(...)`` gets, each class with its marks."""

    entry: Map
    source: ClassDecl
    workers: list[ClassDecl]
    to: list[str]
    replicas: int = 1
    source_options: dict[str, Any] = field(default_factory=dict)
    worker_options: dict[str, Any] = field(default_factory=dict)
    qos: str | None = None


@dataclass
class Pipeline:
    """A checked pipeline file (merged and substituted): what load.py builds the EdgeApp from."""

    app: str
    broker: Any
    nodes: list[NodeDecl]
    links: list[LinkDecl]
    tree: Map
    streams: StreamsDecl | None = None


def check(tree: Map) -> Pipeline:
    """Check a merged, substituted tree against the schema.

    Raises:
        PipelineError: every problem found, one line each.
    """
    out: list[str] = []
    _keys(tree, (), TOP_KEYS, out, "top-level keys")
    app = tree.get("app")
    if "app" not in tree:
        out.append(problem(tree.mark, (), "missing 'app' (the app's name, e.g. app: my-robot)"))
    elif not is_valid_name(app):
        out.append(problem(tree.where("app"), ("app",), f"expected a name ({NAME_RULE}), got {app!r}"))
    broker = _broker(tree, out)
    nodes = _nodes(tree, out)
    links = _links(tree, {decl.name for decl in nodes}, out)
    streams = _streams(tree, {decl.name for decl in nodes}, out)
    if out:
        raise PipelineError(*in_file_order(out))
    return Pipeline(app, broker, nodes, links, tree, streams)


def _got(value: Any) -> str:
    return f"got {value!r}" if not isinstance(value, (Map, Seq)) else f"got a {_kind(value)}"


def _kind(value: Any) -> str:
    return {Map: "mapping", Seq: "list", dict: "mapping", list: "list"}.get(type(value), type(value).__name__)


def _keys(entry: Map, path: tuple, known: tuple, out: list, what: str, hint: str = "") -> None:
    """A problem per unknown key: with a did-you-mean when one is close, else with the keys it may be."""
    for key in entry:
        if key not in known:
            close = did_you_mean(key, known)
            said = close.strip() if close else f"({what}: {', '.join(known)}{hint})"
            out.append(problem(entry.where(key), (*path, key), f"unknown key {said}"))


def _mapping(parent: Map, key: str, path: tuple, out: list) -> Map | None:
    """parent[key] when it is a mapping (None when absent or null); a problem line otherwise."""
    value = parent.get(key)
    if value is None or isinstance(value, Map):
        return value
    out.append(problem(parent.where(key), path, f"expected a mapping, {_got(value)}"))
    return None


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- broker --------------------------------------------------------------------------------------------------

def _broker(tree: Map, out: list) -> Any:
    from edgeflow.comms.brokers import DualRedisBroker, RedisBroker

    value, mark, path = tree.get("broker"), tree.where("broker"), ("broker",)
    if value is None:
        return None
    options: dict[str, Any]
    if isinstance(value, str):
        if value in BROKER_KEYS:
            kind, options = value, {}
        elif value.startswith(("redis://", "rediss://")):
            kind, options = "redis", {"url": value}
        else:
            out.append(problem(mark, path, "expected redis, dual-redis, a redis:// URL or a mapping with "
                                           f"kind, {_got(value)}{did_you_mean(value, BROKER_KEYS)}"))
            return None
    elif isinstance(value, Map):
        kind = value.get("kind", "redis")
        if kind not in BROKER_KEYS:
            close = did_you_mean(kind, BROKER_KEYS)
            out.append(problem(value.where("kind"), (*path, "kind"),
                               f"expected redis or dual-redis, {_got(kind)}{close}"))
            return None
        before = len(out)
        _keys(value, path, BROKER_KEYS[kind], out, f"keys of a {kind} broker")
        if len(out) > before:
            return None
        options = {key: item for key, item in value.items() if key != "kind"}
    else:
        out.append(problem(mark, path, f"expected redis, dual-redis, a redis:// URL or a mapping, "
                                       f"{_got(value)}"))
        return None
    try:
        return (RedisBroker if kind == "redis" else DualRedisBroker)(**options)
    except (ConfigError, TypeError, ValueError) as exc:
        out.append(problem(mark, path, " ".join(str(exc).split())))
        return None


# -- nodes ---------------------------------------------------------------------------------------------------

def _nodes(tree: Map, out: list) -> list[NodeDecl]:
    nodes = tree.get("nodes")
    if "nodes" not in tree or nodes is None:
        out.append(problem(tree.where("nodes"), ("nodes",) if "nodes" in tree else (),
                           "missing 'nodes' (a mapping of node name -> class:, path: or model:)"))
        return []
    if not isinstance(nodes, Map) or not nodes:
        got = _got(nodes) if nodes else "got none"
        out.append(problem(tree.where("nodes"), ("nodes",),
                           f"expected a mapping of node name -> node, {got}"))
        return []
    decls = []
    for name, entry in nodes.items():
        path, mark = ("nodes", name), nodes.where(name)
        if not is_valid_name(name):
            out.append(problem(mark, path, f"invalid node name: {NAME_RULE}"))
        if not isinstance(entry, Map):
            out.append(problem(mark, path, f"expected a mapping (class: module:Class, path: folder or model: "
                                           f"module:Class), {_got(entry)}"))
            continue
        decl = _node(name, entry, path, mark, out)
        if decl is not None:
            decls.append(decl)
    return decls


def _node(name: str, entry: Map, path: tuple, mark: Mark, out: list) -> NodeDecl | None:
    _keys(entry, path, NODE_KEYS, out, "node keys", "; the node's own options go under options:")
    given = [key for key in SOURCE_KEYS if key in entry]
    if len(given) != 1:
        said = f" (got {' and '.join(given)})" if given else ""
        out.append(problem(mark, path, f"give exactly one of class: module:Class, path: folder or model: "
                                       f"module:Class{said}"))
        return None
    source = given[0]
    ref = entry[source]
    if not isinstance(ref, str) or not ref.strip():
        out.append(problem(entry.where(source), (*path, source), f"expected a string, {_got(ref)}"))
        return None
    decl = NodeDecl(name, entry, path, source, ref.strip())
    for key in FIELD_KEYS:
        if key in entry:
            message = _field(key, entry[key])
            if message:
                out.append(problem(entry.where(key), (*path, key), message))
            else:
                decl.fields[key] = entry[key]
    for key in ("build", "runtime"):
        table = entry.get(key)
        if isinstance(table, Map):
            _keys(table, (*path, key), {"build": ("base", "dependencies"), "runtime": ("gpu",)}[key], out,
                  f"keys of {key}")
    options = _mapping(entry, "options", (*path, "options"), out) or {}
    for key, value in options.items():
        if not key.isidentifier():
            out.append(problem(options.where(key), (*path, "options", key),
                               "an option's name must be a Python identifier"))
        elif key in RESERVED_OPTIONS:
            out.append(problem(options.where(key), (*path, "options", key),
                               f"{key!r} is a node key, not an option: write it beside {source}: "
                               "(not under options:)"))
        else:
            decl.options[key] = value
    for key in MODEL_KEYS:
        if key in entry and source != "model":
            out.append(problem(entry.where(key), (*path, key), f"only a model: node takes {key}"))
    if "interfaces" in entry:
        decl.interfaces = _interfaces(entry, path, source, out)
    return decl


def _field(key: str, value: Any) -> str | None:
    """The problem with a node key's value, or None."""
    if key == "type":
        if value not in KINDS:
            return f"unknown type {value!r}{did_you_mean(value, KINDS)} (expected one of {', '.join(KINDS)})"
    elif key == "fps":
        if value is not None and not (_is_number(value) and value > 0):
            return f"expected a number > 0, or null for as fast as the consumers take frames, {_got(value)}"
    elif key == "replicas":
        if not _is_int(value, 1):
            return f"expected an integer >= 1, {_got(value)}"
    elif key == "node_port":
        if value is not None and not _is_int(value, 1, 65535):
            return f"expected a port number (1-65535), {_got(value)}"
    elif key == "group":
        if value is not None and not is_valid_name(value):
            return f"expected a group name ({NAME_RULE}), {_got(value)}"
    elif key in ("device", "description"):
        if value is not None and not (isinstance(value, str) and value):
            return f"expected a non-empty string, {_got(value)}"
    elif key in ("build", "runtime"):
        if not isinstance(value, Map):
            return f"expected a mapping, {_got(value)}"
    return None


def _interfaces(entry: Map, path: tuple, source: str, out: list) -> dict[str, Any] | None:
    where = entry.where("interfaces")
    if source != "class" or entry[source].strip() != GATEWAY:
        out.append(problem(where, (*path, "interfaces"),
                           f"only the built-in gateway (class: {GATEWAY}) takes interfaces; a gateway class "
                           "of your own adds them in its setup()"))
        return None
    table = _mapping(entry, "interfaces", (*path, "interfaces"), out)
    if table is None:
        return None
    _keys(table, (*path, "interfaces"), INTERFACE_KEYS, out, "interfaces")
    web = table.get("web")
    web_path = (*path, "interfaces", "web")
    if web is None or web is True:
        return {"web": {}} if "web" in table else {}
    if not isinstance(web, Map):
        out.append(problem(table.where("web"), web_path, f"expected a mapping of WebInterface options, "
                                                         f"{_got(web)}"))
        return None
    _keys(web, web_path, WEB_KEYS, out, "WebInterface options")
    checks = {"port": (lambda v: _is_int(v, 0, 65535), "a port number (0-65535)"),
              "host": (lambda v: isinstance(v, str) and v, "an address such as 127.0.0.1"),
              "token": (lambda v: v is None or (isinstance(v, str) and v), "a non-empty string"),
              "allowed_origins": (lambda v: isinstance(v, Seq) and all(isinstance(o, str) for o in v),
                                  "a list of origins (https://host[:port])"),
              "buffer_delay": (lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
              "queue_size": (lambda v: _is_int(v, 1), "an integer >= 1")}
    for key, (ok, expected) in checks.items():
        if key in web and not ok(web[key]):
            out.append(problem(web.where(key), (*web_path, key), f"expected {expected}, {_got(web[key])}"))
    return {"web": {key: list(value) if isinstance(value, Seq) else value for key, value in web.items()}}


# -- links ---------------------------------------------------------------------------------------------------

def _links(tree: Map, names: set[str], out: list) -> list[LinkDecl]:
    links = tree.get("links")
    if links is None:
        return []
    if not isinstance(links, Seq):
        out.append(problem(tree.where("links"), ("links",),
                           "expected a list of links ('a -> b' or a mapping with from and to), "
                           f"{_got(links)}"))
        return []
    decls: list[LinkDecl] = []
    for index, item in enumerate(links):
        mark, path = links.where(index), ("links", index)
        if isinstance(item, str):
            decls += _chain(item, mark, path, names, out)
        elif isinstance(item, Map):
            decl = _link_mapping(item, mark, path, names, out)
            if decl is not None:
                decls.append(decl)
        else:
            out.append(problem(mark, path, f"expected 'a -> b' or a mapping with from and to, {_got(item)}"))
    return decls


def _unknown(name: str, names: set[str]) -> str:
    return f"unknown node {name!r}{did_you_mean(name, sorted(names))}"


def _chain(text: str, mark: Mark, path: tuple, names: set[str], out: list) -> list[LinkDecl]:
    parts = [part.strip() for part in text.split("->")]
    if len(parts) < 2 or not all(parts):
        out.append(problem(mark, path, f"expected 'a -> b' (node names joined by ->), got {text!r}"))
        return []
    bad = [part for part in parts if part not in names]
    for part in dict.fromkeys(bad):
        out.append(problem(mark, path, _unknown(part, names)))
    if bad:
        return []
    return [LinkDecl(a, b, mark, path) for a, b in zip(parts, parts[1:])]


def _link_mapping(item: Map, mark: Mark, path: tuple, names: set[str], out: list) -> LinkDecl | None:
    before = len(out)
    _keys(item, path, LINK_KEYS, out, "link keys")
    ends = {}
    for key in ("from", "to"):
        value = item.get(key)
        if key not in item:
            out.append(problem(mark, path, f"missing {key!r} (a link is a mapping with from and to)"))
        elif not isinstance(value, str):
            out.append(problem(item.where(key), (*path, key), f"expected a node name, {_got(value)}"))
        elif value not in names:
            out.append(problem(item.where(key), (*path, key), _unknown(value, names)))
        else:
            ends[key] = value
    qos = item.get("qos")
    if qos is not None and (not isinstance(qos, str) or qos.lower() not in QOS_NAMES):
        close = did_you_mean(str(qos).lower(), QOS_NAMES)
        out.append(problem(item.where("qos"), (*path, "qos"),
                           f"unknown QoS {qos!r}{close} (expected one of {', '.join(QOS_NAMES)})"))
    codec = item.get("codec")
    if codec is not None and (not isinstance(codec, str) or codec.lower() not in CODEC_NAMES):
        close = did_you_mean(str(codec).lower(), CODEC_NAMES)
        out.append(problem(item.where("codec"), (*path, "codec"), f"unknown codec {codec!r}{close} "
                                                                  f"(expected null for raw, or one of "
                                                                  f"{', '.join(CODEC_NAMES)})"))
    max_lag = item.get("max_lag")
    if max_lag is not None:
        if not _is_int(max_lag, 1):
            out.append(problem(item.where("max_lag"), (*path, "max_lag"), f"expected an integer >= 1, "
                                                                          f"{_got(max_lag)}"))
        elif not (isinstance(qos, str) and qos.lower() == "balanced"):
            out.append(problem(item.where("max_lag"), (*path, "max_lag"), "max_lag applies only to a "
                                                                          "qos: balanced link"))
    channel = item.get("channel")
    if channel is not None and not is_valid_name(channel):
        out.append(problem(item.where("channel"), (*path, "channel"),
                           f"expected a channel name ({NAME_RULE}), {_got(channel)}"))
    if len(out) > before:
        return None
    return LinkDecl(ends["from"], ends["to"], mark, path, qos=qos, codec=codec, max_lag=max_lag,
                    channel=channel)


# -- streams -------------------------------------------------------------------------------------------------

def _streams(tree: Map, names: set[str], out: list) -> StreamsDecl | None:
    """The ``streams:`` section (the stream template, ``app.streams(...)``), or None when there is none."""
    path = ("streams",)
    entry = _mapping(tree, "streams", path, out)
    if entry is None:
        return None
    before = len(out)
    _keys(entry, path, STREAM_KEYS, out, "keys of streams")
    if "source" not in entry:
        out.append(problem(entry.mark, path, "missing 'source' (the producer class each stream runs, e.g. "
                                             "source: VideoSource)"))
        source = None
    else:
        source = _class_decl(entry["source"], entry.where("source"), (*path, "source"), out)
    workers: list[ClassDecl] = []
    given = entry.get("workers")
    if isinstance(given, str):
        given = Seq(entry.where("workers"), [given], [entry.where("workers")])
    if given is not None and not isinstance(given, Seq):
        out.append(problem(entry.where("workers"), (*path, "workers"),
                           f"expected a list of classes (module:Class or a built-in name), {_got(given)}"))
    for index, item in enumerate(given if isinstance(given, Seq) else ()):
        decl = _class_decl(item, given.where(index), (*path, "workers", index), out)
        if decl is not None:
            workers.append(decl)
    to = _stream_targets(entry, names, out)
    replicas = entry.get("replicas", 1)
    if not _is_int(replicas, 1):
        out.append(problem(entry.where("replicas"), (*path, "replicas"),
                           f"expected an integer >= 1 (processes per worker), {_got(replicas)}"))
    options = {key: _stream_options(entry, key, out) for key in STREAM_GIVEN}
    qos = entry.get("qos")
    if qos is not None and (not isinstance(qos, str) or qos.lower() not in QOS_NAMES):
        close = did_you_mean(str(qos).lower(), QOS_NAMES)
        out.append(problem(entry.where("qos"), (*path, "qos"),
                           f"unknown QoS {qos!r}{close} (expected one of {', '.join(QOS_NAMES)})"))
    if len(out) > before or source is None:
        return None
    return StreamsDecl(entry, source, workers, to, replicas, options["source_options"],
                       options["worker_options"], qos)


def _class_decl(value: Any, mark: Mark, path: tuple, out: list) -> ClassDecl | None:
    """A class named by a string (``module:Class`` or a short name), or ``{class: ...}``."""
    if isinstance(value, Map):
        if set(value) != {"class"}:
            said = ("a node folder cannot be a stream's class: name its class as module:Class"
                    if "path" in value else "expected module:Class, a built-in name, or a mapping with only "
                                            f"class: (got keys {', '.join(value)})")
            out.append(problem(mark, path, said))
            return None
        mark, path, value = value.where("class"), (*path, "class"), value["class"]
    if not isinstance(value, str) or not value.strip():
        out.append(problem(mark, path, f"expected module:Class or a built-in name, {_got(value)}"))
        return None
    return ClassDecl(value.strip(), mark, path)


def _stream_targets(entry: Map, names: set[str], out: list) -> list[str]:
    """``to``: one node name or a list of them, each a node of the file."""
    value, path = entry.get("to"), ("streams", "to")
    if value is None:
        return []
    if isinstance(value, str):
        items, marks = [value], [entry.where("to")]
    elif isinstance(value, Seq):
        items, marks = list(value), [value.where(i) for i in range(len(value))]
    else:
        out.append(problem(entry.where("to"), path, f"expected a node name or a list of them, {_got(value)}"))
        return []
    targets = []
    for index, (item, mark) in enumerate(zip(items, marks)):
        where = path if isinstance(value, str) else (*path, index)
        if not isinstance(item, str):
            out.append(problem(mark, where, f"expected a node name, {_got(item)}"))
        elif item not in names:
            out.append(problem(mark, where, _unknown(item, names)))
        else:
            targets.append(item)
    return targets


def _stream_options(entry: Map, key: str, out: list) -> dict[str, Any]:
    """``source_options`` / ``worker_options``: identifiers as keys, none of what each stream sets itself."""
    path = ("streams", key)
    table = _mapping(entry, key, path, out) or {}
    options = {}
    for name, value in table.items():
        if not name.isidentifier():
            out.append(problem(table.where(name), (*path, name),
                               "an option's name must be a Python identifier"))
        elif name == STREAM_GIVEN[key] or name == "name":
            said = {"url": "each stream's url", "params": "each stream's params",
                    "name": "the stream's node names"}[name]
            out.append(problem(table.where(name), (*path, name), f"{name!r} is set by the stream itself "
                                                                 f"({said}), not an option"))
        else:
            options[name] = value
    return options
