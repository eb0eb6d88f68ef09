"""Pipeline files out: ``edgeflow graph main.py --format yaml`` (an app built in Python, as a file that
loads to the same ``Graph.to_dict()``), and the merged document of loaded files.

From a Python app (``graph_yaml``), node by node:

- a class defined in the script (``__main__``) is named ``<script stem>:Class`` (``main:FakeCamera``), to be
  resolved next to the written file: write it beside main.py; a class of an importable module is
  ``module:Class``; a connector or the built-in gateway by its short name; a folder node is ``path:``,
  relative to main.py's folder, with only what differs from its node.toml. A class defined inside a function
  cannot be named: that is an error naming the node.
- every node key that is not its default (``type`` always, a producer's ``fps`` always), its options under
  ``options:``; an option whose key looks secret (password, token, ...) is written as ``${NODE_KEY}`` and a
  URL's password as ``${NODE_KEY_PASSWORD}`` (never the value: set the variable where the file runs), and
  each such is reported in ``notes``.
- the stream template (``app.streams(...)``) as the ``streams:`` section: source and workers named as node
  classes are, ``to``, and whatever is not its default (replicas, source_options, worker_options, qos).
- links: consecutive links with the default QoS (REALTIME, DURABLE into a sink) and nothing else as chains
  (``a -> b -> c``), the others as mappings (``from``, ``to``, ``qos``, ``codec``, ``max_lag``, ``channel``).
- the broker: ``redis`` / ``dual-redis`` when it is the one the environment gives (``RedisBroker()``), else
  its URL(s), a password as ``${REDIS_PASSWORD}``.

From loaded files (``raw_yaml``): the merged document before substitution, ``${VAR}`` references kept.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from edgeflow import _nodeload
from edgeflow.errors import ConfigError
from edgeflow.graph import DEFAULT_MAX_LAG
from edgeflow.pipeline import builtins
from edgeflow.pipeline.subst import SECRET_KEY
from edgeflow.pipeline.tree import Map, Ref, Seq
from edgeflow.qos import QoS


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order given; a ``${VAR}`` written unquoted stays unquoted."""


def _represent_ref(dumper: yaml.SafeDumper, value: Ref) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style=None if value.plain else '"')


_Dumper.add_representer(Ref, _represent_ref)
_Dumper.add_representer(Map, _Dumper.represent_dict)
_Dumper.add_representer(Seq, _Dumper.represent_list)


def dump(document: dict[str, Any], header: str) -> str:
    """``document`` as YAML text after a comment ``header``."""
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=110)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + text


def raw_yaml(source: Any) -> str:
    """The merged document of a loaded app's files, ``${VAR}`` references as written."""
    files = ", ".join(source.files)
    return dump(source.raw, f"merged from {files} by `edgeflow graph --format yaml` (${{VAR}} kept)")


def graph_yaml(app: Any, script: str | os.PathLike) -> tuple[str, list[str]]:
    """A pipeline file for an app built in Python by ``script`` (its main.py).

    Returns:
        (the YAML text, notes: one line per secret written as a ``${VAR}``).

    Raises:
        ConfigError: a node whose class cannot be named by path, or an option a file cannot hold.
    """
    graph = app.graph()
    script = Path(script).resolve()
    notes: list[str] = []
    nodes = {spec.name: _node(spec, script, notes) for spec in graph.nodes}
    document: dict[str, Any] = {"app": graph.app}
    if graph.broker is not None:
        document["broker"] = _broker(graph.broker, notes)
    document["nodes"] = nodes
    links = _links(graph)
    if links:
        document["links"] = links
    if getattr(graph, "streams", None) is not None:
        document["streams"] = _streams(graph.streams, script, notes)
    header = (f"written by `edgeflow graph {script.name} --format yaml`: the same graph as {script.name}\n"
              f"(keep it next to {script.name}: classes and folders are named relative to this folder)")
    return dump(document, header), notes


def _node(spec: Any, script: Path, notes: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    cls = spec.class_ref
    if spec.folder is not None:
        entry["path"] = Path(os.path.relpath(spec.folder, script.parent)).as_posix()
        toml = _nodeload.read_node_toml(Path(spec.folder))
        baseline = {**toml.pop("config", {}), **toml}
    else:
        entry["class"] = builtins.short_name_of(cls) or _class_ref(spec.name, cls, script)
    if baseline.get("type") != spec.kind:
        entry["type"] = spec.kind
    fps = int(spec.fps) if spec.fps is not None and float(spec.fps).is_integer() else spec.fps
    fields = {"fps": fps, "replicas": spec.replicas, "device": spec.device, "group": spec.group,
              "node_port": spec.node_port, "description": spec.description}
    # a producer's fps always goes in (null too: the loader's default would be its class's 30)
    defaults = {"replicas": 1, "device": None, "group": None, "node_port": None, "description": None,
                "fps": "always" if spec.kind == "producer" else None}
    for key, value in fields.items():
        if key in baseline:
            if baseline[key] != value:
                entry[key] = value
        elif value != defaults[key]:
            entry[key] = value
    given = (("base", spec.base_image), ("dependencies", list(spec.dependencies)))
    build = {key: value for key, value in given if value}
    if build and build != baseline.get("build"):
        entry["build"] = build
    if spec.gpu and baseline.get("runtime") != {"gpu": True}:
        entry["runtime"] = {"gpu": True}
    options = {}
    for key, value in spec.config.items():
        if key in baseline and baseline[key] == value:
            continue
        options[key] = _option(spec.name, (key,), value, notes)
    if cls is builtins.Gateway:
        web = options.pop("web", None)
        entry["interfaces"] = {"web": web} if web is not None else {}
    if options:
        entry["options"] = options
    return entry


def _streams(template: Any, script: Path, notes: list[str]) -> dict[str, Any]:
    """The ``streams:`` section of a stream template: every key that is not its default."""
    def named(what: str, cls: type) -> str:
        return builtins.short_name_of(cls) or _class_ref(what, cls, script, "streams")

    entry: dict[str, Any] = {"source": named("source", template.source)}
    if template.workers:
        entry["workers"] = [named(f"workers[{i}]", cls) for i, cls in enumerate(template.workers)]
    if template.to:
        entry["to"] = template.to[0] if len(template.to) == 1 else list(template.to)
    if template.replicas != 1:
        entry["replicas"] = template.replicas
    for key in ("source_options", "worker_options"):
        options = getattr(template, key)
        if options:
            entry[key] = {k: _option("streams", (key, k), v, notes) for k, v in options.items()}
    if template.qos is not QoS.REALTIME:
        entry["qos"] = template.qos.name.lower()
    return entry


def _class_ref(name: str, cls: type, script: Path, what: str = "node") -> str:
    module, qualname = cls.__module__, cls.__qualname__
    said = f"node {name!r}" if what == "node" else f"{what}.{name}"
    if "<locals>" in qualname:
        raise ConfigError(f"{said}: class {qualname} is defined inside a function: a pipeline file "
                          "can name only a class at a module's top level")
    if module in ("__main__", "__mp_main__"):
        return f"{script.stem}:{qualname}"
    if module.startswith(_nodeload.PACKAGE + "."):
        raise ConfigError(f"{said}: class {qualname} comes from a node folder's package: name the "
                          "folder (app.node(\"nodes/x\")) instead")
    return f"{module}:{qualname}"


def _variable(node: str, path: tuple) -> str:
    return re.sub(r"\W", "_", "_".join((node, *map(str, path)))).upper()


def _option(node: str, path: tuple, value: Any, notes: list[str]) -> Any:
    """One option value as a file holds it; secrets as ``${VAR}``."""
    key = str(path[-1])
    if isinstance(value, str):
        if SECRET_KEY.search(key) and value:
            var = _variable(node, path)
            notes.append(f"node {node!r}: option {'.'.join(map(str, path))!r} written as ${{{var}}}: set it "
                         "where the file runs")
            return Ref(f"${{{var}}}", plain=False)
        url = _url_secret(value, _variable(node, path) + "_PASSWORD")
        if url is not None:
            notes.append(f"node {node!r}: option {'.'.join(map(str, path))!r}: the URL's password written as "
                         f"${{{_variable(node, path)}_PASSWORD}}")
            return url
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_option(node, (*path, i), item, notes) for i, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _option(node, (*path, k), item, notes) for k, item in value.items()}
    raise ConfigError(f"node {node!r}: option {'.'.join(map(str, path))!r} is a {type(value).__name__}: a "
                      "pipeline file holds only strings, numbers, booleans, null, lists and mappings")


def _url_secret(value: str, var: str) -> Ref | None:
    if "://" not in value or "@" not in value:
        return None
    try:
        parts = urllib.parse.urlsplit(value)
        password = parts.password
    except ValueError:
        return None
    if not password:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    return Ref(urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:${{{var}}}@{host}")),
               plain=False)


def _broker(broker: Any, notes: list[str]) -> Any:
    from edgeflow.comms.brokers import DualRedisBroker, RedisBroker

    if isinstance(broker, DualRedisBroker):
        if broker == DualRedisBroker():
            return "dual-redis"
        return {"kind": "dual-redis", "url": _broker_url(broker.url, notes),
                "data_url": _broker_url(broker.data_url, notes)}
    if isinstance(broker, RedisBroker) and broker == RedisBroker():
        return "redis"
    return _broker_url(broker.url, notes)


def _broker_url(url: str, notes: list[str]) -> Any:
    ref = _url_secret(url, "REDIS_PASSWORD")
    if ref is None:
        return url
    notes.append("broker: the URL's password written as ${REDIS_PASSWORD}")
    return ref


def _links(graph: Any) -> list[Any]:
    items: list[Any] = []
    for edge in graph.edges:
        default = QoS.DURABLE if graph.node(edge.target).kind == "sink" else QoS.REALTIME
        if edge.qos is default and edge.codec is None and edge.channel is None:
            if items and isinstance(items[-1], list) and items[-1][-1] == edge.source:
                items[-1].append(edge.target)
            else:
                items.append([edge.source, edge.target])
            continue
        item: dict[str, Any] = {"from": edge.source, "to": edge.target}
        if edge.qos is not default:
            item["qos"] = edge.qos.name.lower()
        if edge.max_lag is not None and edge.max_lag != DEFAULT_MAX_LAG:
            item["max_lag"] = edge.max_lag
        for key in ("codec", "channel"):
            if getattr(edge, key) is not None:
                item[key] = getattr(edge, key)
        items.append(item)
    return [" -> ".join(item) if isinstance(item, list) else item for item in items]
