"""Helpers for the gateway tests: frames recognisable after JPEG, a fake runtime, servers, raw viewers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
import time
from typing import Any

import cv2
import numpy as np
from aiohttp.test_utils import TestClient, TestServer

from edgeflow.frame import Frame
from edgeflow.gateway.app import Server, StaticRuntime, make_app
from edgeflow.gateway.hub import Hub
from edgeflow.nodes.gateway.interfaces.web import WebInterface

__all__ = ["StaticRuntime", "Feeder", "client_for", "frame", "grey_of", "level_of", "graph_and_stats",
           "mjpeg_reader", "raw_get", "run_async", "serving", "free_port"]


def grey_of(n: int) -> int:
    """The grey level frame ``n`` is painted with: 16 levels 12 apart, far enough to survive JPEG."""
    return 20 + 12 * (n % 16)


def level_of(img: np.ndarray) -> int:
    """The frame number (mod 16) a decoded image was painted with (inverse of grey_of)."""
    centre = img[img.shape[0] // 4: 3 * img.shape[0] // 4, img.shape[1] // 4: 3 * img.shape[1] // 4]
    return int(round((float(centre.mean()) - 20) / 12)) % 16


def image(n: int, width: int = 320, height: int = 240, channels: int = 3) -> np.ndarray:
    """A read-only frame painted grey_of(n), with n drawn big in a corner (as a human would check it)."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    img = np.full(shape, grey_of(n), np.uint8)
    cv2.putText(img, str(n % 100), (4, max(12, height // 6)), cv2.FONT_HERSHEY_SIMPLEX, height / 400, 255, 2)
    img.flags.writeable = False                      # like a zero-copy view of shared memory
    return img


def frame(n: int, topic: str = "camera", **kwargs: Any) -> Frame:
    """Frame n of a topic (image(n) unless ``data=`` is given)."""
    data = kwargs.pop("data", None)
    if data is None:
        data = image(n, **kwargs)
    return Frame(data, frame_id=n, topic=topic, meta={"n": n})


def graph_and_stats(app: str = "demo") -> tuple[dict, dict]:
    """A camera -> detector -> gateway graph and a statistics snapshot as the supervisor makes them."""
    graph = {"app": app, "nodes": [
        {"name": "camera", "type": "producer", "replicas": 1, "device": None, "fps": 30.0},
        {"name": "detector", "type": "consumer", "replicas": 2, "device": "gpu", "fps": None},
        {"name": "gateway", "type": "gateway", "replicas": 1, "device": None, "fps": None}],
        "edges": [
            {"source": "camera", "target": "detector", "qos": "REALTIME", "channel": None,
             "transport": "shm"},
            {"source": "detector", "target": "gateway", "qos": "REALTIME", "channel": None,
             "transport": "shm"},
            {"source": "camera", "target": "gateway", "qos": "DURABLE", "channel": None, "transport": "tcp"}]}

    def node(fps, fin, fout, drops, restarts, states, p50=1.5, p99=4.0):
        series = {"p50": p50, "p99": p99, "mean": 2.0, "count": fout}
        return {"frames_in": fin, "frames_out": fout, "errors": 1, "fps": fps, "drops": drops,
                "edges_in": {}, "edge_drops": {}, "replicas": len(states), "processing_ms": series,
                "latency_ms": {"p50": p50 * 3, "p99": p99 * 3, "mean": 6.0, "count": fout},
                "extra": {}, "restarts": restarts, "states": states}

    stats = {"app": app, "nodes": {
        "camera": node(30.0, 0, 900, {}, 0, ["running"]),
        "detector": node(29.5, 890, 880, {"skipped": 7, "error": 3}, 2, ["running", "restarting"]),
        "gateway": {**node(58.0, 1700, 1700, {"skipped": 12}, 0, ["running"]),
                    "latency_ms": {"p50": None, "p99": None, "mean": None, "count": 0}}},
        "edges": [
            {"source": "camera", "target": "detector", "qos": "REALTIME", "transport": "shm", "frames": 890,
             "drops": 7},
            {"source": "detector", "target": "gateway", "qos": "REALTIME", "transport": "shm", "frames": 850,
             "drops": 12},
            {"source": "camera", "target": "gateway", "qos": "DURABLE", "transport": "tcp", "frames": 850,
             "drops": 0}]}
    return graph, stats


def run_async(test):
    """Run an ``async def`` test on a fresh event loop (the aiohttp pytest plugin is not enabled here)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))
    return wrapper


@contextlib.asynccontextmanager
async def client_for(runtime: Any = None, *, interface: WebInterface | None = None, hub: Hub | None = None):
    """aiohttp's test client on make_app(interface, runtime, hub); yields (client, hub)."""
    runtime = runtime if runtime is not None else StaticRuntime("demo")
    interface = interface if interface is not None else WebInterface(port=0)
    hub = hub if hub is not None else Hub()
    app = make_app(interface, runtime, hub)
    async with TestClient(TestServer(app)) as client:
        yield client, hub


@contextlib.contextmanager
def serving(runtime: Any = None, **interface_kwargs: Any):
    """A real Server (its own thread and uvloop) on a free loopback port."""
    interface_kwargs.setdefault("host", "127.0.0.1")
    interface_kwargs.setdefault("port", 0)
    runtime = runtime if runtime is not None else StaticRuntime("demo")
    server = Server(WebInterface(**interface_kwargs), runtime)
    try:
        yield server
    finally:
        server.close()


class Feeder:
    """Publishes frames from a thread, as the node loop would: ``with Feeder(server, fps=30):``."""

    def __init__(self, target, topic: str = "camera", fps: float = 30.0, make=None) -> None:
        self.target = target                      # anything with on_frame(frame)
        self.topic = topic
        self.period = 1.0 / fps
        self.make = make or (lambda n: frame(n, topic))
        self.sent = 0
        self.sent_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _send(self) -> None:
        self.sent += 1
        self.sent_at[self.sent] = time.perf_counter()
        self.target.on_frame(self.make(self.sent))

    def _run(self) -> None:
        due = time.perf_counter() + self.period
        while not self._stop.wait(max(0.0, due - time.perf_counter())):
            self._send()
            due += self.period

    def __enter__(self) -> "Feeder":
        self._send()                              # the topic exists before anyone asks for it
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_get(port: int, path: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A socket that sent ``GET path`` and read nothing (a viewer that may stall)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def mjpeg_reader(sock: socket.socket):
    """Yield (headers dict, jpeg bytes) of each part of an MJPEG response read from ``sock``."""
    buf = b""

    def fill() -> None:
        nonlocal buf
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("stream ended")
        buf += chunk

    while b"\r\n\r\n" not in buf:
        fill()
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    while True:
        while b"\r\n\r\n" not in buf:
            fill()
        part_head, buf = buf.split(b"\r\n\r\n", 1)
        lines = part_head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines if ": " in line)
        size = int(headers["Content-Length"])
        while len(buf) < size + 2:
            fill()
        yield headers, buf[:size]
        buf = buf[size + 2:]


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "not a JPEG"
    return img


async def read_parts(response, count: int) -> list[tuple[dict, bytes]]:
    """Read ``count`` parts (headers, jpeg) of an MJPEG response from aiohttp's client."""
    parts = []
    while len(parts) < count:
        boundary = await response.content.readline()
        assert boundary.startswith(b"--"), boundary
        headers = {}
        while (line := await response.content.readline()) not in (b"\r\n", b""):
            key, value = line.decode().rstrip("\r\n").split(": ", 1)
            headers[key] = value
        jpeg = await response.content.readexactly(int(headers["Content-Length"]))
        assert await response.content.readexactly(2) == b"\r\n"
        parts.append((headers, jpeg))
    return parts


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll ``predicate()`` on the event loop until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(interval)
