"""The supervisor: one process per node replica, restarts with back-off, statistics, clean shutdown.

It owns every node process and the app's shared memory: on stop (Ctrl-C, SIGTERM, --duration, or every stream
ended) it stops all children within STOP_TIMEOUT seconds and removes the app's segments from /dev/shm.

Restart policy: a node replica that exits with an error is restarted after 0.5 s, then 1, 2, 4 ... (at most
10 s); after RESTART_LIMIT restarts within RESTART_WINDOW seconds the supervisor gives up on it, says so, and the
run ends with exit code 1 once everything else has finished. A replica that exits normally (its stream ended)
is not restarted. A replica that exits with STOP_EXIT (its hook raised and its ``on_error`` is "stop") is not
restarted either, and the whole run stops.

DURABLE links: a node waiting for a DURABLE consumer that is down waits through its restarts, however long the
back-off (runtime/outputs.py). Once the supervisor gives up on every replica of a consumer, it tells the nodes
that feed it ("consumer_gone"); a node blocked on it then fails with GONE_EXIT naming it, and the run stops.

Every run ends with a summary (metrics.format_summary) and an exit code: 0 only when no node failed (given up
on, stopped by its on_error policy or a configuration error), errored on every call, was failing (nothing but
errors for 10 s), or was in a restart loop when the run ended (restarting, or two crashes within
RESTART_WINDOW); otherwise 1, and 2 when a node stopped on a configuration error (e.g. a port in use).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from typing import Callable

from edgeflow.runtime import metrics
from edgeflow.runtime.control import Relay
from edgeflow.runtime.dynamic import STREAMS, Dynamic
from edgeflow.runtime.loop import CONFIG_EXIT, GONE_EXIT, STOP_EXIT, NodeJob, node_main
from edgeflow.runtime.plan import groups_to_declare
from edgeflow.transport import shm

CONFIG_FAILURE = "stopped by a configuration error"
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 4.0            # seconds between asking children to stop and killing them (Ctrl-C: < 5 s in all)

log = logging.getLogger("edgeflow.supervisor")


@dataclasses.dataclass
class Replica:
    """One node replica's process and its history."""
    job: NodeJob
    process: multiprocessing.Process | None = None
    conn: multiprocessing.connection.Connection | None = None
    state: str = "starting"          # running, restarting, finished, failed, stopped
    restarts: int = 0
    crash_times: list = dataclasses.field(default_factory=list)
    restart_at: float = 0.0
    stats: dict | None = None
    history: list = dataclasses.field(default_factory=list)   # final snapshots of its earlier processes
    failure: str | None = None       # why it failed, for the summary
    looping: bool = False            # the run ended while it waited for a restart

    @property
    def label(self) -> str:
        return f"{self.job.spec.name}[{self.job.replica}]"


class Supervisor:
    """Runs a planned graph on this host. ``start()``, then ``wait()``; ``stop()`` from anywhere."""

    def __init__(self, graph, plans: dict, *, frames: int | None = None, duration: float | None = None,
                 stats_interval: float | None = None, echo: Callable[[str], None] = print) -> None:
        self.graph = graph
        self._reporting = {spec.name for spec in graph.nodes if _reports_connections(spec)}
        self.app = graph.app
        self.plans = plans
        self.frames = frames
        self.duration = duration
        self.stats_interval = stats_interval
        self.echo = echo
        self.replicas: list[Replica] = []
        self._ctx = multiprocessing.get_context("spawn")
        self._forkserver = None              # streams' processes (_stream_ctx)
        self._stop_requested = False
        self._stopped = False
        self.exit_code: int | None = None
        self._started_at = 0.0
        self._edge_marks: dict = {}
        self._gone: dict[str, str] = {}      # consumers given up on -> why (told to every process feeding them)
        self._control = Relay()              # control messages: a gateway -> every replica of a node
        self.dynamic = Dynamic(self)         # nodes and streams added and removed while the app runs

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Declare durable groups, then start every node replica (consumers first, so REALTIME links see the
        producers' first frames too)."""
        for topic, group, qos, max_lag in groups_to_declare(self.plans):
            shm.declare_group(topic, group, qos, app=self.app, max_lag=max_lag or shm.DEFAULT_MAX_LAG)
        for name in reversed(self.graph.topological_order()):
            self._start_node(name)
        self._started_at = time.monotonic()

    def _start_node(self, name: str) -> None:
        """Start every replica of node ``name`` (at start, or added to the running app)."""
        spec, plan = self.graph.node(name), self.plans[name]
        for r in range(spec.replicas):
            frames = self.frames if spec.kind == "producer" else None
            rep = Replica(NodeJob(self.app, spec, plan, r, frames))
            self.replicas.append(rep)
            self._spawn(rep)

    @staticmethod
    def _reports(spec) -> bool:
        return _reports_connections(spec)

    def _spawn(self, rep: Replica) -> None:
        if rep.stats is not None:        # a restart: keep what the crashed process counted (errors above all)
            rep.history.append({**rep.stats, "fps": 0.0, "failing": False})
            rep.stats = None
        ctx = self._stream_ctx() if rep.job.spec.stream else self._ctx
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=node_main, args=(rep.job, child_end), name=f"edgeflow:{rep.label}")
        proc.start()
        child_end.close()
        rep.process, rep.conn, rep.state = proc, parent_end, "running"
        if rep.job.spec.kind == "gateway":
            self._send(rep, ("graph", self.graph_dict()))
        for name, why in self._gone.items():          # a restarted feeder learns what its predecessor knew
            if name in getattr(rep.job.plan, "durable_consumers", ()):
                self._send(rep, ("consumer_gone", name, why))

    def _stream_ctx(self):
        """Streams come and go all the time: their processes fork from a server that has imported EdgeFlow and
        the template's classes once (multiprocessing's "forkserver": a clean single-threaded process, not a
        fork of this one), which makes starting one ~10x cheaper than "spawn" (a new interpreter each)."""
        if self._forkserver is None:
            ctx = multiprocessing.get_context("forkserver")
            template = self.graph.streams
            classes = [template.source, *template.workers] if template is not None else []
            modules = [c.__module__ for c in classes if c.__module__ != "__main__"]
            ctx.set_forkserver_preload(list(dict.fromkeys(["edgeflow.runtime.loop", *modules])))
            self._forkserver = ctx
        return self._forkserver

    def _send(self, rep: Replica, message: tuple) -> None:
        try:
            if rep.conn is not None:
                rep.conn.send(message)
        except (BrokenPipeError, OSError):
            pass

    def graph_dict(self) -> dict:
        """The pipeline as Graph.to_dict(), each edge with the transport it runs over."""
        out = self.graph.to_dict()
        for edge in out["edges"]:
            edge["transport"] = "shm"
        return out

    def request_stop(self, *_: object) -> None:
        """Ask the run to stop (signal-safe): wait() then stops every child and returns."""
        self._stop_requested = True

    def wait(self) -> int:
        """Supervise until every node finished, the duration passed, or a stop was requested; then stop
        everything, print the summary once, and return the exit code (see the module docstring)."""
        next_print = time.monotonic() + (self.stats_interval or 0)
        next_share = time.monotonic()
        try:
            while not self._stop_requested:
                self._pump(0.1)
                now = time.monotonic()
                if self.duration is not None and now - self._started_at >= self.duration:
                    break
                if now >= next_share:           # gateways show the whole app's statistics
                    next_share = now + 0.5
                    self._share_statistics()
                if self.stats_interval and now >= next_print:
                    next_print = now + self.stats_interval
                    self.echo(metrics.format_table(self.statistics()["nodes"]))
                if all(r.state in ("finished", "failed") for r in self.replicas):
                    break
        finally:
            self.stop()
        if self.exit_code is None:
            nodes = self.statistics()["nodes"]
            config = any(r.failure == CONFIG_FAILURE for r in self.replicas)
            self.exit_code = 2 if config else 1 if any(metrics.failure(n) for n in nodes.values()) else 0
            self.echo(metrics.format_summary(nodes, self.exit_code))      # instead of a last table: once
        return self.exit_code

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every child (SIGTERM, then SIGKILL after ``timeout``), then remove the app's shared memory."""
        if self._stopped:
            return
        self._stopped = True
        every = self.replicas + [rep for r in self.dynamic._retiring for rep in r.replicas]
        live = [r for r in every if r.process is not None and r.process.is_alive()]
        for rep in live:
            os.kill(rep.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for rep in live:
            rep.process.join(max(0.0, deadline - time.monotonic()))
        for rep in every:
            self._reap(rep, kill=True)
        if self._forkserver is not None:
            _stop_forkserver()
        left = shm.sweep_app(self.app)
        if left:
            log.debug("removed %d shared-memory segments of app %s", len(left), self.app)

    def _reap(self, rep: Replica, kill: bool = False) -> None:
        proc = rep.process
        if proc is None:
            return
        if kill and proc.is_alive():
            proc.kill()
        proc.join(1.0)
        self._drain_conn(rep)
        if rep.conn is not None:
            rep.conn.close()
        proc.close()
        rep.process, rep.conn = None, None
        if rep.state == "restarting":
            rep.looping = True
        if rep.state in ("running", "starting", "restarting"):
            rep.state = "stopped"

    # -- the loop --------------------------------------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        waitables = {}
        for rep in self.replicas:
            if rep.process is not None:
                waitables[rep.process.sentinel] = rep
                if rep.conn is not None:
                    waitables[rep.conn] = rep
        ready = multiprocessing.connection.wait(list(waitables), timeout) if waitables else []
        if not waitables:
            time.sleep(timeout)
        for obj in ready:
            rep = waitables[obj]
            if obj is rep.conn:
                self._drain_conn(rep)
        for rep in self.replicas:
            if rep.process is not None and not rep.process.is_alive():
                self._exited(rep)
            elif rep.state == "restarting" and time.monotonic() >= rep.restart_at:
                self.echo(f"{rep.label}: restarting (restart {rep.restarts})")
                self._spawn(rep)
        self.dynamic.tick()

    def _drain_conn(self, rep: Replica) -> None:
        try:
            while rep.conn is not None and rep.conn.poll():
                kind, payload = rep.conn.recv()
                if kind == "stats":
                    rep.stats = payload
                elif kind == "control" and payload.get("node") == STREAMS:
                    self._stream_control(rep, payload)
                elif kind in ("control", "control_result"):
                    self._control.handle(rep, kind, payload, self.replicas, self._send)
        except (EOFError, OSError):
            pass

    def _stream_control(self, rep: Replica, payload: dict) -> None:
        """A stream operation from a gateway: answered as one replica of the pseudo node STREAMS would."""
        ident = payload["id"]
        self._send(rep, ("control_sent", {"id": ident, "replicas": 1, "known": True}))

        def reply(answer: dict) -> None:
            self._send(rep, ("control_result", {"id": ident, "answer": {"replica": 0, **answer}}))
        try:
            answer = self.dynamic.control(payload.get("message") or {})
        except Exception as exc:           # a bug must not take the supervisor down: the asker learns of it
            log.exception("stream operation %r failed", payload.get("message"))
            answer = {"ok": False, "status": 500, "error": f"{type(exc).__name__}: {exc}"}
        if hasattr(answer, "add_done_callback"):
            answer.add_done_callback(lambda f: reply(f.result() if f.exception() is None else
                                                     {"ok": False, "status": 500, "error": str(f.exception())}))
        else:
            reply(answer)

    def _exited(self, rep: Replica) -> None:
        code = rep.process.exitcode
        self._reap(rep)
        if self._stop_requested:
            rep.state = "stopped"
        elif code == 0:
            rep.state = "finished"
            self._tell_downstream_if_done(rep.job.spec.name)
        elif code == CONFIG_EXIT:
            # the error itself was logged by the node once; its statistics keep it (extra["config_error"])
            rep.state, rep.failure = "failed", CONFIG_FAILURE
            self.echo(f"{rep.label}: stopped by a configuration error (see above); not restarted")
            self._tell_downstream_if_done(rep.job.spec.name)
            # the app cannot run as configured (e.g. a port in use): end it now; a stream (e.g. a bad url) fails
            # alone (its state says so) and the platform goes on
            self._stop_requested |= not rep.job.spec.stream
        elif code == GONE_EXIT:
            rep.state, rep.failure = "failed", "a DURABLE consumer it waited for is gone for good"
            self.echo(f"{rep.label}: stopped: a DURABLE consumer it waited for is gone for good (see above); "
                      "stopping the run")
            self._stop_requested = True
        elif code == STOP_EXIT:
            rep.state, rep.failure = "failed", "stopped by its hook's error (on_error='stop')"
            self.echo(f"{rep.label}: stopped after an error (on_error='stop'); "
                      + ("its stream stops" if rep.job.spec.stream else "stopping the run"))
            self._stop_requested |= not rep.job.spec.stream
        else:
            self._crashed(rep, code)

    def _crashed(self, rep: Replica, code: int) -> None:
        now = time.monotonic()
        rep.crash_times = [t for t in rep.crash_times if now - t < RESTART_WINDOW] + [now]
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        if len(rep.crash_times) > RESTART_LIMIT:
            rep.state = "failed"
            rep.failure = f"crashed {len(rep.crash_times)} times in {RESTART_WINDOW:g} s; given up"
            self.echo(f"{rep.label}: crashed ({how}) {len(rep.crash_times)} times in {RESTART_WINDOW:g} s; "
                      "giving up on it")
            self._tell_downstream_if_done(rep.job.spec.name)
            self._tell_upstream_if_gone(rep.job.spec.name, rep.failure)
            return
        delay = min(0.5 * 2 ** (len(rep.crash_times) - 1), 10.0)
        rep.restarts += 1
        rep.state, rep.restart_at = "restarting", now + delay
        self.echo(f"{rep.label}: crashed ({how}); restart {rep.restarts} in {delay:g} s")

    def _tell_downstream_if_done(self, name: str) -> None:
        """When every replica of a node has ended, its consumers stop waiting for more of its frames."""
        if not all(r.state in ("finished", "failed") for r in self.replicas if r.job.spec.name == name):
            return
        for edge in self.graph.outputs_of(name):
            for rep in self.replicas:
                if rep.job.spec.name == edge.target and rep.conn is not None:
                    try:
                        rep.conn.send(("source_done", name))
                    except (BrokenPipeError, OSError):
                        pass

    def _tell_upstream_if_gone(self, name: str, why: str) -> None:
        """When every replica of a node has ended, failed, the nodes that feed it over DURABLE links stop
        waiting for it (a node blocked on it fails, naming it, instead of waiting forever)."""
        mine = [r for r in self.replicas if r.job.spec.name == name]
        if not all(r.state in ("finished", "failed") for r in mine):
            return
        self._gone[name] = why
        for rep in self.replicas:
            if name in getattr(rep.job.plan, "durable_consumers", ()):
                self._send(rep, ("consumer_gone", name, why))

    def _share_statistics(self) -> None:
        gateways = [r for r in self.replicas if r.job.spec.kind == "gateway" and r.conn is not None]
        if gateways:
            snapshot = self.statistics()
            for rep in gateways:
                self._send(rep, ("app_stats", snapshot))

    # -- statistics ------------------------------------------------------------------------------------------
    def statistics(self) -> dict:
        """A snapshot: per node (replicas merged, every process of each, restarts, state) and per edge
        (frames, drops, transport)."""
        now = time.monotonic()
        snaps: dict[str, list] = {}
        per_node: dict[str, dict] = {}
        for rep in self.replicas:
            name = rep.job.spec.name
            snaps.setdefault(name, []).extend(rep.history + ([rep.stats] if rep.stats else []))
            info = per_node.setdefault(name, {"restarts": 0, "states": [], "restart_loop": False})
            info["restarts"] += rep.restarts
            info["states"].append(rep.state)
            recent = [t for t in rep.crash_times if now - t < RESTART_WINDOW]
            info["restart_loop"] |= rep.state == "restarting" or rep.looping or len(recent) >= 2
            if rep.failure:
                info["failure"] = rep.failure
        for spec in self.graph.nodes:
            info = per_node.setdefault(spec.name, {})
            info["replicas"] = spec.replicas
            if spec.name in self._reporting and not any((s.get("extra") or {}).get("connections")
                                                        for s in snaps.get(spec.name, ())):
                info["connections_pending"] = True   # a connector not yet reporting: /readyz waits for it
        stats = metrics.app_statistics(self.graph, snaps, per_node)
        for edge, graph_edge in zip(stats["edges"], self.graph.edges):
            edge["fps"] = self._edge_fps(graph_edge, edge["frames"])
        for spec in self.graph.nodes:
            if spec.stream and spec.name in stats["nodes"]:
                stats["nodes"][spec.name]["stream_id"] = spec.stream
                if not snaps.get(spec.name):
                    stats["nodes"][spec.name]["states"] = ["starting"]
        if self.graph.streams is not None:
            stats["streams"] = self.dynamic.statistics(stats["nodes"])
        return stats

    def _edge_fps(self, edge, frames: int) -> float:
        """Frames per second over an edge, from its frame count at least half a second apart."""
        key, now = (edge.source, edge.target, edge.channel), time.monotonic()
        mark_t, mark_n, fps = self._edge_marks.get(key, (now, frames, 0.0))
        if now - mark_t >= 0.5:
            fps = round((frames - mark_n) / (now - mark_t), 2)
            mark_t, mark_n = now, frames
        self._edge_marks[key] = (mark_t, mark_n, fps)
        return fps


def _stop_forkserver() -> None:
    """Stop the forkserver the streams' processes came from (an embedding program, e.g. robotics code calling
    ``app.start()``, keeps no idle child of ours after ``stop()``); the next stream starts a new one.
    ``ForkServer._stop`` is CPython's own (its tests use it); without it the server ends with this process."""
    from multiprocessing import forkserver
    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()


def _reports_connections(spec) -> bool:
    """Whether the node's class keeps a connection state (a connector: ``reports_connections``)."""
    try:
        return bool(getattr(spec.load_class(), "reports_connections", False))
    except Exception:                 # a class that does not load fails in its own process, with its message
        return False
