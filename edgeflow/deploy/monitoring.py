"""Monitoring files of a project as ConfigMaps: its ``prometheus.yml`` and Grafana dashboards, pointed at the
app's gateway in the cluster (``edgeflow deploy ... --monitoring``).

    objects = build(graph, cfg, project)        # pure apart from reading the files; [] when there are none

What comes out, next to what ``manifests.build`` makes (same namespace and labels, so ``edgeflow clean``
removes them too):

- ``<app>-prometheus`` (data ``prometheus.yml``): the project's prometheus.yml with every scrape job whose
  ``metrics_path`` is ``/metrics`` (or unset) aimed at the gateway's ClusterIP Service
  (``<service>.<namespace>.svc:8000``), and its bearer credential read from
  ``/etc/prometheus/secrets/<secret>/<key>``: where the Prometheus Operator (``spec.secrets``), or a
  ``secret`` volume mounted there, puts the Secret that holds the gateway token (the ``<app>-redis`` Secret's
  ``gateway-token``, or the operator's ``<app>-gateway-token`` for a given token). The file's other settings
  stay as written (comments do not survive the rewrite).
- ``<app>-grafana-dashboards`` (data: each ``grafana*.json``, checked to be a dashboard with a ``uid``, a
  ``title`` and ``panels``), labelled ``grafana_dashboard: "1"``, which the Grafana Helm chart's dashboard
  sidecar loads.

Nothing here needs kubectl; ``render.write`` writes the objects as it writes the others
(``02-configmap-<name>.yaml``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from edgeflow.deploy import manifests
from edgeflow.errors import ConfigError

PROMETHEUS_FILE = "prometheus.yml"
DASHBOARD_GLOB = "grafana*.json"
SECRETS_DIR = "/etc/prometheus/secrets"       # the Prometheus Operator's mount point of spec.secrets
DASHBOARD_LABEL = {"grafana_dashboard": "1"}   # the Grafana chart's sidecar picks ConfigMaps with it


def files(project: Path) -> tuple[Path | None, list[Path]]:
    """The project's prometheus.yml (or None) and its Grafana dashboard files, sorted."""
    prometheus = project / PROMETHEUS_FILE
    return (prometheus if prometheus.is_file() else None), sorted(p for p in project.glob(DASHBOARD_GLOB)
                                                                  if p.is_file())


def build(graph: Any, cfg: manifests.DeployConfig, project: Path) -> list[dict[str, Any]]:
    """The monitoring ConfigMaps of ``project`` for ``graph`` (see the module docstring).

    Raises:
        ConfigError: the project has neither file, the app has no gateway to scrape, prometheus.yml is not a
            Prometheus configuration, or a dashboard is not a Grafana dashboard (one line naming the file).
    """
    prometheus, dashboards = files(project)
    if prometheus is None and not dashboards:
        raise ConfigError(f"--monitoring: {project} has no {PROMETHEUS_FILE} and no {DASHBOARD_GLOB} "
                          "dashboard")
    gateways = [spec.name for spec in graph.nodes if spec.kind == "gateway"]
    if not gateways:
        raise ConfigError("--monitoring: the app has no gateway, so there is no /metrics to scrape")
    names = manifests._Names(graph, cfg)
    service, _ = names.gateways[gateways[0]]
    objects = []
    if prometheus is not None:
        text = prometheus_config(prometheus, f"{service}.{cfg.namespace}.svc:{manifests.HTTP_PORT}",
                                 names.token_ref)
        objects.append(_config_map(graph.app, f"{graph.app}-prometheus", cfg, {PROMETHEUS_FILE: text},
                                   "prometheus"))
    if dashboards:
        data = {path.name: dashboard_text(path) for path in dashboards}
        objects.append(_config_map(graph.app, f"{graph.app}-grafana-dashboards", cfg, data, "grafana",
                                   extra_labels=DASHBOARD_LABEL))
    return objects


def prometheus_config(path: Path, target: str, token_ref: tuple[str, str] | None) -> str:
    """``path``'s configuration with its /metrics jobs scraping ``target`` with the token of ``token_ref``
    ((Secret, key); None: the bearer setting is left as written)."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"--monitoring: {path}: not readable YAML: {' '.join(str(exc).split())}") from None
    jobs = config.get("scrape_configs") if isinstance(config, dict) else None
    if not isinstance(jobs, list) or not all(isinstance(job, dict) and "job_name" in job for job in jobs):
        raise ConfigError(f"--monitoring: {path}: expected a Prometheus configuration with scrape_configs "
                          "(a list of jobs, each with a job_name)")
    aimed = 0
    for job in jobs:
        if job.get("metrics_path", "/metrics") != "/metrics":
            continue
        aimed += 1
        labels = {}
        for static in job.get("static_configs") or []:
            labels.update(static.get("labels") or {})
        job["static_configs"] = [{"targets": [target], **({"labels": labels} if labels else {})}]
        if token_ref is not None:
            secret, key = token_ref
            job["authorization"] = {"type": "Bearer", "credentials_file": f"{SECRETS_DIR}/{secret}/{key}"}
    if not aimed:
        raise ConfigError(f"--monitoring: {path}: no scrape job reads /metrics (the gateway's metrics)")
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=110)


def dashboard_text(path: Path) -> str:
    """A dashboard file's text, once it is checked to be a Grafana dashboard (uid, title, panels)."""
    try:
        text = path.read_text(encoding="utf-8")
        board = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--monitoring: {path}: not readable JSON: {exc}") from None
    if not (isinstance(board, dict) and board.get("uid") and board.get("title")
            and isinstance(board.get("panels"), list)):
        raise ConfigError(f"--monitoring: {path}: expected a Grafana dashboard (a JSON object with uid, "
                          "title and panels)")
    return text


def _config_map(app: str, raw_name: str, cfg: manifests.DeployConfig, data: dict[str, str], component: str,
                extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    name = manifests.dns_name(raw_name)
    lab = {**manifests.labels(app, name, component), **(extra_labels or {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifests._meta(name, cfg, lab),
            "data": data}
