"""The ``streams:`` section of a pipeline file: the stream template ``app.streams(...)`` builds, checked with
file:line:column and did-you-mean, merged like any other key, written back by ``--format yaml``, and run:
a stream activated on a loaded app reaches its ``to`` node."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

import edgeflow
from edgeflow import EdgeApp, SinkNode
from edgeflow.cli import _load
from edgeflow.pipeline import export, load
from edgeflow.qos import QoS

from . import pl_nodes
from ._pl import EXAMPLES, edgeflow as run_cli, env, problems, write

N = "pipeline.pl_nodes"
STREAMS = f"""
    app: fleet
    nodes:
      gateway: {{class: {N}:Drop}}
    streams:
      source: {N}:Counter
      source_options: {{fps: 15}}
      workers: [{N}:Scale]
      worker_options: {{factor: 2.0}}
      to: gateway
      replicas: 2
"""


def python_fleet() -> EdgeApp:
    """STREAMS written with the Python API."""
    app = EdgeApp("fleet")
    app.node(pl_nodes.Drop, name="gateway")
    app.streams(source=pl_nodes.Counter, workers=[pl_nodes.Scale], to="gateway", replicas=2,
                source_options={"fps": 15}, worker_options={"factor": 2.0})
    return app


def test_a_streams_section_is_app_streams(tmp_path):
    graph = load(write(tmp_path, "p.yaml", STREAMS), env={}).graph()
    assert graph.to_dict() == python_fleet().graph().to_dict()
    template = graph.streams
    assert template.source is pl_nodes.Counter and template.workers == (pl_nodes.Scale,)
    assert template.to == ("gateway",) and template.replicas == 2 and template.qos is QoS.REALTIME
    assert dict(template.source_options) == {"fps": 15} and dict(template.worker_options) == {"factor": 2.0}
    assert graph.to_dict()["streams"]["source"] == f"{N}:Counter"


def test_the_short_forms_a_single_worker_a_list_of_targets_and_qos(tmp_path):
    path = write(tmp_path, "p.yaml", f"""
        app: fleet
        nodes:
          gateway: {{class: {N}:Drop}}
          log: {{class: {N}:Drop}}
        streams:
          source: {{class: {N}:Counter}}
          workers: {N}:Scale
          to: [gateway, log]
          qos: balanced
    """)
    template = load(path, env={}).graph().streams
    assert template.workers == (pl_nodes.Scale,) and template.to == ("gateway", "log")
    assert template.qos is QoS.BALANCED and template.replicas == 1
    none = write(tmp_path, "none.yaml", f"""
        app: fleet
        nodes:
          gateway: {{class: {N}:Drop}}
        streams:
          source: {N}:Counter
          to: gateway
    """)
    assert load(none, env={}).graph().streams.workers == ()


def test_a_file_without_streams_has_no_template(tmp_path):
    path = write(tmp_path, "p.yaml", f"""
        app: plain
        nodes:
          cam: {{class: {N}:Counter}}
          out: {{class: {N}:Drop}}
        links: [cam -> out]
    """)
    graph = load(path, env={}).graph()
    assert graph.streams is None and "streams" not in graph.to_dict()


def test_every_schema_problem_of_the_section_at_once_with_its_line(tmp_path):
    path = write(tmp_path, "bad.yaml", f"""
        app: fleet
        nodes:
          gateway: {{class: {N}:Drop}}
        streams:
          source: {N}:Counter
          source_optons: {{fps: 15}}
          workers: [{N}:Scale, {{path: nodes/flow}}, 7]
          worker_options: {{params: {{}}, "bad key": 1}}
          to: [gatewy]
          replicas: 0
          qos: durabel
    """)
    f = str(path)
    assert problems(path) == [
        f"{f}:6:3: streams.source_optons: unknown key (did you mean 'source_options'?)",
        f"{f}:7:38: streams.workers[1]: a node folder cannot be a stream's class: name its class as "
        "module:Class",
        f"{f}:7:58: streams.workers[2]: expected module:Class or a built-in name, got 7",
        f"{f}:8:20: streams.worker_options.params: 'params' is set by the stream itself (each stream's "
        "params), not an option",
        f"{f}:8:32: streams.worker_options.bad key: an option's name must be a Python identifier",
        f"{f}:9:8: streams.to[0]: unknown node 'gatewy' (did you mean 'gateway'?)",
        f"{f}:10:3: streams.replicas: expected an integer >= 1 (processes per worker), got 0",
        f"{f}:11:3: streams.qos: unknown QoS 'durabel' (did you mean 'durable'?) (expected one of realtime, "
        "durable, balanced)",
    ]


def test_missing_source_a_non_mapping_and_the_url_option(tmp_path):
    path = write(tmp_path, "p.yaml", f"""
        app: fleet
        nodes:
          gateway: {{class: {N}:Drop}}
        streams:
          workers: {{a: 1}}
          source_options: {{url: rtsp://cam}}
          to: gateway
    """)
    f = str(path)
    assert problems(path) == [
        f"{f}:5:3: streams: missing 'source' (the producer class each stream runs, e.g. source: VideoSource)",
        f"{f}:5:3: streams.workers: expected a list of classes (module:Class or a built-in name), got a "
        "mapping",
        f"{f}:6:20: streams.source_options.url: 'url' is set by the stream itself (each stream's url), not "
        "an option",
    ]
    listed = write(tmp_path, "list.yaml", f"""
        app: fleet
        nodes:
          gateway: {{class: {N}:Drop}}
        streams: [{N}:Counter]
    """)
    assert problems(listed) == [f"{listed}:4:1: streams: expected a mapping, got a list"]


def test_classes_of_the_wrong_kind_and_unknown_names_at_their_own_lines(tmp_path):
    path = write(tmp_path, "p.yaml", f"""
        app: fleet
        nodes:
          gateway: {{class: {N}:Drop}}
        streams:
          source: {N}:Scale
          workers:
            - {N}:Counter
            - CsvSinc
            - {N}:Scael
            - json:JSONDecoder
          to: gateway
    """)
    f = str(path)
    lines = problems(path)
    assert lines[:3] == [
        f"{f}:5:3: streams.source: '{N}:Scale' is a consumer class, not a producer (ProducerNode) class: it "
        "gets each stream's url",
        f"{f}:7:7: streams.workers[0]: '{N}:Counter' is a producer class, not a consumer (ConsumerNode) "
        "class: it gets each stream's params",
        f"{f}:8:7: streams.workers[1]: 'CsvSinc' is not a built-in node (did you mean 'CsvSink'?); name a "
        "class of your own as module:Class",
    ]
    assert lines[3].startswith(f"{f}:9:7: streams.workers[2]: module '{N}' (") and \
        lines[3].endswith("has no 'Scael' (did you mean 'Scale'?)")
    assert lines[4] == (f"{f}:10:7: streams.workers[3]: 'json:JSONDecoder' is not a node class: expected a "
                        "consumer (ConsumerNode) class: it gets each stream's params")
    assert len(lines) == 5


def test_a_site_file_changes_the_template(tmp_path):
    base = write(tmp_path, "base.yaml", STREAMS)
    site = write(tmp_path, "site.yaml", """
        streams:
          replicas: 3
          worker_options: {offset: 1.0}
    """)
    template = load([base, site], env={}).graph().streams
    assert template.replicas == 3
    assert dict(template.worker_options) == {"factor": 2.0, "offset": 1.0}     # mappings merge key by key
    bad = write(tmp_path, "bad-site.yaml", "streams:\n  replicas: two\n")
    assert problems([base, bad]) == [f"{bad}:2:3: streams.replicas: expected an integer >= 1 (processes per "
                                     "worker), got 'two'"]


def test_variables_in_the_section_are_substituted(tmp_path):
    path = write(tmp_path, "p.yaml", STREAMS.replace("replicas: 2", "replicas: ${REPLICAS:-1}")
                 .replace("fps: 15", "fps: ${FPS}"))
    template = load(path, env={"FPS": "12.5"}).graph().streams
    assert template.replicas == 1 and dict(template.source_options) == {"fps": 12.5}


def test_graph_yaml_writes_the_section_back_to_the_same_graph(tmp_path):
    app = python_fleet()
    text, notes = export.graph_yaml(app, tmp_path / "main.py")
    assert notes == []
    document = yaml.safe_load(text)
    assert document["streams"] == {"source": f"{N}:Counter", "workers": [f"{N}:Scale"], "to": "gateway",
                                   "replicas": 2, "source_options": {"fps": 15},
                                   "worker_options": {"factor": 2.0}}
    (tmp_path / "pipeline.yaml").write_text(text)
    assert load(tmp_path / "pipeline.yaml", env={}).graph().to_dict() == app.graph().to_dict()


def test_graph_yaml_writes_non_defaults_and_secrets_as_variables(tmp_path):
    app = EdgeApp("fleet")
    app.node(pl_nodes.Drop, name="gateway")
    app.node(pl_nodes.Drop, name="log")
    app.streams(source=pl_nodes.Counter, workers=[pl_nodes.Scale, pl_nodes.Scale], to=["gateway", "log"],
                qos="durable", source_options={"password": "hunter2", "fps": 5})
    text, notes = export.graph_yaml(app, tmp_path / "main.py")
    assert "hunter2" not in text
    assert notes == ["node 'streams': option 'source_options.password' written as "
                     "${STREAMS_SOURCE_OPTIONS_PASSWORD}: set it where the file runs"]
    section = yaml.safe_load(text)["streams"]
    assert section["to"] == ["gateway", "log"] and section["qos"] == "durable"
    assert section["workers"] == [f"{N}:Scale", f"{N}:Scale"] and "replicas" not in section
    (tmp_path / "pipeline.yaml").write_text(text)
    loaded = load(tmp_path / "pipeline.yaml", env={"STREAMS_SOURCE_OPTIONS_PASSWORD": "hunter2"})
    assert loaded.graph().to_dict() == app.graph().to_dict()


class Firsts(SinkNode):
    """Prints the first frame of each topic: the stream's frames arrived."""

    def setup(self):
        self.seen = set()

    def consume(self, data):
        topic = self.current_frame.topic
        if topic not in self.seen:
            self.seen.add(topic)
            print(f"first frame of {topic}", flush=True)


@pytest.mark.slow
def test_a_loaded_app_activates_a_stream_that_reaches_its_to_node(tmp_path, app, capfd):
    path = write(tmp_path, "p.yaml", f"""
        app: {app}
        nodes:
          gateway: {{class: pipeline.test_streams_yaml:Firsts}}
        streams:
          source: {N}:Counter
          source_options: {{fps: 50}}
          workers: [{N}:Scale]
          worker_options: {{factor: 3.0}}
          to: gateway
    """)
    loaded = load(path, env={})
    with loaded.start() as running:
        info = running.streams.activate("cam-1", "counter://", {"any": 1})
        assert info["ok"] and info["topics"] == ["stream-cam-1-scale"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stream = running.streams.list().get("cam-1", {})
            if stream.get("state") == "running" and stream.get("fps", 0) > 0:
                break
            time.sleep(0.05)
        assert running.streams.list()["cam-1"]["state"] == "running"
        running.streams.deactivate("cam-1")
    assert "first frame of stream-cam-1-scale" in capfd.readouterr().out


# -- the vector-flow example -------------------------------------------------------------------------------

VECTOR_FLOW = EXAMPLES / "vector_flow"
needs_sources = pytest.mark.skipif(__import__("importlib.util").util.find_spec("edgeflow.sources") is None,
                                   reason="edgeflow.sources (VideoSource) is not in this checkout yet")


@needs_sources
def test_the_vector_flow_pipeline_yaml_is_its_main_py():
    from edgeflow.sources import VideoSource

    yaml_graph = edgeflow.load(VECTOR_FLOW / "pipeline.yaml").graph()
    py_graph = _load.load_app(VECTOR_FLOW / "main.py").graph()
    assert yaml_graph.to_dict() == py_graph.to_dict()
    assert yaml_graph.streams.source is VideoSource
    assert [cls.__name__ for cls in yaml_graph.streams.workers] == ["FlowWorker"]


@needs_sources
@pytest.mark.slow
def test_edgeflow_graph_writes_the_vector_flow_streams_section(tmp_path):
    for name in ("main.py", "flow.py"):
        shutil.copy(VECTOR_FLOW / name, tmp_path / name)
    written = run_cli("graph", "main.py", "--format", "yaml", cwd=tmp_path, environ=env())
    assert written.returncode == 0, written.stderr
    section = yaml.safe_load(written.stdout)["streams"]
    assert section == {"source": "VideoSource", "workers": ["flow:FlowWorker"], "to": "gateway",
                       "source_options": {"fps": 15}}
    (tmp_path / "exported.yaml").write_text(written.stdout)
    views = [run_cli("graph", file, "--format", "json", cwd=tmp_path, environ=env())
             for file in ("main.py", "exported.yaml", str(VECTOR_FLOW / "pipeline.yaml"))]
    assert all(view.returncode == 0 for view in views), [view.stderr for view in views]
    from_py, from_export, from_example = (json.loads(view.stdout) for view in views)
    assert from_export == from_py and from_example == from_py
    assert from_py["streams"]["source"] == "edgeflow.sources.video:VideoSource"


def test_video_source_is_a_short_name_when_edgeflow_has_sources():
    from edgeflow.pipeline import builtins

    if __import__("importlib.util").util.find_spec("edgeflow.sources") is None:
        assert "VideoSource" not in builtins.short_names()
        return
    from edgeflow.sources import VideoSource
    assert "VideoSource" in builtins.short_names()
    assert builtins.resolve("VideoSource") is VideoSource and builtins.short_name_of(VideoSource) == \
        "VideoSource"


def test_the_section_reference_in_the_docs_names_every_key():
    text = (Path(__file__).resolve().parents[2] / "docs" / "pipelines.md").read_text()
    section = text.split("## Streams", 1)[1].split("\n## ", 1)[0]
    from edgeflow.pipeline.validate import STREAM_KEYS
    assert all(f"`{key}`" in section for key in STREAM_KEYS)
