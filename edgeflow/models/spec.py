"""A model block as a node registration: from Python (``model_node``) and from a configuration (``node_for``).

    cls, options = model_node(KalmanFilter, name="kalman", params={"q": 0.01}, replicas=2)
    app.node(cls, **options)

    cls, options = node_for({"model": "mymodels.kalman:KalmanFilter", "params": {...}, "version": "1.2",
                             "replicas": 2, "twin_id": "motor-twin", "asset_id": "motor-001"},
                            base_dir="/etc/twin")
    app.node(cls, **options)

Both return ``(ModelNode, options)``; the options are checked when the node is registered (ModelNode.
check_options), one line naming the node and the option.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from edgeflow.errors import ConfigError
from edgeflow.models import loader
from edgeflow.models.node import ModelNode


def model_node(model: Any, **options: Any) -> tuple[type, dict[str, Any]]:
    """The node class and options that run ``model`` (a ModelBlock class or a ``"package.module:Class"`` /
    file reference) with ``options`` (``name``, ``params``, ``version``, ``twin_id``, ``asset_id``,
    ``replicas``, ``watch``, ... see ModelNode). A class that can be imported by name is passed on as its
    ``"module:Class"`` reference, so the graph's views and a YAML export show it as text; the node's name
    defaults to the class's name in snake_case.

    Raises:
        ConfigError: ``model`` given twice (positionally and as an option).
    """
    if "model" in options or "module_path" in options:
        raise ConfigError("model_node(): give the model once (the first argument)")
    if isinstance(model, type):
        options.setdefault("name", _snake(model.__name__))
        model = _by_name(model)
    return ModelNode, {"model": model, **options}


def node_for(spec: Mapping[str, Any], base_dir: str | os.PathLike | None = None) -> tuple[type, dict[str, Any]]:
    """``(node_class, options)`` for a configuration's model node: ``model`` (or PyEdgeTwin's
    ``module_path``) as "package.module:Class" or a .py file with an optional ":Class", ``params``,
    ``version``, ``twin_id``, ``asset_id``, ``watch``, ``watch_interval``, ``python_path``, and any node field
    (``name``, ``replicas``, ``device``, ``group``, ``on_error`` ...), passed on unchanged.

    Args:
        spec: the node's mapping, as parsed from YAML or JSON.
        base_dir: the configuration file's folder: a relative .py path resolves against it, and it goes first
            on the node process's ``sys.path`` (so ``mymodels.kalman`` beside the file imports). Default:
            the working directory, for paths only.

    Raises:
        ConfigError: ``spec`` is not a mapping, or ``model`` is not of an accepted form (an unknown or bad
            option is refused when the node is registered, naming it).
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a model node is a mapping (model, params, ...), got {type(spec).__name__}")
    options = dict(spec)
    name = options.get("name", "model")
    key = "model" if options.get("model") is not None else "module_path"
    ref = options.get(key)
    if isinstance(ref, (str, os.PathLike)):
        try:
            parsed = loader.parse(ref, base_dir)
        except loader.ModelLoadError as exc:
            raise ConfigError(f"node '{name}': option '{key}': {exc}") from None
        if parsed.path is not None:                  # absolute: node processes may run elsewhere (--node)
            options[key] = f"{parsed.path}:{parsed.name}" if parsed.name else parsed.path
    if base_dir is not None:
        extra = options.get("python_path") or []
        extra = [extra] if isinstance(extra, str) else list(extra)
        folder = os.path.abspath(os.fspath(base_dir))
        options["python_path"] = [folder] + [f for f in extra if f != folder]
    return ModelNode, options


def _by_name(cls: type) -> Any:
    """``"module:Qualname"`` when importing that gives this very class back, else the class itself (a class
    of the main script: the NodeSpec pickles it by reference)."""
    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__ in ("__main__", "__mp_main__"):
        return cls
    found: Any = module
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return f"{cls.__module__}:{cls.__qualname__}" if found is cls else cls


def _snake(name: str) -> str:
    import re
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
