"""Loading pipeline files: the same Graph as the Python API, JSON like YAML, several files merged, ${VAR}
substitution, and secrets that never show."""

from __future__ import annotations

import json

import pytest

import edgeflow
from edgeflow.cli import _load
from edgeflow.pipeline import load, source_of
from edgeflow.pipeline.subst import SecretStr

from ._pl import EXAMPLES, edgeflow as run_cli, env, problems, write

N = "pipeline.pl_nodes"


@pytest.mark.parametrize("example", ["quickstart", "folder_style", "telemetry_files"])
def test_an_examples_pipeline_yaml_is_its_main_py(example):
    yaml_graph = edgeflow.load(EXAMPLES / example / "pipeline.yaml").graph()
    py_graph = _load.load_app(EXAMPLES / example / "main.py").graph()
    assert yaml_graph.to_dict() == py_graph.to_dict()
    assert [spec.load_class().__name__ for spec in yaml_graph.nodes] == \
        [spec.load_class().__name__ for spec in py_graph.nodes]


def test_json_works_wherever_yaml_does(tmp_path):
    yaml_file = write(tmp_path, "p.yaml", f"""
        app: demo
        broker: redis://127.0.0.1:6390/1
        nodes:
          cam: {{class: {N}:Counter, fps: 1000.0}}
          scale: {{class: {N}:Scale, replicas: 2, options: {{factor: 2, offset: "${{OFFSET:-1.5}}"}}}}
          out: {{class: CsvSink, options: {{path: out.csv}}}}
        links:
          - cam -> scale
          - {{from: scale, to: out, qos: balanced, max_lag: 4}}
    """)
    json_file = write(tmp_path, "p.json", json.dumps({
        "app": "demo", "broker": "redis://127.0.0.1:6390/1",
        "nodes": {"cam": {"class": f"{N}:Counter", "fps": 1e3},
                  "scale": {"class": f"{N}:Scale", "replicas": 2,
                            "options": {"factor": 2, "offset": "${OFFSET:-1.5}"}},
                  "out": {"class": "CsvSink", "options": {"path": "out.csv"}}},
        "links": ["cam -> scale", {"from": "scale", "to": "out", "qos": "balanced", "max_lag": 4}]},
        indent="\t"))
    from_yaml, from_json = load(yaml_file, env={}).graph(), load(json_file, env={}).graph()
    assert from_json.to_dict() == from_yaml.to_dict()
    assert from_json.node("cam").fps == 1000.0           # JSON's 1e3 is a number (YAML 1.1 would say str)
    assert from_json.node("scale").config["offset"] == "1.5"   # quoted: stays a string
    write(tmp_path, "bad.json",
          '{\n  "app": "demo",\n  "nodes": {"cam": {"class": "x:Y", "replicas": 0}}\n}\n')
    assert problems(tmp_path / "bad.json") == [f"{tmp_path}/bad.json:3:37: nodes.cam.replicas: expected an "
                                               "integer >= 1, got 0"]
    write(tmp_path, "syntax.json", '{\n  "app": "demo",\n}\n')
    assert problems(tmp_path / "syntax.json") == [f"{tmp_path}/syntax.json:3:1: invalid JSON: Expecting "
                                                  "property name enclosed in double quotes"]


def test_later_files_win_key_by_key_and_errors_name_the_file_that_said_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "base.yaml", f"""
        app: fleet
        nodes:
          cam: {{class: {N}:Counter, fps: 30, device: camera}}
          scale:
            class: {N}:Scale
            options: {{factor: 2, offset: 1}}
          debug: {{class: {N}:Drop}}
          out: {{class: {N}:Drop}}
        links:
          - cam -> scale -> out
          - scale -> debug
    """)
    write(tmp_path, "site.yaml", """
        app: fleet-site-7
        nodes:
          cam: {fps: 10}
          scale:
            replicas: 2
            options: {offset: 5}
          debug: null
        links:
          - cam -> scale -> out
    """)
    graph = load(["base.yaml", "site.yaml"], env={}).graph()
    assert graph.app == "fleet-site-7"
    assert [spec.name for spec in graph.nodes] == ["cam", "scale", "out"]
    cam, scale = graph.node("cam"), graph.node("scale")
    assert (cam.fps, cam.device) == (10.0, "camera")                 # fps from site, device from base
    assert (scale.replicas, dict(scale.config)) == (2, {"factor": 2, "offset": 5})
    assert [(e.source, e.target) for e in graph.edges] == [("cam", "scale"), ("scale", "out")]   # replaced
    write(tmp_path, "bad-site.yaml", "nodes:\n  scale: {replicas: -1}\n")
    assert problems(["base.yaml", "bad-site.yaml"]) == [
        "bad-site.yaml:2:11: nodes.scale.replicas: expected an integer >= 1, got -1"]
    # the merged document, references kept, is what --format yaml writes
    out = run_cli("graph", "base.yaml", "-c", "site.yaml", "--format", "yaml", cwd=tmp_path)
    assert out.returncode == 0
    assert load_text(tmp_path, out.stdout).graph().to_dict() == graph.to_dict()


def load_text(folder, text):
    path = folder / "written.yaml"
    path.write_text(text)
    return load(path, env={})


def test_variables_defaults_required_types_and_the_escape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "p.yaml", f"""
        app: ${{APP_NAME:-env-demo}}
        nodes:
          cam: {{class: {N}:Counter, fps: ${{FPS}}, device: "${{DEVICE:-cam}}-${{SITE}}"}}
          scale:
            class: {N}:Scale
            replicas: ${{REPLICAS:-1}}
            options:
              factor: ${{FACTOR}}
              label: "${{FACTOR}}"
              note: cost $${{NOT_A_VAR}} here
              empty: ${{EMPTY:-}}
        links: [cam -> scale]
    """)
    graph = load("p.yaml", env={"FPS": "12.5", "SITE": "north", "FACTOR": "3", "REPLICAS": ""}).graph()
    cam, scale = graph.node("cam"), graph.node("scale")
    assert graph.app == "env-demo" and cam.fps == 12.5 and cam.device == "cam-north"
    assert scale.replicas == 1                              # set but empty: the default
    assert dict(scale.config) == {"factor": 3, "label": "3", "note": "cost ${NOT_A_VAR} here", "empty": None}
    lines = problems("p.yaml", env={"FACTOR": "3"})
    assert lines == [
        "p.yaml:3:43: nodes.cam.fps: ${FPS} is not set (set it, or give a default: ${FPS:-value})",
        "p.yaml:3:56: nodes.cam.device: ${SITE} is not set (set it, or give a default: ${SITE:-value})"]
    write(tmp_path, "need.yaml", f"""
        app: demo
        nodes:
          cam:
            class: {N}:Counter
            device: ${{CAMERA_DEVICE:?set CAMERA_DEVICE to the camera's name}}
          bad: {{class: {N}:Scale, device: "${{1NOPE}}"}}
    """)
    assert problems("need.yaml", env={"CAMERA_DEVICE": ""}) == [
        "need.yaml:5:5: nodes.cam.device: ${CAMERA_DEVICE} is not set: set CAMERA_DEVICE to the camera's "
        "name",
        "need.yaml:6:41: nodes.bad.device: malformed reference '${1NOPE}': expected ${NAME}, "
        "${NAME:-default} or ${NAME:?message}",
    ]


def test_secrets_from_variables_never_show(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "p.yaml", f"""
        app: secret-demo
        nodes:
          cam: {{class: {N}:Counter}}
          scale:
            class: {N}:Scale
            options:
              dsn: "postgresql://app:${{DB_PASSWORD}}@127.0.0.1:5439/db"
              header: ${{API_KEY}}
              token: ${{PLAIN_VALUE}}
          gateway:
            class: GatewayNode
            interfaces:
              web: {{port: 0, token: ${{GW_TOKEN}}}}
        links: [cam -> scale -> gateway]
    """)
    secrets = {"DB_PASSWORD": "pw-4-db-xyz", "API_KEY": "key-abcdef", "PLAIN_VALUE": "looks-plain-1",
               "GW_TOKEN": "gw-token-123456"}
    app = load("p.yaml", env=secrets)
    config = app.graph().node("scale").config
    assert config["header"] == "key-abcdef" and isinstance(config["header"], SecretStr)   # the node gets it
    assert repr(config["header"]) == "'***'"
    assert source_of(app).secrets.values >= set(secrets.values())
    for fmt in ("text", "json", "mermaid", "dot", "yaml"):
        out = run_cli("graph", "p.yaml", "--format", fmt, cwd=tmp_path, environ=env(**secrets))
        assert out.returncode == 0
        for value in secrets.values():
            assert value not in out.stdout + out.stderr, (fmt, value)
    out = run_cli("graph", "p.yaml", "--format", "json", cwd=tmp_path, environ=env(**secrets))
    scale = json.loads(out.stdout)["nodes"][1]["config"]
    assert scale["dsn"] == "postgresql://app:***@127.0.0.1:5439/db" and scale["header"] == "***"
    yaml_out = run_cli("graph", "p.yaml", "--format", "yaml", cwd=tmp_path, environ=env(**secrets)).stdout
    assert "${DB_PASSWORD}" in yaml_out and "${GW_TOKEN}" in yaml_out       # written back as references
    write(tmp_path, "err.yaml", f"app: demo\nnodes:\n  cam: {{class: {N}:Counter, replicas: ${{API_KEY}}}}\n")
    assert problems("err.yaml", env=secrets) == [
        "err.yaml:3:43: nodes.cam.replicas: expected an integer >= 1, got '***'"]
