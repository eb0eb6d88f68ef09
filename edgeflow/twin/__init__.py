"""PyEdgeTwin configurations run as EdgeFlow pipelines: ``edgeflow twin -c config.yaml`` (docs/twin.md).

    runtime: {twin_id: motor-twin-001, asset_id: motor-001, workers: 1}
    mqtt:    {host: localhost, port: 1883, topics: [sensors/motor-001/temperature]}
    model:   {module_path: "mymodels.kalman:KalmanFilter", version: "1.0.0", params: {...}}
    sinks:   {influxdb2: {url: ..., token: "${INFLUXDB_TOKEN}", org: ..., bucket: ...}, csv: {path: out.csv}}

becomes MqttSource -> TwinModel (the model block, ``workers`` replicas) -> InfluxSink / CsvSink / StdoutSink,
plus a gateway serving /healthz, /readyz and /metrics on ``health.port`` (8080). ``load(paths)`` returns a
``Twin`` (the EdgeApp and what to do before it runs); ``edgeflow.cli.twin`` is the command.

Modules: schema.py (the layout, key by key), build.py (the EdgeApp), nodes.py (the twin's own nodes). Files
are read, merged and ``${VAR}``-substituted by edgeflow.pipeline's tree, merge and subst modules, so errors
look the same as a pipeline file's: ``config.yaml:7:3: mqtt.hots: unknown key (did you mean 'host'?)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from edgeflow.pipeline import merge, subst, tree
from edgeflow.pipeline.errors import PipelineError
from edgeflow.twin import schema

__all__ = ["load", "Twin", "PipelineError"]


@dataclass
class Twin:
    """A loaded twin configuration.

    Attributes:
        app: the EdgeApp. layout: the checked configuration. notes: lines to print before it runs.
        truncate: CSV files to empty before the run (``sinks.csv.append: false``).
    """

    app: Any
    layout: schema.Layout
    notes: list[str] = field(default_factory=list)
    truncate: list[Path] = field(default_factory=list)

    def prepare(self) -> None:
        """What the configuration asks for before the first record: remove the CSV files that are not
        appended to (once, here: a restarted sink continues the file of this run)."""
        for path in self.truncate:
            path.unlink(missing_ok=True)


def load(paths: str | os.PathLike | Iterable[str | os.PathLike], env: Mapping[str, str] | None = None, *,
         name: str | None = None, port: int | None = None) -> Twin:
    """Read, merge (later files win), substitute and check twin configuration files; build the app.

    Args:
        paths: a YAML or JSON file in PyEdgeTwin's layout, or several. env: what ``${VAR}`` reads (default:
            ``os.environ``). name: the app's name (default: from ``runtime.twin_id``). port: the health port
            (default: ``health.port``, else 8080).

    Raises:
        PipelineError: one line per problem, ``file:line:column: key.path: what`` (secrets masked).
    """
    files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not files:
        raise PipelineError("no configuration file given (-c config.yaml)")
    raw = merge.merge([tree.read(os.fspath(path)) for path in files])
    values, secrets = subst.substitute(raw, os.environ if env is None else env)
    from edgeflow.twin import build
    try:
        layout = schema.check(values)
        app, notes = build.build(layout, name=name, port=port)
    except PipelineError as exc:
        raise PipelineError(*(secrets.mask(line) for line in exc.problems)) from None
    csv = layout.sinks.get("csv")
    truncate = []
    if csv is not None and csv.get("append", True) is False:
        path = Path(csv.get("path"))
        truncate.append(path if path.is_absolute() else Path.cwd() / path)
    return Twin(app, layout, notes, truncate)
