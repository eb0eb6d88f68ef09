"""Per-node statistics: counters, drops by reason, processing time and end-to-end latency percentiles.

A node process keeps a NodeMetrics and sends ``snapshot()`` dicts to the supervisor, which merges replicas and
serves them (``statistics()``), prints them (``format_table``, ``format_summary``); the gateway exports them to
Prometheus (gateway/metrics.py). ``failure()`` decides whether a node makes the run fail.
"""

from __future__ import annotations

import collections
import time

from edgeflow._series import RESERVOIR, Series, empty_histogram, merge_histograms  # noqa: F401 (re-exported)

FAILING_AFTER = 10.0         # seconds of nothing but errors after which a node is reported as failing


class NodeMetrics:
    """What one node replica counts while it runs.

    Besides frames and drops it follows the node's health: ``calls`` (hook calls), ``errors`` (calls that
    raised or returned something unsendable) and the current run of consecutive errors. A node whose calls
    all failed for FAILING_AFTER seconds is *failing* (``failing`` while it lasts, ``was_failing`` for good).
    """

    def __init__(self, node: str, replica: int = 0) -> None:
        self.node = node
        self.replica = replica
        self.started = time.time()
        self.frames_in = 0
        self.frames_out = 0
        self.calls = 0                   # hook calls (produce/process/consume), successful or not
        self.errors = 0
        self.drops: collections.Counter = collections.Counter()       # reason -> frames
        self.edge_in: collections.Counter = collections.Counter()     # input label -> frames
        self.edge_drops: collections.Counter = collections.Counter()  # input label -> frames skipped
        self.processing = Series()
        self.latency = Series()          # capture timestamp -> output sent (or consumed)
        self._fps_mark = (time.monotonic(), 0)
        self.fps = 0.0
        self.extra: dict = {}            # node-kind specific figures (fusion: clock offsets, silent inputs)
        self.streak = 0                  # consecutive failed calls
        self.streak_started = 0.0        # time.monotonic() of the streak's first error
        self.failing = False
        self.was_failing = False
        self.last_error: str | None = None
        self.duplicates = 0              # DURABLE frames received again after a crash (at-least-once)
        self.blocked = False             # waiting now for a DURABLE consumer to take frames (back-pressure)
        self.blocked_seconds = 0.0       # time spent so waiting
        self.blocked_mark = 0.0          # time.monotonic() up to which blocked_seconds is counted

    def gauge(self, name: str, value: float) -> None:
        """A node's own gauge (``Node.gauge``), in ``extra["user_metrics"]["gauges"]``."""
        self._user("gauges")[name] = float(value)

    def count(self, name: str, n: float = 1) -> None:
        """A node's own counter (``Node.count``), in ``extra["user_metrics"]["counters"]``."""
        counters = self._user("counters")
        counters[name] = counters.get(name, 0) + n

    def _user(self, kind: str) -> dict:
        user = self.extra.get("user_metrics")       # called per frame: no new dicts once they exist
        if user is None:
            user = self.extra["user_metrics"] = {"gauges": {}, "counters": {}}
        return user[kind]

    def received(self, label: str) -> None:
        """One frame arrived on input ``label``."""
        self.frames_in += 1
        self.edge_in[label] += 1

    def dropped(self, reason: str, frames: int = 1, label: str | None = None) -> None:
        """``frames`` frames were dropped for ``reason`` (on input ``label`` when given)."""
        if frames:
            self.drops[reason] += frames
            if label is not None:
                self.edge_drops[label] += frames

    def failed(self, reason: str, what: str) -> bool:
        """A hook call failed (``reason``: "error" or "unsendable"; ``what``: a one-line description).
        True when this error made the node *failing* (the caller says so once in the log)."""
        self.errors += 1
        self.drops[reason] += 1
        self.last_error = what
        now = time.monotonic()
        if not self.streak:
            self.streak_started = now
        self.streak += 1
        if not self.failing and now - self.streak_started >= FAILING_AFTER:
            self.failing = self.was_failing = True
            return True
        return False

    def succeeded(self) -> bool:
        """A hook call after errors went well; True when the node was failing until now."""
        self.streak = 0
        was, self.failing = self.failing, False
        return was

    def snapshot(self) -> dict:
        """A JSON-able dict of everything counted so far."""
        now = time.monotonic()
        mark_t, mark_n = self._fps_mark
        done = self.frames_out or self.frames_in
        if now - mark_t >= 0.5:
            self.fps = (done - mark_n) / (now - mark_t)
            self._fps_mark = (now, done)
        return {"node": self.node, "replica": self.replica, "frames_in": self.frames_in,
                "frames_out": self.frames_out, "calls": self.calls, "errors": self.errors,
                "drops": dict(self.drops), "edges_in": dict(self.edge_in), "edge_drops": dict(self.edge_drops),
                "fps": round(self.fps, 2),
                "processing_ms": self.processing.percentiles(), "latency_ms": self.latency.percentiles(),
                "processing_hist": self.processing.histogram(), "latency_hist": self.latency.histogram(),
                "failing": self.failing, "was_failing": self.was_failing, "last_error": self.last_error,
                "duplicates": self.duplicates, "blocked": self.blocked,
                "blocked_seconds": round(self.blocked_seconds, 3), "extra": _copy_extra(self.extra)}


def _copy_extra(extra: dict) -> dict:
    out = dict(extra)
    if "user_metrics" in out:        # the node keeps changing its own dicts: send a copy
        out["user_metrics"] = {kind: dict(values) for kind, values in out["user_metrics"].items()}
    return out


_NO_SERIES = {"p50": None, "p99": None, "mean": None, "count": 0}


def merge(snapshots: list[dict]) -> dict:
    """One node's statistics from the snapshots of its replicas.

    Counters, counts, sums and histogram buckets add up; p50/p99 are the worst replica's (reservoirs cannot be
    merged, and the slowest replica is what a caller waits for); the mean is over every replica's samples.
    """
    out = {"frames_in": 0, "frames_out": 0, "calls": 0, "errors": 0, "fps": 0.0, "duplicates": 0,
           "blocked_seconds": 0.0, "blocked": False,
           "drops": collections.Counter(), "edges_in": collections.Counter(),
           "edge_drops": collections.Counter(), "replicas": len(snapshots), "failing": False,
           "was_failing": False, "last_error": None}
    for snap in snapshots:
        for key in ("frames_in", "frames_out", "calls", "errors", "fps", "duplicates", "blocked_seconds"):
            out[key] += snap.get(key, 0)
        out["blocked"] |= bool(snap.get("blocked"))
        for key in ("drops", "edges_in", "edge_drops"):
            out[key].update(snap.get(key) or {})
        out["failing"] |= bool(snap.get("failing"))
        out["was_failing"] |= bool(snap.get("was_failing"))
        out["last_error"] = snap.get("last_error") or out["last_error"]
    for key in ("processing", "latency"):
        hist = merge_histograms(s.get(f"{key}_hist") for s in snapshots)
        parts = [s[f"{key}_ms"] for s in snapshots if s.get(f"{key}_ms", {}).get("count")]
        series = dict(max(parts, key=lambda p: p["p99"])) if parts else dict(_NO_SERIES)
        if parts and hist["count"]:
            series["count"], series["mean"] = hist["count"], 1e3 * hist["sum"] / hist["count"]
        out[f"{key}_ms"], out[f"{key}_hist"] = series, hist
    for key in ("drops", "edges_in", "edge_drops"):
        out[key] = dict(out[key])
    out["extra"] = {k: v for snap in snapshots for k, v in snap.get("extra", {}).items()}
    _merge_connectors(out["extra"], snapshots)
    _merge_models(out["extra"], snapshots)
    _merge_user_metrics(out["extra"], snapshots)
    out["fps"] = round(out["fps"], 2)
    out["blocked_seconds"] = round(out["blocked_seconds"], 3)
    return out


def _merge_user_metrics(extra: dict, snapshots: list[dict]) -> None:
    """Nodes' own metrics over replicas: counters add up, gauges are averaged over the replicas that set them."""
    parts = [(snap.get("extra") or {}).get("user_metrics") for snap in snapshots]
    parts = [p for p in parts if p]
    if not parts:
        return
    counters: collections.Counter = collections.Counter()
    gauges: dict[str, list] = {}
    for part in parts:
        counters.update(part.get("counters") or {})
        for name, value in (part.get("gauges") or {}).items():
            gauges.setdefault(name, []).append(value)
    extra["user_metrics"] = {"gauges": {k: sum(v) / len(v) for k, v in gauges.items()},
                             "counters": dict(counters)}


def _merge_connectors(extra: dict, snapshots: list[dict]) -> None:
    """Connectors' figures over replicas: event counters add up; a connection shows its worst replica."""
    events: collections.Counter = collections.Counter()
    connections: dict = {}
    rank = {"down": 0, "connecting": 1, "up": 2}
    for snap in snapshots:
        own = snap.get("extra") or {}
        events.update(own.get("events") or {})
        for target, conn in (own.get("connections") or {}).items():
            seen = connections.get(target)
            if seen is None or rank.get(conn.get("state"), 0) < rank.get(seen.get("state"), 0):
                connections[target] = conn
    if events:
        extra["events"] = dict(events)
    if connections:
        extra["connections"] = connections


def _merge_models(extra: dict, snapshots: list[dict]) -> None:
    """Model blocks' figures over replicas: every version in use, reloads and failures added up."""
    models = [m for m in ((s.get("extra") or {}).get("model") for s in snapshots) if isinstance(m, dict)]
    if len(models) < 2:
        return
    merged = dict(models[-1])
    merged["versions"] = sorted({str(m["version"]) for m in models if m.get("version") is not None})
    for key in ("reloads", "reload_failures"):
        merged[key] = sum(m.get(key) or 0 for m in models)
    merged["last_reload_error"] = next((m["last_reload_error"] for m in reversed(models)
                                        if m.get("last_reload_error")), None)
    extra["model"] = merged


def failure(node: dict) -> str | None:
    """Why a node's (merged) statistics say the run failed, or None: given up on, stopped by its on_error
    policy, a configuration error, failing (errors only, for FAILING_AFTER seconds), errors on every call, or
    restarting again and again."""
    states = node.get("states") or ()
    if "failed" in states:
        return node.get("failure") or "failed"
    if node.get("restart_loop"):
        return "in a restart loop"
    calls, errors = node.get("calls") or 0, node.get("errors") or 0
    if calls and errors >= calls:
        return f"every call failed ({errors} of {calls})"
    if node.get("was_failing"):
        return f"failing (nothing but errors for {FAILING_AFTER:g} s or more)"
    return None


def app_statistics(graph, node_snaps: dict[str, list[dict]], per_node: dict[str, dict] | None = None,
                   transports: dict | None = None) -> dict:
    """The app-wide snapshot from every replica's snapshot, grouped by node name.

    ``per_node`` adds fields to a node's merged figures (the supervisor's restarts and states);
    ``transports`` maps (source, target) to an edge's transport (default shm). Edge figures are those of the
    consuming node's input (frames taken, frames skipped)."""
    nodes = {}
    for spec in graph.nodes:
        merged = merge(node_snaps.get(spec.name) or [])
        merged.setdefault("restarts", 0)
        merged.setdefault("states", [])
        merged.update((per_node or {}).get(spec.name) or {})
        nodes[spec.name] = merged
    edges = []
    for edge in graph.edges:
        label = edge.source if edge.channel is None else f"{edge.source}.{edge.channel}"
        target = nodes[edge.target]
        edges.append({"source": edge.source, "target": edge.target, "qos": edge.qos.name,
                      "transport": (transports or {}).get((edge.source, edge.target), "shm"),
                      "frames": target["edges_in"].get(label, 0), "drops": target["edge_drops"].get(label, 0)})
    return {"app": graph.app, "nodes": nodes, "edges": edges}


def format_table(nodes: dict[str, dict]) -> str:
    """A plain-text table of node statistics for the periodic ``--stats`` print."""
    rows = [f"{'node':<20} {'in':>8} {'out':>8} {'fps':>7} {'proc p50':>9} {'e2e p50':>9} {'e2e p99':>9} "
            f"{'drops':>7} {'errors':>7} {'restarts':>8}"]
    for name, s in nodes.items():
        ms = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        flag = "  FAILING" if s.get("failing") else ""
        rows.append(f"{name:<20} {s['frames_in']:>8} {s['frames_out']:>8} {s['fps']:>7.1f} "
                    f"{ms(s['processing_ms']['p50']):>9} {ms(s['latency_ms']['p50']):>9} "
                    f"{ms(s['latency_ms']['p99']):>9} {sum(s['drops'].values()):>7} {s.get('errors', 0):>7} "
                    f"{s.get('restarts', 0):>8}{flag}")
    return "\n".join(rows)


def format_summary(nodes: dict[str, dict], code: int) -> str:
    """The few lines every run ends with: per node frames in/out, errors, drops by reason, restarts, and
    what failed; the last line gives the exit code."""
    width = max([len("node"), *map(len, nodes)])
    rows = ["summary:", f"  {'node':<{width}} {'in':>8} {'out':>8} {'errors':>7} {'restarts':>8}  drops"]
    failed = []
    for name, s in nodes.items():
        drops = ", ".join(f"{reason} {n}" for reason, n in sorted((s.get("drops") or {}).items()) if n) or "-"
        rows.append(f"  {name:<{width}} {s.get('frames_in', 0):>8} {s.get('frames_out', 0):>8} "
                    f"{s.get('errors', 0):>7} {s.get('restarts', 0):>8}  {drops}")
        why = failure(s)
        if why:
            last = f" (last error: {s['last_error']})" if s.get("last_error") else ""
            failed.append(f"  {name}: {why}{last}")
    if failed:
        rows.append("failed:")
        rows.extend(failed)
    rows.append(f"exit code {code}")
    return "\n".join(rows)
