"""``edgeflow settings``: every setting's effective value and where it came from, secrets masked.

    edgeflow settings                      a table: NAME, VALUE, SOURCE (default, env, or edgeflow.yaml:LINE)
    edgeflow settings REDIS_HOST bind      only these (by name or by settings-file key)
    edgeflow settings --format json        {"file", "settings": [{"name", "key", "value", "source", "where"}]}
    edgeflow settings --reference          the Markdown table of every setting (docs/settings.md embeds it)

Values come from defaults < the settings file (``$EDGEFLOW_CONFIG``, else ``./edgeflow.yaml``) < the
environment (edgeflow.config). A bad file or value is a ConfigError: one line, exit code 2.
"""

from __future__ import annotations

import json

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="A table, or JSON.")
@click.option("--reference", is_flag=True, help="Print the Markdown table of every setting instead.")
def settings(names: tuple[str, ...], fmt: str, reference: bool) -> None:
    """Show each setting's effective value and where it came from (default, settings file, environment).

    Secrets (tokens, passwords, a URL's password) are shown as ***.
    """
    from edgeflow import config

    if reference:
        click.echo(config.reference_table(), nl=False)
        return
    rows = config.settings.effective()
    if names:
        rows = [_pick(rows, name) for name in names]
    if fmt == "json":
        click.echo(json.dumps({"file": config.settings.file(), "settings": rows}, indent=2))
        return
    shown = config.settings.file() or f"none (no {config.CONFIG_FILE} here, $EDGEFLOW_CONFIG unset)"
    click.echo(f"settings file: {shown}")
    table = [("NAME", "VALUE", "SOURCE")] + [(r["name"], _text(r["value"]), _where(r)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for name, value, where in table:
        click.echo(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {where}".rstrip())


def _pick(rows: list[dict], name: str) -> dict:
    """The row of a setting named by its name or its file key (any case); ConfigError with a did-you-mean."""
    from edgeflow.config import did_you_mean
    from edgeflow.errors import ConfigError
    for row in rows:
        if name.upper() == row["name"] or (row["key"] and name.lower() == row["key"]):
            return row
    raise ConfigError(f"unknown setting '{name}'{did_you_mean(name.upper(), [r['name'] for r in rows])}")


def _text(value) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value) if value else "(none)"
    return str(value)


def _where(row: dict) -> str:
    """SOURCE: "env", "default" (or "default (= REDIS_HOST)"), or the file and line."""
    return "env" if row["source"] == "env" else row["where"]
