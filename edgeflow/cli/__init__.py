"""The ``edgeflow`` command line: one click group whose subcommands are imported only when they run.

    edgeflow run main.py --frames 100      # the same as python main.py --frames 100
    edgeflow graph main.py --format json   # the validated pipeline, each link with its QoS and route
    edgeflow bench                         # transports measured on this machine
    edgeflow deploy main.py --registry docker.io/me --namespace demo --dry-run

Importing this package imports click and nothing heavy of its own: ``edgeflow --help`` lists the commands
from the table below without importing them, so it answers in the time Python and ``import edgeflow`` take.

Errors: an ``EdgeFlowError`` becomes one line on stderr (``GraphError: link a -> b: ...``) and exit code 2
for a ``ConfigError`` (bad flag, file or graph), 1 for anything else; ``edgeflow --debug ...`` adds the
traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from edgeflow.config import settings as _settings   # not `settings`: the subcommand module of that name
from edgeflow.errors import ConfigError, EdgeFlowError

__all__ = ["cli", "main", "COMMANDS"]

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edgeflow.cli.run:run", "Run main.py (as `python main.py` would) or a pipeline.yaml (-c to merge)."),
    "graph": ("edgeflow.cli.graph:graph", "Show the validated pipeline (main.py or YAML); --format yaml writes one."),
    "bench": ("edgeflow.cli.bench:bench", "Measure every transport on this machine against plain Python."),
    "deploy": ("edgeflow.cli.deploy:deploy", "Build the image, write Kubernetes manifests, kubectl apply."),
    "clean": ("edgeflow.cli.deploy:clean", "Remove from the cluster what `edgeflow deploy` created."),
    "init": ("edgeflow.cli.init:init", "Create a new project folder with a pipeline and its test."),
    "doctor": ("edgeflow.cli.doctor:doctor", "Check this machine for what EdgeFlow needs, with fixes."),
    "logs": ("edgeflow.cli.logs:logs", "Show a deployed node's logs (kubectl logs)."),
    "dashboard": ("edgeflow.cli.logs:dashboard", "Print (or open) the gateway's dashboard URL."),
    "settings": ("edgeflow.cli.settings:settings", "Show each setting's value and where it came from."),
    "twin": ("edgeflow.cli.twin:twin", "Run a PyEdgeTwin configuration (config.yaml) as a pipeline."),
    "record": ("edgeflow.cli.record:record", "Record topics of a running app to MCAP files (--recover repairs one)."),
    "replay": ("edgeflow.cli.replay:replay", "Publish a recording's frames into an app's topics, with their timing."),
    "lineage": ("edgeflow.cli.lineage:lineage", "Print the tree of frames a recorded frame came from."),
}
"""Subcommand name -> ("module:attribute", one-line help shown by ``edgeflow --help``)."""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def is_debug() -> bool:
    """True when ``--debug`` was given to the group (or EDGEFLOW_DEBUG=1 is set)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, dict) and root.obj.get("debug"):
        return True
    return _settings.get("EDGEFLOW_DEBUG", fallback=False)   # a bad settings file is the error being shown


class CommandFailed(click.ClickException):
    """An exception from a subcommand, shown as one line ``Type: message`` (the traceback with --debug)."""

    def __init__(self, exc: BaseException, debug: bool) -> None:
        super().__init__(one_line(exc))
        self.exc, self.debug = exc, debug
        self.exit_code = 2 if isinstance(exc, ConfigError) else 1

    def show(self, file: Any = None) -> None:
        file = sys.stderr if file is None else file
        if self.debug:
            traceback.print_exception(self.exc, file=file)
        click.echo(self.message, file=file)


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line; notes added with ``add_note`` (e.g. the file being loaded) follow."""
    text = " ".join(str(exc).split()) or repr(exc)
    notes = [" ".join(note.split()) for note in getattr(exc, "__notes__", ())]
    return f"{type(exc).__name__}: {text}" + "".join(f" ({note})" for note in notes)


class LazyGroup(click.Group):
    """A group whose subcommands come from COMMANDS and are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's default imports every command to read its short help; the table already has it
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except EdgeFlowError as exc:
            raise CommandFailed(exc, is_debug()) from exc
        except Exception as exc:  # noqa: BLE001 - anything else is a failure: one line, exit 1
            raise CommandFailed(exc, is_debug()) from exc


def _version() -> str:
    from edgeflow import __version__
    return __version__


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Print the traceback of an error (also EDGEFLOW_DEBUG=1).")
@click.version_option(_version(), "--version", prog_name="edgeflow", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """EdgeFlow: multi-node frame pipelines over shared memory, Redis and TCP.

    Every command that takes FILE loads it as `python FILE` would (as __main__, its folder first on
    sys.path) and takes the app it passes to app.run().

    Exit codes: 0 ok, 2 usage or configuration error, 1 failure.
    """
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> None:
    """The ``edgeflow`` console script: run the group and exit with its code."""
    cli.main(args=argv, prog_name="edgeflow")
