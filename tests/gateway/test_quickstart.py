"""The seed's quickstart (examples/quickstart/main.py, unchanged) serving its gateway for real (issue 5): the
API and metrics show every node and edge, OpenCV decodes the processed video, headless Chromium shows a live
dashboard, and Ctrl-C stops it all cleanly.

One run of the example serves every test of this module (in file order; the last one stops it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .browser import INSTALL, chromium, find_chromium, open_page
from .helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = "test-distributed-system"
pytestmark = pytest.mark.slow


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Example:
    """The running example: its process, its gateway's URL and its log."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def json(self, path: str):
        status, body = fetch(self.url + path)
        assert status == 200, (path, status, body[:200])
        return json.loads(body)


def start_example(log: Path, port: int, wait: float = 60.0) -> subprocess.Popen:
    """Start the example; while another run of it (its app name is fixed) holds the host, wait and retry."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "GATEWAY_HTTP_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    deadline = time.monotonic() + wait
    while True:
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, str(ROOT / "examples/quickstart/main.py")],
                                    cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return proc                                  # running
        if "is already running" not in log.read_text() or time.monotonic() > deadline:
            return proc                                  # the fixture reports why it ended
        time.sleep(1.0)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("quickstart") / "output.log"
    proc = start_example(log, port)
    running = Example(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, f"the example exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no frames on both topics: {log.read_text()[-3000:]}"
            try:
                topics = running.json("/api/topics")["topics"]
                if len(topics) == 2 and all(t["frame_id"] for t in topics):
                    break
            except (OSError, AssertionError):
                pass
            time.sleep(0.2)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_api_shows_the_pipeline_with_transports_and_live_figures(example):
    assert fetch(example.url + "/readyz")[0] == 200
    graph = example.json("/api/graph")
    assert [n["name"] for n in graph["nodes"]] == ["fake_camera", "gpu_processor", "gateway"]
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    assert set(edges) == {("fake_camera", "gpu_processor"), ("gpu_processor", "gateway"),
                          ("fake_camera", "gateway")}
    assert all(e["transport"] == "shm" and e["qos"] == "REALTIME" for e in edges.values())
    deadline = time.monotonic() + 10
    while True:                                         # live figures arrive every 0.5 s
        nodes = {n["name"]: n for n in example.json("/api/graph")["nodes"]}
        if nodes["gateway"]["fps"] > 20 and nodes["gpu_processor"]["latency_ms"]["p50"] is not None:
            break
        assert time.monotonic() < deadline, nodes
        time.sleep(0.3)
    assert nodes["fake_camera"]["fps"] > 20 and nodes["gpu_processor"]["states"] == ["running", "running"]
    topics = {t["name"]: t for t in example.json("/api/topics")["topics"]}
    assert set(topics) == {"fake_camera", "gpu_processor"}          # the nodes' names, as in the seed
    assert all((t["width"], t["height"]) == (640, 480) and t["fps"] > 20 for t in topics.values())


def test_metrics_cover_every_node_and_edge(example):
    status, body = fetch(example.url + "/metrics")
    assert status == 200
    samples = [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]
    nodes = {s.labels["node"] for s in samples if s.name == "edgeflow_node_frames_out_total"}
    assert nodes == {"fake_camera", "gpu_processor", "gateway"}
    edges = {s.labels["edge"] for s in samples if s.name == "edgeflow_edge_frames_total"}
    assert edges == {"fake_camera->gpu_processor", "gpu_processor->gateway", "fake_camera->gateway"}
    assert {s.labels["topic"] for s in samples if s.name == "edgeflow_topic_fps"} == {"fake_camera",
                                                                                     "gpu_processor"}
    latency = [s for s in samples if s.name == "edgeflow_node_latency_seconds_bucket"]
    assert {s.labels["node"] for s in latency} == nodes


def test_opencv_reads_the_processed_video(example):
    cap = cv2.VideoCapture(example.url + "/video/gpu_processor", cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened()
        frames = []
        for _ in range(10):
            ok, img = cap.read()
            assert ok
            frames.append(img)
    finally:
        cap.release()
    assert all(img.shape == (480, 640, 3) for img in frames)
    box = frames[-1][99:102, 200:440].astype(int)                    # gpu_processor's red rectangle, 3 px
    assert (box[:, :, 2] > 180).mean() > 0.8 and (box[:, :, 1] < 80).mean() > 0.8
    balls = [np.argwhere((img[:, :, 1] > 200) & (img[:, :, 2] > 200) & (img[:, :, 0] < 80)).mean(axis=0)
             for img in (frames[0], frames[-1])]                     # the yellow ball moved: live frames
    assert np.abs(balls[0] - balls[1]).sum() > 2


PAGE_STATE = """JSON.stringify({
  ticks: Number(document.body.dataset.ticks || 0),
  conn: document.getElementById('conn').textContent,
  cards: [...document.querySelectorAll('.card')].map(c => ({
    topic: c.dataset.topic, frames: Number(c.dataset.frames), kind: c.dataset.kind,
    width: c.querySelector('canvas').width, height: c.querySelector('canvas').height,
    fps: c.querySelector('.fps').textContent, res: c.querySelector('.res').textContent,
    age: c.querySelector('.age').textContent,
    box: (r => [r.x, r.y, r.width, r.height])(c.querySelector('canvas').getBoundingClientRect())})),
  nodes: [...document.querySelectorAll('#nodes tr')].map(r => [...r.cells].map(td => td.textContent)),
  edges: [...document.querySelectorAll('#edges tr')].map(r => [...r.cells].map(td => td.textContent)),
  graphNodes: [...document.querySelectorAll('#graph .node .name')].map(t => t.textContent),
  graphEdges: [...document.querySelectorAll('#graph .edge text:first-of-type')].map(t => t.textContent),
})"""


def test_headless_chromium_shows_a_live_dashboard(example, tmp_path):
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"chromium is not installed ({INSTALL})")
        pytest.skip(f"chromium is not installed ({INSTALL})")
    with chromium(exe, tmp_path / "profile", tmp_path / "chromium.log") as port:
        first, second, png, errors = asyncio.run(asyncio.wait_for(_watch_dashboard(port, example.url), 90))
    (tmp_path / "dashboard.png").write_bytes(png)
    assert not errors, errors                                        # no script error, no CSP violation
    assert first["conn"] == "live"
    cards = {c["topic"]: c for c in second["cards"]}
    assert set(cards) == {"fake_camera", "gpu_processor"}
    for name, card in cards.items():
        before = next(c for c in first["cards"] if c["topic"] == name)
        assert (card["width"], card["height"]) == (640, 480), card    # a decoded frame is on screen
        assert card["frames"] - before["frames"] >= 15, (before, card)  # and it keeps changing
        assert float(card["fps"]) > 15 and card["res"] == "640×480" and card["age"].endswith(("ms", " s"))
    assert second["ticks"] - first["ticks"] >= 2                     # statistics: at least once a second
    rows = {row[0]: row for row in second["nodes"]}
    assert set(rows) == {"fake_camera", "gpu_processor ×2", "gateway"}
    assert float(rows["gateway"][3]) > 15 and rows != {row[0]: row for row in first["nodes"]}
    assert len(second["edges"]) == 3 and all(row[1:3] == ["shm", "REALTIME"] for row in second["edges"])
    assert sorted(second["graphNodes"]) == ["fake_camera", "gateway", "gpu_processor"]
    assert len(second["graphEdges"]) == 3 and all(label.startswith("shm · REALTIME")
                                                 for label in second["graphEdges"])
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    x, y, w, h = (int(v) for v in cards["fake_camera"]["box"])
    card = shot[y:y + h, x:x + w]
    yellow = (card[:, :, 1] > 200) & (card[:, :, 2] > 200) & (card[:, :, 0] < 80)
    assert yellow.sum() > 50, "the camera's yellow ball is not on the screenshot"


async def _watch_dashboard(port: int, url: str):
    async with open_page(port, url + "/") as page:                   # / redirects to the dashboard
        cards = "[...document.querySelectorAll('.card')]"
        await page.wait_for(f"{cards}.length === 2 && {cards}.every(c => Number(c.dataset.frames) > 0) && "
                            "Number(document.body.dataset.ticks) >= 2")
        first = json.loads(await page.evaluate(PAGE_STATE))
        await asyncio.sleep(2.0)
        second = json.loads(await page.evaluate(PAGE_STATE))
        png = await page.screenshot()
        return first, second, png, list(page.errors)


def test_ctrl_c_stops_the_example_and_its_gateway(example):
    started = time.monotonic()
    example.proc.send_signal(signal.SIGINT)
    assert example.proc.wait(10) == 0, example.log.read_text()[-3000:]
    assert time.monotonic() - started < 6
    assert "Traceback" not in example.log.read_text(), example.log.read_text()[-3000:]
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"edgeflow.{APP}.")]
    with pytest.raises(OSError):
        fetch(example.url + "/healthz", timeout=1)
