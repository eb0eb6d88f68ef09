"""The DURABLE figures of issue 12 on /metrics: duplicates, time blocked on back-pressure, whether a node is
blocked now, and each cross-host route's state (a full Redis shows as state "full"), from a merged snapshot of
replicas, parsed back with prometheus_client's own text parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgeflow.gateway import metrics as gateway_metrics
from edgeflow.runtime import metrics as runtime_metrics


def samples(stats: dict) -> dict:
    """{(sample name, labels as a sorted tuple): value} of node_families(stats)."""
    class Collector:
        def collect(self):
            return gateway_metrics.node_families(stats)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def replica(n: int, blocked: bool) -> dict:
    m = runtime_metrics.NodeMetrics("camera", n)
    m.duplicates, m.blocked, m.blocked_seconds = 2 + n, blocked, 1.5
    m.extra["route_states"] = {"redis:camera": "full"} if blocked else {}
    m.dropped("backpressure", 3)
    return m.snapshot()


def test_duplicates_blocked_time_and_route_state_sum_over_replicas():
    node = runtime_metrics.merge([replica(0, False), replica(1, True)])
    assert node["duplicates"] == 5 and node["blocked_seconds"] == 3.0 and node["blocked"] is True
    got = samples({"nodes": {"camera": {**node, "states": ["running", "running"]}}})
    camera = (("node", "camera"),)
    assert got[("edgeflow_node_duplicates_total", camera)] == 5
    assert got[("edgeflow_node_backpressure_seconds_total", camera)] == 3.0
    assert got[("edgeflow_node_blocked", camera)] == 1.0
    assert got[("edgeflow_node_drops_total", (("node", "camera"), ("reason", "backpressure")))] == 6
    assert got[("edgeflow_route_state", (("node", "camera"), ("route", "redis:camera"), ("state", "full")))] == 1


def test_a_node_that_is_not_waiting_says_so():
    got = samples({"nodes": {"camera": {**runtime_metrics.merge([replica(0, False)]), "states": ["running"]}}})
    assert got[("edgeflow_node_blocked", (("node", "camera"),))] == 0.0
    assert not any(name == "edgeflow_route_state" for name, _ in got)
