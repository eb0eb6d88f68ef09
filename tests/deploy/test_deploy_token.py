"""Issue 12, section 2: `edgeflow deploy` gives the gateway a token through a Secret, referenced by
EDGEFLOW_GATEWAY_TOKEN (secretKeyRef) in the gateway and every sender; the gateway binds 0.0.0.0 in its Pod; a
redeploy keeps the token; a token the operator gives is never written into a manifest or printed."""

from __future__ import annotations

import re
import textwrap

from _deploytools import EXAMPLES, by_kind, check_references, containers, deploy, generate, validate
from edgeflow.cli import _load
from edgeflow.deploy import manifests, render

QUICKSTART = EXAMPLES / "quickstart" / "main.py"

NO_GATEWAY = '''
import numpy as np
from edgeflow import EdgeApp, ProducerNode, SinkNode, RedisBroker

app = EdgeApp("quiet", broker=RedisBroker())


@app.node(name="cam")
class Cam(ProducerNode):
    def produce(self):
        return np.zeros((8, 8), np.uint8)


@app.node(name="log")
class Log(SinkNode):
    def consume(self, data):
        pass


if __name__ == "__main__":
    app.link("cam").to("log")
    app.run()
'''


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_the_gateway_token_is_in_the_secret_and_every_node_container_refers_to_it(tmp_path):
    objects = generate(QUICKSTART, tmp_path / "k8s")
    validate(objects)
    check_references(objects, _load.load_app(QUICKSTART).graph())
    (secret,) = by_kind(objects, "Secret")
    token = secret["stringData"]["gateway-token"]
    assert re.fullmatch(r"[0-9a-f]{48}", token) and token != secret["stringData"]["password"]
    deployments = [d for d in by_kind(objects, "Deployment")
                   if d["metadata"]["labels"]["app.kubernetes.io/component"] in ("node", "gateway", "group")]
    assert len(deployments) == 3
    for deployment in deployments:
        for container in containers(deployment):
            ref = env_of(container)["EDGEFLOW_GATEWAY_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": secret["metadata"]["name"], "key": "gateway-token"}, container["name"]
            bind = env_of(container).get("EDGEFLOW_BIND")
            if container["name"] == "gateway":            # its Services reach it; the token protects it
                assert bind == {"name": "EDGEFLOW_BIND", "value": "0.0.0.0"}
            else:
                assert bind is None, container["name"]
    redis_pods = [d for d in by_kind(objects, "Deployment") if d not in deployments]
    assert all("EDGEFLOW_GATEWAY_TOKEN" not in env_of(c) for d in redis_pods for c in containers(d))


def test_a_redeploy_keeps_the_token_and_the_output_never_shows_it(tmp_path):
    out = tmp_path / "k8s"
    first = deploy(QUICKSTART, out)
    assert first.exit_code == 0, first.output
    token = by_kind(render.load(out), "Secret")[0]["stringData"]["gateway-token"]
    second = deploy(QUICKSTART, out)
    assert second.exit_code == 0, second.output
    assert by_kind(render.load(out), "Secret")[0]["stringData"]["gateway-token"] == token
    for result in (first, second):
        assert token not in result.output + (result.stderr or "")
        assert "Secret" in result.output                    # the dry run shows the Secret is part of it


def test_a_given_token_is_written_nowhere_and_its_secret_is_left_to_the_operator(tmp_path):
    graph = _load.load_app(QUICKSTART).graph()
    given = "operator-chosen-token-Zq81"
    cfg = manifests.DeployConfig(image="registry.local/demo:1", namespace="edgeflow", password="abc123",
                                 gateway_token=given)
    objects = manifests.build(graph, cfg)
    assert given not in render.dump(objects) and given not in repr(cfg)
    (secret,) = by_kind(objects, "Secret")
    assert "gateway-token" not in secret["stringData"]                   # not derived either
    name = manifests.gateway_secret_name(graph.app)
    for deployment in by_kind(objects, "Deployment"):
        for container in containers(deployment):
            env = env_of(container)
            if "--node" in container.get("args", []):
                assert env["EDGEFLOW_GATEWAY_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "token"}
    command = manifests.gateway_secret_command(graph, cfg)
    assert command == (f'kubectl create secret generic {name} -n edgeflow '
                       '--from-literal=token="$EDGEFLOW_GATEWAY_TOKEN"')
    assert manifests.gateway_secret_command(graph, manifests.DeployConfig(
        image="registry.local/demo:1", namespace="edgeflow", password="abc123")) is None


def test_the_generated_token_follows_the_password_and_the_app():
    assert manifests.derived_token("a", "pw1") == manifests.derived_token("a", "pw1")
    assert len({manifests.derived_token("a", "pw1"), manifests.derived_token("a", "pw2"),
                manifests.derived_token("b", "pw1")}) == 3


def test_an_app_without_a_gateway_gets_no_token(tmp_path):
    file = tmp_path / "main.py"
    file.write_text(textwrap.dedent(NO_GATEWAY))
    objects = generate(file, tmp_path / "k8s")
    validate(objects)
    assert "gateway-token" not in by_kind(objects, "Secret")[0]["stringData"]
    assert not [c for d in by_kind(objects, "Deployment") for c in containers(d)
                if "EDGEFLOW_GATEWAY_TOKEN" in env_of(c) or "EDGEFLOW_BIND" in env_of(c)]
