"""Issue 11, section 2: in a ``--node`` run (one process per node, a Redis registry) the gateway's /metrics shows
every node's and edge's statistics, not only its own. Real processes: a redis-server on a free loopback port
started here, and ``python main.py --node X`` for a producer, a consumer and a gateway with a WebInterface."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

APP = '''
import os
import numpy as np
from edgeflow import ConsumerNode, EdgeApp, GatewayNode, ProducerNode, RedisBroker
from edgeflow.nodes.gateway.interfaces.web import WebInterface

app = EdgeApp(os.environ["TEST_APP"], broker=RedisBroker(os.environ["TEST_REDIS_URL"]))


@app.node(name="cam", fps=50)
class Cam(ProducerNode):
    def produce(self):
        return np.zeros((48, 64, 3), np.uint8)


@app.node(name="det")
class Det(ConsumerNode):
    def process(self, data):
        return data.copy()


@app.node(name="gw")
class Gw(GatewayNode):
    def configure(self):
        self.add_interface(WebInterface(host="127.0.0.1", port=int(os.environ["TEST_HTTP_PORT"])))


if __name__ == "__main__":
    app.link("cam").to("det").to("gw")
    app.run()
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A throw-away redis-server on a free loopback port (never the machine's 6379)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    import redis
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {port} did not start") from None
                time.sleep(0.05)               # redis-server offers no readiness event to wait on
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def scrape(port: int) -> dict:
    """/metrics as {(sample name, sorted labels): value}; {} while the server does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_gateway_of_a_node_run_shows_every_nodes_statistics(app, tmp_path, redis_url):
    (tmp_path / "main.py").write_text(APP)
    http = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TEST_APP": app,
           "TEST_REDIS_URL": redis_url, "TEST_HTTP_PORT": str(http), "GATEWAY_TCP_PORT": str(free_port())}
    procs, logs = {}, {}
    try:
        for node in ("gw", "det", "cam"):
            logs[node] = tmp_path / f"{node}.log"
            with logs[node].open("w") as log:
                procs[node] = subprocess.Popen([sys.executable, "main.py", "--node", node], cwd=tmp_path,
                                               env=env, stdout=log, stderr=subprocess.STDOUT)

        def value(name: str, **labels) -> float:
            return got.get((name, tuple(sorted(labels.items()))), 0.0)

        deadline = time.monotonic() + 60
        while True:
            got = scrape(http)
            ready = (value("edgeflow_node_frames_out_total", node="cam") > 0
                     and value("edgeflow_node_frames_in_total", node="det") > 0
                     and value("edgeflow_node_frames_out_total", node="det") > 0
                     and value("edgeflow_node_frames_in_total", node="gw") > 0
                     and value("edgeflow_node_processing_seconds_count", node="det") > 0
                     and value("edgeflow_edge_frames_total", edge="cam->det") > 0)
            if ready:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs.values()):
                tails = "\n".join(f"--- {n}:\n{p.read_text()[-1500:]}" for n, p in logs.items())
                raise AssertionError(f"the gateway never showed every node's statistics: "
                                     f"{ {k: v for k, v in got.items() if 'frames' in k[0]} }\n{tails}")
            time.sleep(0.2)                    # polling an HTTP endpoint: there is no event to wait on

        assert value("edgeflow_node_latency_seconds_bucket", node="det", le="+Inf") > 0
        assert value("edgeflow_node_replicas", node="cam", state="running") == 1
        assert value("edgeflow_node_replicas", node="det", state="running") == 1
        assert value("edgeflow_edge_frames_total", edge="det->gw") > 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for node, proc in procs.items():
        assert proc.returncode == 0, f"{node} exited {proc.returncode}:\n{logs[node].read_text()[-1500:]}"
        assert "summary:" in logs[node].read_text()
