"""Issue 8: the manifests of `edgeflow deploy`, valid for Kubernetes 1.32 and consistent with each other."""

from __future__ import annotations

import pytest
import yaml

import kubernetes_validate
from _deploytools import (EXAMPLES, by_kind, check_references, containers, deploy, generate, k8s_version,
                          validate)
from edgeflow.cli import _load
from edgeflow.deploy import manifests, render

APP_NODES = '''
import numpy as np
from edgeflow import ConsumerNode, DualRedisBroker, EdgeApp, GatewayNode, ProducerNode, SinkNode


class Cam(ProducerNode):
    def produce(self):
        return np.zeros((480, 640, 3), np.uint8)


class Det(ConsumerNode):
    def process(self, data):
        return data


class Log(SinkNode):
    def consume(self, data):
        pass


class Gw(GatewayNode):
    pass
'''

DUAL = APP_NODES + '''
app = EdgeApp("Dual_Robot", broker=DualRedisBroker())
app.node(Cam, name="Front_Camera", device="camera", fps=15)
app.node(Det, name="detector", device="gpu", replicas=3)
app.node(Gw, name="gateway", node_port=31000)
app.node(Log, name="archive")

if __name__ == "__main__":
    app.link("Front_Camera").to("detector").to("gateway")
    app.link("detector").to("archive")
    app.run()
'''

GROUP = APP_NODES + '''
app = EdgeApp("vision-app")
app.node(Cam, name="camera", group="vision", device="jetson", frame_bytes=640 * 480 * 3)
app.node(Det, name="detector", group="vision", replicas=2, frame_bytes=640 * 480 * 3, slots=4)
app.node(Det, name="tracker")
app.node(Gw, name="gateway", group="vision", node_port=30080)

if __name__ == "__main__":
    app.link("camera").to("detector").to("tracker").to("gateway")
    app.link("camera").to("gateway", channel="raw")
    app.run()
'''


def write(tmp_path, body):
    path = tmp_path / "app" / "main.py"
    path.parent.mkdir()
    path.write_text(body)
    return path


def test_the_validator_is_strict():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replica": 1, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate([bad])
    assert k8s_version().startswith("1.32")


@pytest.mark.parametrize("example", ["quickstart", "folder_style"])
def test_examples(tmp_path, example):
    file = EXAMPLES / example / "main.py"
    objects = generate(file, tmp_path / "k8s")
    validate(objects)
    check_references(objects, _load.load_app(file).graph())


def test_quickstart_in_detail(tmp_path):
    objects = generate(EXAMPLES / "quickstart" / "main.py", tmp_path / "k8s")
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") == 4 and kinds.count("Service") == 3 and kinds.count("Secret") == 1
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    gpu = deployments["test-distributed-system-gpu-processor"]
    assert gpu["spec"]["replicas"] == 2
    assert gpu["spec"]["template"]["spec"]["nodeSelector"] == {"edgeflow.io/device": "gpu"}
    assert containers(gpu)[0]["args"] == ["run", "main.py", "--node", "gpu_processor"]
    assert gpu["spec"]["template"]["metadata"]["labels"]["edgeflow.io/node"] == "gpu-processor"
    redis = deployments["test-distributed-system-redis"]
    assert redis["spec"]["template"]["spec"]["nodeSelector"] == {"edgeflow.io/role": "infra"}
    assert "$(REDIS_PASSWORD)" in containers(redis)[0]["args"]
    nodeport = next(s for s in by_kind(objects, "Service") if s["spec"]["type"] == "NodePort")
    assert nodeport["spec"]["ports"][0]["nodePort"] == 30080
    config = by_kind(objects, "ConfigMap")[0]["data"]
    assert config == {"EDGEFLOW_APP": "test-distributed-system",
                      "REDIS_HOST": "test-distributed-system-redis", "REDIS_PORT": "6379",
                      "GATEWAY_HOST": "test-distributed-system-gateway",
                      "GATEWAY_TCP_PORT": "8080", "GATEWAY_HTTP_PORT": "8000"}
    gateway = containers(deployments["test-distributed-system-gateway"])[0]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # 8 slots of a 6 MB frame, x2 for a growing ring: 95 Mi for the camera's one ring
    camera = deployments["test-distributed-system-fake-camera"]["spec"]["template"]["spec"]
    assert camera["volumes"][0]["emptyDir"]["sizeLimit"] == "95Mi"
    assert deployments["test-distributed-system-gateway"]["spec"]["template"]["spec"]["volumes"][0][
        "emptyDir"]["sizeLimit"] == "16Mi"                     # no outgoing link: no ring of its own


def test_dual_redis(tmp_path):
    file = write(tmp_path, DUAL)
    objects = generate(file, tmp_path / "k8s")
    validate(objects)
    graph = _load.load_app(file).graph()
    check_references(objects, graph)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "dual-robot-redis"), ("Service", "dual-robot-redis"),
            ("Deployment", "dual-robot-redis-data"), ("Service", "dual-robot-redis-data")} <= names
    config = by_kind(objects, "ConfigMap")[0]["data"]
    assert config["DATA_REDIS_HOST"] == "dual-robot-redis-data" and config["DATA_REDIS_PORT"] == "6379"
    assert config["EDGEFLOW_APP"] == "Dual_Robot"                     # the app's identity, exactly
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    camera = deployments["dual-robot-front-camera"]
    env = {e["name"]: e for e in containers(camera)[0]["env"]}
    assert env["DATA_REDIS_URL"]["value"] == \
        "redis://:$(REDIS_PASSWORD)@$(DATA_REDIS_HOST):$(DATA_REDIS_PORT)/0"
    assert containers(camera)[0]["args"][-2:] == ["--node", "Front_Camera"]
    data = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "dual-robot-redis-data")
    assert "volatile-ttl" in containers(data)[0]["args"]
    sink = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "dual-robot-archive")
    assert containers(sink)[0]["securityContext"]["readOnlyRootFilesystem"] is False


def test_a_shared_memory_group_is_one_pod(tmp_path):
    file = write(tmp_path, GROUP)
    objects = generate(file, tmp_path / "k8s")
    validate(objects)
    graph = _load.load_app(file).graph()
    check_references(objects, graph)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    assert set(deployments) == {"vision-app-redis", "vision-app-vision", "vision-app-tracker"}
    group = deployments["vision-app-vision"]
    pod = group["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True and pod["nodeSelector"] == {"edgeflow.io/device": "jetson"}
    assert [c["name"] for c in pod["containers"]] == ["camera", "detector-r0", "detector-r1", "gateway"]
    assert [c["args"][2:] for c in pod["containers"]] == [
        ["--node", "camera"], ["--node", "detector", "--replica", "0"],
        ["--node", "detector", "--replica", "1"], ["--node", "gateway"]]
    assert group["spec"]["template"]["metadata"]["labels"]["edgeflow.io/group"] == "vision"
    # camera: 2 streams (default and "raw") x 8 slots x 901 KiB; detector: 2 replicas x 4 slots x 901 KiB;
    # x2 margin: (16 + 8) x 925,696 B x 2 = 42.4 MiB -> 43 Mi
    frame = -(-640 * 480 * 3 // 4096) * 4096
    expected = -(-(2 * 8 * frame + 2 * 4 * frame) * 2 // (1024 * 1024))
    assert pod["volumes"][0] == {"name": "shm",
                                 "emptyDir": {"medium": "Memory", "sizeLimit": f"{expected}Mi"}}
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    assert services["vision-app-gateway"]["spec"]["selector"]["app.kubernetes.io/name"] == "vision-app-vision"


def test_dns_names():
    assert manifests.dns_name("fake_camera") == "fake-camera"
    assert manifests.dns_name("Front_Camera") == "front-camera"
    assert manifests.dns_name("3d-cam") == "ef-3d-cam"                 # a Service name starts with a letter
    long = "x" * 100
    name = manifests.dns_name(long)
    assert len(name) == 63 and name == manifests.dns_name(long)         # stable
    taken: set[str] = set()
    first, second = manifests.dns_name("fake_camera", taken), manifests.dns_name("fake-camera", taken)
    assert first == "fake-camera" and second.startswith("fake-camera-") and len(second) == len(first) + 7
    assert taken == {first, second}
    assert manifests.dns_name("a" * 70, set()) != manifests.dns_name("a" * 71, set())


def test_distinct_nodes_that_look_alike_get_distinct_objects(tmp_path):
    file = write(tmp_path, APP_NODES + '''
app = EdgeApp("alike")
app.node(Cam, name="cam_1")
app.node(Log, name="cam-1")
app.link("cam_1").to("cam-1")
if __name__ == "__main__":
    app.run()
''')
    objects = generate(file, tmp_path / "k8s")
    validate(objects)
    check_references(objects, _load.load_app(file).graph())
    names = [d["metadata"]["name"] for d in by_kind(objects, "Deployment")]
    assert len(set(names)) == len(names) == 3


@pytest.mark.parametrize("body, message", [
    (APP_NODES + 'app = EdgeApp("g")\napp.node(Cam, name="a", group="v", device="gpu")\n'
                 'app.node(Log, name="b", group="v", device="cpu")\napp.link("a").to("b")\n',
     "group 'v': its nodes ask for devices cpu, gpu"),
    (APP_NODES + 'app = EdgeApp("p")\napp.node(Cam, name="a")\napp.node(Gw, name="gw", node_port=8080)\n'
                 'app.link("a").to("gw")\n', "node_port 8080 is outside Kubernetes' NodePort range"),
    (APP_NODES + 'app = EdgeApp("d")\napp.node(Cam, name="a", device="GPU #1")\n',
     "is not a Kubernetes label"),
    (APP_NODES + 'app = EdgeApp("f")\napp.node(Cam, name="a", frame_bytes="big")\napp.node(Log, name="b")\n'
                 'app.link("a").to("b")\n', "option frame_bytes='big' must be an integer"),
])
def test_what_cannot_be_deployed_exits_2_with_one_line(tmp_path, body, message):
    result = deploy(write(tmp_path, body + "app.run()\n"), tmp_path / "k8s")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("ConfigError: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_namespace_exits_2(tmp_path):
    result = deploy(EXAMPLES / "quickstart", tmp_path / "k8s", namespace="Edge_Flow")
    assert result.exit_code == 2 and "try 'edge-flow'" in result.stderr


def test_rendering_one_file_per_node_and_no_yaml_aliases(tmp_path):
    generate(EXAMPLES / "quickstart" / "main.py", tmp_path / "k8s")
    files = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert files == ["00-namespace.yaml", "01-secret-test-distributed-system-redis.yaml",
                     "02-configmap-test-distributed-system-config.yaml",
                     "10-test-distributed-system-redis.yaml",
                     "20-test-distributed-system-fake-camera.yaml", "20-test-distributed-system-gateway.yaml",
                     "20-test-distributed-system-gpu-processor.yaml"]
    for path in (tmp_path / "k8s").iterdir():
        text = path.read_text()
        assert text.startswith(render.MARK) and "&id" not in text and "*id" not in text
        assert all(doc for doc in yaml.safe_load_all(text))


def test_the_node_probe_finds_its_node_process_and_only_it():
    """The exec probe of a node container: exit 0 while a process runs `... --node NAME [--replica I]`."""
    import subprocess
    import sys
    import time
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--node", "cam_1"])
    try:
        time.sleep(0.2)

        def probe(*args):
            return subprocess.run([sys.executable, "-c", manifests.PROBE, *args], timeout=10).returncode
        assert probe("--node", "cam_1") == 0
        assert probe("--node", "cam") == 1                      # a prefix of the name is not the node
        assert probe("--node", "cam_1", "--replica", "1") == 1  # nor another replica
    finally:
        sleeper.kill()
        sleeper.wait()
    assert probe("--node", "cam_1") == 1
