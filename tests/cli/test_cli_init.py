"""Issue 8: `edgeflow init NAME` makes a project that runs with `python main.py` and whose test passes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from _clitools import cli_env, edgeflow
from edgeflow.cli import cli


@pytest.mark.slow
def test_init_then_run_then_pytest(tmp_path):
    out = edgeflow("init", "my-pipeline", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    project = tmp_path / "my-pipeline"
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "main.py", "test_main.py"]
    run = subprocess.run([sys.executable, "main.py", "--frames", "5"], cwd=project, env=cli_env(),
                         capture_output=True, text=True, timeout=60)
    print(run.stdout, run.stderr)
    assert run.returncode == 0
    assert "source -> invert: shm (same host), REALTIME" in run.stdout
    assert "invert -> printer: shm (same host), DURABLE" in run.stdout
    assert sum(line.startswith("printer: frame ") for line in run.stdout.splitlines()) >= 1
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                           env=cli_env(), capture_output=True, text=True, timeout=120)
    print(tests.stdout, tests.stderr)
    assert tests.returncode == 0 and "4 passed" in tests.stdout
    graph = edgeflow("graph", "main.py", cwd=project)
    assert graph.returncode == 0 and "app my-pipeline: 3 nodes, 2 links" in graph.stdout


def test_init_refuses_a_non_empty_folder_and_a_bad_name(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "already exists and is not empty" in result.stderr
    assert (tmp_path / "taken" / "x").read_text() == "mine"
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bad name!")])
    assert result.exit_code == 2 and "becomes the app's name" in result.stderr
    assert not (tmp_path / "bad name!").exists()


def test_init_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "empty")])
    assert result.exit_code == 0
    assert "app = EdgeApp(\"empty\")" in (tmp_path / "empty" / "main.py").read_text()
