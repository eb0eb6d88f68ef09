"""Every validation error of a pipeline file, asserted by its whole message with file, line and column,
raised before anything is imported, registered or started."""

from __future__ import annotations

import pytest

from edgeflow.errors import GraphError

from ._pl import problems, write

N = "pipeline.pl_nodes"


@pytest.fixture
def chdir(tmp_path, monkeypatch):
    """Run in tmp_path, so messages name files as written (``pipeline.yaml:12:5``)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_schema_problems_are_all_reported_in_file_order_one_line_each(chdir):
    write(chdir, "pipeline.yaml", f"""
        app: demo
        nodes:
          camera:
            class: {N}:Counter
            fps: fast
          detector:
            class: {N}:Scale
            replics: 2
            options: {{factor: 2}}
          store:
            class: {N}:Drop
            replicas: two
        links:
          - camera -> detectr -> store
          - {{from: camera, to: store, qos: durabel}}
          - {{from: detector, to: store, qos: durable, max_lag: 3}}
          - camera
    """)
    assert problems("pipeline.yaml") == [
        "pipeline.yaml:5:5: nodes.camera.fps: expected a number > 0, or null for as fast as the consumers "
        "take frames, got 'fast'",
        "pipeline.yaml:8:5: nodes.detector.replics: unknown key (did you mean 'replicas'?)",
        "pipeline.yaml:12:5: nodes.store.replicas: expected an integer >= 1, got 'two'",
        "pipeline.yaml:14:5: links[0]: unknown node 'detectr' (did you mean 'detector'?)",
        "pipeline.yaml:15:31: links[1].qos: unknown QoS 'durabel' (did you mean 'durable'?) (expected one of "
        "realtime, durable, balanced)",
        "pipeline.yaml:16:47: links[2].max_lag: max_lag applies only to a qos: balanced link",
        "pipeline.yaml:17:5: links[3]: expected 'a -> b' (node names joined by ->), got 'camera'",
    ]


def test_top_level_keys_app_and_nodes(chdir):
    write(chdir, "a.yaml", """
        name: demo
        nodez: {}
    """)
    assert problems("a.yaml") == [
        "a.yaml:1:1: name: unknown key (top-level keys: app, broker, nodes, links, streams)",
        "a.yaml:1:1: missing 'app' (the app's name, e.g. app: my-robot)",
        "a.yaml:1:1: missing 'nodes' (a mapping of node name -> class:, path: or model:)",
        "a.yaml:2:1: nodez: unknown key (did you mean 'nodes'?)",
    ]
    write(chdir, "b.yaml", """
        app: not a name
        broker: redsi
        nodes:
          bad.name: {class: x:Y}
          ok: {class: x:Y, path: nodes/x}
          none: {}
    """)
    assert problems("b.yaml") == [
        "b.yaml:1:1: app: expected a name (use 1-64 letters, digits, '-' or '_'), got 'not a name'",
        "b.yaml:2:1: broker: expected redis, dual-redis, a redis:// URL or a mapping with kind, got 'redsi' "
        "(did you mean 'redis'?)",
        "b.yaml:4:3: nodes.bad.name: invalid node name: use 1-64 letters, digits, '-' or '_'",
        "b.yaml:5:3: nodes.ok: give exactly one of class: module:Class, path: folder or model: module:Class "
        "(got class and path)",
        "b.yaml:6:3: nodes.none: give exactly one of class: module:Class, path: folder or model: "
        "module:Class",
    ]


def test_node_keys_types_and_options(chdir):
    write(chdir, "p.yaml", f"""
        app: demo
        nodes:
          cam:
            class: {N}:Counter
            threshold: 0.5
            type: prodcer
            node_port: 70000
            group: a.b
            options:
              fps: 3
              not-id: 1
          gw:
            class: {N}:Drop
            interfaces: {{web: {{port: 8000}}}}
            params: {{a: 1}}
    """)
    assert problems("p.yaml") == [
        "p.yaml:5:5: nodes.cam.threshold: unknown key (node keys: class, path, model, type, fps, replicas, "
        "device, group, node_port, description, build, runtime, options, interfaces, params, version, "
        "twin_id, asset_id, watch, watch_interval, python_path; the node's own options go under options:)",
        "p.yaml:6:5: nodes.cam.type: unknown type 'prodcer' (did you mean 'producer'?) (expected one of "
        "producer, consumer, sink, fusion, gateway)",
        "p.yaml:7:5: nodes.cam.node_port: expected a port number (1-65535), got 70000",
        "p.yaml:8:5: nodes.cam.group: expected a group name (use 1-64 letters, digits, '-' or '_'), "
        "got 'a.b'",
        "p.yaml:10:7: nodes.cam.options.fps: 'fps' is a node key, not an option: write it beside class: (not "
        "under options:)",
        "p.yaml:11:7: nodes.cam.options.not-id: an option's name must be a Python identifier",
        "p.yaml:14:5: nodes.gw.interfaces: only the built-in gateway (class: GatewayNode) takes interfaces; "
        "a gateway class of your own adds them in its setup()",
        "p.yaml:15:5: nodes.gw.params: only a model: node takes params",
    ]


def test_gateway_interfaces_are_checked(chdir):
    write(chdir, "p.yaml", f"""
        app: demo
        nodes:
          cam: {{class: {N}:Counter}}
          gw:
            class: GatewayNode
            interfaces:
              web: {{port: http, tokn: abc, buffer_delay: -1}}
              grpc: {{}}
        links: [cam -> gw]
    """)
    assert problems("p.yaml") == [
        "p.yaml:7:13: nodes.gw.interfaces.web.port: expected a port number (0-65535), got 'http'",
        "p.yaml:7:25: nodes.gw.interfaces.web.tokn: unknown key (did you mean 'token'?)",
        "p.yaml:7:36: nodes.gw.interfaces.web.buffer_delay: expected a number of seconds >= 0, got -1",
        "p.yaml:8:7: nodes.gw.interfaces.grpc: unknown key (interfaces: web)",
    ]


def test_yaml_syntax_duplicate_keys_and_the_top(chdir):
    write(chdir, "s.yaml", "app: demo\nnodes:\n  cam: {class: x\n")
    assert problems("s.yaml") == ["s.yaml:4:1: invalid YAML: did not find expected ',' or '}'"]
    write(chdir, "d.yaml", "app: demo\nnodes:\n  cam: {class: x:Y}\n  cam: {class: x:Z}\n")
    assert problems("d.yaml") == ["d.yaml:4:3: duplicate key 'cam' (first at line 3)"]
    write(chdir, "l.yaml", "- a\n- b\n")
    assert problems("l.yaml") == [
        "l.yaml:1:1: expected a mapping with app, nodes and links at the top, got a list"]
    write(chdir, "e.yaml", "# nothing\n")
    assert problems("e.yaml") == ["e.yaml:1:1: the file is empty (expected a mapping with app, nodes and "
                                  "links)"]
    assert problems("missing.yaml")[0].startswith("missing.yaml: cannot read it: No such file")


def test_classes_are_resolved_with_a_did_you_mean(chdir):
    write(chdir, "pl_resolve_nodes.py", """
        from edgeflow import ProducerNode

        class Camera(ProducerNode):
            def produce(self):
                return {"n": 1}

        not_a_class = 3
    """)
    write(chdir, "p.yaml", f"""
        app: demo
        nodes:
          a: {{class: pl_resolve_nodes:Camra}}
          b: {{class: MqttSorce}}
          c: {{class: no_such_module_here:X}}
          d: {{class: "pl_resolve_nodes:"}}
          e: {{class: pl_resolve_nodes:not_a_class}}
          f: {{path: nodes/missing}}
    """)
    lines = problems("p.yaml")
    assert lines[:2] == [
        f"p.yaml:3:7: nodes.a.class: module 'pl_resolve_nodes' ({chdir}/pl_resolve_nodes.py) has no 'Camra' "
        "(did you mean 'Camera'?)",
        "p.yaml:4:7: nodes.b.class: 'MqttSorce' is not a built-in node (did you mean 'MqttSource'?); name a "
        "class of your own as module:Class",
    ]
    assert lines[2].startswith("p.yaml:5:7: nodes.c.class: cannot import 'no_such_module_here': No module "
                               "named 'no_such_module_here' (looked next to the file, in ")
    assert lines[3:] == [
        "p.yaml:6:7: nodes.d.class: expected module:Class (e.g. nodes:Camera, mypkg.cams:Camera) or a "
        "built-in name, got 'pl_resolve_nodes:'",
        "p.yaml:7:7: nodes.e.class: 'pl_resolve_nodes:not_a_class' is a int, not a node class",
        f"p.yaml:8:7: nodes.f.path: folder 'nodes/missing' not found (looked in {chdir}/nodes/missing)",
    ]


def test_the_python_apis_graph_errors_at_the_links_line(chdir):
    write(chdir, "cycle.yaml", f"""
        app: demo
        nodes:
          cam: {{class: {N}:Counter}}
          a: {{class: {N}:Scale}}
          b: {{class: {N}:Scale}}
        links:
          - cam -> a -> b
          - b -> a
    """)
    with pytest.raises(GraphError) as info:           # the same class of error as the Python API's
        problems_raise("cycle.yaml")
    assert str(info.value) == "cycle.yaml:8:5: links[1]: cycle: a -> b -> a"
    assert info.value.link == ("b", "a")
    write(chdir, "dup.yaml", f"""
        app: demo
        nodes:
          cam: {{class: {N}:Counter}}
          a: {{class: {N}:Scale}}
        links:
          - cam -> a
          - {{from: cam, to: a, qos: durable}}
    """)
    assert problems("dup.yaml") == ["dup.yaml:7:5: links[1]: link cam -> a: duplicate link"]
    write(chdir, "orphan.yaml", f"""
        app: demo
        nodes:
          cam: {{class: {N}:Counter}}
          lonely: {{class: {N}:Scale}}
          sink: {{class: {N}:Drop}}
        links:
          - lonely -> sink
          - sink -> cam
    """)
    assert problems("orphan.yaml") == ["orphan.yaml:8:5: links[1]: link sink -> cam: 'cam' is a producer and "
                                       "takes no inputs"]
    write(chdir, "unreached.yaml", f"""
        app: demo
        nodes:
          cam: {{class: {N}:Counter}}
          lonely: {{class: {N}:Scale}}
    """)
    assert problems("unreached.yaml") == [
        "unreached.yaml:4:3: nodes.lonely: no path from any producer (it has no inputs)"]


def problems_raise(path):
    from edgeflow.pipeline import load
    load(path, env={})


def test_a_node_classes_own_option_checks_point_at_the_option(chdir):
    write(chdir, "p.yaml", f"""
        app: demo
        nodes:
          cam: {{class: {N}:Counter}}
          db:
            class: CsvSink
            options:
              path: out.csv
              flsh: frame
          wrong:
            class: {N}:Scale
            type: sink
        links: [cam -> db]
    """)
    lines = problems("p.yaml")
    assert len(lines) == 2
    assert lines[0].startswith("p.yaml:8:7: nodes.db.options.flsh: unknown option (did you mean 'flush'?) "
                               "(known: ")                       # CsvSink's own check_options, located
    assert lines[1] == "p.yaml:11:5: nodes.wrong.type: type='sink' but Scale is a ConsumerNode"


def test_a_module_that_runs_an_app_when_imported_is_refused(chdir):
    write(chdir, "pl_runs_at_import.py", """
        from edgeflow import EdgeApp, ProducerNode

        app = EdgeApp("x")

        @app.node(name="cam")
        class Cam(ProducerNode):
            def produce(self):
                return {"n": 1}

        app.run()
    """)
    write(chdir, "p.yaml", "app: demo\nnodes:\n  cam: {class: pl_runs_at_import:Cam}\n")
    assert problems("p.yaml") == ["p.yaml:3:9: nodes.cam.class: importing 'pl_runs_at_import' started an app "
                                  "(app.run() at module level): put it under if __name__ == \"__main__\":"]


def test_model_blocks_are_built_by_edgeflow_models(chdir):
    import importlib.util
    write(chdir, "pl_models_here.py", """
        from edgeflow.models import ModelBlock

        class Kalman(ModelBlock):
            def init(self, context):
                self.q = context.config["q"]

            def process(self, msg):
                return msg
    """)
    write(chdir, "p.yaml", f"""
        app: demo
        nodes:
          cam: {{class: {N}:Counter}}
          twin:
            model: pl_models_here:Kalman
            params: {{q: 1}}
            replicas: 2
        links: [cam -> twin]
    """)
    if importlib.util.find_spec("edgeflow.models") is None:
        assert problems("p.yaml") == [
            "p.yaml:4:5: nodes.twin.model: model blocks need edgeflow.models, which this EdgeFlow does not "
            "have"]
        return
    from edgeflow.pipeline import load
    twin = load("p.yaml", env={}).graph().node("twin")     # through edgeflow.models.node_for
    assert (twin.kind, twin.replicas, twin.config["params"]) == ("consumer", 2, {"q": 1})
    write(chdir, "bad.yaml",
          "app: demo\nnodes:\n  twin: {model: pl_models_here:Kalmn}\n  p: {params: {}, class: x:Y}\n")
    assert problems("bad.yaml") == ["bad.yaml:4:7: nodes.p.params: only a model: node takes params"]
