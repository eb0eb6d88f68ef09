"""Issue 11: dict and list messages (a frame's data a dict or list with numpy arrays nested in it) never crash
the gateway: no video encoding for them, and the newest one's JSON-able summary in /api/topics, the WebSocket
video feed and the stats feed (arrays as {"dtype", "shape"})."""

from __future__ import annotations

import json

import numpy as np

from edgeflow.frame import Frame
from edgeflow.gateway.hub import MAX_VALUE_ITEMS, classify, data_value

from .helpers import client_for, run_async

SCAN = {"ranges": np.linspace(0.5, 8.0, 360).astype(np.float32), "scan": 7, "ok": True,
        "pose": {"xyz": np.zeros(3), "frame": "map"}, "hits": [np.ones((2, 2), np.uint8), 1.5, None],
        "nan": float("nan"), "stamp": np.float64(1.25)}
SUMMARY = {"ranges": {"dtype": "float32", "shape": [360]}, "scan": 7, "ok": True,
           "pose": {"xyz": {"dtype": "float64", "shape": [3]}, "frame": "map"},
           "hits": [{"dtype": "uint8", "shape": [2, 2]}, 1.5, None], "nan": None, "stamp": 1.25}


def test_a_message_is_data_with_its_arrays_summarised():
    assert classify(SCAN)[0] == "data" and classify([1, 2])[0] == "data"
    assert data_value(SCAN) == SUMMARY
    json.dumps(data_value(SCAN), allow_nan=False)
    big = data_value({"items": list(range(MAX_VALUE_ITEMS + 5))})
    assert len(big["items"]) == MAX_VALUE_ITEMS + 1 and big["items"][-1] == {"more": 5}
    deep: dict = {}
    cursor = deep
    for _ in range(20):
        cursor["next"] = {}
        cursor = cursor["next"]
    json.dumps(data_value(deep))                                      # bounded depth, still JSON


@run_async
async def test_the_api_the_streams_and_the_stats_show_a_message():
    async with client_for() as (client, hub):
        hub.publish(Frame(SCAN, frame_id=3, topic="lidar"))
        hub.publish(Frame([{"id": 1, "box": np.arange(4)}], frame_id=4, topic="detections"))
        body = await (await client.get("/api/topics")).json()
        topics = {t["name"]: t for t in body["topics"]}
        assert topics["lidar"]["kind"] == "data" and topics["lidar"]["value"] == SUMMARY
        assert topics["detections"]["value"] == [{"id": 1, "box": {"dtype": "int64", "shape": [4]}}]
        resp = await client.get("/video/lidar")
        assert resp.status == 415                                     # nothing to encode
        ws = await client.ws_connect("/ws/video/lidar")
        msg = await ws.receive_json(timeout=5)
        assert msg["type"] == "data" and msg["value"] == SUMMARY and msg["frame_id"] == 3
        await ws.close()
        stats = await client.ws_connect("/ws/stats")
        msg = await stats.receive_json(timeout=5)
        assert {t["name"]: t for t in msg["topics"]}["lidar"]["value"] == SUMMARY
        await stats.close()
        assert hub.topic("lidar").encodes == 0
