"""Issue 11: custom routes in both styles, today's ``@web.route("GET", "/hello")`` and the original's
``@web.route("/hello", methods=[...])`` / main2.py's ``@web.route("/api/status")`` on ``async def status()``;
handlers with or without a request, sync or async, returning dict/list, str, bytes or a Response."""

from __future__ import annotations

import threading

from aiohttp import web as aioweb

from edgeflow.nodes.gateway import WebInterface

from .helpers import client_for, run_async


@run_async
async def test_the_originals_main2_status_route_replaces_the_builtin_one():
    web = WebInterface(port=0)
    clients = {1, 2}

    @web.route("/api/status")
    async def status():
        return {"fusion": "active", "clients": len(clients)}

    async with client_for(interface=web) as (client, hub):
        resp = await client.get("/api/status")
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.json() == {"fusion": "active", "clients": 2}
        assert (await client.get("/api/topics")).status == 200          # the other built-ins stay


@run_async
async def test_every_route_form_and_return_type():
    web = WebInterface(port=0)
    threads = {}

    @web.route("/hello", methods=["GET"])
    def hello():                                      # sync, no request: runs in a worker thread
        threads["hello"] = threading.current_thread()
        return "hi"

    @web.route("/both", methods=["GET", "POST"])
    async def both(request):
        return [request.method]

    @web.route("/bin", ["GET"])
    def binary():
        return b"\x00\x01"

    @web.route("GET", "/resp")
    async def resp(request):
        return aioweb.Response(text="made", status=201)

    @web.route("/items/{item_id}")
    async def item(item_id: int, q: str = "none"):     # FastAPI style: path and query parameters by name
        return {"item_id": item_id, "q": q}

    @web.route("post", "/echo")
    def echo(request: aioweb.Request):
        return {"path": request.path}

    async with client_for(interface=web) as (client, hub):
        r = await client.get("/hello")
        assert r.status == 200 and r.content_type == "text/plain" and await r.text() == "hi"
        assert threads["hello"] is not threading.main_thread()
        assert await (await client.get("/both")).json() == ["GET"]
        assert await (await client.post("/both")).json() == ["POST"]
        r = await client.get("/bin")
        assert r.content_type == "application/octet-stream" and await r.read() == b"\x00\x01"
        r = await client.get("/resp")
        assert r.status == 201 and await r.text() == "made"
        assert await (await client.get("/items/7?q=x")).json() == {"item_id": 7, "q": "x"}
        assert await (await client.get("/items/7")).json() == {"item_id": 7, "q": "none"}
        r = await client.get("/items/seven")
        assert r.status == 400 and (await r.json())["parameter"] == "item_id"
        assert await (await client.post("/echo")).json() == {"path": "/echo"}
        assert (await client.post("/hello")).status == 405               # GET only


def test_route_argument_forms_are_recorded():
    web = WebInterface(port=0)
    web.route("/a")(print)
    web.route("/b", methods=["get", "post"])(print)
    web.route("put", "/c")(print)
    assert [(m, p) for m, p, _ in web.routes] == [("GET", "/a"), ("GET", "/b"), ("POST", "/b"), ("PUT", "/c")]
