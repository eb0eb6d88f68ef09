"""The app graph: both front ends (seed 000's decorators, seed 001's folders), links, validation, the frozen
Graph, and the broker settings. No processes or sockets, except one spawned python that loads a folder node
from a pickled NodeSpec the way a node's child process will."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import runpy
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import edgeflow
import edgeflow.comms
import edgeflow.comms.brokers
from edgeflow import _nodeload
from edgeflow import graph as graph_module
from edgeflow.comms import DualRedisBroker, RedisBroker
from edgeflow.errors import ConfigError, GraphError
from edgeflow.graph import DEFAULT_MAX_LAG, EdgeApp, EdgeSpec, Graph, NodeHandle, NodeSpec, System
from edgeflow.nodes import ConsumerNode, FusionNode, GatewayNode, ProducerNode, SinkNode
from edgeflow.qos import QoS

REPO = Path(edgeflow.__file__).resolve().parents[1]


# -- seed 000, decorator style, written as the seed writes it (module level, so the classes pickle) ----------

seed_app = EdgeApp("test-distributed-system", broker=RedisBroker())


@seed_app.node(name="fake_camera", type="producer", device="camera", fps=30)
class FakeCamera(ProducerNode):
    def produce(self):
        return b"frame"


@seed_app.node(name="gpu_processor", type="consumer", device="gpu", replicas=2)
class GpuProcessor(ConsumerNode):
    def process(self, frame):
        return frame


@seed_app.node(name="gateway", type="gateway", node_port=30080)
class VideoGateway(GatewayNode):
    pass


seed_app.link("fake_camera").to("gpu_processor")
seed_app.link("gpu_processor").to("gateway")
seed_app.link("fake_camera").to("gateway")


class Store(SinkNode):
    def consume(self, data):
        pass


class Fuse(FusionNode):
    def process(self, frames):
        return frames[0]


class SlowCamera(ProducerNode):
    fps = 5


class GPUProcessor(ConsumerNode):
    pass


class NotANode:
    pass


# -- seed 001, folder style ----------------------------------------------------------------------------------

SEED_001_MAIN = """
from edgeflow.comms import RedisBroker
from edgeflow.graph import System
from edgeflow.qos import QoS

sys = System("test-distributed-system", broker=RedisBroker())
cam = sys.node("nodes/fake_camera", device="camera", fps=30)
gpu = sys.node("nodes/gpu", device="gpu")
gw = sys.node("nodes/gateway")

sys.link(cam).to(gpu, qos=QoS.REALTIME).to(gw)
sys.link(cam).to(gw)

if __name__ == "__main__":
    sys.run()
"""


def make_folder(folder: Path, source: str, toml: str | None = None, **files: str) -> Path:
    """A node package: __init__.py with source, an optional node.toml, and extra modules (name=source)."""
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(source))
    if toml is not None:
        (folder / "node.toml").write_text(textwrap.dedent(toml))
    for name, text in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    return folder


def seed_001_tree(root: Path) -> Path:
    """The seed-001 project: main.py and three node folders, one per node style of node.toml."""
    make_folder(root / "nodes" / "fake_camera", """
        from edgeflow.nodes import ProducerNode

        class FakeCamera(ProducerNode):
            def produce(self):
                return b"frame"
    """)
    make_folder(root / "nodes" / "gpu", "from .processor import GpuProcessor\n",
                'name = "gpu_processor"\ntype = "consumer"\nreplicas = 2\n', processor="""
        from edgeflow.nodes import ConsumerNode

        class GpuProcessor(ConsumerNode):
            def process(self, frame):
                return frame
    """)
    make_folder(root / "nodes" / "gateway", """
        from edgeflow.nodes import GatewayNode

        class VideoGateway(GatewayNode):
            pass
    """, '[node]\ntype = "gateway"\nnode_port = 30080\n')
    (root / "main.py").write_text(SEED_001_MAIN)
    return root / "main.py"


def node_fields(spec: NodeSpec) -> tuple:
    return (spec.name, spec.kind, spec.fps, spec.replicas, spec.device, spec.node_port, spec.group,
            dict(spec.config), dict(spec.options))


def test_decorator_and_folder_styles_build_the_same_graph(tmp_path, monkeypatch):
    main = seed_001_tree(tmp_path / "project")
    monkeypatch.chdir(tmp_path)                      # relative folders resolve against main.py's directory
    folder_app = runpy.run_path(str(main), run_name="seed_001_main")["sys"]
    by_folder, by_decorator = folder_app.graph(), seed_app.graph()
    assert by_folder.to_dict() == by_decorator.to_dict()
    assert by_folder.edges == by_decorator.edges
    assert [node_fields(n) for n in by_folder.nodes] == [node_fields(n) for n in by_decorator.nodes]
    assert by_folder.broker == by_decorator.broker
    assert [n.folder for n in by_folder.nodes] == [str(tmp_path / "project" / "nodes" / f)
                                                   for f in ("fake_camera", "gpu", "gateway")]
    assert all(n.class_ref is None for n in by_folder.nodes)


def test_seed_000_graph_in_detail():
    graph = seed_app.graph()
    assert graph.app == "test-distributed-system"
    assert [(n.name, n.kind) for n in graph.nodes] == [
        ("fake_camera", "producer"), ("gpu_processor", "consumer"), ("gateway", "gateway")]
    camera, gpu, gateway = graph.nodes
    assert (camera.fps, camera.device, camera.replicas, camera.class_ref) == (30.0, "camera", 1, FakeCamera)
    assert (gpu.fps, gpu.device, gpu.replicas) == (None, "gpu", 2)
    assert gateway.node_port == 30080
    assert [e.link for e in graph.edges] == [("fake_camera", "gpu_processor"), ("gpu_processor", "gateway"),
                                             ("fake_camera", "gateway")]
    assert all(e.qos is QoS.REALTIME and e.max_lag is None and e.codec is None for e in graph.edges)


def test_decorator_returns_the_class_unchanged_without_instantiating_it():
    app = EdgeApp("demo")

    class Exploding(ProducerNode):
        def __init__(self, *args, **kwargs):
            raise AssertionError("instantiated at registration")

    assert app.node(name="cam", fps=10)(Exploding) is Exploding
    assert app.nodes[0].class_ref is Exploding and app.nodes[0].fps == 10.0


def test_edge_app_and_system_are_one_class():
    assert System is EdgeApp


# -- names and defaults --------------------------------------------------------------------------------------

def test_default_names_are_snake_case_class_names_and_folder_names(tmp_path):
    app = EdgeApp("demo")
    assert app.node(FakeCamera).name == "fake_camera"
    assert app.node(GPUProcessor).name == "gpu_processor"
    folder = make_folder(tmp_path / "my-detector", "from .impl import Det\n",
                         impl="from edgeflow.nodes import ConsumerNode\nclass Det(ConsumerNode): pass\n")
    assert app.node(folder).name == "my-detector"


def test_producer_fps_defaults_to_the_class_value_and_30():
    app = EdgeApp("demo")
    app.node(FakeCamera, name="a")
    app.node(SlowCamera, name="b")
    app.node(GpuProcessor, name="c")
    app.node(FakeCamera, name="d", fps=None)
    assert [n.fps for n in app.nodes] == [30.0, 5.0, None, None]
    assert [n.replicas for n in app.nodes] == [1, 1, 1, 1]


def test_type_may_be_left_out_or_match_the_base():
    app = EdgeApp("demo")
    app.node(Store, name="store")
    app.node(Fuse, name="fuse", type="fusion")
    assert [n.kind for n in app.nodes] == ["sink", "fusion"]


def test_same_class_twice_under_two_names_makes_two_nodes():
    app = EdgeApp("demo")
    left, right = app.node(FakeCamera, name="left"), app.node(FakeCamera, name="right")
    app.node(Fuse, name="fuse")
    app.link(left).to("fuse")
    app.link(right).to("fuse")
    graph = app.graph()
    assert [n.name for n in graph.nodes] == ["left", "right", "fuse"]
    assert [e.source for e in graph.inputs_of("fuse")] == ["left", "right"]


def test_options_reach_the_instance_as_attributes_and_config():
    app = EdgeApp("demo")
    app.node(GpuProcessor, name="det", device="gpu", replicas=3, group="g1", threshold=0.5,
             config={"labels": ["person"], "threshold": 0.1})
    spec = app.nodes[0]
    assert dict(spec.config) == {"labels": ["person"], "threshold": 0.5}      # keywords win over config=
    assert dict(spec.options) == {"labels": ["person"], "threshold": 0.5, "device": "gpu", "replicas": 3,
                                  "group": "g1"}
    node = spec.make_instance(replica=2)
    assert isinstance(node, GpuProcessor)
    assert (node.name, node.replica, node.device, node.replicas, node.group, node.threshold) == \
        ("det", 2, "gpu", 3, "g1", 0.5)
    assert node.config["labels"] == ["person"]


def test_config_and_options_are_read_only():
    app = EdgeApp("demo")
    app.node(FakeCamera, name="cam", fps=10, mode="fast")
    spec = app.nodes[0]
    with pytest.raises(TypeError):
        spec.config["mode"] = "slow"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.fps = 1.0


# -- links ---------------------------------------------------------------------------------------------------

def small_app(**nodes: type) -> EdgeApp:
    app = EdgeApp("v")
    for name, cls in nodes.items():
        app.node(cls, name=name)
    return app


def test_chaining_makes_one_edge_per_to():
    app = small_app(camera=FakeCamera, filter=GpuProcessor, gateway=VideoGateway)
    linker = app.link("camera").to("filter").to("gateway")
    assert repr(linker) == "<Linker from 'gateway'>"
    assert [e.link for e in app.graph().edges] == [("camera", "filter"), ("filter", "gateway")]


def test_handles_and_classes_are_link_ends():
    app = EdgeApp("demo")
    cam = app.node(FakeCamera, name="cam")
    assert cam == NodeHandle("cam", "demo")
    app.node(GpuProcessor)
    app.node(VideoGateway, name="gw")
    app.link(cam).to(GpuProcessor).to("gw")
    app.link(FakeCamera).to(NodeHandle("gw", "demo"))
    assert [e.link for e in app.graph().edges] == [("cam", "gpu_processor"), ("gpu_processor", "gw"),
                                                   ("cam", "gw")]


def test_links_may_come_before_their_nodes():
    app = EdgeApp("demo")
    app.link("cam").to("store")
    app.node(FakeCamera, name="cam")
    app.node(Store, name="store")
    assert app.graph().edges == (EdgeSpec("cam", "store", QoS.DURABLE),)


def test_links_into_a_sink_default_to_durable_but_an_explicit_qos_is_kept():
    app = small_app(cam=FakeCamera, det=GpuProcessor, store=Store, log=Store)
    app.link("cam").to("det")
    app.link("det").to("store")
    app.link("cam").to("log", qos=QoS.REALTIME)
    assert [e.qos for e in app.graph().edges] == [QoS.REALTIME, QoS.DURABLE, QoS.REALTIME]


def test_qos_accepts_names():
    app = small_app(cam=FakeCamera, a=GpuProcessor, b=GpuProcessor)
    app.link("cam").to("a", qos="durable")
    app.link("cam").to("b", qos="BALANCED")
    assert [e.qos for e in app.graph().edges] == [QoS.DURABLE, QoS.BALANCED]


def test_balanced_max_lag_defaults_to_2_and_may_be_set():
    app = small_app(cam=FakeCamera, a=GpuProcessor, b=GpuProcessor)
    app.link("cam").to("a", qos=QoS.BALANCED)
    app.link("cam").to("b", qos=QoS.BALANCED, max_lag=5)
    assert DEFAULT_MAX_LAG == 2
    assert [e.max_lag for e in app.graph().edges] == [2, 5]


def test_codecs_are_checked_and_normalised():
    app = small_app(cam=FakeCamera, a=GpuProcessor, b=GpuProcessor, c=GpuProcessor, d=GpuProcessor)
    for target, codec in (("a", None), ("b", "jpeg"), ("c", "PNG"), ("d", "lz4")):
        app.link("cam").to(target, codec=codec)
    assert [e.codec for e in app.graph().edges] == [None, "jpeg", "png", "lz4"]


def test_channels_tell_links_between_the_same_nodes_apart():
    app = small_app(cam=FakeCamera, det=GpuProcessor)
    app.link("cam").to("det", channel="left")
    app.link("cam").to("det", channel="right")
    assert [e.channel for e in app.graph().edges] == ["left", "right"]


@pytest.mark.parametrize("kwargs, message", [
    ({"codec": "gif"},
     "link cam -> det: unknown codec 'gif' (expected None for raw, or one of jpeg, png, lz4)"),
    ({"qos": "fast"}, "link cam -> det: unknown QoS 'fast': expected one of REALTIME, DURABLE, BALANCED"),
    ({"max_lag": 3}, "link cam -> det: max_lag applies only to QoS.BALANCED links (pass qos=QoS.BALANCED)"),
    ({"qos": QoS.DURABLE, "max_lag": 3},
     "link cam -> det: max_lag applies only to QoS.BALANCED links (pass qos=QoS.BALANCED)"),
    ({"qos": QoS.BALANCED, "max_lag": 0}, "link cam -> det: max_lag must be an integer >= 1, got 0"),
    ({"qos": QoS.BALANCED, "max_lag": 1.5}, "link cam -> det: max_lag must be an integer >= 1, got 1.5"),
    ({"channel": "a.b"}, "link cam -> det: invalid channel 'a.b': use 1-64 letters, digits, '-' or '_'"),
])
def test_bad_link_options_fail_at_the_link(kwargs, message):
    app = small_app(cam=FakeCamera, det=GpuProcessor)
    with pytest.raises(GraphError) as info:
        app.link("cam").to("det", **kwargs)
    assert str(info.value) == message
    assert info.value.link == ("cam", "det") and isinstance(info.value, ConfigError)


def test_a_link_end_must_be_a_name_handle_or_class():
    with pytest.raises(GraphError, match=r"^link: expected a node name, a handle from node\(\) or a node "
                                         r"class, got 3$"):
        EdgeApp("v").link(3)


# -- validation ----------------------------------------------------------------------------------------------

def build(nodes: dict[str, type], links=()) -> EdgeApp:
    app = small_app(**nodes)
    for source, target, *channel in links:
        app.link(source).to(target, channel=channel[0] if channel else None)
    return app


CAM_DET = {"camera": FakeCamera, "detector": GpuProcessor}
CHAIN = {"cam": FakeCamera, "a": GpuProcessor, "b": GpuProcessor, "c": GpuProcessor}

GRAPH_ERRORS = {
    "unknown target with did-you-mean": (
        CAM_DET, [("camera", "detector"), ("camera", "detektor")],
        "link camera -> detektor: unknown node 'detektor' (did you mean 'detector'?)",
        "detektor", ("camera", "detektor")),
    "unknown source without a suggestion": (
        CAM_DET, [("camera", "detector"), ("zzz", "detector")],
        "link zzz -> detector: unknown node 'zzz'", "zzz", ("zzz", "detector")),
    "cycle": (CHAIN, [("cam", "a"), ("a", "b"), ("b", "a")], "cycle: a -> b -> a", "a", ("b", "a")),
    "longer cycle": (CHAIN, [("cam", "a"), ("a", "b"), ("b", "c"), ("c", "a")], "cycle: a -> b -> c -> a",
                     "a", ("c", "a")),
    "self loop": (CHAIN, [("cam", "a"), ("a", "a")], "cycle: a -> a", "a", ("a", "a")),
    "link into a producer": (
        {"cam": FakeCamera, "cam2": FakeCamera}, [("cam", "cam2")],
        "link cam -> cam2: 'cam2' is a producer and takes no inputs", "cam2", ("cam", "cam2")),
    "link out of a sink": (
        {"cam": FakeCamera, "store": Store, "det": GpuProcessor}, [("cam", "store"), ("store", "det")],
        "link store -> det: 'store' is a sink and has no outputs", "store", ("store", "det")),
    "duplicate link": (
        CAM_DET, [("camera", "detector"), ("camera", "detector")],
        "link camera -> detector: duplicate link", None, ("camera", "detector")),
    "duplicate link on a channel": (
        CAM_DET, [("camera", "detector", "x"), ("camera", "detector", "y"), ("camera", "detector", "x")],
        "link camera -> detector: duplicate link on channel 'x'", None, ("camera", "detector")),
    "fusion with one input": (
        {"cam": FakeCamera, "fuse": Fuse}, [("cam", "fuse")],
        "node 'fuse': a fusion node needs at least two inputs, got 1", "fuse", None),
    "consumer without inputs": (
        {"cam": FakeCamera, "det": GpuProcessor, "orphan": GpuProcessor}, [("cam", "det")],
        "node 'orphan': no path from any producer (it has no inputs)", "orphan", None),
    "chain that starts at no producer": (
        CHAIN, [("cam", "a"), ("b", "c")],
        "node 'b': no path from any producer (it has no inputs); also unreached: 'c'", "b", None),
    "gateway without inputs": (
        {"cam": FakeCamera, "gw": VideoGateway}, [],
        "node 'gw': no path from any producer (it has no inputs)", "gw", None),
    "no nodes": ({}, [], "app 'v': no nodes registered", None, None),
}


@pytest.mark.parametrize("case", GRAPH_ERRORS)
def test_graph_errors_name_the_node_or_link(case):
    nodes, links, message, node, link = GRAPH_ERRORS[case]
    app = build(nodes, links)
    with pytest.raises(GraphError) as info:
        app.graph()
    assert str(info.value) == message
    assert (info.value.node, info.value.link) == (node, link)


REGISTRATION_ERRORS = {
    "type contradicts the base": (
        FakeCamera, {"name": "cam", "type": "consumer"},
        "node 'cam': type='consumer' but FakeCamera is a ProducerNode"),
    "unknown type": (
        FakeCamera, {"name": "cam", "type": "camera"},
        "node 'cam': unknown type 'camera' (expected one of producer, consumer, sink, fusion, gateway)"),
    "misspelt type": (
        FakeCamera, {"name": "cam", "type": "prodcer"},
        "node 'cam': unknown type 'prodcer' (did you mean 'producer'?) "
        "(expected one of producer, consumer, sink, fusion, gateway)"),
    "not a node class": (
        NotANode, {"name": "x"},
        "node 'x': NotANode is not a node class "
        "(subclass one of ProducerNode, ConsumerNode, SinkNode, FusionNode, GatewayNode)"),
    "replicas < 1": (GpuProcessor, {"name": "det", "replicas": 0},
                     "node 'det': replicas must be an integer >= 1, got 0"),
    "replicas not an int": (GpuProcessor, {"name": "det", "replicas": "2"},
                            "node 'det': replicas must be an integer >= 1, got '2'"),
    "zero fps": (FakeCamera, {"name": "cam", "fps": 0},
                 "node 'cam': fps must be > 0, got 0 (None: as fast as consumers take frames)"),
    "negative fps": (FakeCamera, {"name": "cam", "fps": -5},
                     "node 'cam': fps must be > 0, got -5 (None: as fast as consumers take frames)"),
    "fps not a number": (FakeCamera, {"name": "cam", "fps": "30"},
                         "node 'cam': fps must be a number or None, got '30'"),
    "invalid name": (FakeCamera, {"name": "my.cam"},
                     "node 'my.cam': invalid node name: use 1-64 letters, digits, '-' or '_'"),
    "bad node_port": (VideoGateway, {"name": "gw", "node_port": 70000},
                      "node 'gw': node_port must be a port number (1-65535) or None, got 70000"),
    "bad group": (FakeCamera, {"name": "cam", "group": "a b"},
                  "node 'cam': invalid group 'a b': use 1-64 letters, digits, '-' or '_'"),
    "bad device": (FakeCamera, {"name": "cam", "device": 3},
                   "node 'cam': device must be a non-empty string or None, got 3"),
    "option shadows a hook": (
        GpuProcessor, {"name": "det", "process": 1},
        "node 'det': option 'process' is reserved: it would replace GpuProcessor.process"),
    "option shadows a runtime attribute": (
        GpuProcessor, {"name": "det", "log": "x"},
        "node 'det': option 'log' is reserved: it would replace GpuProcessor.log"),
}


@pytest.mark.parametrize("case", REGISTRATION_ERRORS)
def test_node_errors_fail_at_registration(case):
    cls, kwargs, message = REGISTRATION_ERRORS[case]
    app = EdgeApp("v")
    with pytest.raises(GraphError) as info:
        app.node(cls, **kwargs)
    assert str(info.value) == message
    assert info.value.node == kwargs["name"] and info.value.link is None
    assert app.nodes == ()                    # nothing half-registered


def test_a_duplicate_node_name_fails_at_registration():
    app = EdgeApp("v")
    app.node(FakeCamera, name="cam")
    with pytest.raises(GraphError) as info:
        app.node(name="cam")(GpuProcessor)
    assert str(info.value) == "node 'cam': duplicate node name (already registered)"
    assert info.value.node == "cam"


def test_class_ends_must_name_exactly_one_node():
    app = build({"cam": FakeCamera, "det": GpuProcessor})
    app.link("cam").to(Store)
    with pytest.raises(GraphError, match=r"^link cam -> Store: class Store is not a registered node$"):
        app.graph()
    app = build({"left": FakeCamera, "right": FakeCamera, "det": GpuProcessor})
    app.link(FakeCamera).to("det")
    with pytest.raises(GraphError) as info:
        app.graph()
    assert str(info.value) == ("link FakeCamera -> det: class FakeCamera is registered as 2 nodes "
                               "('left', 'right'); link by name or handle")
    assert info.value.link == ("FakeCamera", "det")


def test_a_handle_from_another_app_is_refused():
    # a different node of the same name (fps differs); the same node would be fine (see test_share_*)
    other = EdgeApp("other").node(FakeCamera, name="cam", fps=5)
    app = build({"cam": FakeCamera, "det": GpuProcessor})
    app.link(other).to("det")
    with pytest.raises(GraphError) as info:
        app.graph()
    assert str(info.value) == "link cam -> det: 'cam' is a node of app 'other', not 'v'"
    assert (info.value.node, info.value.link) == ("cam", ("cam", "det"))


def test_node_takes_a_folder_class_or_keywords():
    app = EdgeApp("v")
    with pytest.raises(ConfigError, match=r"^node\(\) takes a folder path, a node class or keyword "
                                          r"arguments, got 42$"):
        app.node(42)
    with pytest.raises(ConfigError, match=r"^@app.node\(...\) decorates a node class, got <function"):
        app.node(name="f")(lambda: None)
    with pytest.raises(ConfigError, match=r"^node\(config=...\) must be a mapping, got list$"):
        app.node(FakeCamera, config=[1])


@pytest.mark.parametrize("name", ["test-distributed-system", "my_robot", "a", "A1-b_2", "x" * 64])
def test_valid_app_names(name):
    assert EdgeApp(name).name == name


@pytest.mark.parametrize("name", ["", "my.app", "a b", "x" * 65, "café", None, 3])
def test_invalid_app_names(name):
    with pytest.raises(ConfigError) as info:
        EdgeApp(name)
    assert str(info.value) == f"invalid app name {name!r}: use 1-64 letters, digits, '-' or '_'"


def test_broker_must_be_a_broker():
    assert EdgeApp("a", broker=DualRedisBroker()).broker.kind == "dual-redis"
    with pytest.raises(ConfigError) as info:
        EdgeApp("a", broker="redis://:pw@h:6379/0")
    assert str(info.value) == ("app 'a': broker must be None, a RedisBroker or a DualRedisBroker, got str "
                               "(wrap a URL: RedisBroker(url))")


def test_a_graph_built_directly_is_validated_too():
    nodes = (NodeSpec("cam", "producer", class_ref=FakeCamera),
             NodeSpec("a", "consumer", class_ref=GpuProcessor),
             NodeSpec("b", "consumer", class_ref=GpuProcessor))
    with pytest.raises(GraphError, match=r"^cycle: a -> b -> a$"):
        Graph("v", nodes, (EdgeSpec("cam", "a"), EdgeSpec("a", "b"), EdgeSpec("b", "a")))
    with pytest.raises(GraphError, match=r"^node 'cam': duplicate node name$"):
        Graph("v", nodes[:1] * 2)
    with pytest.raises(GraphError, match=r"^node 'x': give exactly one of class_ref and folder$"):
        NodeSpec("x", "consumer")


# -- the frozen Graph ----------------------------------------------------------------------------------------

def fusion_graph() -> Graph:
    app = EdgeApp("demo", broker=RedisBroker("redis://:secret@redis:6379/0"))
    app.node(Store, name="store")
    app.node(Fuse, name="fuse", slop=0.1)
    app.node(FakeCamera, name="lidar", fps=10)
    app.node(FakeCamera, name="cam")
    app.link("cam").to("fuse").to("store")
    app.link("lidar").to("fuse", qos=QoS.BALANCED, codec="lz4")
    return app.graph()


def test_graph_queries():
    graph = fusion_graph()
    assert graph.node("fuse").config == {"slop": 0.1}
    assert [e.source for e in graph.inputs_of("fuse")] == ["cam", "lidar"]    # = fusion input order
    assert [e.target for e in graph.outputs_of("cam")] == ["fuse"]
    assert graph.inputs_of("cam") == () and graph.outputs_of("store") == ()
    assert [n.name for n in graph.producers()] == ["lidar", "cam"]
    assert graph.topological_order() == ("lidar", "cam", "fuse", "store")
    with pytest.raises(GraphError, match=r"^unknown node 'fusion' \(did you mean 'fuse'\?\)$"):
        graph.node("fusion")


def test_graph_is_frozen():
    graph = fusion_graph()
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.nodes = ()
    assert isinstance(graph.nodes, tuple) and isinstance(graph.edges, tuple)


def test_to_dict_is_json_and_keeps_secrets_out():
    graph = fusion_graph()
    data = json.loads(json.dumps(graph.to_dict()))
    assert data["app"] == "demo" and data["broker"] == {"kind": "redis", "url": "redis://:***@redis:6379/0"}
    assert data["nodes"][2] == {"name": "lidar", "type": "producer", "replicas": 1, "device": None,
                                "fps": 10.0, "node_port": None, "group": None, "config": {},
                                "description": None, "build": {"base": None, "dependencies": []},
                                "gpu": False}
    plain = {"channel": None, "codec": None, "max_lag": None}
    assert data["edges"] == [
        {"source": "cam", "target": "fuse", "qos": "REALTIME", **plain},
        {"source": "fuse", "target": "store", "qos": "DURABLE", **plain},
        {"source": "lidar", "target": "fuse", "qos": "BALANCED", **plain, "codec": "lz4", "max_lag": 2}]
    assert "secret" not in json.dumps(data)


def test_to_dict_turns_odd_config_values_into_text():
    app = EdgeApp("demo")
    app.node(FakeCamera, name="cam", shape=(480, 640), tags={"a": object})
    config = json.loads(json.dumps(app.graph().to_dict()))["nodes"][0]["config"]
    assert config == {"shape": [480, 640], "tags": {"a": "<class 'object'>"}}


def test_specs_and_graph_pickle(tmp_path):
    graph = fusion_graph()
    copy = pickle.loads(pickle.dumps(graph))
    assert copy == graph and copy.to_dict() == graph.to_dict()
    assert copy.node("fuse").class_ref is Fuse and copy.broker.url == "redis://:secret@redis:6379/0"
    folder = make_folder(tmp_path / "det",
                         "from edgeflow.nodes import ConsumerNode\nclass Det(ConsumerNode): pass\n")
    app = EdgeApp("demo")
    app.node(folder, labels=["person"])
    spec = pickle.loads(pickle.dumps(app.nodes[0]))
    assert spec == app.nodes[0] and spec.options == {"labels": ["person"]}
    assert spec.load_class() is app.nodes[0].load_class()       # the same module, cached in sys.modules


# -- folders -------------------------------------------------------------------------------------------------

DETECTOR = """
    from edgeflow.nodes import ConsumerNode, ProducerNode   # imported bases and classes are not counted

    class Detector(ConsumerNode):
        def process(self, data):
            return data
"""


def test_node_toml_sets_options_and_keywords_win(tmp_path):
    folder = make_folder(tmp_path / "det", DETECTOR, """
        name = "detector"
        replicas = 2
        device = "gpu"
        group = "vision"

        [config]
        threshold = 0.5
        model = "yolo.onnx"
    """)
    app = EdgeApp("demo")
    handle = app.node(folder, device="tpu", threshold=0.7)
    spec = app.nodes[0]
    assert handle == NodeHandle("detector", "demo")
    assert (spec.kind, spec.replicas, spec.device, spec.group) == ("consumer", 2, "tpu", "vision")
    assert dict(spec.config) == {"threshold": 0.7, "model": "yolo.onnx"}
    assert spec.make_instance().model == "yolo.onnx"


def test_relative_folders_resolve_against_the_caller_then_the_cwd(tmp_path, monkeypatch):
    make_folder(tmp_path / "nodes" / "det", DETECTOR)
    monkeypatch.chdir(tmp_path)           # this test file's directory has no nodes/det: the cwd does
    app = EdgeApp("demo")
    app.node("nodes/det")
    assert app.nodes[0].folder == str(tmp_path / "nodes" / "det")
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match=r"^node folder 'nodes/nothing' not found \(looked in .*tests/unit/"
                                          r"nodes/nothing or .*/nodes/nothing\)$"):
        app.node("nodes/nothing")


@pytest.mark.parametrize("source, extra, message", [
    ("from edgeflow.nodes import ConsumerNode\n", {},
     "no node class is defined in the package; define one subclass of ProducerNode, ConsumerNode, SinkNode, "
     "FusionNode, GatewayNode"),
    ("from edgeflow_test_shared_nodes import SharedCam\n", {},
     "no node class is defined in the package (imported from elsewhere, not counted: SharedCam); define one "
     "subclass of ProducerNode, ConsumerNode, SinkNode, FusionNode, GatewayNode"),
    ("from .a import A\nfrom .b import B\n",
     {"a": "from edgeflow.nodes import SinkNode\nclass A(SinkNode): pass\n",
      "b": "from edgeflow.nodes import SinkNode\nclass B(SinkNode): pass\n"},
     "expected exactly one node class, found 2: A, B"),
    ("raise RuntimeError('no camera attached')\n", {},
     "importing it failed: RuntimeError: no camera attached"),
])
def test_folder_must_define_exactly_one_node_class(tmp_path, monkeypatch, source, extra, message):
    # a module outside the package, for the class a package imports rather than defines
    (tmp_path / "edgeflow_test_shared_nodes.py").write_text(
        "from edgeflow.nodes import ProducerNode\nclass SharedCam(ProducerNode): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "edgeflow_test_shared_nodes", raising=False)
    folder = make_folder(tmp_path / "bad", source, None, **extra)
    with pytest.raises(ConfigError) as info:
        EdgeApp("demo").node(folder)
    assert str(info.value) == f"node folder {folder}: {message}"


def test_folder_must_be_a_package(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        EdgeApp("demo").node(tmp_path / "empty")
    assert str(info.value) == f"node folder {tmp_path / 'empty'}: not a Python package (no __init__.py)"


@pytest.mark.parametrize("toml, message", [
    ("replica = 2\n", "unknown key 'replica' (did you mean 'replicas'?) (node keys: name, type, description, "
                      "fps, replicas, device, node_port, group; tables: [config], [build], [runtime]; anything "
                      "else goes in [config])"),
    ("[build]\nimage = 'x'\n", "unknown key 'image' in [build] (keys of [build]: base, dependencies)"),
    ("[runtime]\ngpus = true\n", "unknown key 'gpus' in [runtime] (did you mean 'gpu'?) (keys of [runtime]: gpu)"),
    ("[deploy]\ngpu = true\n", "unknown key 'deploy' "),
    ("build = 3\n", "'build' must be a table ([build])"),
    ("[node]\nbuild = {base = 'x'}\n", "[build] is a table of its own, not a key of [node]"),
    ("fps = \n", "invalid TOML: "),
    ("config = 3\n", "'config' must be a table ([config])"),
    ('type = "sink"\n[node]\ntype = "sink"\n', "'type' is set both at the top level and in [node]"),
])
def test_bad_node_toml(tmp_path, toml, message):
    folder = make_folder(tmp_path / "det", DETECTOR, toml)
    with pytest.raises(ConfigError) as info:
        EdgeApp("demo").node(folder)
    assert str(info.value).startswith(f"{folder / 'node.toml'}: {message}")


def test_node_toml_type_is_checked_against_the_class(tmp_path):
    folder = make_folder(tmp_path / "det", DETECTOR, '[node]\ntype = "sink"\n')
    with pytest.raises(GraphError, match=r"^node 'det': type='sink' but Detector is a ConsumerNode$"):
        EdgeApp("demo").node(folder)


def test_node_toml_without_a_toml_parser_says_to_install_tomli(tmp_path, monkeypatch):
    monkeypatch.setattr(_nodeload, "_toml", None)          # Python 3.10 without tomli
    folder = make_folder(tmp_path / "det", DETECTOR, "replicas = 2\n")
    with pytest.raises(ConfigError, match=r"node\.toml on Python 3\.10 needs tomli: pip install tomli$"):
        EdgeApp("demo").node(folder)
    assert EdgeApp("demo").node(make_folder(tmp_path / "plain", DETECTOR)).name == "plain"   # no toml: fine


def test_module_names_are_stable_and_distinct():
    first = _nodeload.module_name("/srv/app/nodes/camera")
    assert first == _nodeload.module_name("/srv/app/nodes/camera")
    assert first.startswith("edgeflow_nodes.camera_")
    assert first != _nodeload.module_name("/srv/other/nodes/camera")
    assert _nodeload.module_name("/x/3d-cam").startswith("edgeflow_nodes._3d_cam_")


def test_folder_node_loads_in_a_fresh_process(tmp_path):
    folder = make_folder(tmp_path / "nodes" / "detector", "from .impl import Detector\n",
                         "[config]\nlimit = 7\n", impl=DETECTOR)
    app = EdgeApp("demo")
    app.node(folder, replicas=2)
    payload = pickle.dumps(app.nodes[0])
    (tmp_path / "elsewhere").mkdir()
    child = textwrap.dedent("""
        import pickle, sys
        spec = pickle.loads(sys.stdin.buffer.read())
        cls = spec.load_class()
        node = spec.make_instance(replica=1)
        print(cls.__module__, cls.__name__, node.name, node.replica, node.replicas, node.limit)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", child], input=payload, capture_output=True,
                         cwd=tmp_path / "elsewhere", env=env, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    expected = [_nodeload.module_name(folder) + ".impl", "Detector", "detector", "1", "2", "7"]
    assert out.stdout.decode().split() == expected


# -- run() ---------------------------------------------------------------------------------------------------

def test_run_calls_the_capture_hook_when_set(monkeypatch):
    calls = []
    monkeypatch.setattr(graph_module, "_run_hook", lambda app, argv: calls.append((app, argv)) or "captured")
    assert seed_app.run(["--node", "gateway"]) == "captured"
    assert calls == [(seed_app, ["--node", "gateway"])]


def test_run_hands_the_app_to_the_launcher(monkeypatch):
    import types

    import edgeflow.runtime
    launcher = types.ModuleType("edgeflow.runtime.launcher")
    calls = []
    launcher.run_app = lambda app, argv: calls.append((app.name, argv)) or exit_code[0]
    exit_code = [0]
    monkeypatch.setitem(sys.modules, "edgeflow.runtime.launcher", launcher)
    monkeypatch.setattr(edgeflow.runtime, "launcher", launcher, raising=False)
    assert seed_app.run() == 0 and calls == [("test-distributed-system", None)]
    exit_code[0] = 2                          # a failed run makes `python main.py` exit non-zero
    with pytest.raises(SystemExit) as exc:
        seed_app.run(["--frames", "3"])
    assert exc.value.code == 2 and calls[-1] == ("test-distributed-system", ["--frames", "3"])


def test_the_graph_layer_imports_no_runtime_transport_or_compiled_core_at_import_time():
    import re
    top_level = re.compile(r"^(?:from|import)\s+(edgeflow[\w.]*)", re.M)     # indented imports are lazy
    pkg = Path(edgeflow.__file__).parent
    ours = (pkg / "graph.py", pkg / "_nodeload.py", pkg / "_graphcheck.py", *(pkg / "comms").glob("*.py"))
    for path in ours:
        for target in top_level.findall(path.read_text()):
            assert not target.startswith(("edgeflow.runtime", "edgeflow.transport", "edgeflow._fast")), path


# -- brokers -------------------------------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    for var in ("REDIS_HOST", "REDIS_PORT", "DATA_REDIS_HOST", "DATA_REDIS_PORT"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_brokers_import_from_both_paths():
    assert edgeflow.comms.RedisBroker is edgeflow.comms.brokers.RedisBroker
    assert edgeflow.comms.DualRedisBroker is edgeflow.comms.brokers.DualRedisBroker
    assert not isinstance(DualRedisBroker(), RedisBroker)      # the runtime tells them apart by type or kind


def test_broker_defaults(clean_env):
    broker = RedisBroker()
    assert (broker.kind, broker.url, broker.host, broker.port) == ("redis", "redis://localhost:6379/0",
                                                                   "localhost", 6379)
    dual = DualRedisBroker()
    assert (dual.kind, dual.url, dual.data_url) == ("dual-redis", "redis://localhost:6379/0",
                                                    "redis://localhost:6380/0")


def test_broker_environment_defaults(clean_env):
    clean_env.setenv("REDIS_HOST", "redis-svc")
    clean_env.setenv("REDIS_PORT", "7000")
    assert RedisBroker().url == "redis://redis-svc:7000/0"
    assert DualRedisBroker().data_url == "redis://redis-svc:6380/0"      # data host follows the control host
    clean_env.setenv("DATA_REDIS_HOST", "redis-data")
    clean_env.setenv("DATA_REDIS_PORT", "7001")
    assert DualRedisBroker().data_url == "redis://redis-data:7001/0"
    clean_env.setenv("REDIS_PORT", "six")
    with pytest.raises(ConfigError, match=r"^\$REDIS_PORT='six' is not a port number \(1-65535\)$"):
        RedisBroker()


def test_broker_keyword_arguments(clean_env):
    assert RedisBroker(host="10.0.0.5", port=6390).url == "redis://10.0.0.5:6390/0"
    assert RedisBroker(host="::1", port=1, password="p@ss", db=2).url == "redis://:p%40ss@[::1]:1/2"
    dual = DualRedisBroker(ctrl_host="ctrl", ctrl_port=1, data_host="data", data_port=2)
    assert (dual.url, dual.data_url) == ("redis://ctrl:1/0", "redis://data:2/0")
    with pytest.raises(ConfigError, match=r"^RedisBroker: give either a URL or host/port/password, "
                                          r"not both$"):
        RedisBroker("redis://h", host="h")


def test_broker_urls_are_parsed(clean_env):
    broker = RedisBroker("rediss://app:s%3Acret@redis.lan:6390/3")
    address = broker.address
    assert (address.host, address.port, address.db, address.username, address.password, address.tls) == \
        ("redis.lan", 6390, 3, "app", "s:cret", True)
    assert RedisBroker("redis://h").address.port == 6379 and RedisBroker("redis://h").address.db == 0
    dual = DualRedisBroker("redis://:pw@ctrl:6379/0")
    assert dual.data_url == "redis://:pw@ctrl:6380/0" and dual.data_address.password == "pw"
    assert DualRedisBroker("redis://c", "redis://d:9/1").data_address.db == 1


@pytest.mark.parametrize("url, message", [
    ("http://:pw@h", "RedisBroker URL 'http://***@h': expected redis://[:password@]host[:port][/db] "
                     "(or rediss:// for TLS)"),
    ("redis://:pw@h:99999/0", "RedisBroker URL 'redis://***@h:99999/0': Port out of range 0-65535"),
    ("redis://:pw@h/zero", "RedisBroker URL 'redis://***@h/zero': the database 'zero' is not a number"),
    ("redis://", "RedisBroker URL 'redis://': expected redis://[:password@]host[:port][/db] "
                 "(or rediss:// for TLS)"),
])
def test_bad_broker_urls_never_show_the_password(url, message):
    with pytest.raises(ConfigError) as info:
        RedisBroker(url)
    assert str(info.value) == message and "pw" not in str(info.value)


def test_redacted_hides_the_password(clean_env):
    broker = RedisBroker("redis://user:hunter2@h:6379/0")
    assert broker.redacted() == "redis://user:***@h:6379/0"
    assert "hunter2" not in repr(broker) and "hunter2" not in repr(broker.address)
    assert RedisBroker("redis://h:1/0").redacted() == "redis://h:1/0"
    dual = DualRedisBroker("redis://:hunter2@c:1/0", "redis://:hunter2@d:2/0")
    assert dual.redacted() == "redis://:***@c:1/0 + data redis://:***@d:2/0"
    assert "hunter2" not in repr(dual) and "hunter2" not in json.dumps(dual.to_dict())


def test_brokers_compare_and_pickle_by_url(clean_env):
    assert RedisBroker() == RedisBroker("redis://localhost:6379/0") != DualRedisBroker()
    dual = DualRedisBroker(data_url="redis://d:1/0")
    assert pickle.loads(pickle.dumps(dual)) == dual
    assert hash(dual) == hash(DualRedisBroker(data_url="redis://d:1/0"))


def test_constructing_a_broker_connects_to_nothing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a broker touched the network while being constructed")
    for name in ("getaddrinfo", "create_connection", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    start = time.monotonic()
    brokers = [RedisBroker("redis://:pw@unreachable.invalid:1/0"), RedisBroker(host="10.255.255.1", port=1),
               DualRedisBroker(ctrl_host="unreachable.invalid", data_host="unreachable.invalid")]
    for broker in brokers:
        app = EdgeApp("offline", broker=broker)
        app.node(FakeCamera)
        assert app.graph().broker is broker
    assert time.monotonic() - start < 1.0
