"""Issue 11: a gateway whose port is taken ends the whole run at once, with a message naming the port and the
settings that change it (WebInterface(port=...), $GATEWAY_HTTP_PORT)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

MAIN = '''
    import numpy as np
    from edgeflow import EdgeApp
    from edgeflow.nodes import ProducerNode
    from edgeflow.nodes.gateway import GatewayNode
    from edgeflow.nodes.gateway.interfaces.web import WebInterface

    app = EdgeApp("{app}")


    @app.node(name="cam", type="producer", fps=20)
    class Camera(ProducerNode):
        def produce(self):
            return np.zeros((32, 32, 3), np.uint8)


    @app.node(name="gateway", type="gateway")
    class Hub(GatewayNode):
        def configure(self):
            self.add_interface(WebInterface(host="127.0.0.1", port={port}))


    app.link("cam").to("gateway")

    if __name__ == "__main__":
        app.run()
'''


def test_a_gateway_port_in_use_fails_the_run_quickly_and_says_what_to_change(tmp_path, app):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "main.py").write_text(textwrap.dedent(MAIN.format(app=app, port=port)))
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        t0 = time.monotonic()
        # without the fix the camera keeps the run alive forever: the timeout is the failure, not a wait
        done = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=30, env={**os.environ, "PYTHONPATH": path})
        elapsed = time.monotonic() - t0
    output = done.stdout + done.stderr
    assert done.returncode == 2, output            # a configuration error
    assert f"port {port} is in use" in output
    assert "GATEWAY_HTTP_PORT" in output and "WebInterface(port=" in output
    # a sanity bound on the whole run (interpreter start, spawning both nodes, stopping): well under 5 s
    assert elapsed < 3.5, (elapsed, output)
