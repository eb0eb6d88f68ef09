"""Issue 11: an interface written in the original EdgeFlow's style (a BaseInterface subclass with setup(),
async on_frame(frame), run_loop()) added with self.add_interface(...) gets the gateway's frames."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from edgeflow.frame import Frame
from edgeflow.nodes.gateway import BaseInterface, GatewayNode
from edgeflow.nodes.gateway.interfaces.base import MAX_PENDING, serve

ROOT = Path(__file__).resolve().parents[2]


class Collector(BaseInterface):
    """Original style: async on_frame that keeps the frame itself, a run_loop that runs until stopped."""

    def __init__(self, want: int) -> None:
        super().__init__()
        self.want = want
        self.done = threading.Event()
        self.looping = threading.Event()
        self.loop_cancelled = threading.Event()

    def setup(self):
        self.frames = []

    async def on_frame(self, frame):
        await asyncio.sleep(0)                        # really async: it runs later, on the interface's loop
        self.frames.append(frame)
        if len(self.frames) == self.want:
            self.done.set()

    async def run_loop(self):
        self.looping.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.loop_cancelled.set()
            raise


def test_an_original_style_interface_gets_owned_copies_of_every_frame_in_order():
    node = GatewayNode("gateway")
    iface = node.add_interface(Collector(want=5))
    assert iface.gateway is node
    host = serve(iface, None)
    iface.on_frame = host.on_frame                     # what the runtime does after serve()
    try:
        assert iface.looping.wait(5)
        for n in range(5):
            view = np.full((16, 16, 3), n, np.uint8)
            frame = Frame(view, frame_id=n, timestamp=100.0 + n, topic="cam")
            node.process(frame)                        # the runtime's hook call
            frame.release()                            # ... after which the runtime's view is gone
            view[:] = 255                              # and its slot reused
        assert iface.done.wait(5)
    finally:
        host.close()
    assert iface.loop_cancelled.is_set()
    assert [f.frame_id for f in iface.frames] == [0, 1, 2, 3, 4]
    assert [int(f.data[0, 0, 0]) for f in iface.frames] == [0, 1, 2, 3, 4]     # copies, not the reused view
    assert iface.frames[0].meta["topic"] == "cam" and iface.frames[0].get_data_bytes()[:3] == b"\xff\xd8\xff"
    assert host.delivered == 5 and host.dropped == 0


def test_a_slow_async_interface_never_blocks_the_node_and_drops_the_oldest():
    release = threading.Event()

    class Slow(BaseInterface):
        async def on_frame(self, frame):
            await asyncio.to_thread(release.wait)

    iface = Slow()
    host = serve(iface)
    try:
        for n in range(MAX_PENDING + 20):
            host.on_frame(Frame(b"x", frame_id=n, topic="t"))    # returns at once, whatever on_frame does
    finally:
        release.set()
        host.close()
    assert host.dropped >= 19


def test_a_sync_on_frame_is_called_in_the_node_thread():
    seen = []

    class Sync(BaseInterface):
        def on_frame(self, frame):
            seen.append((frame.frame_id, threading.current_thread()))

    host = serve(Sync())
    host.on_frame(Frame(b"abc", frame_id=3, topic="t"))
    host.close()
    assert seen == [(3, threading.current_thread())]


MAIN = '''
    import asyncio, json
    from pathlib import Path
    import numpy as np
    from edgeflow import EdgeApp
    from edgeflow.nodes import ProducerNode
    from edgeflow.nodes.gateway import GatewayNode, WebInterface
    from edgeflow.nodes.gateway.interfaces.base import BaseInterface

    app = EdgeApp("{app}")
    OUT = Path(__file__).resolve().parent / "seen.json"


    class Recorder(BaseInterface):
        def setup(self):
            self.ids = []
            self.ticks = 0

        async def on_frame(self, frame):
            self.ids.append([frame.frame_id, frame.meta.get("topic"), int(frame.data[0, 0, 0])])
            OUT.write_text(json.dumps({{"ids": self.ids, "ticks": self.ticks}}))

        async def run_loop(self):
            while True:
                self.ticks += 1
                await asyncio.sleep(0.05)


    @app.node(name="cam", type="producer", fps=20)
    class Camera(ProducerNode):
        def produce(self):
            self.n = getattr(self, "n", 0) + 1
            return np.full((32, 32, 3), self.n % 256, np.uint8)


    @app.node(name="gateway", type="gateway")
    class Hub(GatewayNode):
        def setup(self):
            self.add_interface(WebInterface(host="127.0.0.1", port={port}))
            self.add_interface(Recorder())


    app.link("cam").to("gateway")

    if __name__ == "__main__":
        app.run()
'''


@pytest.mark.slow
def test_an_original_style_interface_runs_in_a_real_gateway_node(tmp_path, app):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN.format(app=app, port=port)))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "main.py", "--duration", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    ids = [i for i, _, _ in seen["ids"]]
    assert len(ids) >= 10 and ids == sorted(ids)
    assert all(topic == "cam" and level == i % 256 for i, topic, level in seen["ids"])
    assert seen["ticks"] >= 1
