"""`edgeflow graph main.py --format yaml` writes a pipeline file that loads to the same Graph.to_dict(): on
the quickstart and on an app with nodes and links of every kind (real `edgeflow` processes)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from edgeflow.errors import ConfigError
from edgeflow.pipeline import export

from ._pl import EXAMPLES, HERE, edgeflow, env

pytestmark = pytest.mark.slow


def round_trip(folder, environ):
    """graph main.py as JSON; main.py -> pipeline.yaml; graph pipeline.yaml as JSON: (both, the YAML)."""
    py = edgeflow("graph", "main.py", "--format", "json", cwd=folder, environ=environ)
    written = edgeflow("graph", "main.py", "--format", "yaml", cwd=folder, environ=environ)
    assert py.returncode == 0 and written.returncode == 0
    (folder / "pipeline.yaml").write_text(written.stdout)
    again = edgeflow("graph", "pipeline.yaml", "--format", "json", cwd=folder, environ=environ)
    assert again.returncode == 0
    return json.loads(py.stdout), json.loads(again.stdout), written


def test_the_quickstart_round_trips(tmp_path):
    shutil.copy(EXAMPLES / "quickstart" / "main.py", tmp_path / "main.py")
    from_py, from_yaml, written = round_trip(tmp_path, env())
    assert from_yaml == from_py
    assert "class: main:FakeCamera" in written.stdout and written.stderr == ""


def test_every_kind_of_node_and_link_round_trips_with_secrets_as_variables(tmp_path):
    shutil.copytree(HERE / "apps" / "every_kind", tmp_path / "app")
    folder = tmp_path / "app"
    secrets = {"REDIS_PASSWORD": "other", "SCALE_API_TOKEN": "t", "GATEWAY_WEB_TOKEN": "g"}
    from_py, from_yaml, written = round_trip(folder, env(**secrets))
    assert from_yaml == from_py
    assert {e["qos"] for e in from_py["edges"]} == {"REALTIME", "DURABLE", "BALANCED"}
    assert {e["codec"] for e in from_py["edges"]} == {None, "jpeg", "png"}
    assert {e["channel"] for e in from_py["edges"]} == {None, "fused", "again"}
    assert {n["type"] for n in from_py["nodes"]} == {"producer", "consumer", "fusion", "sink", "gateway"}
    document = yaml.safe_load(written.stdout)
    nodes = document["nodes"]
    assert nodes["relay"] == {"path": "nodes/relay", "options": {"limit": 4}}    # only what node.toml lacks
    assert nodes["local"]["class"] == "main:Local" and nodes["csv"]["class"] == "CsvSink"
    assert nodes["gateway"]["interfaces"] == {"web": {"port": 8123, "token": "${GATEWAY_WEB_TOKEN}"}}
    assert document["broker"] == "redis://:${REDIS_PASSWORD}@127.0.0.1:6390/0"
    for value in ("s3cret-pw", "tok-123", "gw-secret-token"):                 # main.py's secrets
        assert value not in written.stdout + written.stderr
    assert "note: node 'scale': option 'api_token' written as ${SCALE_API_TOKEN}" in written.stderr
    assert document["links"][0] == "counter -> scale -> relay"
    assert {"from": "scale", "to": "pair", "qos": "balanced", "max_lag": 5} in document["links"]
    assert {"from": "pair", "to": "drop", "qos": "realtime"} in document["links"]
    missing = edgeflow("graph", "pipeline.yaml", cwd=folder, environ=env())
    assert missing.returncode == 2 and "${SCALE_API_TOKEN} is not set" in missing.stderr


def test_a_class_that_no_file_can_name(app):
    from edgeflow import EdgeApp, ProducerNode

    class Inner(ProducerNode):
        def produce(self):
            return {"n": 1}

    python_app = EdgeApp(app)
    python_app.node(Inner, name="inner")
    with pytest.raises(ConfigError, match="node 'inner': class test_a_class_that_no_file_can_name.<locals>."
                                          "Inner is defined inside a function"):
        export.graph_yaml(python_app, HERE / "main.py")
