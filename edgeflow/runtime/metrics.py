"""Per-node statistics: counters, drops by reason, processing time and end-to-end latency percentiles.

A node process keeps a NodeMetrics and sends ``snapshot()`` dicts to the supervisor, which merges replicas and
serves them (``statistics()``), prints them (``format_table``) and, later, exports them to Prometheus.
"""

from __future__ import annotations

import collections
import math
import time

RESERVOIR = 2048            # newest samples kept per series for percentiles


class Series:
    """The newest RESERVOIR samples of a duration (seconds), with count and sum of all of them."""

    __slots__ = ("samples", "count", "total")

    def __init__(self) -> None:
        self.samples: collections.deque = collections.deque(maxlen=RESERVOIR)
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.count += 1
        self.total += seconds

    def percentiles(self) -> dict:
        """{"p50", "p99", "mean", "count"} in milliseconds (None when empty)."""
        if not self.samples:
            return {"p50": None, "p99": None, "mean": None, "count": 0}
        ordered = sorted(self.samples)
        return {"p50": 1e3 * _pick(ordered, 0.50), "p99": 1e3 * _pick(ordered, 0.99),
                "mean": 1e3 * self.total / self.count, "count": self.count}


def _pick(ordered: list, q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class NodeMetrics:
    """What one node replica counts while it runs."""

    def __init__(self, node: str, replica: int = 0) -> None:
        self.node = node
        self.replica = replica
        self.started = time.time()
        self.frames_in = 0
        self.frames_out = 0
        self.errors = 0
        self.drops: collections.Counter = collections.Counter()       # reason -> frames
        self.edge_in: collections.Counter = collections.Counter()     # input label -> frames
        self.edge_drops: collections.Counter = collections.Counter()  # input label -> frames skipped
        self.processing = Series()
        self.latency = Series()          # capture timestamp -> output sent (or consumed)
        self._fps_mark = (time.monotonic(), 0)
        self.fps = 0.0
        self.extra: dict = {}            # node-kind specific figures (fusion: clock offsets, silent inputs)

    def received(self, label: str) -> None:
        self.frames_in += 1
        self.edge_in[label] += 1

    def dropped(self, reason: str, frames: int = 1, label: str | None = None) -> None:
        if frames:
            self.drops[reason] += frames
            if label is not None:
                self.edge_drops[label] += frames

    def snapshot(self) -> dict:
        """A JSON-able dict of everything counted so far."""
        now = time.monotonic()
        mark_t, mark_n = self._fps_mark
        done = self.frames_out or self.frames_in
        if now - mark_t >= 0.5:
            self.fps = (done - mark_n) / (now - mark_t)
            self._fps_mark = (now, done)
        return {"node": self.node, "replica": self.replica, "frames_in": self.frames_in,
                "frames_out": self.frames_out, "errors": self.errors, "drops": dict(self.drops),
                "edges_in": dict(self.edge_in), "edge_drops": dict(self.edge_drops), "fps": round(self.fps, 2),
                "processing_ms": self.processing.percentiles(), "latency_ms": self.latency.percentiles(),
                "extra": dict(self.extra)}


def merge(snapshots: list[dict]) -> dict:
    """One node's statistics from the snapshots of its replicas (counters add up, percentiles: the worst)."""
    out = {"frames_in": 0, "frames_out": 0, "errors": 0, "fps": 0.0, "drops": collections.Counter(),
           "edges_in": collections.Counter(), "edge_drops": collections.Counter(), "replicas": len(snapshots)}
    for snap in snapshots:
        for key in ("frames_in", "frames_out", "errors", "fps"):
            out[key] += snap[key]
        for key in ("drops", "edges_in", "edge_drops"):
            out[key].update(snap[key])
    for key in ("processing_ms", "latency_ms"):
        parts = [s[key] for s in snapshots if s[key]["count"]]
        out[key] = max(parts, key=lambda p: p["p99"]) if parts else {"p50": None, "p99": None,
                                                                    "mean": None, "count": 0}
    for key in ("drops", "edges_in", "edge_drops"):
        out[key] = dict(out[key])
    out["extra"] = {k: v for snap in snapshots for k, v in snap.get("extra", {}).items()}
    out["fps"] = round(out["fps"], 2)
    return out


def format_table(nodes: dict[str, dict]) -> str:
    """A plain-text table of node statistics for the periodic ``--stats`` print."""
    rows = [f"{'node':<20} {'in':>8} {'out':>8} {'fps':>7} {'proc p50':>9} {'e2e p50':>9} {'e2e p99':>9} "
            f"{'drops':>7} {'restarts':>8}"]
    for name, s in nodes.items():
        ms = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        rows.append(f"{name:<20} {s['frames_in']:>8} {s['frames_out']:>8} {s['fps']:>7.1f} "
                    f"{ms(s['processing_ms']['p50']):>9} {ms(s['latency_ms']['p50']):>9} "
                    f"{ms(s['latency_ms']['p99']):>9} {sum(s['drops'].values()):>7} {s.get('restarts', 0):>8}")
    return "\n".join(rows)
