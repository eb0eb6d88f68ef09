"""Load a pipeline file the way ``python FILE`` runs it, and take the app it passes to ``app.run()``.

The file runs as ``__main__`` (``runpy.run_path(FILE, run_name="__main__")``) with ``sys.argv`` set and its
folder first on ``sys.path``, so ``if __name__ == "__main__":`` blocks, imports of sibling modules and node
folders behave as under ``python FILE``. ``edgeflow.graph._run_hook`` intercepts ``app.run()``:

- ``load_app(FILE)`` stops the file at ``app.run()`` and returns the app (graph, deploy, clean);
- ``run_file(FILE, argv, action)`` calls ``action(app, argv)`` in place of the run while the file is still
  ``__main__``: node processes the launcher spawns re-import it as ``python FILE``'s would (``run``).

A pipeline file (``.yaml``, ``.yml``, ``.json``; see edgeflow.pipeline) is loaded by ``edgeflow.load``
instead, merged with the ``-c`` files after it: ``pipeline_files`` tells which it is, ``load_any`` loads
either kind, and ``reported()`` prints a PipelineError as its lines (exit code 2).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgeflow import graph as graph_module
from edgeflow.errors import ConfigError

CAPTURE_ENV = "EDGEFLOW_CAPTURE_GRAPH"
"""Set to 1 while a file is loaded only to take its app (a script may check it to skip side effects)."""


class _Captured(BaseException):
    # BaseException: a script's own ``except Exception`` around app.run() must not swallow the capture
    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.app = app


PIPELINE_NAMES = ("pipeline.yaml", "pipeline.yml", "pipeline.json")
"""What a folder without main.py is run from."""


def resolve(file: str | os.PathLike) -> Path:
    """The pipeline file: FILE itself, or for a folder its main.py (else its pipeline.yaml).

    Raises:
        ConfigError: no such file (exit code 2).
    """
    path = Path(file)
    if path.is_dir():
        inside = [path / name for name in ("main.py", *PIPELINE_NAMES) if (path / name).is_file()]
        if not inside:
            raise ConfigError(f"{file}: a folder without main.py (or pipeline.yaml)")
        path = inside[0]
    if not path.is_file():
        raise ConfigError(f"{file}: no such file")
    return path


@contextlib.contextmanager
def _as_main(path: Path, argv: list[str], hook: Callable[[Any, Any], Any], capture: bool) -> Iterator[None]:
    """sys.argv, sys.path[0], the run hook (and the capture marker) as ``python FILE`` would see them."""
    folder = str(path.resolve().parent)
    saved = sys.argv[:], sys.path[:], graph_module._run_hook, os.environ.get(CAPTURE_ENV)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, folder)
    graph_module._run_hook = hook
    if capture:
        os.environ[CAPTURE_ENV] = "1"
    try:
        yield
    finally:
        sys.argv, sys.path[:], graph_module._run_hook = saved[0], saved[1], saved[2]
        if capture:
            if saved[3] is None:
                os.environ.pop(CAPTURE_ENV, None)
            else:
                os.environ[CAPTURE_ENV] = saved[3]


def _capture(app: Any, argv: Any) -> Any:
    raise _Captured(app)


def load_app(file: str | os.PathLike, argv: list[str] | None = None) -> Any:
    """Run FILE as ``__main__`` until it calls ``app.run()``, and return that app (an EdgeApp).

    A file that never calls ``app.run()`` is still accepted when it defines exactly one EdgeApp at top level.

    Raises:
        ConfigError: no such file, the file exited early, or it defines no app (or several, none run).
        GraphError: the file's own calls (node(), link()) raised it.
        Exception: whatever the file raised, with a note naming the file.
    """
    path = resolve(file)
    try:
        with _as_main(path, list(argv or ()), _capture, capture=True):
            namespace = runpy.run_path(str(path), run_name="__main__")
    except _Captured as captured:
        return captured.app
    except SystemExit as exc:
        raise ConfigError(f"{path}: exited (code {exc.code}) before calling app.run()") from None
    except Exception as exc:
        _note(exc, path)
        raise
    return _only_app(path, namespace)


def run_file(file: str | os.PathLike, argv: list[str], action: Callable[[Any, list[str]], Any]) -> Any:
    """Run FILE as ``python FILE argv...`` would, with ``app.run(args)`` replaced by ``action(app, args)``.

    ``args`` is what the file passed to ``app.run()``, or ``argv`` when it passed nothing. The file goes on
    after ``app.run()`` returns, as it would under ``python FILE``; ``SystemExit`` passes through.

    Returns:
        What the action returned (None if the file never called ``app.run()``).
    """
    path = resolve(file)
    result: list[Any] = []

    def hook(app: Any, args: Any) -> Any:
        result.append(action(app, list(argv) if args is None else list(args)))
        return result[-1]

    try:
        with _as_main(path, list(argv), hook, capture=False):
            runpy.run_path(str(path), run_name="__main__")
    except Exception as exc:
        _note(exc, path)
        raise
    if not result:
        raise ConfigError(f"{path}: never called app.run() (call it under `if __name__ == \"__main__\":`)")
    return result[-1]


def _note(exc: BaseException, path: Path) -> None:
    from edgeflow.errors import EdgeFlowError
    if not isinstance(exc, EdgeFlowError):           # EdgeFlow's own errors already name the node or link
        exc.add_note(f"while loading {path}")


def _only_app(path: Path, namespace: dict[str, Any]) -> Any:
    apps = {id(v): v for v in namespace.values() if isinstance(v, graph_module.EdgeApp)}
    if len(apps) == 1:
        return next(iter(apps.values()))
    if not apps:
        raise ConfigError(f"{path}: defines no EdgeApp and never called app.run()")
    names = ", ".join(sorted(repr(a.name) for a in apps.values()))
    raise ConfigError(f"{path}: defines several apps ({names}) and ran none; call app.run() on one")


def is_pipeline(path: str | os.PathLike) -> bool:
    """True for a pipeline file name (.yaml, .yml, .json) rather than a Python file."""
    return str(path).lower().endswith((".yaml", ".yml", ".json"))


def pipeline_files(file: str | os.PathLike | None, configs: Sequence[str] = ()) -> list[str] | None:
    """The pipeline files to merge (FILE, then each ``-c``), or None when FILE is a Python file.

    Raises:
        ConfigError: neither FILE nor ``-c`` given, or no such FILE.
    """
    if file is None:
        if not configs:
            raise ConfigError("give a pipeline: FILE (main.py, pipeline.yaml) or -c FILE.yaml")
        return [os.fspath(config) for config in configs]
    path = resolve(file)
    if is_pipeline(path):
        return [str(path), *map(os.fspath, configs)]
    return None


def load_any(file: str | os.PathLike | None, configs: Sequence[str] = (),
             argv: list[str] | None = None) -> Any:
    """The app of FILE: a pipeline file (merged with ``configs``) through ``edgeflow.load``, a Python file
    through ``load_app``.

    Raises:
        ConfigError: ``configs`` given with a Python FILE, or as ``load_app`` and ``edgeflow.load`` raise.
    """
    files = pipeline_files(file, configs)
    if files is None:
        if configs:
            raise ConfigError(f"-c {configs[0]}: -c merges pipeline files (YAML, JSON); {file} is a Python "
                              "file")
        return load_app(file, argv)
    from edgeflow import pipeline
    return pipeline.load(files)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Print a PipelineError as its lines on stderr, one per problem, and exit with code 2."""
    try:
        yield
    except Exception as exc:
        errors = sys.modules.get("edgeflow.pipeline.errors")     # no pipeline loaded: none can be raised
        if errors is None or not isinstance(exc, errors.PipelineError):
            raise
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise SystemExit(2) from None
