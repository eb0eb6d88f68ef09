"""A real app for the stream API tests: ``python app_main.py`` as a child process on a free loopback port,
and small clients for its REST API (urllib) and its ``/ws/frames`` (aiohttp)."""

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
from typing import Any

import aiohttp
import cv2
import numpy as np

from tests.connectors._servers import free_port
from tests.runtime.nodes import read_lines, wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
START_TIMEOUT = 60.0


class LiveApp:
    """``python app_main.py`` (see its docstring for the environment it reads)."""

    def __init__(self, folder: Path, app: str, *, token: str | None = None, workers: bool = True,
                 fps: float = 10.0, env: dict | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.app = app
        self.port = free_port()
        self.token = token
        self.out = self.folder / "pids.txt"
        self.log = self.folder / "app.log"
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        self.env = {**os.environ, "PYTHONPATH": path, "STREAMS_TEST_APP": app,
                    "STREAMS_TEST_PORT": str(self.port), "STREAMS_TEST_OUT": str(self.out),
                    "STREAMS_TEST_WORKERS": "1" if workers else "0", "STREAMS_TEST_FPS": str(fps),
                    **({"STREAMS_TEST_TOKEN": token} if token else {}), **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveApp":
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(HERE / "app_main.py")], cwd=self.folder,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the app exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not answer within {START_TIMEOUT:g} s: "
                                     f"{self.log_tail()}")
            time.sleep(0.05)               # polling: the app offers nothing to await from here

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C (SIGINT), as a user would; the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise AssertionError(f"the app did not stop within {timeout:g} s: {self.log_tail()}")
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "LiveApp":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST ------------------------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict | None = None, token: str | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body or text) of one request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if data is not None and raw is None else {}
        hdrs.update(headers or {})
        given = token if token is not None else self.token
        if given:
            hdrs["Authorization"] = f"Bearer {given}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, answer = self.call(method, path, body)
        assert got == status, f"{method} {path}: {got} {answer}"
        return answer

    # -- what the processes noted ----------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Node name -> pid of its latest start (each node notes ``pid <name> <pid>``)."""
        return {p[1]: int(p[2]) for p in (line.split() for line in read_lines(self.out)) if p[0] == "pid"}

    def noted(self, kind: str) -> list[list[str]]:
        return [p[1:] for p in (line.split() for line in read_lines(self.out)) if p[0] == kind]

    def rings(self, stream_id: str = "") -> list[str]:
        prefix = f"edgeflow.{self.app}.stream-{stream_id}"
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))

    def children(self) -> set[int]:
        from tests.conftest import children_of
        return children_of(self.proc.pid) if self.proc is not None else set()


def alive(pid: int) -> bool:
    """The process exists and is no zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def annotated_level(img: np.ndarray) -> tuple[bool, int]:
    """(the worker's white mark is there, the source's grey level) of a decoded frame."""
    mark = float(img[2:12, 2:12].mean())
    body = float(img[img.shape[0] // 2 - 4: img.shape[0] // 2 + 4, img.shape[1] // 2:].mean())
    return mark > 240, int(round(body))


async def _watch(url: str, frames: int, timeout: float, token: str | None) -> tuple[list, list]:
    images, metrics = [], []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers=headers) as ws:
            deadline = time.monotonic() + timeout
            while len(images) < frames:
                left = deadline - time.monotonic()
                assert left > 0, \
                    f"{len(images)} of {frames} frames within {timeout:g} s ({len(metrics)} metrics)"
                msg = await ws.receive(timeout=left)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    images.append((time.monotonic(), msg.data))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    metrics.append((time.monotonic(), json.loads(msg.data)))
                else:
                    raise AssertionError(f"socket ended: {msg}")
    return images, metrics


def watch(live: LiveApp, stream_id: str, frames: int = 3, timeout: float = 20.0) -> tuple[list, list]:
    """``frames`` JPEG messages of /ws/frames (and the metrics messages that came meanwhile), each with the
    monotonic time it arrived."""
    url = f"ws://127.0.0.1:{live.port}/ws/frames?stream_id={stream_id}"
    return asyncio.run(asyncio.wait_for(_watch(url, frames, timeout, live.token), timeout + 10))


__all__ = ["LiveApp", "alive", "annotated_level", "decode", "watch", "wait_for"]
