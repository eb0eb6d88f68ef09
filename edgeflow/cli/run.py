"""``edgeflow run FILE``: run a pipeline file exactly as ``python FILE`` would.

    edgeflow run main.py                   every node on this host, supervised (Ctrl-C stops it)
    edgeflow run main.py --node camera     one node, for distributed runs and Kubernetes Pods
    edgeflow run main.py --frames 100      producers stop after 100 frames; the run ends when drained
    edgeflow run main.py --stats           print node statistics every 5 s (--stats S: every S seconds)

Arguments after FILE that are not the run's own flags go to the script (as under ``python FILE ...``).
"""

from __future__ import annotations

import click

from edgeflow.cli import is_debug


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=True, path_type=str))
@click.option("--node", metavar="NAME", help="Run only this node (as in the app; an unknown name exits 2).")
@click.option("--replica", type=click.IntRange(min=0), metavar="I",
              help="Which replica of --node (default 0).")
@click.option("--frames", type=click.IntRange(min=1), metavar="N", help="Each producer stops after N frames.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Stop after S seconds.")
@click.option("--stats", type=click.FloatRange(min=0, min_open=True), metavar="[S]", is_flag=False,
              flag_value=5.0, help="Print node statistics every S seconds (a bare --stats: every 5 s).")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def run(file: str, node: str | None, replica: int | None, frames: int | None, duration: float | None,
        stats: float | None, script_args: tuple[str, ...]) -> None:
    """Run FILE's pipeline: the same as `python FILE [flags]`.

    The exit code is the run's: 0 when no node failed, 1 when one did (gave up, stopped by its on_error
    policy, errored on every frame, was failing or in a restart loop), 2 for a configuration error (an
    unknown --node, a bad flag, an invalid graph or on_error value).
    """
    from edgeflow.cli import _load
    from edgeflow.runtime import launcher

    argv = [*script_args, *_flags(node=node, replica=replica, frames=frames, duration=duration, stats=stats)]
    if is_debug():
        argv.append("--debug")

    def start(app, args: list[str]) -> int:
        code = launcher.run_app(app, args)
        if code:
            raise SystemExit(code)           # as EdgeApp.run() does: `python FILE` exits non-zero
        return code

    _load.run_file(file, argv, start)


def _flags(**values) -> list[str]:
    """The launcher's own flags, spelled as on `python FILE`'s command line."""
    out: list[str] = []
    for name, value in values.items():
        if value is not None:
            out += [f"--{name}", str(value)]
    return out
