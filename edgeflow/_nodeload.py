"""Turning what a user wrote into node settings: folder packages and node.toml, class kinds, node options.

A folder node is imported from its absolute path under a stable module name
(``edgeflow_nodes.<folder>_<hash>``), so a spawned child process that never ran the app's main.py imports the
very same class: nodes run in their own processes, and the folder is all a NodeSpec has to carry.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import math
import os
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeflow.errors import ConfigError, GraphError
from edgeflow.nodes import KINDS, Node

try:
    import tomllib as _toml
except ModuleNotFoundError:          # Python 3.10: the tomli backport has the same API
    try:
        import tomli as _toml        # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None                 # only a folder with a node.toml needs it; say so then

NAME_RULE = "use 1-64 letters, digits, '-' or '_'"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)     # '.' separates parts of shm and Redis names
PACKAGE = "edgeflow_nodes"                               # parent of every module loaded from a folder
RUNTIME_KEYS = ("fps", "replicas", "device", "node_port", "group")
_TOML_KEYS = ("name", "type", "description", *RUNTIME_KEYS, "config", "build", "runtime")
_TOML_TABLES = {"build": ("base", "dependencies"), "runtime": ("gpu",)}   # the original's deploy tables
DEPLOY_KEYS = ("description", "build", "runtime")   # options that describe the deployment, not the instance
_RESERVED = frozenset({"replica", "log", "context", "interfaces"})   # attributes the node's runtime owns
_KIND_LIST = ", ".join(KINDS)


def is_valid_name(value: Any) -> bool:
    """True for 1-64 ASCII letters, digits, '-' or '_' (app, node, group and channel names)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def did_you_mean(word: Any, choices: Any) -> str:
    """``" (did you mean 'x'?)"`` for the closest of choices, or "" when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def snake_case(name: str) -> str:
    """CamelCase to snake_case: FakeCamera -> fake_camera, GPUProcessor -> gpu_processor."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _node_error(name: str, message: str) -> GraphError:
    return GraphError(f"node {name!r}: {message}", node=name)


# -- kinds ---------------------------------------------------------------------------------------------------

def class_kind(cls: Any) -> str | None:
    """The kind a class declares through its base (``node_kind``), or None for anything but a node class."""
    kind = getattr(cls, "node_kind", None)
    if isinstance(cls, type) and kind in KINDS and issubclass(cls, KINDS[kind]):
        return kind
    return None


def is_generic(cls: Any) -> bool:
    """True for a subclass of the generic ``Node`` (``EdgeNode``) that derives from no kind's base class: its
    kind comes from ``type=`` (or its ``node_type``)."""
    return (isinstance(cls, type) and issubclass(cls, Node) and cls is not Node
            and not any(issubclass(cls, base) for base in KINDS.values()))


def is_node_class(cls: Any) -> bool:
    """A user's node class: one of a kind's base, or a generic Node subclass (not a base class itself)."""
    return (class_kind(cls) is not None or is_generic(cls)) and cls not in KINDS.values()


_MIXED: dict[tuple[type, str], type] = {}


def kind_class(cls: type, kind: str) -> type:
    """The class to instantiate for a node of ``kind``: ``cls`` itself, or for a generic Node subclass a class
    deriving from ``cls`` and then the kind's base, so the runtime finds the kind's hooks (``process`` calling
    ``loop``, a gateway's interfaces, a fusion node's matcher settings) while ``cls``'s own methods win.
    Made once per process and kind (the NodeSpec pickles ``cls``, never this class)."""
    if not is_generic(cls):
        return cls
    key = (cls, kind)
    if key not in _MIXED:
        _MIXED[key] = type(cls.__name__, (cls, KINDS[kind]),
                           {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                            "__doc__": cls.__doc__})
    return _MIXED[key]


def resolve_kind(name: str, cls: type, given: Any) -> str:
    """The node's kind: the class's, checked against ``type=`` when that was given; for a generic Node
    subclass, ``type=`` or else its ``node_type`` class attribute.

    Raises:
        GraphError: an unknown type, a class that is no node class, a type its base contradicts, or a generic
            Node subclass that says no kind.
    """
    if given is not None and given not in KINDS:
        raise _node_error(name, f"unknown type {given!r}{did_you_mean(given, KINDS)} "
                                f"(expected one of {_KIND_LIST})")
    if is_generic(cls):
        declared = getattr(cls, "node_type", "") or None
        if declared is not None and declared not in KINDS:
            raise _node_error(name, f"{cls.__name__}.node_type = {declared!r} is not a kind "
                                    f"(expected one of {_KIND_LIST})")
        if given is not None and declared is not None and given != declared:
            raise _node_error(name, f"type={given!r} but {cls.__name__}.node_type is {declared!r}")
        if given is None and declared is None:
            raise _node_error(name, f"{cls.__name__} subclasses the generic Node: say its kind with type= "
                                    f"(node.toml [node] type) as one of {_KIND_LIST}")
        return given or declared
    kind = class_kind(cls)
    if kind is None:
        bases = ", ".join(base.__name__ for base in KINDS.values())
        shown = getattr(cls, "__name__", repr(cls))
        raise _node_error(name, f"{shown} is not a node class (subclass one of {bases})")
    if given is not None and given != kind:
        raise _node_error(name, f"type={given!r} but {cls.__name__} is a {KINDS[kind].__name__}")
    return kind


# -- options -------------------------------------------------------------------------------------------------

def check_fields(name: Any, kind: Any, fps: Any, replicas: Any, device: Any, node_port: Any,
                 group: Any) -> dict[str, Any]:
    """Validate a node's name, kind and runtime options; returns them normalised (fps as float).

    Raises:
        GraphError: naming the node and the bad value.
    """
    if not is_valid_name(name):
        raise _node_error(str(name), f"invalid node name: {NAME_RULE}")
    if kind not in KINDS:
        raise _node_error(name, f"unknown type {kind!r}{did_you_mean(kind, KINDS)} "
                                f"(expected one of {_KIND_LIST})")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise _node_error(name, f"replicas must be an integer >= 1, got {replicas!r}")
    for key, value in (("device", device), ("group", group)):
        if value is not None and not (isinstance(value, str) and value):
            raise _node_error(name, f"{key} must be a non-empty string or None, got {value!r}")
    if group is not None and not is_valid_name(group):
        raise _node_error(name, f"invalid group {group!r}: {NAME_RULE}")
    if node_port is not None and (isinstance(node_port, bool) or not isinstance(node_port, int)
                                  or not 0 < node_port < 65536):
        raise _node_error(name, f"node_port must be a port number (1-65535) or None, got {node_port!r}")
    return {"fps": _check_fps(name, fps), "replicas": replicas, "device": device, "node_port": node_port,
            "group": group}


def _check_fps(name: str, fps: Any) -> float | None:
    if fps is None:                   # a producer without a rate runs as fast as its consumers take frames
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise _node_error(name, f"fps must be a number or None, got {fps!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise _node_error(name, f"fps must be > 0, got {fps!r} (None: as fast as consumers take frames)")
    return float(fps)


def split_options(name: str, kind: str, cls: type, given: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Split merged options into (runtime fields, config, options), applying the defaults.

    ``options`` is every option given (normalised), ``config`` the ones that are not runtime fields. A
    producer's fps defaults to its class's ``fps`` (30 on ProducerNode).

    Raises:
        GraphError: an invalid value, or an option that would replace a method or runtime attribute.
    """
    for key in given:
        _check_option_key(name, kind_class(cls, kind), key)
    default_fps = getattr(cls, "fps", 30.0) if kind == "producer" else None
    fields = check_fields(name, kind, given.get("fps", default_fps), given.get("replicas", 1),
                          given.get("device"), given.get("node_port"), given.get("group"))
    options = {key: fields[key] if key in RUNTIME_KEYS else value for key, value in given.items()}
    config = {key: value for key, value in given.items() if key not in RUNTIME_KEYS}
    return fields, config, options


def _check_option_key(name: str, cls: type, key: str) -> None:
    # Options become attributes of the instance (Node.__init__ sets them), so one must not shadow a hook.
    if not key.isidentifier():
        raise _node_error(name, f"option {key!r} is not a valid Python identifier")
    attr = inspect.getattr_static(cls, key, None)
    if key in _RESERVED or callable(attr) or isinstance(attr, (property, classmethod, staticmethod)):
        raise _node_error(name, f"option {key!r} is reserved: it would replace {cls.__name__}.{key}")


# -- folders -------------------------------------------------------------------------------------------------

def find_folder(path: str | os.PathLike, caller_file: str | None) -> Path:
    """The absolute folder of a node: relative paths against the caller's file's directory, then the cwd.

    Raises:
        ConfigError: the folder exists in neither place.
    """
    path = Path(path).expanduser()
    candidates = [path]
    if not path.is_absolute():
        candidates = [Path.cwd() / path]
        if caller_file and os.path.isfile(caller_file):
            candidates.insert(0, Path(caller_file).resolve().parent / path)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    looked = " or ".join(dict.fromkeys(str(c) for c in candidates))
    raise ConfigError(f"node folder {str(path)!r} not found (looked in {looked})")


def read_node_toml(folder: Path) -> dict[str, Any]:
    """The folder's node.toml as flat options ({} without one); a ``[node]`` table (the original layout)
    counts as the top level.

    Raises:
        ConfigError: invalid TOML, an unknown key, or no TOML parser (Python 3.10 without tomli).
    """
    path = folder / "node.toml"
    if not path.is_file():
        return {}
    if _toml is None:
        raise ConfigError(f"{path}: reading node.toml on Python 3.10 needs tomli: pip install tomli")
    try:
        with path.open("rb") as file:
            data = _toml.load(file)
    except _toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return _flatten_toml(path, data)


def _flatten_toml(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    table = data.pop("node", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'node' must be a table ([node])")
    if twice := sorted(table.keys() & data.keys()):
        raise ConfigError(f"{path}: {twice[0]!r} is set both at the top level and in [node]")
    if nested := sorted(key for key in table if key in ("config", *_TOML_TABLES)):
        raise ConfigError(f"{path}: [{nested[0]}] is a table of its own, not a key of [node]")
    data = {**table, **data}
    node_keys = [key for key in _TOML_KEYS if key not in ("config", *_TOML_TABLES)]
    for key in data:
        if key not in _TOML_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}{did_you_mean(key, _TOML_KEYS)} "
                              f"(node keys: {', '.join(node_keys)}; tables: [config], [build], [runtime]; "
                              "anything else goes in [config])")
    if not isinstance(data.get("config", {}), dict):
        raise ConfigError(f"{path}: 'config' must be a table ([config])")
    for name, keys in _TOML_TABLES.items():
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{name}' must be a table ([{name}])")
        for key in value:
            if key not in keys:
                raise ConfigError(f"{path}: unknown key {key!r} in [{name}]{did_you_mean(key, keys)} "
                                  f"(keys of [{name}]: {', '.join(keys)})")
    return data


def deploy_fields(name: str, description: Any, build: Any, runtime: Any) -> dict[str, Any]:
    """Validate what node.toml's ``[node] description``, ``[build]`` and ``[runtime]`` (or the same keyword
    options) say about deploying a node; returns NodeSpec's ``description``, ``base_image``, ``dependencies``
    and ``gpu``.

    Raises:
        GraphError: naming the node and the bad value.
    """
    if description is not None and not isinstance(description, str):
        raise _node_error(name, f"description must be a string, got {description!r}")
    build = {} if build is None else build
    runtime = {} if runtime is None else runtime
    for table, value, keys in (("build", build, _TOML_TABLES["build"]),
                               ("runtime", runtime, _TOML_TABLES["runtime"])):
        if not isinstance(value, Mapping):
            raise _node_error(name, f"{table} must be a mapping ({{{', '.join(map(repr, keys))}: ...}}), "
                                    f"got {value!r}")
        for key in value:
            if key not in keys:
                raise _node_error(name, f"unknown {table} key {key!r}{did_you_mean(key, keys)} "
                                        f"(expected {', '.join(keys)})")
    base = build.get("base")
    if base is not None and not (isinstance(base, str) and base.strip() and not any(c.isspace() for c in base)):
        raise _node_error(name, f"build base must be an image reference such as 'python:3.11-slim', "
                                f"got {base!r}")
    deps = build.get("dependencies", ())
    if isinstance(deps, str) or not isinstance(deps, (list, tuple)) or not all(
            isinstance(dep, str) and dep.strip() and "\n" not in dep for dep in deps):
        raise _node_error(name, f"build dependencies must be a list of pip requirement strings, got {deps!r}")
    gpu = runtime.get("gpu", False)
    if not isinstance(gpu, bool):
        raise _node_error(name, f"runtime gpu must be true or false, got {gpu!r}")
    return {"description": description, "base_image": base, "dependencies": tuple(d.strip() for d in deps),
            "gpu": gpu}


def module_name(folder: str | os.PathLike) -> str:
    """The stable module name a folder's package is imported under, the same in every process."""
    folder = str(folder)
    digest = hashlib.sha256(folder.encode()).hexdigest()[:10]      # two folders named "camera" stay apart
    base = re.sub(r"\W", "_", os.path.basename(folder), flags=re.ASCII) or "node"
    return f"{PACKAGE}.{'_' if base[0].isdigit() else ''}{base}_{digest}"


def load_folder_class(folder: str | os.PathLike) -> type:
    """Import the package at an absolute folder path (once per process) and return its one node class.

    Raises:
        ConfigError: not a package, importing it failed, or not exactly one node class is defined in it.
    """
    folder = Path(folder)
    name = module_name(folder)
    module = sys.modules.get(name) or _import_package(folder, name)
    return _the_node_class(folder, module)


def _import_package(folder: Path, name: str) -> types.ModuleType:
    init = folder / "__init__.py"
    if not init.is_file():
        raise ConfigError(f"node folder {folder}: not a Python package (no __init__.py)")
    if PACKAGE not in sys.modules:
        parent = types.ModuleType(PACKAGE, "Node packages EdgeFlow imported from folders.")
        parent.__path__ = []         # a package without files: its children are put in sys.modules by name
        sys.modules[PACKAGE] = parent
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module       # before running it, so the package's relative imports find it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]        # a retry imports afresh instead of finding a half-run module
        raise ConfigError(f"node folder {folder}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def _the_node_class(folder: Path, module: types.ModuleType) -> type:
    prefix = module.__name__
    defined, imported = [], []
    for value in vars(module).values():
        if not is_node_class(value) or value in defined + imported:
            continue
        inside = value.__module__ == prefix or value.__module__.startswith(prefix + ".")
        (defined if inside else imported).append(value)
    if len(defined) == 1:
        return defined[0]
    if defined:
        names = ", ".join(cls.__name__ for cls in defined)
        raise ConfigError(f"node folder {folder}: expected exactly one node class, "
                          f"found {len(defined)}: {names}")
    names = ", ".join(cls.__name__ for cls in imported)
    seen = f" (imported from elsewhere, not counted: {names})" if imported else ""
    raise ConfigError(f"node folder {folder}: no node class is defined in the package{seen}; define one "
                      f"subclass of {', '.join(base.__name__ for base in KINDS.values())}")
