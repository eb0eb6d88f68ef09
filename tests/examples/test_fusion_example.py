"""examples/sensor_fusion runs on one machine and fuses the three sensors within slop."""

import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sensor_fusion_example(tmp_path):
    env = {"GATEWAY_HTTP_PORT": str(free_port()), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "examples/sensor_fusion/main.py"), "--duration", "3"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "camera -> fuse: shm (same host), REALTIME" in out.stdout
    match = re.search(r"report: (\d+) fused sets, span p50 ([\d.]+) ms, max ([\d.]+) ms", out.stdout)
    assert match, out.stdout
    sets, p50, worst = int(match[1]), float(match[2]), float(match[3])
    assert sets >= 10, "a 10 Hz lidar gives about 10 sets a second"
    assert worst < 50.0, "every set lies within slop"
    assert not list(Path("/dev/shm").glob("edgeflow.sensor-fusion.*"))
