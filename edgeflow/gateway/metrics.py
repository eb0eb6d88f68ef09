"""Prometheus text for ``/metrics``: every node's and edge's statistics, and the gateway's own topics.

Built from the runtime's statistics snapshot on each scrape (a custom collector on a private registry), so the
figures are the ones the dashboard shows. Names and labels:

    edgeflow_node_*{node}      frames_in, frames_out, errors, restarts, duplicates (DURABLE frames received
                               again after a crash), backpressure_seconds (time spent waiting for a DURABLE
                               consumer) (counters), fps, failing, blocked (1 while waiting now), replicas{state},
                               drops{node,reason}, processing_seconds and latency_seconds (histograms:
                               _bucket{le}, _sum, _count; a replicated node's buckets are the sum of its
                               replicas', so histogram_quantile works across replicas and hosts)
    edgeflow_edge_*{edge}      frames, drops (counters); edgeflow_edge_info{edge,source,target,qos,transport}
                               = 1. ``edge`` is "source->target" (with ".channel" on the source)
    edgeflow_route_state{node,route,state}  = 1 for the state of each route a node publishes to another host
    edgeflow_connector_up{node,target}      = 1 while a connector's connection is up
    edgeflow_connector_events_total{node,event}   connector events (spooled, overflow, bad_payload, rows, ...)
                               over ("up", "down": unreachable, "full": Redis refuses writes for memory,
                               which is back-pressure on a DURABLE edge, never a loss)
    edgeflow_model_info{node,version}       = 1 for the model version a model node runs (edgeflow.models; one
                               per version while replicas differ), edgeflow_model_reloads_total{node} and
                               edgeflow_model_reload_failures_total{node} (a new version that failed to load)
    edgeflow_topic_*{topic}    what the gateway received and served per topic: frames, fps,
                               frame_age_seconds, viewers{kind}, jpeg_encodes, frames_sent, frames_skipped
                               (a viewer was too slow), encode_seconds and delivery_seconds (histograms: frame
                               handed to the gateway -> its bytes written to a viewer's socket)

    edgeflow_streams_total, edgeflow_streams_active   streams the gateway's store holds, and how many of
                               them are active (gauges; edgeflow.gateway.streams)
    edgeflow_stream_fps{stream_id}, edgeflow_stream_state{stream_id,state} = 1   per running stream
    <a node's own metrics>{node}   gauges and counters a node sets with ``self.gauge(name, v)`` /
                               ``self.count(name, n)`` (``extra["user_metrics"]``), under their own names; a
                               name that is not a Prometheus name, begins with ``edgeflow_`` or is used by
                               another node for the other kind is left out

Streams: every series of a node that belongs to a stream (its statistics carry ``stream_id``), and of an edge
whose source or target does, has a ``stream_id`` label as well
(``edgeflow_node_fps{node=..., stream_id=...}``).

Latencies are in seconds, the Prometheus convention; the JSON API keeps the runtime's milliseconds.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily, Metric)

from edgeflow._series import cumulative_buckets

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

log = logging.getLogger("edgeflow.gateway")


def edge_label(edge: dict) -> str:
    """The ``edge`` label of a link: ``source->target`` (with ``.channel`` on the source when it has one)."""
    source = edge.get("source", "?")
    if edge.get("channel"):
        source = f"{source}.{edge['channel']}"
    return f"{source}->{edge.get('target', '?')}"


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def merge_edges(stats: dict, graph: dict) -> list[dict]:
    """Each link of the graph with its live figures (frames, drops, transport) from the statistics snapshot.

    Both list links in link order; a link the other side lacks is still listed (early on, the snapshot may
    have no edges yet; a ``--node`` run may have no graph)."""
    live = list(stats.get("edges") or ())
    used = [False] * len(live)
    out = []
    for edge in graph.get("edges") or ():
        merged = {"frames": 0, "drops": 0, **edge}
        for i, candidate in enumerate(live):
            if not used[i] and (candidate.get("source"), candidate.get("target")) == \
                    (edge.get("source"), edge.get("target")):
                used[i] = True
                merged.update({k: v for k, v in candidate.items() if v is not None})
                break
        out.append(merged)
    out.extend(dict(edge) for i, edge in enumerate(live) if not used[i])
    return out


def _add_histogram(metric: HistogramMetricFamily, labels: list[str], histogram: dict | None) -> None:
    """One series of a histogram family from a Series.histogram() dict (or a merge of several); an absent
    histogram is exported empty rather than left out, so every node has the series from the start."""
    histogram = histogram or {}
    metric.add_metric(labels, cumulative_buckets(histogram), sum_value=float(histogram.get("sum") or 0.0))


def node_families(stats: dict) -> Iterable[Metric]:
    """Metric families of every node in a statistics snapshot."""
    counters = {key: CounterMetricFamily(f"edgeflow_node_{key}", doc, labels=["node"]) for key, doc in (
        ("frames_in", "Frames the node received."),
        ("frames_out", "Frames the node sent (or consumed, for sinks and gateways)."),
        ("errors", "Times the node's hook raised or returned something unsendable."),
        ("restarts", "Times the supervisor restarted one of the node's replicas."),
        ("duplicates", "DURABLE frames the node received again after a crash (at-least-once)."))}
    waited = CounterMetricFamily("edgeflow_node_backpressure_seconds",
                                 "Seconds the node waited for a DURABLE consumer to take its frames.", labels=["node"])
    blocked = GaugeMetricFamily("edgeflow_node_blocked",
                                "1 while the node waits for a DURABLE consumer (back-pressure).", labels=["node"])
    route_state = GaugeMetricFamily("edgeflow_route_state",
                                    "1 for the current state of each route to another host (up, down, full).",
                                    labels=["node", "route", "state"])
    fps = GaugeMetricFamily("edgeflow_node_fps", "Frames per second the node handled lately.",
                            labels=["node"])
    failing = GaugeMetricFamily("edgeflow_node_failing",
                                "1 while the node's hook calls have all failed for 10 s or more.", labels=["node"])
    replicas = GaugeMetricFamily("edgeflow_node_replicas", "Replicas of the node by state.",
                                 labels=["node", "state"])
    drops = CounterMetricFamily("edgeflow_node_drops", "Frames dropped, by reason.",
                                labels=["node", "reason"])
    processing = _histogram("edgeflow_node_processing_seconds", "Time in the node's hook per frame.", ["node"])
    latency = _histogram("edgeflow_node_latency_seconds",
                         "End-to-end latency: capture timestamp to the node's output sent (or consumed).",
                         ["node"])
    # fusion nodes: each input's clock offset (arrival minus capture stamp, windowed minimum) and silence
    offset = GaugeMetricFamily("edgeflow_fusion_clock_offset_seconds",
                               "Per fusion input: windowed minimum of arrival time minus capture stamp.",
                               labels=["node", "input"])
    silent = GaugeMetricFamily("edgeflow_fusion_input_silent", "1 for a fusion input that went silent.",
                               labels=["node", "input"])
    # connectors (edgeflow.connectors): each connection's state, and what happened to messages on the way
    connector_up = GaugeMetricFamily("edgeflow_connector_up",
                                     "1 while a connector's connection (broker, database) is up, else 0.",
                                     labels=["node", "target"])
    connector_events = CounterMetricFamily("edgeflow_connector_events",
                                           "Connector events: spooled, overflow, bad_payload, retries, rows, ...",
                                           labels=["node", "event"])
    models = ModelFamilies()
    for name, node in (stats.get("nodes") or {}).items():
        models.add(name, (node.get("extra") or {}).get("model"))
        for key, family in counters.items():
            family.add_metric([name], node.get(key) or 0)
        fps.add_metric([name], node.get("fps") or 0.0)
        failing.add_metric([name], 1.0 if node.get("failing") else 0.0)
        waited.add_metric([name], node.get("blocked_seconds") or 0.0)
        blocked.add_metric([name], 1.0 if node.get("blocked") else 0.0)
        states: dict[str, int] = {}
        for state in node.get("states") or ():
            states[state] = states.get(state, 0) + 1
        for state, n in sorted(states.items()):
            replicas.add_metric([name, state], n)
        for reason, n in sorted((node.get("drops") or {}).items()):
            drops.add_metric([name, str(reason)], n)
        _add_histogram(processing, [name], node.get("processing_hist"))
        _add_histogram(latency, [name], node.get("latency_hist"))
        extra = node.get("extra") or {}
        for label, ms in sorted((extra.get("clock_offset_ms") or {}).items()):
            if ms is not None:
                offset.add_metric([name, label], ms / 1e3)
        for label in extra.get("silent_inputs") or ():
            silent.add_metric([name, label], 1)
        for route, state in sorted((extra.get("route_states") or {}).items()):
            route_state.add_metric([name, str(route), str(state)], 1)
        for target, conn in sorted((extra.get("connections") or {}).items()):
            connector_up.add_metric([name, str(target)], 1.0 if conn.get("state") == "up" else 0.0)
        for event, n in sorted((extra.get("events") or {}).items()):
            connector_events.add_metric([name, str(event)], n)
    return [*counters.values(), waited, fps, failing, blocked, replicas, drops, processing, latency, offset,
            silent, route_state, connector_up, connector_events, *models.families()]


class ModelFamilies:
    """The model nodes' series, from ``extra["model"]`` (edgeflow.models.ModelNode): the version in use (the
    replicas' ``versions`` when their merged statistics list them, else ``version``) and the reload counts."""

    def __init__(self) -> None:
        self.info = InfoMetricFamily("edgeflow_model", "The model version a model node runs.",
                                     labels=["node"])
        self.reloads = CounterMetricFamily("edgeflow_model_reloads",
                                           "New model versions a model node switched to.", labels=["node"])
        self.failures = CounterMetricFamily("edgeflow_model_reload_failures",
                                            "New model versions that failed to load or init; the old ran on.",
                                            labels=["node"])

    def add(self, node: str, model: Any) -> None:
        """The series of one node (nothing unless it runs a model)."""
        if not isinstance(model, dict):
            return
        versions = model.get("versions") or [model.get("version")]
        for version in sorted({str(v) for v in versions if v is not None}):
            self.info.add_metric([node], {"version": version})
        self.reloads.add_metric([node], float(model.get("reloads") or 0))
        self.failures.add_metric([node], float(model.get("reload_failures") or 0))

    def families(self) -> list[Metric]:
        """The three families (empty when no node runs a model)."""
        return [self.info, self.reloads, self.failures]


def edge_families(stats: dict, graph: dict) -> Iterable[Metric]:
    """Metric families of every edge: frames, drops, and an info series with qos and transport."""
    info = InfoMetricFamily("edgeflow_edge", "A link of the pipeline: its ends, QoS and transport.",
                            labels=["edge"])
    frames = CounterMetricFamily("edgeflow_edge_frames", "Frames delivered over the link.", labels=["edge"])
    drops = CounterMetricFamily("edgeflow_edge_drops",
                                "Frames the link's consumer skipped (REALTIME, BALANCED).", labels=["edge"])
    for edge in merge_edges(stats, graph):
        label = edge_label(edge)
        info.add_metric([label], {"source": str(edge.get("source")), "target": str(edge.get("target")),
                                  "qos": str(edge.get("qos", "")),
                                  "transport": str(edge.get("transport", ""))})
        frames.add_metric([label], edge.get("frames") or 0)
        drops.add_metric([label], edge.get("drops") or 0)
    return [info, frames, drops]


def topic_families(hub) -> Iterable[Metric]:
    """Metric families of the gateway's own topics (what it received and served)."""
    def counter(name: str, doc: str) -> CounterMetricFamily:
        return CounterMetricFamily(f"edgeflow_topic_{name}", doc, labels=["topic"])

    frames = counter("frames", "Frames the gateway received on the topic.")
    encodes = counter("jpeg_encodes", "JPEG encodes of the topic's frames (at most one per frame and size).")
    sent = counter("frames_sent", "Frames written to viewers (MJPEG and WebSocket).")
    skipped = counter("frames_skipped", "Frames replaced by a newer one before a slow viewer took them.")
    fps = GaugeMetricFamily("edgeflow_topic_fps", "Frames per second arriving on the topic.",
                            labels=["topic"])
    age = GaugeMetricFamily("edgeflow_topic_frame_age_seconds",
                            "Seconds since the topic's newest frame arrived.", labels=["topic"])
    viewers = GaugeMetricFamily("edgeflow_topic_viewers", "Open viewers of the topic.",
                                labels=["topic", "kind"])
    encode = _histogram("edgeflow_topic_encode_seconds", "Time to JPEG-encode one frame.", ["topic"])
    delivery = _histogram("edgeflow_topic_delivery_seconds",
                          "Frame handed to the gateway -> its bytes written to a viewer's socket.", ["topic"])
    now = time.perf_counter()
    for topic in list(hub.topics.values()):
        frames.add_metric([topic.name], topic.frames)
        encodes.add_metric([topic.name], topic.encodes)
        sent.add_metric([topic.name], topic.sent)
        skipped.add_metric([topic.name], topic.skipped)
        fps.add_metric([topic.name], topic.fps(now))
        entry = topic.latest
        age.add_metric([topic.name], float("nan") if entry is None else now - entry.handed)
        for kind in ("mjpeg", "ws"):
            viewers.add_metric([topic.name, kind], topic.viewers.get(kind, 0))
        _add_histogram(encode, [topic.name], topic.encode_time.histogram())
        _add_histogram(delivery, [topic.name], topic.delivery.histogram())
    return [frames, fps, age, viewers, encodes, sent, skipped, encode, delivery]


class SnapshotCollector:
    """A prometheus_client collector that reads the statistics, the graph and the hub at scrape time.

    ``source`` offers ``statistics()``, ``graph_dict()``, ``ready()`` and ``runtime`` (routes.Views: it
    shields the scrape from a runtime call that fails)."""

    def __init__(self, source: Any, hub: Any) -> None:
        self.source = source
        self.hub = hub

    def collect(self) -> Iterable[Metric]:
        """Every family, read now."""
        stats, graph = self.source.statistics(), self.source.graph_dict()
        runtime = self.source.runtime
        up = GaugeMetricFamily("edgeflow_gateway_ready", "1 when the gateway's inputs are attached.",
                               labels=["app", "node"])
        up.add_metric([str(runtime.app), str(runtime.node)], 1.0 if self.source.ready() else 0.0)
        yield up
        families = [*node_families(stats), *edge_families(stats, graph), *user_families(stats)]
        label_streams(families, stats, graph)
        yield from families
        yield from topic_families(self.hub)


def node_streams(stats: dict, graph: dict) -> dict[str, str]:
    """Node name -> stream id for every node that belongs to a stream (statistics' ``stream_id``, or the
    graph's ``stream``)."""
    out = {spec.get("name"): str(spec["stream"]) for spec in graph.get("nodes") or () if spec.get("stream")}
    for name, node in (stats.get("nodes") or {}).items():
        if isinstance(node, dict) and node.get("stream_id"):
            out[name] = str(node["stream_id"])
    return out


def label_streams(families: Iterable[Metric], stats: dict, graph: dict) -> None:
    """Add ``stream_id`` to every sample of a stream's node (label ``node``) or edge (label ``edge``: its
    source or target is a stream's node). Other series keep their labels exactly."""
    nodes = node_streams(stats, graph)
    if not nodes:
        return
    edges = {}
    for edge in merge_edges(stats, graph):
        stream = nodes.get(edge.get("source")) or nodes.get(edge.get("target"))
        if stream:
            edges[edge_label(edge)] = stream
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            stream = nodes.get(labels.get("node")) or edges.get(labels.get("edge"))
            if stream and "stream_id" not in labels:
                labels["stream_id"] = stream


_refused: set = set()


def user_families(stats: dict) -> list[Metric]:
    """The nodes' own gauges and counters (``extra["user_metrics"]``) as families under their own names,
    labelled ``node`` (``stream_id`` is added by label_streams). Replicas were merged by the runtime."""
    families: dict[str, Metric] = {}
    for node, s in sorted((stats.get("nodes") or {}).items()):
        user = ((s or {}).get("extra") or {}).get("user_metrics") or {}
        for kind in ("gauges", "counters"):
            for name, value in sorted((user.get(kind) or {}).items()):
                family_name = name[:-6] if kind == "counters" and name.endswith("_total") else name
                family = families.get(family_name)
                wanted = "gauge" if kind == "gauges" else "counter"
                ok = (isinstance(name, str) and METRIC_NAME.fullmatch(name) is not None
                      and not name.startswith("edgeflow_") and (family is None or family.type == wanted)
                      and isinstance(value, (int, float)) and not isinstance(value, bool))
                if not ok:
                    if (node, name) not in _refused:
                        _refused.add((node, name))
                        log.warning("gateway: /metrics leaves out the %s %r of node %r (not a Prometheus "
                                    "name, an edgeflow_ name, not a number, or a gauge and a counter at "
                                    "once)",
                                    wanted, name, node)
                    continue
                if family is None:
                    doc = f"A node's own {wanted} ({'self.gauge' if wanted == 'gauge' else 'self.count'})."
                    family = (GaugeMetricFamily if wanted == "gauge" else CounterMetricFamily)(
                        family_name, doc, labels=["node"])
                    families[family_name] = family
                family.add_metric([node], float(value))
    return list(families.values())


class StreamsCollector:
    """The stream store's figures and each running stream's state and rate, read at scrape time from the
    StreamService (its cached counts: a scrape never waits for the database)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        """The stream families."""
        total, active = self.service.counts
        stored = GaugeMetricFamily("edgeflow_streams_total", "Streams the gateway's stream store holds.")
        stored.add_metric([], float(total))
        running = GaugeMetricFamily("edgeflow_streams_active", "Streams stored active.")
        running.add_metric([], float(active))
        fps = GaugeMetricFamily("edgeflow_stream_fps", "Frames per second of a stream reaching its gateway.",
                                labels=["stream_id"])
        state = GaugeMetricFamily("edgeflow_stream_state", "1 for the state of each running stream.",
                                  labels=["stream_id", "state"])
        for stream_id, info in sorted(self.service.live().items()):
            if not isinstance(info, dict):
                continue
            fps.add_metric([str(stream_id)], float(info.get("fps") or 0.0))
            state.add_metric([str(stream_id), str(info.get("state"))], 1.0)
        return [stored, running, fps, state]


def registry_for(source: Any, hub: Any) -> CollectorRegistry:
    """A private registry (never the global one: several apps may share a process in tests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source, hub))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
