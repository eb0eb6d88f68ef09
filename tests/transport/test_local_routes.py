"""A pipeline whose nodes run as separate ``--node`` processes on one host, with a broker configured: every
edge is shared memory and Redis sees no command per frame (only the registry's heartbeats)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent('''
    import os
    import numpy as np
    from edgeflow import EdgeApp, ProducerNode, SinkNode, QoS, RedisBroker

    app = EdgeApp(os.environ["APP"], broker=RedisBroker())

    @app.node(name="camera", fps=100)
    class Camera(ProducerNode):
        def produce(self):
            return np.zeros((48, 64, 3), np.uint8)

    @app.node(name="log")
    class Log(SinkNode):
        def setup(self):
            open(os.environ["OUT"] + ".ready", "w").close()
        def consume(self, data):
            with open(os.environ["OUT"], "a") as f:
                f.write(f"{self.current_frame.frame_id}\\n")

    if __name__ == "__main__":
        app.link("camera").to("log", qos=QoS.DURABLE)
        app.run()
''')


def test_local_pipeline_with_a_broker_sends_no_redis_command_per_frame(redis_server, app, tmp_path):
    (tmp_path / "main.py").write_text(APP)
    out = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "APP": app, "OUT": str(out), "REDIS_URL": redis_server.url}
    frames = 300

    def launch(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "main.py", *args], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    log = launch("--node", "log")
    deadline = 30.0
    import time
    start = time.monotonic()
    while not Path(f"{out}.ready").exists():
        assert time.monotonic() - start < deadline, "the logger did not start"
        time.sleep(0.05)
    camera = launch("--node", "camera", "--frames", str(frames))
    camera_out, _ = camera.communicate(timeout=60)
    log_out, _ = log.communicate(timeout=60)          # the logger ends once the camera's stream ended

    assert camera.returncode == 0 and log.returncode == 0, camera_out + log_out
    assert "camera -> log: shm (same host), DURABLE" in camera_out
    assert out.read_text().split() == [str(i) for i in range(1, frames + 1)]
    stats = redis_server.info("commandstats")
    assert "cmdstat_xadd" not in stats, "a same-host edge must not publish to Redis"
    calls = sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_"))
    assert calls < frames // 3, f"{calls} Redis commands for {frames} frames: only the registry should talk"
