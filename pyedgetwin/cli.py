"""The ``pyedgetwin`` command: ``pyedgetwin run -c config.yaml`` is ``edgeflow twin -c config.yaml``;
``pyedgetwin validate -c config.yaml`` is ``edgeflow twin --check -c config.yaml``."""

from __future__ import annotations

import click

from edgeflow.cli import CONTEXT, LazyGroup, _version


class _Group(LazyGroup):
    """PyEdgeTwin's subcommands, on EdgeFlow's twin command (the same one-line errors and exit codes)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["run", "validate"]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in ("run", "validate"):
            return None
        from edgeflow.cli.twin import twin
        if name == "run":
            return twin
        return _validate(twin)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([("run", "Run the twin: edgeflow twin -c FILE."),
                                ("validate", "Check the configuration: edgeflow twin --check -c FILE.")])


def _validate(twin: click.Command) -> click.Command:
    @click.command("validate", context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("-c", "--config", "configs", multiple=True, required=True, metavar="FILE",
                  help="The configuration file (repeat it: later files win).")
    @click.pass_context
    def validate(ctx: click.Context, configs: tuple[str, ...]) -> None:
        """Check the configuration and show the pipeline it makes; run nothing."""
        ctx.invoke(twin, configs=configs, check=True)
    return validate


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Print the traceback of an error.")
@click.version_option(_version(), "--version", prog_name="pyedgetwin (EdgeFlow)",
                      message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """PyEdgeTwin configurations on EdgeFlow: `pyedgetwin run -c config.yaml`."""
    ctx.obj = {"debug": debug}


def run() -> None:
    """The ``pyedgetwin`` console script."""
    main.main(prog_name="pyedgetwin")
