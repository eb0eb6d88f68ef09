"""A running app that changes: nodes and links added and removed, streams activated and deactivated.

Every change runs on the supervisor's own thread (between two turns of its loop), so it never races the
supervisor's bookkeeping; callers on other threads (``RunningApp.add``, the gateway's stream API through its
pipe) get a concurrent Future.

    add(fragment)    the fragment's nodes and links, checked together with the running graph exactly as at
                     start (Graph validation, planning): a cycle, an unknown node or a refused option raises and
                     nothing changes. Then: DURABLE groups declared, the new nodes' processes started (consumers
                     first), and running nodes that gain inputs told to subscribe ("add_inputs").
    remove(names)    the nodes and every link touching them; the rest must still be a valid graph. Their
                     consumers drop those inputs ("remove_inputs"), their processes get SIGTERM (SIGKILL after
                     STOP_TIMEOUT), and once they are gone their rings are unlinked; the Future resolves then.
    streams          a stream template's subgraphs by stream id (edgeflow.streams): activate, deactivate, params.

The gateway reaches the stream operations as control messages to the pseudo node STREAMS ("@streams"), so
they use the control-message plumbing of runtime/control.py (one Future per request, answered once).

A removed consumer's DURABLE or BALANCED groups in the rings of producers that stay are dropped once its
processes are gone, so they no longer hold those producers back. An output ring is sized when its writer starts: a sink added later that holds many frames gets no more slots.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
import signal
import time
from typing import Any, Callable

from edgeflow import streams as streaming
from edgeflow.errors import ConfigError, GraphError
from edgeflow.qos import QoS
from edgeflow.runtime import plan as planning
from edgeflow.transport import shm

STREAMS = "@streams"        # the pseudo node the gateway sends stream operations to
STOP_TIMEOUT = 4.0          # seconds between SIGTERM and SIGKILL for a removed node's processes

log = logging.getLogger("edgeflow.supervisor")


@dataclasses.dataclass
class _Retiring:
    """Replicas of removed nodes on their way out, and the rings to unlink once they are gone."""
    replicas: list
    topics: list
    deadline: float
    future: concurrent.futures.Future
    groups: list = dataclasses.field(default_factory=list)    # (topic, group) to drop from rings that stay
    reaped: bool = False


class Dynamic:
    """The changing part of a Supervisor (``sup.dynamic``)."""

    def __init__(self, sup: Any) -> None:
        self.sup = sup
        self._queue: collections.deque = collections.deque()      # (function, future) from other threads
        self._retiring: list[_Retiring] = []
        self.streams: dict[str, dict] = {}                       # stream id -> its nodes, url, params, ...

    # -- any thread ------------------------------------------------------------------------------------------
    def submit(self, function: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``function`` on the supervisor's thread; a Future of its result (or of what it raised). A
        function that returns a Future hands its result on."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.append((function, future))
        return future

    # -- the supervisor's thread -----------------------------------------------------------------------------
    def tick(self) -> None:
        """Run what was submitted; finish removals whose processes are gone."""
        while self._queue:
            function, future = self._queue.popleft()
            try:
                result = function()
            except BaseException as exc:            # the caller gets it; the supervisor goes on
                future.set_exception(exc)
                continue
            if isinstance(result, concurrent.futures.Future):
                _chain(result, future)
            else:
                future.set_result(result)
        if self._retiring:
            self._retiring = [r for r in self._retiring if not self._retired(r)]

    def add(self, fragment: Any) -> list[str]:
        """Add an EdgeApp fragment's nodes and links (they may name nodes of the running app); the names of
        the nodes added.

        Raises:
            GraphError, ConfigError: as at start (nothing changed).
        """
        sup = self.sup
        old = sup.graph
        specs = {spec.name: spec for spec in old.nodes}
        added = []
        for spec in fragment.nodes:
            if spec.name in specs:
                raise GraphError(f"node {spec.name!r}: the running app has a node of that name already",
                                 node=spec.name)
            specs[spec.name] = spec
            added.append(spec.name)
        new_edges = [fragment._resolve(link, specs) for link in fragment._links]
        graph = _graph(old, tuple(specs.values()), old.edges + tuple(new_edges))
        plans = planning.plan(graph)
        for edge in new_edges:                          # a ring that exists has its slots already
            if edge.source not in added and plans[edge.source].slots > sup.plans[edge.source].slots:
                raise ConfigError(f"link {edge.source} -> {edge.target}: {edge.target!r} holds more frames "
                                  f"than the running {edge.source!r}'s ring has room for; add it at start")
        # checked: from here on the change happens
        gaining: dict[str, list] = {}
        for edge in new_edges:
            if edge.target not in added:
                gaining.setdefault(edge.target, []).append(edge.source)
        self._install(graph, plans)
        for topic, group, qos, max_lag in planning.groups_to_declare({n: plans[n] for n in
                                                                       set(added) | set(gaining)}):
            shm.declare_group(topic, group, qos, app=sup.app, max_lag=max_lag or shm.DEFAULT_MAX_LAG)
        for name, sources in gaining.items():
            new_inputs = [p for p in plans[name].inputs if p.source in sources]
            for rep in sup.replicas:
                if rep.job.spec.name == name and rep.process is not None:
                    sup._send(rep, ("add_inputs", new_inputs))
        for name in reversed(graph.topological_order()):
            if name in added:
                sup._start_node(name)
        for line in planning.edge_lines(graph):
            if any(part in added for part in line.split(":", 1)[0].split(" -> ")):
                sup.echo(line)
        self._share_graph()
        return added

    def remove(self, names: Any) -> concurrent.futures.Future:
        """Remove nodes (a name or several) and their links; a Future that resolves to the names once their
        processes are gone and their rings unlinked.

        Raises:
            GraphError: an unknown node, or what is left would not be a valid graph (nothing changed).
        """
        sup = self.sup
        names = [names] if isinstance(names, str) else list(names)
        old = sup.graph
        for name in names:
            old.node(name)                               # unknown: GraphError with a did-you-mean
        gone = set(names)
        edges = tuple(e for e in old.edges if e.source not in gone and e.target not in gone)
        graph = _graph(old, tuple(s for s in old.nodes if s.name not in gone), edges)
        # the groups removed consumers kept in rings that stay (DURABLE ones would hold their writer back)
        groups = [(topic, inp.group) for name in names for inp in sup.plans[name].inputs
                  if inp.source not in gone and inp.qos is not QoS.REALTIME for topic in inp.topics]
        losing: dict[str, list] = {}
        for edge in old.edges:
            if edge.source in gone and edge.target not in gone:
                losing.setdefault(edge.target, []).append(edge.source)
        topics = [t for name in names for t in sup.plans[name].outputs]
        self._install(graph, planning.plan(graph))
        for name, sources in losing.items():
            for rep in sup.replicas:
                if rep.job.spec.name == name and rep.process is not None:
                    sup._send(rep, ("remove_inputs", sources))
        leaving = [r for r in sup.replicas if r.job.spec.name in gone]
        sup.replicas = [r for r in sup.replicas if r.job.spec.name not in gone]
        for rep in leaving:
            if rep.process is not None and rep.process.is_alive():
                os.kill(rep.process.pid, signal.SIGTERM)
        future: concurrent.futures.Future = concurrent.futures.Future()
        retiring = _Retiring(leaving, topics, time.monotonic() + STOP_TIMEOUT, future, groups=groups)
        if not self._retired(retiring):
            self._retiring.append(retiring)
        self._share_graph()
        return future

    def _retired(self, r: _Retiring) -> bool:
        if any(rep.process is not None and rep.process.is_alive() for rep in r.replicas):
            if time.monotonic() < r.deadline:
                return False
            for rep in r.replicas:                       # did not stop in time: as at the end of a run
                if rep.process is not None and rep.process.is_alive():
                    rep.process.kill()
        if not r.reaped:
            for rep in r.replicas:
                self.sup._reap(rep, kill=True)
            for topic in r.topics:
                shm.remove_topic(topic, app=self.sup.app)
            r.reaped = True
        # a killed reader stays a member until the writer reclaims it (within its housekeeping period)
        r.groups = [(t, g) for t, g in r.groups if shm.drop_group(t, g, app=self.sup.app) == "busy"]
        if r.groups and time.monotonic() < r.deadline + STOP_TIMEOUT:
            return False
        names = sorted({rep.job.spec.name for rep in r.replicas})
        if not r.future.done():
            r.future.set_result(names)
        return True

    def _install(self, graph: Any, plans: dict) -> None:
        """Make ``graph`` the supervisor's: plans, the jobs a restart uses, connector bookkeeping."""
        sup = self.sup
        sup.graph, sup.plans = graph, plans
        for rep in sup.replicas:
            name = rep.job.spec.name
            if name in plans:
                rep.job = dataclasses.replace(rep.job, spec=graph.node(name), plan=plans[name])
        sup._reporting = {s.name for s in graph.nodes if sup._reports(s)}

    def _share_graph(self) -> None:
        for rep in self.sup.replicas:
            if rep.job.spec.kind == "gateway":
                self.sup._send(rep, ("graph", self.sup.graph_dict()))

    # -- streams -----------------------------------------------------------------------------------------------
    def control(self, message: dict) -> Any:
        """A stream operation from the gateway (``{"action": ...}``): an answer dict, or a Future of one."""
        action = message.get("action")
        template = self.sup.graph.streams
        if action == "template":
            if template is None:
                return _error(404, "this app declares no stream template (app.streams(...))")
            return {"ok": True, "status": 200, "error": None, "template": template.to_dict()}
        if template is None:
            return _error(404, "this app declares no stream template (app.streams(...)): no streams to run")
        stream_id = message.get("id")
        try:
            if action == "activate":
                return _answer(self.activate(stream_id, message.get("url"), message.get("params") or {}))
            if action == "deactivate":
                if stream_id not in self.streams:
                    return _error(404, f"stream {stream_id!r} is not active")
                return _answer(self.deactivate(stream_id))
            if action == "params":
                if stream_id not in self.streams:
                    return _error(404, f"stream {stream_id!r} is not active")
                return _answer(self.update(stream_id, message.get("params") or {}))
        except (GraphError, ConfigError, TypeError, ValueError) as exc:
            return _error(400, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return _error(400, f"unknown stream action {action!r} (activate, deactivate, params, template)")

    def activate(self, stream_id: str, url: Any, params: dict) -> Any:
        """Start stream ``stream_id`` (its template's subgraph); already active with this url: new params
        only. Returns its info (nodes, topics), or a Future of it when an old url's nodes must go first."""
        template = self.sup.graph.streams
        if template is None:
            raise ConfigError(f"app '{self.sup.app}' declares no stream template (app.streams(...))")
        streaming.check_stream_id(stream_id)
        if not isinstance(params, dict):
            raise ConfigError(f"stream {stream_id!r}: params must be a JSON object, got {type(params).__name__}")
        current = self.streams.get(stream_id)
        if current is not None:
            if current["url"] == url:
                if current["params"] != params:
                    self.update(stream_id, params)
                return self._info(stream_id)
            done = self.deactivate(stream_id)
            out: concurrent.futures.Future = concurrent.futures.Future()

            def again(_):                               # the old url's nodes are gone: start the new ones
                self._queue.append((lambda: self.activate(stream_id, url, params), out))
            done.add_done_callback(again)
            return out
        part = streaming.fragment(template, self.sup.app, stream_id, url, params)
        names = self.add(part)
        self.streams[stream_id] = {"nodes": names, "url": url, "params": dict(params),
                                   "topics": [names[-1]], "started_at": time.time()}
        return self._info(stream_id)

    def deactivate(self, stream_id: str) -> concurrent.futures.Future:
        """Stop stream ``stream_id``: a Future that resolves once its processes are gone and its rings removed.

        Raises:
            GraphError: no such active stream.
        """
        info = self.streams.pop(stream_id, None)
        if info is None:
            raise GraphError(f"stream {stream_id!r} is not active")
        done = self.remove(info["nodes"])
        out: concurrent.futures.Future = concurrent.futures.Future()
        done.add_done_callback(lambda f: out.set_result({"id": stream_id, "nodes": info["nodes"]}))
        return out

    def update(self, stream_id: str, params: dict) -> dict:
        """New params for a running stream's workers: each replica's ``on_params(params)`` between two
        frames; a restarted replica starts with them."""
        info = self.streams.get(stream_id)
        if info is None:
            raise GraphError(f"stream {stream_id!r} is not active")
        if not isinstance(params, dict):
            raise ConfigError(f"stream {stream_id!r}: params must be a JSON object, got {type(params).__name__}")
        sup, workers = self.sup, info["nodes"][1:]
        for name in workers:                  # the worker classes' own checks, as at activation: 400, no change
            spec = sup.graph.node(name)
            check = getattr(spec.load_class(), "check_options", None)
            if check is not None:
                check(name, {**spec.config, "params": dict(params)})
        specs = [dataclasses.replace(s, options={**s.options, "params": dict(params)},
                                     config={**s.config, "params": dict(params)})
                 if s.name in workers else s for s in sup.graph.nodes]
        self._install(_graph(sup.graph, tuple(specs), sup.graph.edges), sup.plans)
        for rep in sup.replicas:
            if rep.job.spec.name in workers and rep.process is not None:
                sup._send(rep, ("params", dict(params)))
        info["params"] = dict(params)
        return self._info(stream_id)

    def _info(self, stream_id: str) -> dict:
        info = self.streams[stream_id]
        return {"ok": True, "status": 200, "error": None, "id": stream_id, "nodes": list(info["nodes"]),
                "topics": list(info["topics"]), "url": info["url"], "params": dict(info["params"])}

    def statistics(self, nodes: dict) -> dict:
        """``statistics()["streams"]``: per active stream its state, start, nodes, topics, source state, fps."""
        out = {}
        for stream_id, info in self.streams.items():
            mine = [nodes.get(name) or {} for name in info["nodes"]]
            states = [s for node in mine for s in node.get("states", ())]
            source = ((mine[0].get("extra") or {}).get("source") or {}) if mine else {}
            if not states or "starting" in states:
                state = "starting"
            elif "failed" in states:
                state = "failed"
            elif all(s == "finished" for s in states):
                state = "finished"
            elif "restarting" in states:
                state = "restarting"
            else:
                state = "running"
            out[stream_id] = {"state": state, "started_at": info["started_at"], "nodes": list(info["nodes"]),
                              "topics": list(info["topics"]), "url": info["url"],
                              "params": dict(info["params"]), "source_state": source.get("state"),
                              "fps": (mine[-1].get("fps") if mine else None)}
        return out


def _graph(old: Any, nodes: tuple, edges: tuple) -> Any:
    """A Graph like ``old`` (app, broker, stream template) with these nodes and edges (validated)."""
    return type(old)(old.app, nodes, edges, old.broker, old.streams)


def _chain(source: concurrent.futures.Future, target: concurrent.futures.Future) -> None:
    def copy(f: concurrent.futures.Future) -> None:
        if f.exception() is not None:
            target.set_exception(f.exception())
        else:
            target.set_result(f.result())
    source.add_done_callback(copy)


def _error(status: int, text: str) -> dict:
    return {"ok": False, "status": status, "error": text}


def _answer(result: Any) -> Any:
    """A stream operation's result as a control answer (a dict, or a Future of one)."""
    if isinstance(result, concurrent.futures.Future):
        out: concurrent.futures.Future = concurrent.futures.Future()

        def copy(f: concurrent.futures.Future) -> None:
            if f.exception() is not None:
                exc = f.exception()
                out.set_result(_error(400, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            else:
                value = f.result()
                out.set_result(value if isinstance(value, dict) and "ok" in value
                               else {"ok": True, "status": 200, "error": None, **(value or {})})
        result.add_done_callback(copy)
        return out
    return result
