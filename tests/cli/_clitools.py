"""Helpers of the CLI tests: run `edgeflow` as a real subprocess (the checkout importable, no install)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(**extra: str) -> dict[str, str]:
    """The checkout first on PYTHONPATH, a free gateway port (never 8000: others may use it), unbuffered."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "GATEWAY_HTTP_PORT": str(free_port()),
           "GATEWAY_TCP_PORT": str(free_port())}
    env.pop("EDGEFLOW_DEBUG", None)
    env.update(extra)
    return env


def edgeflow(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m edgeflow.cli ARGS` in a subprocess; its output is printed (pytest shows it on failure)."""
    out = subprocess.run([sys.executable, "-m", "edgeflow.cli", *args], cwd=cwd or ROOT,
                         env=env or cli_env(), capture_output=True, text=True, timeout=timeout)
    print(f"$ edgeflow {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def timed(*args: str, repeat: int = 3) -> float:
    """The best wall time of `python -m edgeflow.cli ARGS` over ``repeat`` runs (the first warms caches)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "edgeflow.cli", *args], cwd=ROOT, env=cli_env(),
                             capture_output=True, text=True, timeout=60)
        best = min(best, time.perf_counter() - t0)
        assert out.returncode == 0, out.stderr
    return best


def stderr_lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.strip()]


def write_app(folder: Path, body: str, name: str = "main.py") -> Path:
    """A small app file in folder (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body)
    return path


NODES = '''
import numpy as np
from edgeflow import ConsumerNode, EdgeApp, ProducerNode, SinkNode, GatewayNode


class Cam(ProducerNode):
    def produce(self):
        return np.zeros((4, 4, 3), np.uint8)


class Det(ConsumerNode):
    def process(self, data):
        return data


class Log(SinkNode):
    def consume(self, data):
        pass


class Gw(GatewayNode):
    pass
'''
