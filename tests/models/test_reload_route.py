"""``POST /api/nodes/{name}/reload`` on a real gateway (issue 14, section 2): the control message goes through
the supervisor to every replica of the model node; the token guards it (401 without); the answer names each
replica's new version, or the error of a version that failed (422, the old one runs on); the version in use and
the reload counts are in /metrics. A runtime with no supervisor (a --node run) answers 501."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeflow import EdgeApp, QoS
from edgeflow.gateway.app import Server, StaticRuntime
from edgeflow.models import ModelNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface

from . import model_nodes
from ._helpers import free_port, read_json, wait_for, write_model

TOKEN = "s3cret-token"


def http(port: int, path: str, *, method: str = "GET", body=None, token: str | None = TOKEN):
    """(status, text) of a request to the gateway; (None, "") while it does not listen."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:                      # not listening yet
        return None, ""


def model_series(text: str) -> dict:
    """{(family, version or None): value} of the model node's series in /metrics."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("edgeflow_model_") and sample.labels.get("node") == "model":
                out[(sample.name, sample.labels.get("version"))] = sample.value
    return out


@pytest.mark.slow
def test_the_reload_route_reloads_every_replica_behind_the_token_and_metrics_show_the_version(app, tmp_path):
    (tmp_path / "scalemod.py").write_text("")
    write_model(tmp_path / "scalemod.py", "1", 2)
    out, port = tmp_path / "out.jsonl", free_port()
    ef = EdgeApp(app)
    ef.node(model_nodes.Numbers, name="numbers", count=10**6, fps=200)
    # a module found through python_path (a configuration's folder); not watched: only the route reloads it
    ef.node(ModelNode, name="model", model="scalemod:Scale", python_path=str(tmp_path), watch=False, replicas=2)
    ef.node(model_nodes.Lines, name="sink", out=str(out))
    ef.node(model_nodes.WebGateway, name="gateway", port=port, token=TOKEN)
    ef.link("numbers").to("model", qos=QoS.DURABLE).to("sink")
    ef.link("model").to("gateway")
    reload = "/api/nodes/model/reload"
    with ef.start() as running:
        wait_for(lambda: ("edgeflow_model_info", "1") in model_series(http(port, "/metrics")[1]), 30,
                 "version 1 in /metrics")
        assert http(port, reload, method="POST", token=None)[0] == 401
        assert http(port, reload, method="POST", token="wrong")[0] == 401
        assert versions(out) == {"1"}                         # nothing reloaded by a refused request

        status, text = http(port, reload, method="POST", body={"version": "1.1"})
        assert status == 200, text
        answer = json.loads(text)
        assert answer["ok"] and answer["node"] == "model"
        assert [(r["replica"], r["ok"], r["version"], r["previous"]) for r in answer["replicas"]] == \
            [(0, True, "1.1", "1"), (1, True, "1.1", "1")]
        scrape = lambda: model_series(http(port, "/metrics")[1])           # noqa: E731
        series = wait_for(lambda: (lambda s: s if ("edgeflow_model_info", "1.1") in s
                                   and ("edgeflow_model_info", "1") not in s else None)(scrape()), 30,
                          "version 1.1 (alone) in /metrics")
        assert series[("edgeflow_model_info", "1.1")] == 1.0
        assert series[("edgeflow_model_reloads_total", None)] >= 1.0   # per replica, or added up over them
        wait_for(lambda: "1.1" in versions(out), 30, "outputs of version 1.1")

        # a new version whose init raises: 422 naming the error, both replicas stay on 1.1
        write_model(tmp_path / "scalemod.py", "2", 3, init="raise ValueError('bad gain')")
        status, text = http(port, reload, method="POST")
        assert status == 422, text
        answer = json.loads(text)
        assert not answer["ok"] and "ValueError: bad gain" in answer["error"]
        assert {(r["ok"], r["version"]) for r in answer["replicas"]} == {(False, "1.1")}
        failures = ("edgeflow_model_reload_failures_total", None)
        series = wait_for(lambda: (lambda s: s if s.get(failures) else None)(scrape()), 30, "the failure counted")
        assert ("edgeflow_model_info", "1.1") in series

        status, text = http(port, "/api/nodes/sink/reload", method="POST")
        assert status == 400 and "takes no control messages" in json.loads(text)["error"]
        assert http(port, "/api/nodes/nosuch/reload", method="POST")[0] == 404
        assert http(port, reload, method="POST", body=["x"])[0] == 400
        running.stop()
        assert running.wait(timeout=30) == 0
    rows = read_json(out)
    numbers = [r["n"] for r in rows]
    assert len(numbers) == len(set(numbers)), "a message processed twice"
    assert all(r["y"] == r["n"] * 2 and r["v"] == r["meta_v"] for r in rows)   # version 2 never ran
    by_replica: dict = {}
    for row in sorted(rows, key=lambda r: r["n"]):
        by_replica.setdefault(row["r"], []).append(row["v"])
    assert set(by_replica) == {0, 1}
    for seen in by_replica.values():                          # each replica: 1, then 1.1, never back
        assert seen == sorted(seen, key=["1", "1.1"].index)


def versions(out) -> set:
    """The versions the sink's lines name."""
    return {r["v"] for r in read_json(out)}


def test_the_reload_route_answers_501_without_a_supervisor_and_needs_the_token(tmp_path):
    runtime = StaticRuntime("demo", graph={"nodes": [{"name": "model"}], "edges": []})
    with Server(WebInterface(port=0, token=TOKEN), runtime) as server:
        assert http(server.port, "/api/nodes/model/reload", method="POST", token=None)[0] == 401
        status, text = http(server.port, "/api/nodes/model/reload", method="POST")
        assert status == 501 and json.loads(text)["node"] == "model"
        assert http(server.port, "/api/nodes/other/reload", method="POST")[0] == 404
