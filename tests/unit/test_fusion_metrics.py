"""A fusion node's clock offsets and silent inputs reach /metrics (issue 7: exported as a metric)."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgeflow.gateway import metrics


def test_fusion_offsets_and_silence_are_prometheus_gauges():
    ms = {"p50": 1.0, "p99": 2.0, "mean": 1.0, "count": 3}
    stats = {"nodes": {"fuse": {"frames_in": 3, "frames_out": 1, "errors": 0, "restarts": 0, "fps": 1.0,
                                "states": ["running"], "drops": {"queue_full": 2}, "processing_ms": ms,
                                "latency_ms": ms, "extra": {"clock_offset_ms": {"imu": 300.0, "camera": 1.0},
                                                            "silent_inputs": ["lidar"]}}}, "edges": []}

    class Snapshot:
        def collect(self):
            return metrics.node_families(stats)

    registry = CollectorRegistry()
    registry.register(Snapshot())
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    offsets = {s.labels["input"]: s.value for s in families["edgeflow_fusion_clock_offset_seconds"].samples}
    assert offsets == {"camera": 0.001, "imu": 0.3}
    silent = [(s.labels["node"], s.labels["input"], s.value) for s in families["edgeflow_fusion_input_silent"].samples]
    assert silent == [("fuse", "lidar", 1.0)]
