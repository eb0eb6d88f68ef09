"""Issue 16, section 3: the gateway's ``/api/lineage/{topic}/{frame_id}`` and the dashboard's lineage view.

The first tests write frames into real rings of this process (shm.Publisher) the way nodes do (meta with
``edgeflow.trace`` and ``edgeflow.parents``) and ask aiohttp's test server about them: the tree, missing and
shared ancestors, replicas told apart, the bounds, the errors. The others run a real app (camera -> detector with
2 replicas -> gateway, its own processes, a token) and check the chain of a frame the gateway shows against what
the nodes put in their outputs, the 404 for a frame its ring no longer holds, the token, and a headless Chromium
that clicks the detector's video and reads the lineage tree the page drew.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgeflow.frame import Frame
from edgeflow.gateway import lineage
from edgeflow.transport import shm

from .browser import INSTALL, chromium, find_chromium, open_page
from .helpers import StaticRuntime, client_for, free_port, run_async

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_733_600_000_000_000           # µs: the hops' clock in the synthetic frames


def graph(detectors: int = 2) -> dict:
    """camera -> detector (replicas) -> gateway, plus lidar -> fusion <- detector."""
    return {"nodes": [{"name": "camera", "type": "producer", "replicas": 1},
                      {"name": "lidar", "type": "producer", "replicas": 1},
                      {"name": "detector", "type": "consumer", "replicas": detectors},
                      {"name": "fusion", "type": "fusion", "replicas": 1},
                      {"name": "gateway", "type": "gateway", "replicas": 1}],
            "edges": [{"source": "camera", "target": "detector", "channel": None},
                      {"source": "detector", "target": "fusion", "channel": None},
                      {"source": "lidar", "target": "fusion", "channel": None},
                      {"source": "fusion", "target": "gateway", "channel": None},
                      {"source": "detector", "target": "gateway", "channel": None}]}


def hop(node: str, at_ms: float, took_ms: float) -> list:
    return [node, T0 + int(at_ms * 1000), T0 + int((at_ms + took_ms) * 1000)]


def test_the_app_s_rings_come_from_its_graph():
    rings, labels = lineage.rings_of(graph())
    assert rings == {"camera": "camera", "lidar": "lidar", "detector.r0": "detector", "detector.r1": "detector",
                     "fusion": "fusion"}                                  # the gateway writes no ring
    assert labels["detector"] == ["detector.r0", "detector.r1"] and labels["camera"] == ["camera"]
    channelled = {"nodes": [{"name": "cam", "type": "producer", "replicas": 2}],
                  "edges": [{"source": "cam", "target": "x", "channel": "left"}]}
    assert lineage.rings_of(channelled)[1] == {"cam": ["cam.r0", "cam.r1"], "cam.left": ["cam.left.r0", "cam.left.r1"]}


@run_async
async def test_the_tree_of_a_fused_frame_follows_every_parent_and_marks_what_is_gone(app):
    with shm.Publisher("camera", app=app, slots=4) as camera, shm.Publisher("lidar", app=app) as lidar, \
            shm.Publisher("detector.r0", app=app) as det0, shm.Publisher("detector.r1", app=app) as det1, \
            shm.Publisher("fusion", app=app) as fusion:
        cam_hop = hop("camera", 0, 1)
        for n in range(1, 4):
            camera.publish(np.zeros(4, np.uint8), timestamp=100.0 + n, meta={"edgeflow.trace": [cam_hop]})
        lid_hop = hop("lidar", 2, 0.5)
        lidar.publish(b"scan", timestamp=200.0, meta={"edgeflow.trace": [lid_hop]})
        det_hop = hop("detector", 3, 10)
        # both replicas have a frame 1: r1's came from camera frame 3, r0's from frame 2
        det0.publish(b"d", timestamp=102.0, meta={"edgeflow.trace": [cam_hop, hop("detector", 2, 5)],
                                                  "edgeflow.parents": [["camera", 2]]})
        det1.publish(b"d", timestamp=103.0, meta={"edgeflow.trace": [cam_hop, det_hop],
                                                  "edgeflow.parents": [["camera", 3]], "edgeflow.origin": ["camera", 3]})
        fused = {"edgeflow.trace": [cam_hop, det_hop, hop("fusion", 14, 2)],
                 "edgeflow.parents": [["detector.r1", 1], ["lidar", 1], ["detector.r1", 1], ["camera", 1]]}
        fusion.publish(b"f", timestamp=103.0, meta=fused)
        for n in range(4, 8):            # camera frame 1 leaves its ring of 4 slots (2 and 3 too)
            camera.publish(np.zeros(4, np.uint8), timestamp=100.0 + n, meta={"edgeflow.trace": [cam_hop]})
        camera.publish(np.zeros(4, np.uint8), timestamp=0.0)
        runtime = StaticRuntime(app, graph=graph())
        async with client_for(runtime) as (client, hub):
            resp = await client.get("/api/lineage/fusion/1")
            assert resp.status == 200, await resp.text()
            tree = await resp.json()
            assert (tree["app"], tree["topic"], tree["frame_id"], tree["node"], tree["timestamp"]) == \
                (app, "fusion", 1, "fusion", 103.0)
            assert tree["missing"] is False and tree["source"] == "ring" and tree["truncated"] is False
            assert [h["node"] for h in tree["hops"]] == ["camera", "detector", "fusion"]
            assert [h["ms"] for h in tree["hops"]] == [1.0, 10.0, 2.0]            # in each node
            assert [h["wait_ms"] for h in tree["hops"]] == [None, 2.0, 1.0]        # since the previous send
            assert (tree["processing_ms"], tree["received_us"], tree["sent_us"]) == (2.0, T0 + 14000, T0 + 16000)
            assert tree["age_ms"] == round((T0 + 16000 - 103.0 * 1e6) / 1000, 3)
            det, lid, again, cam = tree["parents"]
            assert (det["topic"], det["frame_id"], det["node"], det["missing"]) == ("detector.r1", 1, "detector", False)
            assert [h["node"] for h in det["hops"]] == ["camera", "detector"]
            assert det["processing_ms"] == 10.0 and det["link_ms"] == 1.0   # fusion got it 1 ms after its send
            (det_parent,) = det["parents"]
            assert det_parent == {"topic": "camera", "frame_id": 3, "node": "camera", "missing": True}
            assert lid["node"] == "lidar" and lid["timestamp"] == 200.0 and lid["parents"] == []
            assert lid["hops"][0]["received_us"] == lid_hop[1] and lid["hops"][0]["sent_us"] == lid_hop[2]
            assert lid["link_ms"] == 11.5                                   # sent at 2.5 ms, fused from 14 ms
            assert again == {"topic": "detector.r1", "frame_id": 1, "node": "detector", "seen": True}
            assert cam == {"topic": "camera", "frame_id": 1, "node": "camera", "missing": True}

            # a node with replicas: its name finds the frame in either ring, the last hop's send time picks one
            resp = await client.get("/api/lineage/detector/1")
            assert resp.status == 409 and set((await resp.json())["candidates"]) == {"detector.r0", "detector.r1"}
            one = await (await client.get(f"/api/lineage/detector/1?sent_us={det_hop[2]}")).json()
            assert one["topic"] == "detector.r1" and one["origin"] == ["camera", 3]
            # ... and without a hint the frame the gateway shows for that topic does
            hub.publish(Frame(b"d", frame_id=1, topic="detector", timestamp=102.0,
                              meta={"edgeflow.trace": [cam_hop, hop("detector", 2, 5)],
                                    "edgeflow.parents": [["camera", 2]]}))
            shown = await (await client.get("/api/lineage/detector/1")).json()
            assert shown["topic"] == "detector.r0" and shown["parents"][0]["frame_id"] == 2
            # a frame the gateway shows but no ring holds any more (its copy, with a play-out buffer) answers too
            hub.publish(Frame(b"d", frame_id=5, topic="detector", timestamp=9.0,
                              meta={"edgeflow.trace": [lid_hop, hop("detector", 30, 1)],
                                    "edgeflow.parents": [["lidar", 1]]}))
            copy = await (await client.get("/api/lineage/detector/5")).json()
            assert (copy["source"], copy["topic"], copy["node"], copy["timestamp"]) == ("gateway", "detector",
                                                                                        "detector", 9.0)
            assert copy["parents"][0]["node"] == "lidar" and copy["parents"][0]["missing"] is False
            assert (await client.get("/api/lineage/detector/5?sent_us=1")).status == 404   # not that one

            for path, status in (("/api/lineage/detector.r1/2", 404), ("/api/lineage/gateway/1", 404),
                                 ("/api/lineage/nosuch/1", 404), ("/api/lineage/camera/0", 400),
                                 ("/api/lineage/camera/x1", 400), ("/api/lineage/camera/99999999999999999999", 400),
                                 ("/api/lineage/.camera/1", 400), ("/api/lineage/" + "c" * 101 + "/1", 400),
                                 ("/api/lineage/camera/1?sent_us=-3", 400)):
                resp = await client.get(path)
                assert resp.status == status, path
                assert resp.content_type == "application/json" and (await resp.json())["status"] == status, path
            gone = await (await client.get("/api/lineage/camera/2")).json()
            assert gone["missing"] is True and "no longer in its ring" in gone["error"]
            unknown = await (await client.get("/api/lineage/nosuch/1")).json()
            assert "detector.r0" in unknown["topics"] and "gateway" not in unknown["topics"]


@run_async
async def test_a_long_chain_is_cut_at_the_bounds(app):
    nodes = [{"name": f"n{i}", "type": "consumer", "replicas": 1} for i in range(80)]
    with shm.Publisher("n0", app=app) as first:
        pubs = [first]
        try:
            first.publish(b"x", meta={"edgeflow.trace": [hop("n0", 0, 1)]})
            for i in range(1, 80):
                pubs.append(shm.Publisher(f"n{i}", app=app))
                pubs[-1].publish(b"x", meta={"edgeflow.trace": [hop(f"n{i}", i, 1)],
                                             "edgeflow.parents": [[f"n{i - 1}", 1]]})
            async with client_for(StaticRuntime(app, graph={"nodes": nodes, "edges": []})) as (client, _):
                tree = await (await client.get("/api/lineage/n79/1")).json()
        finally:
            for pub in pubs[1:]:
                pub.close()
    depth, item = 0, tree
    while item.get("parents"):
        (item,) = item["parents"]
        depth += 1
    assert tree["truncated"] is True and item.get("truncated") is True
    assert depth == lineage.MAX_DEPTH + 1 and item["topic"] == f"n{79 - lineage.MAX_DEPTH - 1}"


# -- a real app --------------------------------------------------------------------------------------------
MAIN = textwrap.dedent('''
    """camera -> detector (2 replicas) -> gateway; every node says in its output meta what it made it from."""
    import os
    import time

    import numpy as np

    from edgeflow import EdgeApp
    from edgeflow.nodes import ConsumerNode, GatewayNode, ProducerNode
    from edgeflow.nodes.gateway.interfaces.web import WebInterface

    app = EdgeApp(os.environ["LINEAGE_APP"])


    @app.node(name="camera", type="producer", fps=5)
    class Camera(ProducerNode):
        def configure(self):
            self.n = 0

        def produce(self):
            self.n += 1
            return np.full((120, 160, 3), 40 + self.n % 200, np.uint8), {"camera_n": self.n}


    @app.node(name="detector", type="consumer", replicas=2)
    class Detector(ConsumerNode):
        def process(self, frame):
            source = self.context.current_frame
            time.sleep(0.004)
            return frame.copy(), {"made_from": [source.frame_id, source.meta["camera_n"]], "replica": self.replica}


    @app.node(name="gateway", type="gateway")
    class Gateway(GatewayNode):
        def configure(self):
            self.add_interface(WebInterface(host="127.0.0.1", port=int(os.environ["LINEAGE_PORT"]),
                                            token=os.environ["LINEAGE_TOKEN"]))


    if __name__ == "__main__":
        app.link("camera").to("detector")
        app.link("detector").to("gateway")
        app.run()
''')
TOKEN = "lineage-secret"


class Running:
    """The running app: its name, its gateway's URL, its process and log."""

    def __init__(self, name: str, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.name, self.url, self.proc, self.log = name, url, proc, log

    def get(self, path: str, token: str | None = TOKEN, header: bool = False) -> tuple[int, dict]:
        url = self.url + path
        headers = {}
        if token is not None and header:
            headers["Authorization"] = f"Bearer {token}"
        elif token is not None:
            url += ("&" if "?" in url else "?") + "token=" + token
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lineage-app")
    (folder / "main.py").write_text(MAIN)
    name = f"lineage{os.getpid()}"
    port = free_port()
    log = folder / "output.log"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "LINEAGE_APP": name,
           "LINEAGE_PORT": str(port), "LINEAGE_TOKEN": TOKEN}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(folder / "main.py")], cwd=folder, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    app = Running(name, f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:                     # until the gateway shows a few detector frames
            assert proc.poll() is None, f"the app exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no detector frames: {log.read_text()[-3000:]}"
            try:
                status, body = app.get("/api/topics/detector")
                if status == 200 and (body.get("frame_id") or 0) >= 3:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        yield app
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        left = [p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(f"edgeflow.{name}.")]
        assert not left, f"the app left shared memory behind: {left}"


def shown_detector_frame(app: Running) -> dict:
    """The detector frame the gateway shows now (its id and meta, as /api/topics has them)."""
    status, body = app.get("/api/topics/detector")
    assert status == 200, body
    return body


@pytest.mark.slow
def test_the_lineage_of_a_frame_the_gateway_shows_is_its_chain_back_to_the_camera(running):
    complete = 0
    for _ in range(4):                  # different frames, from either replica
        shown = shown_detector_frame(running)
        meta = shown["meta"]
        sent = meta["edgeflow.trace"][-1][2]
        status, tree = running.get(f"/api/lineage/detector/{shown['frame_id']}?sent_us={sent}")
        assert status == 200, tree
        assert tree["topic"] == f"detector.r{meta['replica']}" and tree["frame_id"] == shown["frame_id"]
        assert tree["node"] == "detector" and tree["timestamp"] == shown["timestamp"] and tree["source"] == "ring"
        assert [h["node"] for h in tree["hops"]] == ["camera", "detector"]
        assert tree["hops"][-1]["sent_us"] == sent and all(h["ms"] >= 0 for h in tree["hops"])
        assert tree["hops"][1]["ms"] >= 4.0                       # the detector sleeps 4 ms per frame
        camera_id, camera_n = meta["made_from"]                    # what the detector said it made it from
        assert camera_id == camera_n
        (parent,) = tree["parents"]
        assert (parent["topic"], parent["frame_id"], parent["node"]) == ("camera", camera_id, "camera")
        if parent["missing"]:           # its ring of 8 slots (1.6 s of frames) moved on: a loaded machine
            assert set(parent) == {"topic", "frame_id", "node", "missing"}
        else:
            complete += 1
            assert parent["parents"] == [] and parent["hops"] == tree["hops"][:1]   # the hop the detector got
        # the ring topic answers the same
        status, direct = running.get(f"/api/lineage/{tree['topic']}/{shown['frame_id']}")
        assert status == 200 and direct["parents"][0]["frame_id"] == camera_id
        time.sleep(0.3)
    assert complete >= 2


@pytest.mark.slow
def test_a_gone_frame_is_404_and_the_token_guards_the_route(running):
    deadline = time.monotonic() + 30
    while (shown := shown_detector_frame(running))["frame_id"] < 12:   # rings of 8 slots: frame 1 is gone
        assert time.monotonic() < deadline
        time.sleep(0.3)
    status, body = running.get(f"/api/lineage/detector.r{shown['meta']['replica']}/1")
    assert status == 404 and body["missing"] is True and body["frame_id"] == 1
    assert running.get("/api/lineage/nosuch/1")[0] == 404
    shown = shown_detector_frame(running)
    path = f"/api/lineage/detector/{shown['frame_id']}?sent_us={shown['meta']['edgeflow.trace'][-1][2]}"
    assert running.get(path, token=None)[0] == 401
    assert running.get(path, token="wrong")[0] == 401
    assert running.get(path, header=True)[0] == 200                # Authorization: Bearer works as well


LINEAGE_STATE = """(() => {
  const box = document.getElementById('viewer-lineage');
  if (!box || box.dataset.state !== 'ready') return null;
  return JSON.stringify({root: box.dataset.root, head: box.querySelector('.lin-head').textContent,
    viewer: !document.getElementById('viewer').hidden,
    items: [...box.querySelectorAll('li.lin-item')].map(li => ({topic: li.dataset.topic,
      frameId: Number(li.dataset.frameId), node: li.dataset.node, missing: li.dataset.missing,
      depth: (() => { let d = 0, e = li.parentElement;
        while (e && e !== box) { if (e.tagName === 'UL') d++; e = e.parentElement; } return d; })(),
      text: li.querySelector('.lin-line').textContent}))});
})()"""


@pytest.mark.slow
def test_clicking_the_detector_s_video_shows_the_lineage_of_its_frame(running, tmp_path):
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"chromium is not installed ({INSTALL})")
        pytest.skip(f"chromium is not installed ({INSTALL})")
    with chromium(exe, tmp_path / "profile", tmp_path / "chromium.log") as port:
        state, checked, png, errors = asyncio.run(asyncio.wait_for(_click(port, running), 60))
    (tmp_path / "lineage.png").write_bytes(png)
    assert not errors, errors                                     # no script error, no CSP violation
    assert state["viewer"] is True
    root, camera = state["items"]
    assert root["node"] == "detector" and root["topic"] in ("detector.r0", "detector.r1") and root["depth"] == 1
    assert state["root"] == f"{root['topic']}#{root['frameId']}"
    assert camera["node"] == "camera" and camera["topic"] == "camera" and camera["depth"] == 2
    assert camera["missing"] == "0" and " ms in node" in root["text"] and " ms link on" in camera["text"]
    assert f"#{camera['frameId']}" in camera["text"] and "2 hops" in state["head"]
    if checked is not None:              # the detector's own ring still had the frame: the ids agree
        assert checked["made_from"][0] == camera["frameId"]


async def _click(port: int, app: Running):
    async with open_page(port, f"{app.url}/dashboard?token={TOKEN}") as page:
        card = "document.querySelector('.card[data-topic=\"detector\"]')"
        await page.wait_for(f"{card} && Number({card}.dataset.frames) > 1 && {card}.querySelector('.fid').textContent")
        box = json.loads(await page.evaluate(f"JSON.stringify((r => [r.x, r.y, r.width, r.height])("
                                             f"{card}.querySelector('canvas').getBoundingClientRect()))"))
        x, y = box[0] + box[2] / 2, box[1] + box[3] / 2
        for kind in ("mousePressed", "mouseReleased"):           # a real click on the video
            await page.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        raw = await page.wait_for(LINEAGE_STATE)
        state = json.loads(raw)
        ring, _, fid = state["root"].partition("#")
        found = shm.peek_meta(app.name, ring, int(fid))
        png = await page.screenshot()
        return state, (found[1] if found else None), png, list(page.errors)
