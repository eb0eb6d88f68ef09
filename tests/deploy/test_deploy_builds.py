"""Issue 11: node.toml's [build] (base image, dependencies) and [runtime] (gpu) of the original EdgeFlow drive
`edgeflow deploy`: one image per distinct base + dependencies, each installing EdgeFlow from its own source,
and `gpu = true` puts nvidia.com/gpu in that node's container limits. Manifests validated offline."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from _deploytools import by_kind, check_references, containers, validate
from edgeflow.cli import _load, cli
from edgeflow.deploy import dockerfile, render

PRODUCER = '''
from edgeflow.nodes import ProducerNode


class Camera(ProducerNode):
    def loop(self):
        return b"frame"
'''
CONSUMER = '''
from edgeflow.nodes import ConsumerNode


class {cls}(ConsumerNode):
    def loop(self, data):
        return data
'''
SINK = '''
from edgeflow.nodes import SinkNode


class LoggerNode(SinkNode):
    def loop(self, data):
        pass
'''
GPU_TOML = '''
[node]
type = "consumer"
description = "object detection"

[build]
base = "nvcr.io/nvidia/pytorch:24.01-py3"
dependencies = ["ultralytics", "numpy<2"]

[runtime]
gpu = true
'''
MAIN = '''
from edgeflow import System, QoS

sys = System("my-robot")
cam = sys.node("nodes/camera", device="camera", fps=30)
gpu = sys.node("nodes/yolo", device="gpu", replicas=2)
seg = sys.node("nodes/seg", device="gpu")
logger = sys.node("nodes/logger")
sys.link(cam).to(gpu, qos=QoS.REALTIME)
sys.link(cam).to(seg)
sys.link(cam).to(logger, qos=QoS.DURABLE)
sys.run()
'''


def make_project(root: Path) -> Path:
    files = {"main.py": MAIN, "nodes/camera/__init__.py": PRODUCER,
             "nodes/camera/node.toml": '[node]\ntype = "producer"\n\n[runtime]\ngpu = false\n',
             "nodes/yolo/__init__.py": CONSUMER.format(cls="Yolo"), "nodes/yolo/node.toml": GPU_TOML,
             "nodes/seg/__init__.py": CONSUMER.format(cls="Seg"), "nodes/seg/node.toml": GPU_TOML,
             "nodes/logger/__init__.py": SINK,
             "nodes/logger/node.toml": '[node]\ntype = "sink"\n\n[build]\ndependencies = ["boto3"]\n'}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.lstrip("\n"))
    return root


def test_node_toml_tables_are_kept_on_the_node(tmp_path):
    graph = _load.load_app(make_project(tmp_path / "my-robot") / "main.py").graph()
    yolo = graph.node("yolo")
    assert (yolo.description, yolo.base_image, yolo.dependencies, yolo.gpu) == (
        "object detection", "nvcr.io/nvidia/pytorch:24.01-py3", ("ultralytics", "numpy<2"), True)
    camera = graph.node("camera")
    assert (camera.base_image, camera.dependencies, camera.gpu) == (None, (), False)
    assert graph.node("logger").dependencies == ("boto3",)


def test_one_image_per_distinct_build_and_a_gpu_limit(tmp_path):
    project = make_project(tmp_path / "my-robot")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["deploy", str(project / "main.py"), "--dry-run", "--out", str(out),
                                      "--tag", "v1"])
    assert result.exit_code == 0, result.output + result.stderr
    objects = render.load(out)
    validate(objects)
    graph = _load.load_app(project / "main.py").graph()
    check_references(objects, graph)
    image = {c["args"][c["args"].index("--node") + 1]: c for d in by_kind(objects, "Deployment")
             for c in containers(d) if c.get("command") == ["edgeflow"]}
    assert image["camera"]["image"] == "localhost:5000/my-robot:v1"            # no [build]: the default
    assert image["yolo"]["image"] == image["seg"]["image"]                     # same base + deps: one image
    assert image["yolo"]["image"].startswith("localhost:5000/my-robot-yolo:sha-")
    assert image["logger"]["image"].startswith("localhost:5000/my-robot-logger:sha-")
    assert len({c["image"] for c in image.values()}) == 3
    assert image["yolo"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert image["seg"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in image["camera"]["resources"]["limits"]
    assert "nvidia.com/gpu" not in image["logger"]["resources"]["limits"]
    # one Dockerfile (and build context) per image, in the dry run's folder
    contexts = sorted(p.name for p in (out / "docker").iterdir())
    assert contexts == ["my-robot", "my-robot-logger", "my-robot-yolo"]
    yolo = (out / "docker" / "my-robot-yolo" / "Dockerfile").read_text()
    assert yolo.splitlines()[1] == "FROM nvcr.io/nvidia/pytorch:24.01-py3"
    assert "RUN python3 -m pip install --no-cache-dir ultralytics 'numpy<2'" in yolo
    assert "node(s) yolo, seg" in yolo.splitlines()[0]
    default = (out / "docker" / "my-robot" / "Dockerfile").read_text()
    assert "FROM python:" in default and "ultralytics" not in default and "boto3" not in default
    for name in contexts:
        assert (out / "docker" / name / "_edgeflow" / "edgeflow" / "graph.py").is_file()
        assert (out / "docker" / name / "project" / "nodes" / "yolo" / "node.toml").is_file()
    for ref in {c["image"] for c in image.values()}:
        assert f"$ docker build -t {ref} -f - " in result.stderr and f"$ docker push {ref}" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["main.py", "nodes"]    # the project is untouched


def test_a_changed_dependency_list_gets_a_new_image_tag(tmp_path):
    graph = _load.load_app(make_project(tmp_path / "a") / "main.py").graph()
    first = {plan.nodes: plan.image for plan in dockerfile.image_plans(graph, "r.io/x", "v1")}
    toml = tmp_path / "a" / "nodes" / "logger" / "node.toml"
    toml.write_text(toml.read_text().replace('"boto3"', '"boto3", "pyarrow"'))
    shutil.rmtree(tmp_path / "a" / "nodes" / "logger" / "__pycache__", ignore_errors=True)
    second = {plan.nodes: plan.image
              for plan in dockerfile.image_plans(_load.load_app(tmp_path / "a" / "main.py").graph(), "r.io/x",
                                                 "v1")}
    assert first[("logger",)] != second[("logger",)] and first[("camera",)] == second[("camera",)]
