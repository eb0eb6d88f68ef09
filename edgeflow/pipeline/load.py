"""A pipeline file (or several, merged) to an EdgeApp: the same graph the Python API builds.

    app = edgeflow.load("pipeline.yaml")                     # or load(["base.yaml", "site.yaml"])
    app.graph(); app.run(); app.start(frames=100)

Steps: read each file (tree.py), merge them (merge.py), substitute ``${VAR}`` (subst.py), check the schema
(validate.py), then register every node with ``EdgeApp.node`` and every link with ``link().to()`` and call
``app.graph()``, so the Python API's own checks run (a connector's options, kinds, cycles, duplicate links,
unreachable nodes); their errors come back as lines of the file (the node's key, the link's list item).

Naming a class: ``class: package.module:Class`` imports it as Python would; a module next to the file that
names it (``class: nodes:Camera`` for nodes.py, ``class: main:FakeCamera`` for main.py beside the file) is
imported with that folder first on ``sys.path``, as ``python main.py`` puts main.py's folder there, and node
processes (spawned) inherit it. A module that starts an app when imported (``app.run()`` outside
``if __name__ == "__main__":``) is refused. ``class: MqttSource`` and the other short names: builtins.py.

The ``streams:`` section becomes ``app.streams(source, workers, to, ...)`` (the stream template): its source
and workers are named as a node's ``class:`` is (a short name or ``module:Class``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from edgeflow import _nodeload, graph as graph_module
from edgeflow.errors import ConfigError, GraphError
from edgeflow.graph import EdgeApp
from edgeflow.nodes import Node
from edgeflow.pipeline import builtins, merge, subst, tree, validate
from edgeflow.pipeline.errors import PipelineError
from edgeflow.pipeline.tree import Map, problem

_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Source:
    """Where a loaded app came from: its files, the merged document before substitution (what
    ``--format yaml`` writes back), and the secrets substituted into it."""

    files: tuple[str, ...]
    raw: Map
    secrets: subst.Secrets


def source_of(app: Any) -> Source | None:
    """The Source of an app ``load()`` made, or None for an app built in Python."""
    try:
        return _SOURCES.get(app)
    except TypeError:
        return None


def load(paths: str | os.PathLike | Iterable[str | os.PathLike],
         env: dict[str, str] | None = None) -> EdgeApp:
    """Load a pipeline file, or several merged in order (later files win), into an EdgeApp.

    Args:
        paths: a YAML or JSON file, or a list of them.
        env: the variables ``${VAR}`` reads (default: ``os.environ``).

    Returns:
        The EdgeApp, its graph already validated.

    Raises:
        PipelineError: one line per problem, each ``file:line:column: key.path: what``; a GraphError (and so
            a ConfigError), raised before anything starts.
    """
    files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not files:
        raise PipelineError("no pipeline file given")
    shown = tuple(os.fspath(path) for path in files)
    raw = merge.merge([tree.read(path) for path in shown])
    values, secrets = subst.substitute(raw, os.environ if env is None else env)
    try:
        pipeline = validate.check(values)
        app = _build(pipeline, secrets)
    except PipelineError as exc:
        raise PipelineError(*(secrets.mask(line) for line in exc.problems), node=exc.node,
                            link=exc.link) from None
    _SOURCES[app] = Source(shown, raw, secrets)
    return app


def _build(pipeline: validate.Pipeline, secrets: subst.Secrets) -> EdgeApp:
    top = pipeline.tree
    try:
        app = EdgeApp(pipeline.app, broker=pipeline.broker)
    except ConfigError as exc:
        raise PipelineError(problem(top.where("app"), ("app",), str(exc))) from None
    problems: list[str] = []
    for decl in pipeline.nodes:
        try:
            target, options = _target(decl)
            app.node(target, name=decl.name, **_plain({**options, **decl.fields, **decl.options}))
        except PipelineError as exc:
            problems += exc.problems
        except ConfigError as exc:                    # EdgeApp's and the class's own check_options
            problems.append(_locate(decl, str(exc)))
    if problems:
        raise PipelineError(*problems)
    for link in pipeline.links:
        given = {key: getattr(link, key) for key in ("qos", "codec", "max_lag", "channel")
                 if getattr(link, key) is not None}
        try:
            app.link(link.source).to(link.target, **given)
        except GraphError as exc:
            raise PipelineError(problem(link.mark, link.path, str(exc)), link=exc.link) from None
    if pipeline.streams is not None:
        _streams(app, pipeline.streams)
    try:
        app.graph()
    except GraphError as exc:
        raise PipelineError(_graph_problem(pipeline, exc), node=exc.node, link=exc.link) from None
    return app


def _graph_problem(pipeline: validate.Pipeline, exc: GraphError) -> str:
    """A graph check's error as a line of the file: the link's list item, else the node's key."""
    message = " ".join(str(exc).split())
    if exc.link is not None:
        matches = [link for link in pipeline.links if (link.source, link.target) == tuple(exc.link)]
        if matches:
            link = matches[-1] if "duplicate link" in message else matches[0]   # the second one is the extra
            return problem(link.mark, link.path, message)
    nodes = pipeline.tree.get("nodes")
    if exc.node is not None and isinstance(nodes, Map) and exc.node in nodes:
        return problem(nodes.where(exc.node), ("nodes", exc.node), _strip_node(exc.node, message))
    return problem(pipeline.tree.mark, (), message)


def _strip_node(name: str, message: str) -> str:
    prefix = f"node {name!r}: "
    return message[len(prefix):] if message.startswith(prefix) else message


_FIELD_WORDS = {"replicas": "replicas", "fps": "fps", "node_port": "node_port", "device": "device",
                "group": "group", "invalid group": "group", "unknown type": "type", "type=": "type",
                "description": "description", "build": "build", "unknown build": "build",
                "runtime": "runtime", "unknown runtime": "runtime"}


def _locate(decl: validate.NodeDecl, text: str) -> str:
    """An error EdgeApp raised for a node, as a line at the key it is about (an option, a node key, or the
    node itself)."""
    message = _strip_node(decl.name, " ".join(text.split()))
    entry, path = decl.entry, decl.path
    option = re.match(r"option '([^']+)': ", message)
    if option and isinstance(entry.get("options"), Map) and option.group(1) in entry["options"]:
        options = entry["options"]
        return problem(options.where(option.group(1)), (*path, "options", option.group(1)),
                       message[option.end():])
    if option and option.group(1) in entry and option.group(1) in validate.MODEL_KEYS:
        return problem(entry.where(option.group(1)), (*path, option.group(1)), message[option.end():])
    if option and option.group(1) == "web" and "interfaces" in entry:
        return problem(entry.where("interfaces"), (*path, "interfaces"), message[option.end():])
    for words, key in _FIELD_WORDS.items():
        if message.startswith(words) and key in entry:
            return problem(entry.where(key), (*path, key), message)
    if "is not a node class" in message or "node folder" in message or "generic Node" in message:
        return problem(entry.where(decl.source), (*path, decl.source), message)
    nodes_mark = entry.mark
    return problem(nodes_mark, path, message)


# -- the stream template ------------------------------------------------------------------------------------

_KINDS = {"source": ("producer", "a producer (ProducerNode) class: it gets each stream's url"),
          "worker": ("consumer", "a consumer (ConsumerNode) class: it gets each stream's params")}


def _streams(app: EdgeApp, decl: validate.StreamsDecl) -> None:
    """``app.streams(...)`` from the ``streams:`` section; each class's problem at its own line."""
    problems: list[str] = []
    classes: list[type] = []
    for role, item in [("source", decl.source)] + [("worker", worker) for worker in decl.workers]:
        try:
            cls = _stream_class(item)
        except PipelineError as exc:
            problems += exc.problems
            continue
        kind, what = _KINDS[role]
        if not issubclass(cls, Node):
            problems.append(problem(item.mark, item.path,
                                    f"{item.ref!r} is not a node class: expected {what}"))
        elif cls.node_kind != kind:
            got = f"a {cls.node_kind} class" if cls.node_kind else "a generic Node class (no kind)"
            problems.append(problem(item.mark, item.path, f"{item.ref!r} is {got}, not {what}"))
        classes.append(cls)
    if problems:
        raise PipelineError(*problems)
    given = {"qos": decl.qos} if decl.qos is not None else {}
    try:
        app.streams(classes[0], classes[1:], decl.to, replicas=decl.replicas,
                    source_options=_plain(decl.source_options), worker_options=_plain(decl.worker_options),
                    **given)
    except (ConfigError, GraphError) as exc:
        message = " ".join(str(exc).split()).removeprefix("streams(): ")
        raise PipelineError(problem(decl.entry.mark, ("streams",), message)) from None


def _stream_class(item: validate.ClassDecl) -> type:
    """The class a ``streams:`` entry names: a short name, or ``module:Class`` (next to its file first)."""
    if ":" not in item.ref:
        cls = builtins.resolve(item.ref)
        if cls is None:
            close = _nodeload.did_you_mean(item.ref, builtins.short_names())
            message = f"{item.ref!r} is not a built-in node{close}; name a class of your own as module:Class"
            raise PipelineError(problem(item.mark, item.path, message))
        return cls
    return import_class(item.ref, Path(item.mark.file).resolve().parent, item.mark, item.path)


# -- what a node names ---------------------------------------------------------------------------------------

def _base(decl: validate.NodeDecl) -> Path:
    """The folder of the file that wrote the node's class:, path: or model:."""
    return Path(decl.entry.where(decl.source).file).resolve().parent


def _target(decl: validate.NodeDecl) -> tuple[Any, dict[str, Any]]:
    """(a node class or an absolute folder, options it brings) for app.node()."""
    where, path = decl.entry.where(decl.source), (*decl.path, decl.source)
    if decl.source == "path":
        folder = Path(decl.ref).expanduser()
        folder = folder if folder.is_absolute() else _base(decl) / folder
        if not folder.is_dir():
            raise PipelineError(problem(where, path, f"folder {decl.ref!r} not found (looked in {folder})"))
        return str(folder.resolve()), {}
    if decl.source == "model":
        return _model(decl, where, path)
    if ":" not in decl.ref:
        cls = builtins.resolve(decl.ref)
        if cls is None:
            close = _nodeload.did_you_mean(decl.ref, builtins.short_names())
            message = f"{decl.ref!r} is not a built-in node{close}; name a class of your own as module:Class"
            raise PipelineError(problem(where, path, message))
        options = {}
        if cls is builtins.Gateway and decl.interfaces is not None:
            options["web"] = decl.interfaces.get("web")
        return cls, options
    return import_class(decl.ref, _base(decl), where, path), {}


def import_class(ref: str, base: Path, where: tree.Mark, path: tuple) -> type:
    """``module:Qualname`` -> the class; a module next to the file (``base``) first.

    Raises:
        PipelineError: malformed, not importable, no such attribute (with a did-you-mean), or the module
            started an app when imported.
    """
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname or not all(part.isidentifier() for part in module_name.split(".")) \
            or not all(part.isidentifier() for part in qualname.split(".")):
        message = (f"expected module:Class (e.g. nodes:Camera, mypkg.cams:Camera) or a built-in name, "
                   f"got {ref!r}")
        raise PipelineError(problem(where, path, message))
    module = import_module(module_name, base, where, path)
    value: Any = module
    for part in qualname.split("."):
        if not hasattr(value, part):
            classes = [name for name, item in vars(module).items() if isinstance(item, type)]
            raise PipelineError(problem(where, path, f"module {module_name!r} ({_file_of(module)}) has no "
                                                     f"{part!r}{_nodeload.did_you_mean(part, classes)}"))
        value = getattr(value, part)
    if not isinstance(value, type):
        raise PipelineError(problem(where, path, f"{ref!r} is a {type(value).__name__}, not a node class"))
    return value


class _RanApp(BaseException):
    """Raised by the run hook while a module is imported for a pipeline file: it called app.run()."""


def _refuse_run(app: Any, argv: Any) -> Any:
    raise _RanApp(getattr(app, "name", app))


def import_module(name: str, base: Path, where: tree.Mark, path: tuple) -> ModuleType:
    """Import ``name``, with ``base`` first on sys.path when the module is a file or package in it."""
    top = name.split(".")[0]
    local = (base / f"{top}.py").is_file() or (base / top / "__init__.py").is_file()
    if local and str(base) not in sys.path:
        sys.path.insert(0, str(base))        # node processes inherit sys.path (multiprocessing's spawn)
    saved = graph_module._run_hook
    graph_module._run_hook = _refuse_run
    try:
        module = importlib.import_module(name)
    except _RanApp:
        sys.modules.pop(name, None)
        message = (f"importing {name!r} started an app (app.run() at module level): put it under "
                   "if __name__ == \"__main__\":")
        raise PipelineError(problem(where, path, message)) from None
    except ImportError as exc:
        looked = f" (looked next to the file, in {base}, then on sys.path)"
        raise PipelineError(problem(where, path, f"cannot import {name!r}: {exc}{looked}")) from None
    except Exception as exc:
        raise PipelineError(problem(where, path, f"importing {name!r} failed: {type(exc).__name__}: "
                                                 f"{' '.join(str(exc).split())}")) from None
    finally:
        graph_module._run_hook = saved
    if local and not _inside(sys.modules.get(top), base):
        message = (f"module {top!r} is already imported from {_file_of(sys.modules.get(top))}, not from "
                   f"{base}: rename one of them")
        raise PipelineError(problem(where, path, message))
    return module


def _inside(module: Any, base: Path) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(base)


def _file_of(module: Any) -> str:
    return str(getattr(module, "__file__", None) or getattr(module, "__name__", "?"))


def _model(decl: validate.NodeDecl, where: tree.Mark, path: tuple) -> tuple[type, dict[str, Any]]:
    """A ``model:`` entry through ``edgeflow.models.node_for(spec) -> (node class, options)``."""
    if importlib.util.find_spec("edgeflow.models") is None:
        raise PipelineError(problem(where, path, "model blocks need edgeflow.models, which this EdgeFlow "
                                                 "does not have"))
    models = importlib.import_module("edgeflow.models")
    node_for = getattr(models, "node_for", None)
    if node_for is None:
        raise PipelineError(problem(where, path, "model blocks need edgeflow.models.node_for(spec)"))
    base = _base(decl)
    spec = {"name": decl.name, "model": decl.ref,
            **{key: _plain(decl.entry[key]) for key in validate.MODEL_KEYS if key in decl.entry}}
    try:
        cls, options = node_for(spec, base_dir=str(base))   # it resolves model modules beside the file
    except ConfigError as exc:
        message = _strip_node(decl.name, " ".join(str(exc).split()))
        message = re.sub(r"^option '(model|module_path)': ", "", message)
        raise PipelineError(problem(where, path, message)) from None
    options = dict(options)
    options.pop("name", None)                # app.node() gets the name itself
    return cls, dict(options)


def _plain(value: Any) -> Any:
    """A tree as plain dicts and lists, without marks: what node options and attributes hold."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
