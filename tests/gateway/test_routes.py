"""The gateway's REST, health, metrics and dashboard routes, and hostile input (issue 5), with aiohttp's test
client on make_app: no threads, no ports of our own."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeflow.errors import ConfigError
from edgeflow.frame import Frame
from edgeflow.gateway.app import make_app
from edgeflow.nodes.gateway.interfaces.web import WebInterface

from .helpers import StaticRuntime, client_for, frame, graph_and_stats, run_async


@run_async
async def test_root_redirects_to_the_dashboard_keeping_the_query():
    async with client_for() as (client, hub):
        resp = await client.get("/?token=abc", allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == "/dashboard?token=abc"


@run_async
async def test_dashboard_is_one_self_contained_page():
    async with client_for() as (client, hub):
        page = await client.get("/dashboard")
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith(("/", "data:")) for a in assets), assets   # nothing from a CDN
        for asset in ("/static/dashboard.js", "/static/dashboard.css"):
            resp = await client.get(asset)
            assert resp.status == 200, asset
            urls = re.findall(r"https?://[^\s\"')]+", await resp.text())
            assert set(urls) <= {"http://www.w3.org/2000/svg"}, urls          # the SVG namespace is a name
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        js = await (await client.get("/static/dashboard.js")).text()
        assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js


@run_async
async def test_static_files_are_served_by_name_only():
    async with client_for() as (client, hub):
        for path in ("/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/dashboard.html",
                     "/static/x.js"):
            resp = await client.get(path)
            assert resp.status == 404, path


@run_async
async def test_health_probes():
    runtime = StaticRuntime("demo", ready=False)
    async with client_for(runtime) as (client, hub):
        assert (await client.get("/healthz")).status == 200
        assert await (await client.get("/health")).json() == {"status": "ok"}
        resp = await client.get("/readyz")
        assert resp.status == 503 and "not ready" in await resp.text()
        runtime.is_ready = True
        assert (await client.get("/readyz")).status == 200


@run_async
async def test_readyz_waits_for_every_connector_connection():
    """A connector not reporting yet, or a connection not up, is one 503 line naming the node (issue 13)."""
    stats = {"app": "demo", "edges": [], "nodes": {"sensors": {"connections_pending": True}, "camera": {}}}
    runtime = StaticRuntime("demo", stats=stats)
    async with client_for(runtime) as (client, hub):
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert await resp.text() == ("not ready: node 'sensors': starting (its connection state has not "
                                     "arrived yet)\n")
        stats["nodes"]["sensors"] = {"extra": {"connections": {"mqtt://b:1883": {"state": "down",
                                                                               "error": "unreachable"}}}}
        resp = await client.get("/readyz")
        assert (resp.status, await resp.text()) == (503, "not ready: node 'sensors': mqtt://b:1883 down "
                                                         "(unreachable)\n")
        stats["nodes"]["sensors"]["extra"]["connections"]["mqtt://b:1883"] = {"state": "up", "error": None}
        assert (await client.get("/readyz")).status == 200


@run_async
async def test_status_fps_and_topics():
    graph, stats = graph_and_stats()
    async with client_for(StaticRuntime("demo", graph=graph, stats=stats)) as (client, hub):
        topics = (await (await client.get("/api/topics")).json())["topics"]
        assert [t["name"] for t in topics] == ["camera", "detector"]            # announced by the graph
        assert all(t["frame_id"] is None for t in topics)
        for n in range(1, 4):
            hub.publish(frame(n, "detector", width=64, height=48))
        hub.publish(frame(1, "extra.topic", data=np.arange(6, dtype=np.float32).reshape(2, 3)))
        status = await (await client.get("/api/status")).json()
        assert status["app"] == "demo" and status["node"] == "gateway" and status["ready"] is True
        assert status["topics"] == ["camera", "detector", "extra.topic"]       # discovered ones too
        fps = await (await client.get("/api/fps")).json()
        assert fps["nodes"]["camera"] == 30.0 and set(fps["topics"]) == {"camera", "detector", "extra.topic"}
        detector = await (await client.get("/api/topics/detector")).json()
        assert (detector["frame_id"], detector["width"], detector["height"]) == (3, 64, 48)
        assert detector["kind"] == "image"
        assert detector["meta"] == {"n": 3} and detector["age_s"] >= 0
        data = await (await client.get("/api/topics/extra.topic")).json()
        assert data["kind"] == "data" and data["value"] == [[0, 1, 2], [3, 4, 5]]


@run_async
async def test_graph_has_edges_with_transport_and_live_figures():
    graph, stats = graph_and_stats()
    async with client_for(StaticRuntime("demo", graph=graph, stats=stats)) as (client, hub):
        body = await (await client.get("/api/graph")).json()
        nodes = {n["name"]: n for n in body["nodes"]}
        assert list(nodes) == ["camera", "detector", "gateway"]
        detector = nodes["detector"]
        assert detector["fps"] == 29.5 and detector["restarts"] == 2
        assert detector["drops"] == {"skipped": 7, "error": 3}
        assert detector["latency_ms"]["p50"] == 4.5 and detector["latency_ms"]["p99"] == 12.0
        assert detector["processing_ms"]["p99"] == 4.0 and detector["states"] == ["running", "restarting"]
        assert nodes["camera"]["target_fps"] == 30.0
        edges = body["edges"]
        assert [(e["source"], e["target"], e["qos"], e["transport"]) for e in edges] == [
            ("camera", "detector", "REALTIME", "shm"), ("detector", "gateway", "REALTIME", "shm"),
            ("camera", "gateway", "DURABLE", "tcp")]
        assert [(e["frames"], e["drops"]) for e in edges] == [(890, 7), (850, 12), (850, 0)]
        assert all("fps" in e and e["edge"] == f"{e['source']}->{e['target']}" for e in edges)


@run_async
async def test_early_runtime_without_graph_or_edges():
    runtime = StaticRuntime("demo", stats={"nodes": {}, "edges": []}, graph={"nodes": [], "edges": []})
    async with client_for(runtime) as (client, hub):
        assert await (await client.get("/api/graph")).json() == {"app": "demo", "nodes": [], "edges": []}
        assert (await (await client.get("/api/topics")).json()) == {"topics": []}
        assert (await client.get("/metrics")).status == 200
        resp = await client.get("/video")
        assert resp.status == 404 and (await resp.json())["error"] == "no topics yet"


@run_async
async def test_a_failing_runtime_is_answered_not_crashed(caplog):
    class Broken(StaticRuntime):
        def statistics(self):
            raise RuntimeError("supervisor pipe closed")

    async with client_for(Broken("demo")) as (client, hub):
        for path in ("/api/graph", "/api/fps", "/metrics", "/api/status"):
            assert (await client.get(path)).status == 200, path
    assert sum("supervisor pipe closed" in r.getMessage() for r in caplog.records) == 1       # logged once


@run_async
async def test_metrics_parse_with_consistent_names_and_labels():
    graph, stats = graph_and_stats()
    async with client_for(StaticRuntime("demo", graph=graph, stats=stats)) as (client, hub):
        hub.publish(frame(1, "detector"))
        resp = await client.get("/metrics")
        assert resp.status == 200 and resp.content_type == "text/plain"
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}

    def samples(name: str) -> dict:
        return {tuple(sorted(s.labels.items())): s.value
                for f in families.values() for s in f.samples if s.name == name}

    assert families["edgeflow_node_frames_in"].type == "counter"
    assert samples("edgeflow_node_frames_in_total")[(("node", "detector"),)] == 890
    assert samples("edgeflow_node_restarts_total")[(("node", "detector"),)] == 2
    drops = samples("edgeflow_node_drops_total")
    assert drops[(("node", "detector"), ("reason", "skipped"))] == 7
    assert drops[(("node", "detector"), ("reason", "error"))] == 3
    assert samples("edgeflow_node_fps")[(("node", "camera"),)] == 30.0
    replicas = samples("edgeflow_node_replicas")
    assert replicas[(("node", "detector"), ("state", "restarting"))] == 1
    for name in ("edgeflow_node_processing_seconds", "edgeflow_node_latency_seconds"):
        assert families[name].type == "histogram"        # tests/gateway/test_metrics_histograms.py: values
    assert samples("edgeflow_node_latency_seconds_bucket")[(("le", "+Inf"), ("node", "gateway"))] == 0
    edge = (("edge", "detector->gateway"),)
    assert samples("edgeflow_edge_frames_total")[edge] == 850
    assert samples("edgeflow_edge_drops_total")[edge] == 12
    info = {s.labels["edge"]: s.labels for s in families["edgeflow_edge_info"].samples}
    assert info["camera->gateway"]["transport"] == "tcp" and info["camera->gateway"]["qos"] == "DURABLE"
    assert samples("edgeflow_topic_frames_total")[(("topic", "detector"),)] == 1
    assert samples("edgeflow_topic_jpeg_encodes_total")[(("topic", "detector"),)] == 0   # nobody watched
    assert samples("edgeflow_gateway_ready")[(("app", "demo"), ("node", "gateway"))] == 1
    # every series of a node family carries the node label, every edge family the edge label
    for name, family in families.items():
        for sample in family.samples:
            if name.startswith("edgeflow_node_"):
                assert "node" in sample.labels
            if name.startswith("edgeflow_edge"):
                assert "edge" in sample.labels
            if name.startswith("edgeflow_topic_"):
                assert "topic" in sample.labels


@run_async
async def test_bad_routes_and_parameters_answer_json_errors():
    async with client_for() as (client, hub):
        hub.publish(frame(1, "camera"))
        cases = {
            "/nope": 404, "/api/topics/nope": 404, "/video/nope": 404, "/ws/video/nope": 404,
            "/snapshot/nope": 404, "/video/" + "x" * 5000: 404,
            "/video/camera?width=abc": 400, "/video/camera?width=0": 400, "/video/camera?width=99999": 400,
            "/video/camera?scale=-1": 400, "/video/camera?scale=0": 400, "/video/camera?scale=nan": 400,
            "/video/camera?scale=inf": 400, "/video/camera?scale=1e400": 400,
            "/video/camera?width=320&scale=0.5": 400, "/video/camera?quality=0": 400,
            "/video/camera?quality=101": 400, "/snapshot/camera?width=1.5": 400,
        }
        for path, status in cases.items():
            resp = await client.get(path)
            assert resp.status == status, (path, resp.status)
            body = await resp.json()
            assert body["status"] == status and body["error"], path
        resp = await client.post("/api/status")
        assert resp.status == 405 and (await resp.json())["status"] == 405
        resp = await client.get("/video/camera", headers={"Range": "bytes=0-10", "Accept": "x" * 4000})
        assert resp.status == 200
        resp.close()
        assert (await client.get("/healthz")).status == 200                     # still serving


@run_async
async def test_hostile_topic_names_and_metadata_never_come_back_as_markup():
    evil = '<img src=x onerror=alert(1)>"\'&'
    async with client_for() as (client, hub):
        hub.publish(frame(1, "cam</script><script>alert(1)</script>", data=b"\x00\x01"))
        hub.publish(Frame(frame(1).data, frame_id=1, topic="camera", meta={"label": evil, evil: 1}))
        for path in ("/api/topics", "/api/topics/camera", "/video/%3Cscript%3E", "/api/status"):
            resp = await client.get(path)
            assert resp.content_type == "application/json", path
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            body = await resp.text()
            json.loads(body)
        listed = (await (await client.get("/api/topics")).json())["topics"]
        assert {t["name"] for t in listed} == {"camera", "cam</script><script>alert(1)</script>"}
        camera = next(t for t in listed if t["name"] == "camera")
        assert camera["meta"] == {"label": evil, evil: 1}                          # data, kept as text


@run_async
async def test_non_image_payloads_are_shown_as_json():
    async with client_for() as (client, hub):
        hub.publish(frame(1, "numbers", data=np.arange(4, dtype=np.int16)))
        hub.publish(frame(1, "blob", data=b'{"speed": 3.5, "ok": true}'))
        hub.publish(frame(1, "bin", data=bytes(range(10))))
        hub.publish(frame(1, "big", data=np.ones((3, 1000), np.float64)))
        hub.publish(frame(1, "nan", data=np.array([np.nan, np.inf, 1.0])))
        listed = (await (await client.get("/api/topics")).json())["topics"]
        values = {t["name"]: t.get("value") for t in listed}
        assert values["numbers"] == [0, 1, 2, 3]
        assert values["blob"] == {"speed": 3.5, "ok": True}
        assert values["bin"] == {"bytes": 10, "hex": bytes(range(10)).hex()}
        assert values["big"]["shape"] == [3, 1000] and values["big"]["mean"] == 1.0
        assert values["nan"] == [None, None, 1.0]                                  # valid JSON, never NaN
        resp = await client.get("/video/numbers")
        assert resp.status == 415 and "not images" in (await resp.json())["error"]


@run_async
async def test_token_protects_api_streams_and_custom_routes():
    web = WebInterface(port=0, token="s3cret")

    @web.route("GET", "/custom")
    def custom(request):
        return {"ok": True}

    async with client_for(interface=web) as (client, hub):
        hub.publish(frame(1, "camera"))
        protected = ["/api/status", "/api/graph", "/api/topics", "/api/fps", "/metrics", "/video/camera",
                     "/snapshot/camera", "/ws/stats", "/ws/video/camera", "/custom", "/nope"]
        for path in protected:
            resp = await client.get(path)
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        for path in ("/api/status?token=wrong", "/api/status?token="):
            assert (await client.get(path)).status == 401
        assert (await client.get("/api/status", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/api/status", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await client.get("/api/status?token=s3cret")).status == 200
        assert (await client.get("/custom?token=s3cret")).status == 200
        assert (await client.get("/snapshot/camera?token=s3cret")).status == 200
        for path in ("/healthz", "/readyz", "/health", "/dashboard", "/static/dashboard.js"):
            assert (await client.get(path)).status == 200, path


@run_async
async def test_custom_routes_sync_async_and_failing():
    web = WebInterface(port=0)

    @web.route("GET", "/hello")
    def hello(request):
        return {"hello": request.query.get("name", "world")}

    @web.route("post", "/echo")
    async def echo(request):
        return (await request.read()).upper()

    @web.route("GET", "/boom")
    def boom(request):
        raise ZeroDivisionError("oops")

    @web.route("GET", "/nothing")
    def nothing(request):
        return None

    async with client_for(interface=web) as (client, hub):
        assert await (await client.get("/hello?name=ef")).json() == {"hello": "ef"}
        assert await (await client.post("/echo", data=b"abc")).read() == b"ABC"
        resp = await client.get("/boom")
        assert resp.status == 500 and "ZeroDivisionError" in (await resp.json())["error"]
        assert (await client.get("/nothing")).status == 204
        assert (await client.get("/hello")).status == 200                        # the server goes on


def test_the_same_custom_route_twice_is_a_config_error():
    web = WebInterface(port=0)
    web.route("GET", "/mine")(lambda request: "mine")
    web.route("/mine")(lambda: "again")
    with pytest.raises(ConfigError, match="custom route GET /mine: defined twice"):
        make_app(web, StaticRuntime())


def test_unknown_or_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown WebInterface option 'jpeg_qualty'"):
        make_app(WebInterface(port=0, jpeg_qualty=50), StaticRuntime())
    with pytest.raises(ConfigError, match="jpeg_quality"):
        make_app(WebInterface(port=0, jpeg_quality=0), StaticRuntime())
