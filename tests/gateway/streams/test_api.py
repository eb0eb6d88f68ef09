"""The stream API's HTTP side without node processes: request checking (one line naming the field), bounded
bodies, unknown ids, the token, the OpenAPI description and its docs page, ``/ws/frames`` fed by a real hub,
and /metrics's stream labels and nodes' own metrics, on aiohttp's test server or a real Server."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest
from aiohttp import WSMsgType

from edgeflow.gateway.routes import STATIC
from edgeflow.gateway.streams import schema
from edgeflow.gateway.streams.api import SERVICE
from edgeflow.nodes.gateway.interfaces.web import WebInterface

from ..helpers import StaticRuntime, client_for, decode, frame, level_of, run_async, wait_for


def seed_body(**changes) -> dict:
    """The body the seed's FastAPI clients send."""
    return {"name": "gate-3", "rtsp_url": "rtsp://10.0.0.7:8554/live", "grid_size": 16, "threshold": 1.0,
            "is_active": False, **changes}


BAD_BODIES = [   # (body, status, field or None, words in the error)
    ({"nmae": "x", "url": "u"}, 422, "nmae", "unknown field (did you mean 'name'?)"),
    ({"url": "rtsp://x"}, 422, "name", "name: required"),
    ({"name": "x"}, 422, "url", "url: required (or rtsp_url"),
    ({"name": 5, "url": "u"}, 422, "name", "name: expected a string of 1-200 characters, got 5"),
    ({"name": "", "url": "u"}, 422, "name", "got 0 characters"),
    ({"name": "x" * 201, "url": "u"}, 422, "name", "got 201 characters"),
    ({"name": "a\nb", "url": "u"}, 422, "name", "control characters"),
    ({"name": "x", "url": "u" * 2049}, 422, "url", "url: expected a string of 1-2048"),
    ({"name": "x", "url": "a", "rtsp_url": "b"}, 422, "rtsp_url", "url and rtsp_url differ"),
    ({"name": "x", "url": "u", "grid_size": 0}, 422, "grid_size", "from 1 to 4096, got 0"),
    ({"name": "x", "url": "u", "grid_size": 2.5}, 422, "grid_size", "expected an integer"),
    ({"name": "x", "url": "u", "grid_size": True}, 422, "grid_size", "expected an integer"),
    ({"name": "x", "url": "u", "threshold": "high"}, 422, "threshold", "expected a number"),
    ({"name": "x", "url": "u", "is_active": "yes"}, 422, "is_active", "expected true or false"),
    ({"name": "x", "url": "u", "params": [1]}, 422, "params", "expected a JSON object"),
    ({"name": "x", "url": "u", "params": {str(i): i for i in range(65)}}, 422, "params", "at most 64 keys"),
    ({"name": "x", "url": "u", "params": {"a": "x" * 17000}}, 422, "params", "bytes as JSON; at most 16384"),
    ({"name": "x", "url": "u", "params": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}},
     422, "params", "nested more than 8 levels"),
    ([seed_body()], 422, None, "the body must be a JSON object, got list"),
    (None, 422, None, "the body must be a JSON object, got null"),
]


@run_async
async def test_bodies_are_checked_with_one_line_naming_the_field(tmp_path):
    async with client_for(StaticRuntime("checks")) as (client, _):
        for body, status, field, words in BAD_BODIES:
            resp = await client.post("/api/streams", data=json.dumps(body),
                                     headers={"Content-Type": "application/json"})
            answer = await resp.json()
            assert resp.status == status, (body, answer)
            assert words in answer["error"] and "\n" not in answer["error"], (body, answer)
            assert answer.get("field") == field and answer["status"] == status, (body, answer)
        raw_cases = [(b"{bad", "application/json", 400, "the body is not JSON"),
                     (b"", "application/json", 400, "the body is empty"),
                     (b'{"name": "x", "url": "u", "threshold": NaN}', "application/json", 400,
                      "NaN is not JSON"),
                     (b'{"name": "x", "url": "u", "threshold": 1e999}', "application/json", 400,
                      "out of range"),
                     (b"\xff\xfe", "application/json", 400, "not UTF-8"),
                     (b"[" * 50000, "application/json", 400, "nested too deeply"),
                     (b'{"name": "\\ud800", "url": "u"}', "application/json", 422, "lone surrogate"),
                     (json.dumps(seed_body()).encode(), "text/plain", 415, "must be application/json")]
        for raw, kind, status, words in raw_cases:
            resp = await client.post("/api/streams", data=raw, headers={"Content-Type": kind})
            answer = await resp.json()
            assert resp.status == status and words in answer["error"], (raw[:40], answer)
        assert await (await client.get("/api/streams")).json() == []          # nothing was stored
        assert not (tmp_path / "state" / "checks.sqlite3").exists()          # nor a file made for nothing


@run_async
async def test_a_body_is_bounded_before_it_is_decoded():
    async with client_for(StaticRuntime("big")) as (client, _):
        huge = b'{"name": "x", "url": "' + b"u" * schema.MAX_BODY + b'"}'
        resp = await client.post("/api/streams", data=huge, headers={"Content-Type": "application/json"})
        assert resp.status == 413 and "at most 65536" in (await resp.json())["error"]

        async def chunks():                         # no Content-Length: counted while it is read
            for _ in range(20):
                yield b" " * 8192
        resp = await client.post("/api/streams", data=chunks(), headers={"Content-Type": "application/json"})
        assert resp.status == 413 and "over 65536 bytes" in (await resp.json())["error"]


@run_async
async def test_the_seeds_body_is_stored_and_answered_in_both_shapes(tmp_path):
    async with client_for(StaticRuntime("seed")) as (client, _):
        resp = await client.post("/api/streams", json=seed_body())
        created = await resp.json()
        assert resp.status == 201 and resp.headers["Location"] == f"/api/streams/{created['id']}"
        assert uuid.UUID(created["id"]).version == 4
        assert created["url"] == created["rtsp_url"] == "rtsp://10.0.0.7:8554/live"
        assert created["params"] == {"grid_size": 16, "threshold": 1.0}
        assert created["grid_size"] == 16 and created["threshold"] == 1.0
        assert created["is_active"] is False and created["worker_state"] == "stopped"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", created["created_at"])
        assert (tmp_path / "state" / "seed.sqlite3").exists()
        sid = created["id"]
        resp = await client.put(f"/api/streams/{sid}", json={"threshold": 2.5, "name": "gate-3b"})
        changed = await resp.json()
        assert resp.status == 200 and changed["params"] == {"grid_size": 16, "threshold": 2.5}
        assert changed["name"] == "gate-3b" and changed["created_at"] == created["created_at"]
        resp = await client.put(f"/api/streams/{sid}", json={"params": {"k": 1}, "url": "rtsp://other"})
        changed = await resp.json()
        assert changed["params"] == {"k": 1} and changed["grid_size"] is None
        assert changed["url"] == "rtsp://other"
        assert await (await client.get("/api/streams")).json() == [await (await client.get(
            f"/api/streams/{sid}")).json()]
        resp = await client.put(f"/api/streams/{sid}", json={"nmae": "x"})
        assert resp.status == 422 and (await resp.json())["field"] == "nmae"
        # this runtime runs no streams: activation is refused with a reason, and nothing changes
        for path in (f"/api/streams/{sid}/activate", "/api/streams"):
            resp = await client.post(path, json=seed_body(is_active=True) if path == "/api/streams" else None)
            answer = await resp.json()
            assert resp.status == 501 and "runs no streams" in answer["error"], answer
        assert [s["id"] for s in await (await client.get("/api/streams")).json()] == [sid]
        assert (await (await client.post(f"/api/streams/{sid}/deactivate")).json())["is_active"] is False
        resp = await client.delete(f"/api/streams/{sid}")
        assert resp.status == 200 and await resp.json() == {"id": sid, "deleted": True}
        assert await (await client.get("/api/streams")).json() == []


@run_async
async def test_unknown_ids_answer_404(tmp_path):
    async with client_for(StaticRuntime("ids")) as (client, _):
        for method in ("GET", "PUT", "DELETE"):
            resp = await client.request(method, f"/api/streams/{uuid.uuid4()}", json={"name": "x"})
            assert resp.status == 404
        assert not (tmp_path / "state" / "ids.sqlite3").exists()            # no store made for nothing
        await client.post("/api/streams", json=seed_body())              # a store with something in it
        service = client.app[SERVICE]
        for sid in (str(uuid.uuid4()), "not-a-uuid", "x" * 300):
            for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/activate"),
                                 ("POST", "/deactivate")):
                resp = await client.request(method, f"/api/streams/{sid}{path}",
                                            json={"name": "x"} if method == "PUT" else None)
                answer = await resp.json()
                assert resp.status == 404 and answer["error"].startswith("unknown stream"), (method, path)
        stored = {s["id"] for s in await (await client.get("/api/streams")).json()}
        assert set(service._locks) <= stored, "no lock kept for an id nobody stored"
        resp = await client.get("/ws/frames", params={"stream_id": str(uuid.uuid4())})
        assert resp.status == 404
        resp = await client.get("/ws/frames")
        assert resp.status == 400 and "stream_id is required" in (await resp.json())["error"]


@run_async
async def test_the_token_guards_the_api_but_not_health_nor_the_description():
    interface = WebInterface(port=0, token="s3cret")
    async with client_for(StaticRuntime("tok"), interface=interface) as (client, _):
        one = f"/api/streams/{uuid.uuid4()}"
        for method, path in (("GET", "/api/streams"), ("POST", "/api/streams"), ("PUT", one), ("DELETE", one),
                             ("GET", "/ws/frames?stream_id=x"), ("POST", f"{one}/activate")):
            resp = await client.request(method, path, json=seed_body() if method != "GET" else None)
            assert resp.status == 401, (method, path)
        for path in ("/health", "/api/openapi.json", "/api/docs", "/static/apidocs.js", "/static/streams.js"):
            assert (await client.get(path)).status == 200, path
        resp = await client.post("/api/streams", json=seed_body(), headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 201
        resp = await client.get("/api/streams?token=s3cret")
        assert resp.status == 200 and len(await resp.json()) == 1
        assert await (await client.get("/health")).json() == {"status": "ok"}     # unchanged


@run_async
async def test_the_description_is_the_schema_the_server_checks():
    async with client_for(StaticRuntime("doc")) as (client, _):
        resp = await client.get("/api/openapi.json")
        doc = await resp.json()
        assert resp.status == 200 and doc["openapi"] == "3.0.3"
        assert doc == json.loads(json.dumps(schema.openapi(doc["info"]["version"])))
        create = doc["components"]["schemas"]["StreamCreate"]
        assert create["properties"]["name"]["maxLength"] == schema.MAX_NAME
        assert create["additionalProperties"] is False and "x-anyOf-error" not in create
        ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m != "parameters"}
        assert ops == {("GET", "/health"), ("GET", "/api/streams"), ("POST", "/api/streams"),
                       ("GET", "/api/streams/{id}"), ("PUT", "/api/streams/{id}"),
                       ("DELETE", "/api/streams/{id}"), ("POST", "/api/streams/{id}/activate"),
                       ("POST", "/api/streams/{id}/deactivate")}
        for path, item in doc["paths"].items():                  # every route it names is served
            for method in item:
                if method != "parameters":
                    resp = await client.request(method, path.replace("{id}", str(uuid.uuid4())),
                                                json={} if method in ("put", "post") else None)
                    assert resp.status < 500 and resp.status != 405, (method, path, resp.status)
        # its own example is accepted by its own checker
        schema.validate(schema.STREAM_CREATE, create["example"])
        page = await client.get("/api/docs")
        html = await page.text()
        assert page.status == 200 and "/static/apidocs.js" in html and "http" not in html.replace(
            'http-equiv', '')                                     # no CDN: nothing loaded from elsewhere
        assert "https://" not in (STATIC / "apidocs.js").read_text()


# -- /ws/frames with a real hub ------------------------------------------------------------------------------
class StreamsRuntime(StaticRuntime):
    """A runtime stand-in whose statistics say which streams run (the hub is fed by the test)."""

    def __init__(self, app: str) -> None:
        super().__init__(app, stats={"app": app, "nodes": {}, "edges": [], "streams": {}})

    def run(self, stream_id: str, topic: str, threshold: float) -> None:
        nodes = [f"stream-{stream_id}-source", f"stream-{stream_id}-annotate"]
        self.stats["streams"][stream_id] = {"state": "running", "started_at": 1.7e9, "nodes": nodes,
                                            "topics": [topic], "source_state": "live", "fps": 12.5}
        self.stats["nodes"][nodes[1]] = {"fps": 12.5, "frames_in": 3, "frames_out": 3, "stream_id": stream_id,
                                         "extra": {"user_metrics": {"gauges": {"flow_avg": threshold},
                                                                    "counters": {"flow_total": 3}}}}

    def stop(self, stream_id: str) -> None:
        self.stats["streams"].pop(stream_id, None)


@pytest.mark.slow
@run_async
async def test_ws_frames_sends_the_streams_jpegs_and_metrics_every_second():
    runtime = StreamsRuntime("ws")
    interface = WebInterface(port=0, stats_interval=5.0)           # metrics still come once a second
    async with client_for(runtime, interface=interface) as (client, hub):
        sid = (await (await client.post("/api/streams", json=seed_body())).json())["id"]
        other = (await (await client.post("/api/streams", json=seed_body(name="other"))).json())["id"]
        ws = await client.ws_connect(f"/ws/frames?stream_id={sid}")
        first = await ws.receive(timeout=5)
        assert first.type == WSMsgType.TEXT and json.loads(first.data)["worker_state"] == "stopped"
        runtime.run(sid, f"stream-{sid}-annotate", 1.5)
        runtime.run(other, f"stream-{other}-annotate", 9.0)
        images, metrics = [], []
        n = 0
        while len(images) < 5:
            n += 1
            hub.publish(frame(n, topic=f"stream-{sid}-annotate"))
            # another stream's frames (smaller): never sent on this socket
            hub.publish(frame(n + 7, topic=f"stream-{other}-annotate", width=64, height=48))
            msg = await ws.receive(timeout=5)
            if msg.type == WSMsgType.BINARY:
                img = decode(msg.data)
                images.append((img.shape, level_of(img)))
            else:
                metrics.append(json.loads(msg.data))
            await asyncio.sleep(0.05)
        assert all(shape == (240, 320, 3) for shape, _ in images)
        assert all(level in {i % 16 for i in range(1, n + 1)} for _, level in images)
        timed = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < 2.2:                         # metrics at least once a second
            msg = await ws.receive(timeout=1.5)
            if msg.type == WSMsgType.TEXT:
                timed.append(json.loads(msg.data))
        assert len(timed) >= 2
        last = timed[-1]
        assert last["type"] == "metrics" and last["stream_id"] == sid and last["worker_state"] == "running"
        assert last["fps"] == 12.5 and last["source_state"] == "live"
        assert last["user_metrics"] == {"gauges": {"flow_avg": 1.5}, "counters": {"flow_total": 3}}
        assert last["nodes"][f"stream-{sid}-annotate"]["user_metrics"]["gauges"] == {"flow_avg": 1.5}
        topic = hub.topic(f"stream-{sid}-annotate")
        assert topic.viewers["ws"] == 1 and hub.topic(f"stream-{other}-annotate").viewers["ws"] == 0
        runtime.stop(sid)                                        # deactivated: the socket stays, says so
        await wait_for(lambda: topic.viewers["ws"] == 0)
        while True:
            msg = await ws.receive(timeout=2)
            if msg.type == WSMsgType.TEXT and json.loads(msg.data)["worker_state"] == "stopped":
                break
        await ws.close()


# -- /metrics ------------------------------------------------------------------------------------------------
def parse_metrics(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


@run_async
async def test_metrics_label_a_streams_series_and_export_nodes_own_metrics():
    sid = str(uuid.uuid4())
    src, worker = f"stream-{sid}-source", f"stream-{sid}-annotate"
    stats = {"app": "m", "nodes": {
        "camera": {"fps": 30.0, "frames_out": 10, "extra": {"user_metrics": {"gauges": {"lens_temp": 41.0},
                                                                          "counters": {}}}},
        src: {"fps": 15.0, "frames_out": 20, "stream_id": sid},
        worker: {"fps": 14.0, "frames_in": 19, "stream_id": sid, "extra": {"user_metrics": {
            "gauges": {"vector_flow_magnitude_avg": 1.5, "edgeflow_node_fps": 3.0, "bad name": 1.0},
            "counters": {"vector_flow_frames_processed_total": 19, "lens_temp": 2}}}},
        "gateway": {"fps": 44.0}},
        "edges": [{"source": src, "target": worker, "frames": 19, "drops": 1},
                  {"source": worker, "target": "gateway", "frames": 18, "drops": 0},
                  {"source": "camera", "target": "gateway", "frames": 10, "drops": 0}],
        "streams": {sid: {"state": "running", "fps": 14.0, "nodes": [src, worker], "topics": [worker]}}}
    async with client_for(StaticRuntime("m", stats=stats)) as (client, _):
        await client.post("/api/streams", json=seed_body())
        await client.post("/api/streams", json=seed_body(name="b"))
        got = parse_metrics(await (await client.get("/metrics")).text())

    def value(name, **labels):
        return got.get((name, frozenset(labels.items())))

    assert value("edgeflow_node_fps", node=worker, stream_id=sid) == 14.0
    assert value("edgeflow_node_frames_out_total", node=src, stream_id=sid) == 20
    assert value("edgeflow_node_fps", node="camera") == 30.0                 # others keep their labels
    assert value("edgeflow_node_processing_seconds_count", node=worker, stream_id=sid) == 0
    assert value("edgeflow_edge_frames_total", edge=f"{worker}->gateway", stream_id=sid) == 18
    assert value("edgeflow_edge_frames_total", edge="camera->gateway") == 10
    assert value("vector_flow_magnitude_avg", node=worker, stream_id=sid) == 1.5
    assert value("vector_flow_frames_processed_total", node=worker, stream_id=sid) == 19
    assert value("lens_temp", node="camera") == 41.0                           # a gauge, first come
    assert not any(name in ("lens_temp_total", "bad name") for name, _ in got)
    assert sum(1 for name, _ in got if name == "edgeflow_node_fps") == 4       # the user's one left out
    assert value("edgeflow_streams_total") == 2 and value("edgeflow_streams_active") == 0
    assert value("edgeflow_stream_fps", stream_id=sid) == 14.0
    assert value("edgeflow_stream_state", stream_id=sid, state="running") == 1


@pytest.mark.parametrize("name", ["streams.js", "apidocs.js", "apidocs.css", "apidocs.html"])
def test_the_pages_write_no_markup_from_the_server(name):
    text = (STATIC / name).read_text()
    assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text
