"""Model nodes' options and loading (issue 14, section 2): one-line errors at registration naming the node and
the option; node_for's references (PyEdgeTwin's module_path, files relative to the configuration); a model that
cannot load at start ends the run with a configuration error; a reload runs the file's current bytes even when
a stale .pyc of the same size and second exists; PyEdgeTwin's context API."""

from __future__ import annotations

import os
import sys
import time
import types

import pytest

from edgeflow import EdgeApp, QoS
from edgeflow.errors import ConfigError
from edgeflow.models import META_KEY, ModelBlockContext, ModelNode, node_for
from edgeflow.runtime.metrics import NodeMetrics

from . import model_nodes
from ._helpers import write_model


ECHO = "tests.models.model_nodes:Echo"


@pytest.mark.parametrize("options, message", [
    ({}, "node 'm': option 'model': required: 'package.module:Class' or a .py file"),
    ({"model": ECHO, "module_path": "x:Y"},
     "node 'm': option 'model': give model or module_path, not both"),
    ({"model": ECHO, "parms": {}},
     "node 'm': option 'parms': unknown option (did you mean 'params'?)"),
    ({"model": ECHO, "params": [1]}, "node 'm': option 'params': expected a mapping"),
    ({"model": ECHO, "watch_interval": 0}, "node 'm': option 'watch_interval': 0 is out"),
    ({"model": ECHO, "version": ["1"]}, "node 'm': option 'version': expected a string"),
    ({"model": "no_such_pkg.kalman:Kalman"}, "node 'm': option 'model': 'no_such_pkg.kalman:Kalman': "),
    ({"model": "tests.models.nothing_here:Kalman"}, "no module named 'tests.models.nothing_here'"),
    ({"module_path": "/no/such/dir/k.py"}, "node 'm': option 'module_path': '/no/such/dir/k.py': no such file"),
    ({"model": "kalman:Kal man"}, "node 'm': option 'model': 'kalman:Kal man': 'Kal man' is not a class name"),
])
def test_bad_options_fail_at_registration_in_one_line(options, message):
    with pytest.raises(ConfigError) as info:
        EdgeApp("opts").node(ModelNode, name="m", **options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_node_for_resolves_references_against_the_configuration_folder(tmp_path):
    cls, options = node_for({"name": "twin", "module_path": "models/kalman.py:Kalman", "replicas": 2},
                            base_dir=tmp_path)
    assert cls is ModelNode
    assert options == {"name": "twin", "module_path": f"{tmp_path}/models/kalman.py:Kalman", "replicas": 2,
                       "python_path": [str(tmp_path)]}
    _, options = node_for({"model": "mymodels.kalman:Kalman", "python_path": "lib"}, base_dir=tmp_path)
    assert options["model"] == "mymodels.kalman:Kalman" and options["python_path"] == [str(tmp_path), "lib"]
    with pytest.raises(ConfigError, match="node 'k': option 'model': 'a b:C': expected 'package.module:Class'"):
        node_for({"name": "k", "model": "a b:C"})
    with pytest.raises(ConfigError, match="a model node is a mapping"):
        node_for(["model"])


def test_a_model_that_cannot_load_at_start_ends_the_run_naming_the_node(app, tmp_path):
    ef = EdgeApp(app)
    ef.node(model_nodes.Numbers, name="numbers", count=5)
    ef.node(ModelNode, name="twin", model="tests.models.model_nodes:Kalman")     # the module has no Kalman
    ef.node(model_nodes.Lines, name="sink", out=str(tmp_path / "out.jsonl"))
    ef.link("numbers").to("twin", qos=QoS.DURABLE).to("sink")
    with ef.start() as running:
        assert running.wait(timeout=60) == 2
        twin = running.statistics()["nodes"]["twin"]
    assert twin["failure"] == "stopped by a configuration error"
    assert "node 'twin': option 'model': 'tests.models.model_nodes:Kalman': no class 'Kalman' in " in \
        twin["extra"]["config_error"]


def local(node: ModelNode) -> ModelNode:
    """The node with the runtime's side an in-process run has (edgeflow.testing does the same)."""
    node.context = types.SimpleNamespace(metrics=NodeMetrics(node.name), current_frame=None)
    return node


def test_a_reload_runs_the_files_bytes_not_a_stale_pyc_of_the_same_size_and_second(tmp_path, monkeypatch):
    module = tmp_path / "scale_pyc.py"
    write_model(module, "1", 2)
    node = local(ModelNode(name="m", model="scale_pyc:Scale", python_path=str(tmp_path), watch=False))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "scale_pyc", raising=False)
    node.setup()
    try:
        assert node.process({"n": 5}) == ({"n": 5, "y": 10, "v": "1", "r": 0}, {META_KEY: "1"})
        stat = module.stat()
        write_model(module, "1", 7)                              # same size; same mtime to the second
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        future = node.on_control({"action": "reload", "version": "1-fixed"})
        deadline = time.monotonic() + 10
        while not future.done() and time.monotonic() < deadline:
            node.idle()                                          # the switch happens in the node's thread
            time.sleep(0.01)
        answer = future.result(timeout=0)
        assert (answer["ok"], answer["version"], answer["previous"]) == (True, "1-fixed", "1")
        assert node.process({"n": 5})[0] == {"n": 5, "y": 35, "v": "1-fixed", "r": 0}
        assert "scale_pyc__v1" in sys.modules                   # the running version's module, by its own name
        assert node.on_control({"action": "rollback"})["status"] == 400
    finally:
        node.teardown()
    assert "scale_pyc__v1" not in sys.modules                    # retired with its instance


def test_the_context_keeps_pyedgetwins_constructor_and_names():
    context = ModelBlockContext("motor-001", "motor-twin", "1.0.0", {"process_noise": 0.01})
    assert (context.asset_id, context.twin_id, context.model_version, context.version) == \
        ("motor-001", "motor-twin", "1.0.0", "1.0.0")
    assert context.get("process_noise") == 0.01 and context.get("missing", 3) == 3
    assert context.params is context.config and context.logger is context.log and context.frame is None
