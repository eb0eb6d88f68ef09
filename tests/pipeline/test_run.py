"""The YAML and the Python version of the same pipeline, run for real (`python main.py`, `edgeflow run
pipeline.yaml`): the same graph and the same output; the built-in gateway serving from its YAML settings."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ._pl import EXAMPLES, HERE, ROOT, edgeflow, env, free_port, python, write

pytestmark = pytest.mark.slow
SHM = Path("/dev/shm")
QUICKSTART = "test-distributed-system"


def summary(stdout: str) -> dict[str, list[str]]:
    """The run's closing summary: node -> its figures (in, out, errors, restarts, drops)."""
    lines = stdout.splitlines()
    start = lines.index("summary:") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        name, *figures = line.split()
        rows[name] = figures
    return rows


def test_the_quickstart_from_yaml_runs_as_its_main_py(tmp_path):
    frames = "30"
    py = python(EXAMPLES / "quickstart" / "main.py", "--frames", frames, cwd=tmp_path)
    yml = edgeflow("run", str(EXAMPLES / "quickstart" / "pipeline.yaml"), "--frames", frames, cwd=tmp_path)
    assert py.returncode == 0 and yml.returncode == 0
    edges = [line for line in py.stdout.splitlines() if ": shm (same host)" in line]
    assert len(edges) == 3
    assert edges == [line for line in yml.stdout.splitlines() if ": shm (same host)" in line]
    py_rows, yml_rows = summary(py.stdout), summary(yml.stdout)
    assert list(py_rows) == list(yml_rows) == ["fake_camera", "gpu_processor", "gateway"]
    assert py_rows["fake_camera"][:2] == yml_rows["fake_camera"][:2] == ["0", frames]
    for rows in (py_rows, yml_rows):                  # REALTIME links: each node took frames, none errored
        assert all(int(figures[1]) > 0 and figures[2] == "0" for figures in rows.values()), rows
    assert "exit code 0" in yml.stdout
    assert not [p for p in SHM.iterdir() if p.name.startswith(f"edgeflow.{QUICKSTART}.")]


def rows_of(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return [{k: v for k, v in row.items() if k != "timestamp"} for row in csv.DictReader(file)]


def test_the_same_pipeline_gives_the_same_rows_and_files_merge(tmp_path, app):
    frames = 40
    folder = HERE / "apps" / "scaled"
    py = python(folder / "main.py", "--frames", str(frames), cwd=tmp_path,
                environ=env(PL_APP=app, PL_OUT=str(tmp_path / "py.csv")))
    yml = edgeflow("run", str(folder / "pipeline.yaml"), "--frames", str(frames), cwd=tmp_path,
                   environ=env(PL_APP=app, PL_OUT=str(tmp_path / "yaml.csv")))
    assert py.returncode == 0 and yml.returncode == 0
    rows = rows_of(tmp_path / "py.csv")
    assert rows == rows_of(tmp_path / "yaml.csv")                   # every frame, in order, the same values
    assert [(int(r["frame_id"]), float(r["value"])) for r in rows] == [(n, n * 2.5 + 1) for n in
                                                                       range(1, frames + 1)]
    site = write(tmp_path, "site.yaml", """
        nodes:
          scale:
            options: {factor: 10}
    """)
    merged = edgeflow("run", "-c", str(folder / "pipeline.yaml"), "-c", str(site), "--frames", "5",
                      cwd=tmp_path, environ=env(PL_APP=app, PL_OUT=str(tmp_path / "site.csv")))
    assert merged.returncode == 0
    assert [float(r["value"]) for r in rows_of(tmp_path / "site.csv")] == [n * 10 + 1 for n in range(1, 6)]


def test_an_invalid_file_exits_2_before_anything_starts(tmp_path, app):
    bad = write(tmp_path, "bad.yaml", f"""
        app: {app}
        nodes:
          counter: {{class: pipeline.pl_nodes:Counter}}
          scale: {{class: pipeline.pl_nodes:Scale, replicas: two}}
        links: [counter -> scael]
    """)
    out = edgeflow("run", str(bad), "--frames", "5", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"{bad}:4:43: nodes.scale.replicas: expected an integer >= 1, got 'two'",
        f"{bad}:5:9: links[0]: unknown node 'scael' (did you mean 'scale'?)",
    ]
    assert not [p for p in SHM.iterdir() if p.name.startswith(f"edgeflow.{app}.")]


def fetch(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_built_in_gateway_serves_as_its_file_says(tmp_path, app):
    port, token = free_port(), "gw-token-from-env-42"
    file = write(tmp_path, "gw.yaml", f"""
        app: {app}
        nodes:
          counter: {{class: pipeline.pl_nodes:Counter, fps: 20}}
          gateway:
            class: GatewayNode
            interfaces:
              web: {{port: ${{GW_PORT}}, token: ${{GW_TOKEN}}}}
        links: [counter -> gateway]
    """)
    proc = subprocess.Popen([sys.executable, "-m", "edgeflow.cli", "run", str(file), "--duration", "60"],
                            cwd=tmp_path, env=env(GW_PORT=str(port), GW_TOKEN=token), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = fetch(f"http://127.0.0.1:{port}/api/graph", token)
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, "the gateway never served /api/graph"
        graph = json.loads(body)
        assert graph["nodes"][1]["config"] == {"web": {"port": port, "token": "***"}}
        assert token.encode() not in body
        assert fetch(f"http://127.0.0.1:{port}/api/graph")[0] == 401       # the token from ${GW_TOKEN} holds
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        print(out)
    assert proc.returncode == 0
    assert token not in out
