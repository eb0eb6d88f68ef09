"""``edgeflow twin -c config.yaml``: run a PyEdgeTwin configuration as an EdgeFlow pipeline (docs/twin.md).

    edgeflow twin -c config.yaml                 MQTT -> model block -> sinks, health on :8080 (health.port)
    edgeflow twin -c config.yaml -c site.yaml    several files merged, later wins
    edgeflow twin -c config.yaml --port 9000     the health port (/healthz, /readyz, /metrics)
    edgeflow twin -c config.yaml --check         check the file and show the pipeline; run nothing

A problem in the file is one line each (``config.yaml:7:3: mqtt.hots: unknown key (did you mean 'host'?)``)
and exit code 2, before anything starts. ``pyedgetwin run -c config.yaml`` is the same command.
"""

from __future__ import annotations

import click

from edgeflow.cli import is_debug


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "configs", multiple=True, required=True, metavar="FILE",
              help="The configuration (YAML or JSON, PyEdgeTwin's layout); repeat it: later files win.")
@click.option("--port", type=click.IntRange(1, 65535), metavar="PORT",
              help="The health port (/healthz, /readyz, /metrics); default health.port, else 8080.")
@click.option("--app", "name", metavar="NAME", help="The app's name (default: from runtime.twin_id).")
@click.option("--check", is_flag=True, help="Check the configuration and print the pipeline; run nothing.")
@click.option("--frames", type=click.IntRange(min=1), metavar="N", help="Stop after N MQTT messages.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Stop after S seconds.")
@click.option("--stats", type=click.FloatRange(min=0, min_open=True), metavar="[S]", is_flag=False,
              flag_value=5.0, help="Print node statistics every S seconds (a bare --stats: every 5 s).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log lines as text or JSON.")
def twin(configs: tuple[str, ...], port: int | None, name: str | None, check: bool, frames: int | None,
         duration: float | None, stats: float | None, log_format: str | None) -> None:
    """Run a digital twin configured in PyEdgeTwin's layout (runtime, mqtt, model, sinks, health).

    The exit code is the run's: 0 when no node failed, 1 when one did, 2 for a configuration error.
    """
    from edgeflow.cli import _load
    from edgeflow.cli.run import _bare_main, _flags
    from edgeflow.runtime import launcher
    from edgeflow.twin import load

    with _load.reported():
        loaded = load(list(configs), name=name, port=port)
    for note in loaded.notes:
        click.echo(note)
    if check:
        _show(loaded)
        return
    flags = _flags(frames=frames, duration=duration, stats=stats, log_format=log_format)
    if is_debug():
        flags.append("--debug")
    loaded.prepare()
    with _bare_main():
        code = launcher.run_app(loaded.app, flags)
    if code:
        raise SystemExit(code)


def _show(loaded) -> None:
    """The nodes and links of the twin's pipeline."""
    graph = loaded.app.graph()
    click.echo(f"app {graph.app}: configuration ok")
    for spec in graph.nodes:
        replicas = f" x{spec.replicas}" if spec.replicas != 1 else ""
        click.echo(f"  node {spec.name}{replicas}: {spec.kind} {getattr(spec.class_ref, '__name__', '?')}")
    for edge in graph.edges:
        click.echo(f"  link {edge.source} -> {edge.target} ({edge.qos.name})")
