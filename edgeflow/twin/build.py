"""A checked twin configuration (schema.Layout) as an EdgeApp:

    mqtt (MqttSource) --DURABLE--> model (TwinModel, runtime.workers replicas) --> influxdb2 (InfluxSink)
                                                                              --> csv (CsvSink; [csv_columns])
                                                                              --> stdout (StdoutSink)
                                                                              --> gateway (health.port)

Each node gets the options the configuration's keys map to (``OPTION_KEYS``: PyEdgeTwin's name of an option,
where it differs). An option a node refuses at registration becomes a line at the key that set it
(``config.yaml:14:5: sinks.influxdb2.url: unknown URL scheme udp://``), or at its section when the option was
a default of this module.
"""

from __future__ import annotations

import re
from typing import Any

from edgeflow.config import is_loopback, settings
from edgeflow.errors import ConfigError, GraphError
from edgeflow.graph import EdgeApp
from edgeflow.models import node_for
from edgeflow.pipeline.errors import PipelineError
from edgeflow.pipeline.tree import problem
from edgeflow.twin import schema
from edgeflow.twin.nodes import Columns, StdoutSink, TwinModel

DEFAULT_PORT = 8080             # PyEdgeTwin's health port
INFLUX_TAGS = ["asset_id", "twin_id", "model_version"]     # PyEdgeTwin's InfluxDB tags
INFLUX_MEASUREMENT = "twin_output"                         # PyEdgeTwin's default measurement
OPTION_KEYS = {"reconnect_min": "reconnect_delay_min", "reconnect_max": "reconnect_delay_max",
               "batch_ms": "flush_interval_ms", "replicas": "workers", "url": ("url", "host", "port", "tls")}
"""A node's option -> the configuration key(s) it comes from, where the names differ."""
NAMES = {"source": "mqtt", "model": "model", "gateway": "gateway", "columns": "csv_columns"}


def app_name(twin_id: str) -> str:
    """An app name (letters, digits, '-', '_'; at most 64) for a twin id: other characters become '-'."""
    return (re.sub(r"[^A-Za-z0-9_-]", "-", twin_id).strip("-") or "twin")[:64]


def build(layout: schema.Layout, *, name: str | None = None, port: int | None = None) -> tuple[EdgeApp, list]:
    """The EdgeApp of a checked configuration, and the notes to print before it runs.

    Args:
        name: the app's name (default: from ``runtime.twin_id``). port: the health port (default:
            ``health.port``, else 8080).

    Raises:
        PipelineError: a node refused an option (one line per node, at the key that set it).
    """
    rt = layout.runtime
    try:
        app = EdgeApp(name or app_name(rt.get("twin_id")))
    except ConfigError as exc:
        raise PipelineError(problem(rt.where("twin_id"), ("runtime", "twin_id"), str(exc))) from None
    problems: list[str] = []
    notes = [f"note: runtime.{key} is PyEdgeTwin's queue; EdgeFlow's link from MQTT to the model is DURABLE "
             "(every reading, in order, back-pressure to the broker): ignored"
             for key in ("queue_size", "queue_overflow_policy") if rt.get(key) is not None]

    def add(node: str, cls: type, section: schema.Section, options: dict[str, Any]) -> None:
        try:
            app.node(cls, name=node, **_plain(options))
        except ConfigError as exc:
            problems.append(_locate(node, section, str(exc)))

    add(NAMES["source"], _source_class(), layout.mqtt, _mqtt(layout.mqtt))
    cls, model = _model(layout)
    add(NAMES["model"], cls, layout.model, model)
    links: list[tuple[str, str, Any]] = []
    for kind, section in layout.sinks.items():
        for node, target, options, upstream, qos in _sink(kind, section):
            add(node, target, section, options)
            links.append((upstream, node, qos))
    if not layout.sinks:
        add("stdout", StdoutSink, layout.model, {})
        links.append((NAMES["model"], "stdout", None))
        notes.append("note: no sinks configured: records go to stdout (PyEdgeTwin's default)")
    health = layout.health
    if health.get("enabled", True):
        add(NAMES["gateway"], _gateway_class(), health, {"web": _web(health, port)})
        links.append((NAMES["model"], NAMES["gateway"], None))
    elif port is not None:
        notes.append(f"note: --port {port}: health.enabled is false, so no health server runs")
    if problems:
        raise PipelineError(*problems)
    app.link(NAMES["source"]).to(NAMES["model"], qos="durable")
    for source, target, qos in links:
        if qos is None:
            app.link(source).to(target)                     # sinks: DURABLE; the gateway: REALTIME
        else:
            app.link(source).to(target, qos=qos)
    try:
        app.graph()
    except GraphError as exc:                               # nothing a file can cause; say it plainly
        raise PipelineError(problem(layout.top, (), str(exc))) from None
    return app, notes


# -- the nodes -----------------------------------------------------------------------------------------------

def _source_class() -> type:
    from edgeflow.connectors import MqttSource
    return MqttSource


def _gateway_class() -> type:
    from edgeflow.pipeline.builtins import Gateway
    return Gateway


def _mqtt(s: schema.Section) -> dict[str, Any]:
    host = s.get("host", "localhost")
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    scheme = "mqtts" if s.get("tls", False) else "mqtt"
    port = s.get("port", 8883 if scheme == "mqtts" else 1883)
    options: dict[str, Any] = {"url": f"{scheme}://{host}:{port}", "topics": s.get("topics"),
                               "qos": s.get("qos", 1)}
    renamed = {"reconnect_delay_min": "reconnect_min", "reconnect_delay_max": "reconnect_max"}
    for key, value in s.values.items():
        if key not in ("host", "port", "tls", "topics", "qos") and value is not None:
            options[renamed.get(key, key)] = value
    return options


def _model(layout: schema.Layout) -> tuple[type, dict[str, Any]]:
    m, rt = layout.model, layout.runtime
    spec = {"module_path": m.get("module_path"), "params": dict(m.get("params", {})),
            "twin_id": rt.get("twin_id"), "asset_id": rt.get("asset_id"), "replicas": rt.get("workers", 1)}
    for key in ("version", "watch", "watch_interval"):
        if m.get(key) is not None:
            spec[key] = str(m.get(key)) if key == "version" else m.get(key)
    try:
        _, options = node_for(spec, base_dir=m.folder("module_path"))
    except ConfigError as exc:
        raise PipelineError(_locate(NAMES["model"], m, str(exc))) from None
    return TwinModel, options


def _sink(kind: str, s: schema.Section) -> list[tuple[str, type, dict[str, Any], str, Any]]:
    """(node name, class, options, upstream node, link QoS or None for the default) for one sink."""
    from edgeflow.connectors import CsvSink, InfluxSink
    model = NAMES["model"]
    if kind == "influxdb2":
        options = {"url": s.get("url", "http://localhost:8086"), "token": s.get("token"), "org": s.get("org"),
                   "bucket": s.get("bucket"), "measurement": s.get("measurement", INFLUX_MEASUREMENT),
                   "tags": s.get("tags", INFLUX_TAGS)}
        for key, value in s.values.items():
            if key not in options and value is not None:
                options["batch_ms" if key == "flush_interval_ms" else key] = value
        return [("influxdb2", InfluxSink, options, model, None)]
    if kind == "csv":
        options = {key: value for key, value in s.values.items()
                   if key not in ("append", "columns") and value is not None}
        columns = s.get("columns")
        if columns is None:
            return [("csv", CsvSink, options, model, None)]
        options.setdefault("meta", False)                   # the columns named are the columns written
        columns = [columns] if isinstance(columns, str) else list(columns)
        return [(NAMES["columns"], Columns, {"columns": columns}, model, "durable"),
                ("csv", CsvSink, options, NAMES["columns"], None)]
    options = {key: value for key, value in s.values.items() if value is not None}
    for key in ("include_fields", "exclude_fields"):
        if isinstance(options.get(key), str):
            options[key] = [options[key]]
    return [("stdout", StdoutSink, options, model, None)]


def _web(s: schema.Section, port: int | None) -> dict[str, Any]:
    web: dict[str, Any] = {"port": port if port is not None else s.get("port", DEFAULT_PORT)}
    host, token = s.get("host"), s.get("token")
    if host is not None:
        web["host"] = host
        if not is_loopback(host) and token is None and not settings.EDGEFLOW_GATEWAY_TOKEN:
            why = (f"{host!r} is reachable from other hosts: give health.token (or $EDGEFLOW_GATEWAY_TOKEN), "
                   "which /metrics and the API then ask for, or bind 127.0.0.1 (docs/security.md)")
            raise PipelineError(problem(s.where("host"), ("health", "host"), why))
    if token is not None:
        web["token"] = token
    return web


def _plain(value: Any) -> Any:
    """Plain dicts and lists (no marks) for node options; strings stay as they are (a SecretStr too)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# -- errors at the key that caused them ----------------------------------------------------------------------

def _locate(node: str, section: schema.Section, text: str) -> str:
    """A node's one-line ConfigError as a line at the configuration key that gave the option."""
    message = " ".join(text.split())
    message = re.sub(rf"^node '{re.escape(node)}': ", "", message)
    found = re.match(r"option '([^']+)': ", message)
    if found:
        option = found.group(1)
        keys = OPTION_KEYS.get(option, option)
        for key in (keys,) if isinstance(keys, str) else keys:
            if key in section.values:
                return problem(section.where(key), (*section.path, key), message[found.end():])
        return problem(section.where(), section.path, message)
    return problem(section.where(), section.path, message)
