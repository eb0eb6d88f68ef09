"""``edgeflow run FILE``: run a pipeline file exactly as ``python FILE`` would.

    edgeflow run main.py                   every node on this host, supervised (Ctrl-C stops it)
    edgeflow run main.py --node camera     one node, for distributed runs and Kubernetes Pods
    edgeflow run main.py --frames 100      producers stop after 100 frames; the run ends when drained
    edgeflow run main.py --stats           print node statistics every 5 s (--stats S: every S seconds)
    edgeflow run pipeline.yaml --frames 100             a pipeline file (YAML or JSON): see edgeflow.pipeline
    edgeflow run base.yaml -c site.yaml    several files merged, later wins (or: -c base.yaml -c site.yaml)

Arguments after a Python FILE that are not the run's own flags go to the script (as under ``python FILE
...``); a ``-c`` given with a Python FILE is passed on to it as well. A pipeline file takes only the run's
flags. Its problems are printed one per line (``pipeline.yaml:12:5: nodes.detector.replicas: ...``), exit
code 2, before anything starts.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Iterator

import click

from edgeflow.cli import is_debug
from edgeflow.errors import ConfigError


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": ["-h", "--help"]})
@click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=str))
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="A pipeline file (YAML or JSON) merged over FILE's; repeat it: later files win.")
@click.option("--node", metavar="NAME", help="Run only this node (as in the app; an unknown name exits 2).")
@click.option("--replica", type=click.IntRange(min=0), metavar="I",
              help="Which replica of --node (default 0).")
@click.option("--frames", type=click.IntRange(min=1), metavar="N", help="Each producer stops after N frames.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Stop after S seconds.")
@click.option("--stats", type=click.FloatRange(min=0, min_open=True), metavar="[S]", is_flag=False,
              flag_value=5.0, help="Print node statistics every S seconds (a bare --stats: every 5 s).")
@click.option("--log-format", "log_format", type=click.Choice(["text", "json"]), metavar="text|json",
              help="Logs as plain text (default) or one JSON object per line (also EDGEFLOW_LOG_FORMAT).")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def run(file: str | None, configs: tuple[str, ...], node: str | None, replica: int | None, frames: int | None,
        duration: float | None, stats: float | None, log_format: str | None,
        script_args: tuple[str, ...]) -> None:
    """Run FILE's pipeline: the same as `python FILE [flags]`, or a pipeline file (YAML, JSON) with -c
    files merged over it.

    The exit code is the run's: 0 when no node failed, 1 when one did (gave up, stopped by its on_error
    policy, errored on every frame, was failing or in a restart loop), 2 for a configuration error (an
    unknown --node, a bad flag, an invalid graph or on_error value).
    """
    from edgeflow.cli import _load
    from edgeflow.runtime import launcher

    flags = _flags(node=node, replica=replica, frames=frames, duration=duration, stats=stats)
    if log_format is not None:
        flags += ["--log-format", log_format]
    if is_debug():
        flags.append("--debug")
    files = _load.pipeline_files(file, configs)
    if files is not None:
        if script_args:
            raise ConfigError(f"unexpected argument {script_args[0]!r}: a pipeline file takes only the run's "
                              "flags (--node, --replica, --frames, --duration, --stats, --log-format, -c)")
        _run_pipeline(files, flags)
        return
    argv = [*script_args, *(arg for config in configs for arg in ("-c", config)), *flags]

    def start(app, args: list[str]) -> int:
        code = launcher.run_app(app, args)
        if code:
            raise SystemExit(code)           # as EdgeApp.run() does: `python FILE` exits non-zero
        return code

    _load.run_file(file, argv, start)


def _run_pipeline(files: list[str], flags: list[str]) -> None:
    """Load the pipeline files and run the app on this host (or one node of it, with --node)."""
    from edgeflow import pipeline
    from edgeflow.cli import _load
    from edgeflow.runtime import launcher

    with _load.reported():
        app = pipeline.load(files)
    with _bare_main():
        code = launcher.run_app(app, flags)
    if code:
        raise SystemExit(code)


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """An empty ``__main__`` while a pipeline file's app runs: multiprocessing's spawn re-imports the parent's
    ``__main__`` in every node process, and here that is only the CLI (click and all), which a pipeline's
    nodes never use; their classes come from their own modules. This keeps ``edgeflow run pipeline.yaml``
    as fast to the first frame as ``python main.py``."""
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _flags(**values) -> list[str]:
    """The launcher's own flags, spelled as on `python FILE`'s command line."""
    out: list[str] = []
    for name, value in values.items():
        if value is not None:
            out += [f"--{name}", str(value)]
    return out
