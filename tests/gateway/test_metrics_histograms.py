"""Issue 11, sections 2 and 4: /metrics exports latencies as Prometheus histograms whose buckets add up over a
node's replicas, and one latency Series serves node statistics and the gateway hub alike.

The first tests check the parts (Series, merge, the exposition parsed with prometheus_client's text parser);
the last runs a real app (``python main.py``) with a replicas=2 node and scrapes the gateway's /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgeflow import _series
from edgeflow.gateway import hub, metrics as gateway_metrics
from edgeflow.runtime import metrics as runtime_metrics

from .helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def exposition(stats: dict) -> dict:
    """node_families(stats) rendered as Prometheus text and parsed back: {family name: family}."""
    class Collector:
        def collect(self):
            return gateway_metrics.node_families(stats)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_one_series_implementation_for_nodes_and_the_hub():
    assert hub.Series is _series.Series
    assert runtime_metrics.Series is _series.Series
    series = _series.Series()
    for ms in (1, 2, 3, 4, 100):
        series.add(ms / 1e3)
    assert series.quantile(0.5) == pytest.approx(0.003)
    assert series.percentiles()["p50"] == pytest.approx(3.0)
    assert series.percentiles()["p99"] == pytest.approx(100.0)
    hist = series.histogram()
    assert hist["count"] == 5 and sum(hist["counts"]) == 5 and hist["sum"] == pytest.approx(0.11)
    # le is "<=": a sample equal to a bound is in that bound's bucket
    edge = _series.Series()
    edge.add(0.001)
    assert dict(_series.cumulative_buckets(edge.histogram()))["0.001"] == 1
    assert dict(_series.cumulative_buckets(edge.histogram()))["0.0005"] == 0


def test_replicas_histograms_add_up_and_export_as_prometheus_histograms():
    fast, slow = runtime_metrics.NodeMetrics("det", 0), runtime_metrics.NodeMetrics("det", 1)
    for _ in range(30):
        fast.processing.add(0.0008)
    for _ in range(10):
        slow.processing.add(0.04)
    fast.frames_in, slow.frames_in = 30, 10
    node = runtime_metrics.merge([fast.snapshot(), slow.snapshot()])
    assert node["processing_ms"]["count"] == 40                 # both replicas, not the worst one's 10
    assert node["processing_ms"]["mean"] == pytest.approx((30 * 0.8 + 10 * 40) / 40)
    assert node["processing_ms"]["p99"] == pytest.approx(40.0)   # the slow replica's

    families = exposition({"nodes": {"det": node}})
    family = families["edgeflow_node_processing_seconds"]
    assert family.type == "histogram"
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("edgeflow_node_processing_seconds_count", None)] == 40
    assert samples[("edgeflow_node_processing_seconds_sum", None)] == pytest.approx(30 * 0.0008 + 10 * 0.04)
    assert samples[("edgeflow_node_processing_seconds_bucket", "0.001")] == 30
    assert samples[("edgeflow_node_processing_seconds_bucket", "0.025")] == 30
    assert samples[("edgeflow_node_processing_seconds_bucket", "0.05")] == 40
    assert samples[("edgeflow_node_processing_seconds_bucket", "+Inf")] == 40
    buckets = [v for (name, le), v in samples.items() if name.endswith("_bucket")]
    assert buckets == sorted(buckets), "cumulative"
    assert families["edgeflow_node_frames_in"].samples[0].value == 40


def test_histograms_of_different_processes_merge_as_prometheus_would_sum_them():
    parts = []
    for seconds in (0.0002, 0.003, 0.3):
        s = _series.Series()
        s.add(seconds)
        parts.append(s.histogram())
    merged = _series.merge_histograms(parts)
    assert merged["count"] == 3 and sum(merged["counts"]) == 3
    cumulative = dict(_series.cumulative_buckets(merged))
    assert (cumulative["0.00025"], cumulative["0.005"], cumulative["0.5"], cumulative["+Inf"]) == (1, 2, 3, 3)


APP = '''
import os
import numpy as np
from edgeflow import ConsumerNode, EdgeApp, GatewayNode, ProducerNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface

FRAMES = int(os.environ["TEST_FRAMES"])
app = EdgeApp(os.environ["TEST_APP"])


@app.node(name="cam", fps=200)
class Cam(ProducerNode):
    def setup(self):
        self.i = 0

    def produce(self):
        self.i += 1
        if self.i > FRAMES:
            return None                     # FRAMES frames, then nothing: the run (and /metrics) stays up
        return np.array([self.i], np.int64)


@app.node(name="det", replicas=2)
class Det(ConsumerNode):
    def process(self, data):
        with open(os.environ["TEST_OUT"], "a") as f:
            f.write(f"{self.replica}\\n")
        return data.copy()


@app.node(name="gw")
class Gw(GatewayNode):
    def configure(self):
        self.add_interface(WebInterface(host="127.0.0.1", port=int(os.environ["TEST_HTTP_PORT"])))


if __name__ == "__main__":
    app.link("cam").to("det", qos="durable").to("gw")
    app.run()
'''


def scrape(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_of_a_replicated_node_sum_both_replicas_and_expose_buckets(app, tmp_path):
    frames, out, http = 120, tmp_path / "handled.txt", free_port()
    (tmp_path / "main.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TEST_APP": app,
           "TEST_FRAMES": str(frames), "TEST_OUT": str(out), "TEST_HTTP_PORT": str(http),
           "GATEWAY_TCP_PORT": str(free_port())}
    proc = subprocess.Popen([sys.executable, "main.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    count = ("edgeflow_node_processing_seconds_count", (("node", "det"),))
    try:
        deadline = time.monotonic() + 60
        got = {}
        while got.get(count) != frames:       # one replica's count alone never reaches every frame
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, f"det's count on /metrics: {got.get(count)} of {frames}"
            time.sleep(0.2)                    # polling an HTTP endpoint: there is no event to wait on
            got = scrape(http)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    print(output)
    handled = out.read_text().split()
    assert len(handled) == frames and set(handled) == {"0", "1"}, "both replicas took part"
    assert got[("edgeflow_node_frames_in_total", (("node", "det"),))] == frames
    assert got[("edgeflow_node_latency_seconds_count", (("node", "det"),))] == frames
    buckets = {dict(labels)["le"]: v for (name, labels), v in got.items()
               if name == "edgeflow_node_processing_seconds_bucket" and dict(labels)["node"] == "det"}
    assert buckets["+Inf"] == frames and len(buckets) == len(_series.BUCKETS) + 1
    assert got[("edgeflow_node_replicas", (("node", "det"), ("state", "running")))] == 2
    assert proc.returncode == 0 and "summary:" in output
