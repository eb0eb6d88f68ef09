"""MJPEG, snapshots and WebSocket streams through aiohttp's test client (issue 5): content, sizes,
encode-once, newest-only delivery, non-image payloads, disconnecting viewers."""

from __future__ import annotations

import asyncio
import json

import cv2
import numpy as np
from aiohttp import WSMsgType

from edgeflow.frame import Frame

from .helpers import (StaticRuntime, client_for, decode, frame, graph_and_stats, level_of, read_parts,
                      run_async, wait_for)


@run_async
async def test_mjpeg_frames_are_the_frames_that_were_sent():
    async with client_for() as (client, hub):
        hub.publish(frame(1))
        resp = await client.get("/video/camera")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=edgeflowframe"
        assert "no-cache" in resp.headers["Cache-Control"]
        for n in range(1, 6):
            if n > 1:
                hub.publish(frame(n))
            [(headers, jpeg)] = await read_parts(resp, 1)
            img = decode(jpeg)
            assert img.shape == (240, 320, 3)                              # native size by default
            assert level_of(img) == n % 16 and headers["X-Frame-Id"] == str(n)
        resp.close()


@run_async
async def test_width_scale_and_quality_parameters():
    async with client_for() as (client, hub):
        hub.publish(frame(1, width=640, height=480))
        sizes = {}
        for query in ("", "?width=320", "?scale=0.25", "?width=100", "?scale=2", "?quality=20"):
            resp = await client.get("/snapshot/camera" + query)
            assert resp.status == 200 and resp.content_type == "image/jpeg", query
            jpeg = await resp.read()
            sizes[query] = (decode(jpeg).shape[:2], len(jpeg))
        assert sizes[""][0] == (480, 640) and sizes["?width=320"][0] == (240, 320)
        assert sizes["?scale=0.25"][0] == (120, 160) and sizes["?width=100"][0] == (75, 100)
        assert sizes["?scale=2"][0] == (960, 1280)
        assert sizes["?quality=20"][1] < sizes[""][1]
        assert hub.topic("camera").encodes == 6                          # one per frame and variant
        resp = await client.get("/video/camera?width=160")
        [(_, jpeg)] = await read_parts(resp, 1)
        assert decode(jpeg).shape[:2] == (120, 160)
        resp.close()


@run_async
async def test_many_viewers_one_encode_per_frame():
    async with client_for() as (client, hub):
        hub.publish(frame(1))
        viewers = [await client.get("/video/camera") for _ in range(3)]
        sockets = [await client.ws_connect("/ws/video/camera") for _ in range(2)]
        topic = hub.topic("camera")
        await wait_for(lambda: sum(topic.viewers.values()) == 5)
        for n in range(1, 11):
            if n > 1:
                hub.publish(frame(n))
            for resp in viewers:
                [(headers, jpeg)] = await read_parts(resp, 1)
                assert headers["X-Frame-Id"] == str(n) and level_of(decode(jpeg)) == n % 16
            for ws in sockets:
                msg = await ws.receive(timeout=5)
                assert msg.type == WSMsgType.BINARY and level_of(decode(msg.data)) == n % 16
        assert topic.encodes == 10 and topic.sent == 50
        for resp in viewers:
            resp.close()
        for ws in sockets:
            await ws.close()
        await wait_for(lambda: sum(topic.viewers.values()) == 0)


@run_async
async def test_nothing_is_encoded_while_nobody_watches():
    async with client_for() as (client, hub):
        for n in range(1, 31):
            hub.publish(frame(n))
        topic = hub.topic("camera")
        assert topic.frames == 30 and topic.encodes == 0
        resp = await client.get("/video/camera")
        await read_parts(resp, 1)
        resp.close()
        await wait_for(lambda: sum(topic.viewers.values()) == 0)
        before = topic.encodes
        for n in range(31, 61):
            hub.publish(frame(n))
        await asyncio.sleep(0.1)
        assert topic.encodes == before == 1


@run_async
async def test_a_slow_viewer_gets_the_newest_frame_never_a_queue():
    async with client_for() as (client, hub):
        hub.publish(frame(1))
        resp = await client.get("/video/camera")
        [(headers, _)] = await read_parts(resp, 1)
        assert headers["X-Frame-Id"] == "1"
        for n in range(2, 21):                      # the viewer's loop cannot run meanwhile: it is "slow"
            hub.publish(frame(n))
        [(headers, jpeg)] = await read_parts(resp, 1)
        assert headers["X-Frame-Id"] == "20" and level_of(decode(jpeg)) == 20 % 16
        topic = hub.topic("camera")
        assert topic.skipped == 18 and topic.encodes == 2
        resp.close()


@run_async
async def test_video_without_topic_serves_the_first_or_the_named_one():
    graph, stats = graph_and_stats()
    async with client_for(StaticRuntime("demo", graph=graph, stats=stats)) as (client, hub):
        hub.publish(frame(3, "detector"))
        hub.publish(frame(5, "camera"))
        for path, fid in (("/video", "5"), ("/video?topic=detector", "3")):
            resp = await client.get(path)
            [(headers, _)] = await read_parts(resp, 1)
            assert headers["X-Frame-Id"] == fid, path
            resp.close()


@run_async
async def test_a_viewer_may_connect_before_the_first_frame_of_an_announced_topic():
    graph, stats = graph_and_stats()
    async with client_for(StaticRuntime("demo", graph=graph, stats=stats)) as (client, hub):
        snapshot = asyncio.ensure_future(client.get("/snapshot/detector"))
        resp = await client.get("/video/camera")
        assert resp.status == 200
        await asyncio.sleep(0.05)
        hub.publish(frame(7, "camera"))
        hub.publish(frame(8, "detector"))
        [(headers, _)] = await read_parts(resp, 1)
        assert headers["X-Frame-Id"] == "7"
        assert (await snapshot).headers["X-Frame-Id"] == "8"
        resp.close()


@run_async
async def test_disconnecting_viewers_leave_the_server_serving():
    async with client_for() as (client, hub):
        topic = hub.topic("camera", create=True)
        hub.publish(frame(1))
        for _ in range(5):
            resp = await client.get("/video/camera")
            await resp.content.read(100)            # mid-part
            resp.close()
            ws = await client.ws_connect("/ws/video/camera")
            await ws.receive(timeout=5)
            await ws.close()
        for n in range(2, 5):
            hub.publish(frame(n))
            await asyncio.sleep(0.02)
        await wait_for(lambda: sum(topic.viewers.values()) == 0)
        resp = await client.get("/video/camera")
        [(headers, _)] = await read_parts(resp, 1)
        assert headers["X-Frame-Id"] == "4"
        resp.close()


@run_async
async def test_ws_video_sends_jpeg_for_images_and_json_for_data():
    async with client_for() as (client, hub):
        hub.publish(frame(1, "mixed"))
        ws = await client.ws_connect("/ws/video/mixed?width=64")
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.BINARY and decode(msg.data).shape[:2] == (48, 64)
        hub.publish(Frame(np.array([1.5, 2.5]), frame_id=2, topic="mixed", meta={"unit": "m"}))
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.TEXT
        body = json.loads(msg.data)
        assert body["type"] == "data" and body["value"] == [1.5, 2.5] and body["meta"] == {"unit": "m"}
        await ws.send_str("hello?")                  # clients have nothing to say; it is ignored
        hub.publish(frame(3, "mixed"))
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.BINARY and level_of(decode(msg.data)) == 3
        await ws.close()


@run_async
async def test_ws_stats_pushes_live_statistics():
    graph, stats = graph_and_stats()
    runtime = StaticRuntime("demo", graph=graph, stats=stats)
    async with client_for(runtime) as (client, hub):
        hub.publish(frame(1, "camera"))
        ws = await client.ws_connect("/ws/stats")
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["type"] == "stats" and first["app"] == "demo"
        assert [n["name"] for n in first["nodes"]] == ["camera", "detector", "gateway"]
        assert first["edges"][2]["transport"] == "tcp"
        assert [t["name"] for t in first["topics"]] == ["camera", "detector"]
        camera = {**stats["nodes"]["camera"], "fps": 12.5}
        runtime.stats = {**stats, "nodes": {**stats["nodes"], "camera": camera}}
        hub.publish(frame(2, "camera"))
        second = json.loads((await ws.receive(timeout=5)).data)
        assert second["time"] > first["time"]
        assert second["nodes"][0]["fps"] == 12.5 and second["topics"][0]["frame_id"] == 2
        await ws.close()


@run_async
async def test_any_image_like_dtype_is_shown():
    ramp = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    cases = {
        "float": ramp, "float255": ramp * 255, "uint16": (ramp * 65535).astype(np.uint16),
        "bool": ramp > 0.5, "grey": (ramp * 255).astype(np.uint8),
        "one": (ramp * 255).astype(np.uint8)[:, :, None], "int32": (ramp * 255).astype(np.int32),
        "bgra": np.dstack([(ramp * 255).astype(np.uint8)] * 4), "nan": np.where(ramp > 0.5, np.nan, ramp),
        "strided": np.dstack([(ramp * 255).astype(np.uint8)] * 3)[::2, ::2],
    }
    async with client_for() as (client, hub):
        for name, data in cases.items():
            hub.publish(Frame(data, frame_id=1, topic=name))
            resp = await client.get(f"/snapshot/{name}")
            assert resp.status == 200, name
            img = decode(await resp.read())
            assert img.shape[:2] == data.shape[:2], name
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[:, :, 0] = 255                                       # red, in RGB order
        hub.publish(Frame(rgb, frame_id=1, topic="rgb", meta={"color": "rgb"}))
        img = decode(await (await client.get("/snapshot/rgb")).read())
        assert img[:, :, 2].mean() > 200 and img[:, :, 0].mean() < 50      # OpenCV's BGR: red is last


@run_async
async def test_jpeg_payloads_pass_through_without_encoding():
    jpeg = cv2.imencode(".jpg", frame(9).data)[1].tobytes()
    async with client_for() as (client, hub):
        hub.publish(Frame(jpeg, frame_id=9, topic="coded"))
        info = await (await client.get("/api/topics/coded")).json()
        assert (info["kind"], info["width"], info["height"]) == ("jpeg", 320, 240)
        assert await (await client.get("/snapshot/coded")).read() == jpeg
        assert hub.topic("coded").encodes == 0
        small = decode(await (await client.get("/snapshot/coded?width=160")).read())
        assert small.shape[:2] == (120, 160) and level_of(small) == 9
        hub.publish(Frame(b"\xff\xd8\xff broken", frame_id=10, topic="coded"))
        assert (await client.get("/snapshot/coded?width=160")).status == 415      # said, not crashed
        assert (await client.get("/healthz")).status == 200
