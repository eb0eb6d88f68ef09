"""The CLI's pipeline-file side: -c with deploy and graph, folders, a Python file given -c."""

from __future__ import annotations

import shutil

import yaml
from click.testing import CliRunner

from edgeflow.cli import cli

from ._pl import EXAMPLES, write


def test_deploy_runs_each_node_with_the_merged_files(tmp_path, monkeypatch):
    project = tmp_path / "folder_style"
    shutil.copytree(EXAMPLES / "folder_style", project)
    write(project, "sites/north.yaml", "nodes:\n  detector: {replicas: 2}\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["deploy", "folder_style/pipeline.yaml", "-c",
                                      "folder_style/sites/north.yaml", "--dry-run", "--no-build", "--out",
                                      str(tmp_path / "k8s")])
    assert result.exit_code == 0, result.output
    containers, replicas = {}, {}
    for path in (tmp_path / "k8s").glob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            pod = (obj or {}).get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                containers[container["name"]] = container
                replicas[container["name"]] = obj["spec"].get("replicas")
    assert containers["detector"]["args"] == ["run", "pipeline.yaml", "-c", "sites/north.yaml", "--node",
                                              "detector"]
    assert replicas["detector"] == 2                                 # the site file's replicas
    assert containers["camera"]["args"][:4] == ["run", "pipeline.yaml", "-c", "sites/north.yaml"]
    outside = write(tmp_path, "elsewhere.yaml", "nodes:\n  detector: {replicas: 3}\n")
    result = CliRunner().invoke(cli, ["deploy", "folder_style/pipeline.yaml", "-c", str(outside), "--dry-run",
                                      "--no-build", "--out", str(tmp_path / "k8s2")])
    assert result.exit_code == 2 and "outside the project folder" in result.output


def test_a_folder_without_main_py_runs_its_pipeline_yaml_and_a_python_file_takes_no_c(tmp_path):
    folder = tmp_path / "only_yaml"
    write(folder, "pipeline.yaml", "app: demo\nnodes:\n  cam: {class: pipeline.pl_nodes:Counter}\n")
    result = CliRunner().invoke(cli, ["graph", str(folder)])
    assert result.exit_code == 0 and result.output.startswith("app demo: 1 nodes, 0 links")
    result = CliRunner().invoke(cli, ["graph", str(EXAMPLES / "quickstart" / "main.py"), "-c", "x.yaml"])
    assert result.exit_code == 2 and "-c merges pipeline files (YAML, JSON)" in result.output
    result = CliRunner().invoke(cli, ["graph"])
    assert result.exit_code == 2 and "give a pipeline: FILE" in result.output
