"""Issue 8: `edgeflow logs NODE` and `edgeflow dashboard`."""

from __future__ import annotations

import webbrowser

from click.testing import CliRunner

from _clitools import cli_env, edgeflow
from edgeflow.cli import cli


def test_logs_dry_run_prints_the_kubectl_command():
    out = edgeflow("logs", "gpu_processor", "-n", "edgeflow", "-f", "--dry-run")
    assert out.returncode == 0
    assert out.stderr.strip() == ("$ kubectl logs -n edgeflow -l edgeflow.io/node=gpu-processor --prefix "
                                  "--max-log-requests 20 --all-containers -f")


def test_logs_of_a_grouped_node_and_one_app():
    result = CliRunner().invoke(cli, ["logs", "detector", "-n", "demo", "--group", "vision", "--app",
                                      "my_app", "--tail", "50", "--kube-context", "edge", "--dry-run"])
    assert result.exit_code == 0
    assert result.stderr.strip() == (
        "$ kubectl --context edge logs -n demo -l edgeflow.io/group=vision,app.kubernetes.io/instance=my-app "
        "--prefix --max-log-requests 20 -c detector --tail 50")


def test_logs_without_kubectl_exits_2_with_one_line():
    out = edgeflow("logs", "cam", env=cli_env(PATH="/nonexistent"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("ConfigError: kubectl is not installed")


def test_dashboard_local_url_and_open(monkeypatch):
    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    result = CliRunner(env={"GATEWAY_HTTP_PORT": "8123"}).invoke(cli, ["dashboard", "--open"])
    assert result.exit_code == 0 and result.stdout.strip() == "http://localhost:8123/dashboard"
    assert opened == ["http://localhost:8123/dashboard"]


def test_dashboard_of_a_cluster_dry_run():
    result = CliRunner().invoke(cli, ["dashboard", "-n", "edgeflow", "--dry-run"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "kubectl get services -n edgeflow -l app.kubernetes.io/managed-by=edgeflow," in result.stderr
    assert "kubectl get nodes" in result.stderr
