"""One node replica's life in its own process: open its rings, call its hooks, publish its results.

``node_main`` is the entry point of a node process (started with multiprocessing's "spawn", never fork).
``NodeRunner`` is also used in the foreground by ``python main.py --node X``.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
import traceback
from typing import Any

from edgeflow.errors import ConfigError, HeldFramesError, NodeError
from edgeflow.frame import Frame
from edgeflow.nodes.base import EndOfStream
from edgeflow.runtime.inputs import InputSet
from edgeflow.runtime.metrics import NodeMetrics
from edgeflow.runtime.outputs import Output
from edgeflow.transport import shm

STATS_PERIOD = 0.5           # seconds between statistics sent to the supervisor
SERVICE_PERIOD = 0.01        # seconds between looks at the supervisor's messages and the routes
DRAIN_TIMEOUT = 5.0          # a finishing node waits this long for DURABLE consumers to take its last frames
CONFIG_EXIT = 2              # a node process's exit code for a configuration error: not restarted
MAX_HELD = 8                 # frames a node may keep referenced past its hook before recv fails loudly

log = logging.getLogger("edgeflow.runtime")


@dataclasses.dataclass(frozen=True)
class NodeJob:
    """Everything a node process needs (picklable)."""
    app: str
    spec: Any                # graph.NodeSpec
    plan: Any                # plan.NodePlan
    replica: int = 0
    frames: int | None = None
    slots: int = 8
    graph: Any = None        # the whole Graph: a distributed run routes by it
    distributed: bool = False


class NodeContext:
    """The runtime side of a node, as the node sees it through ``self.context``."""

    def __init__(self, output: Output | None, metrics: NodeMetrics) -> None:
        self._output = output
        self.metrics = metrics
        self.current_frame: Frame | None = None

    def output(self, shape, dtype):
        if self._output is None:
            raise NodeError(f"node '{self.metrics.node}' has no output to write into", node=self.metrics.node)
        return self._output.loan(shape, dtype)


class NodeRunner:
    """Runs one replica of one node until its stream ends, ``stop()`` is called, or a signal arrives."""

    def __init__(self, job: NodeJob, conn=None) -> None:
        self.job = job
        self.conn = conn
        self.name = job.spec.name
        self.metrics = NodeMetrics(self.name, job.replica)
        self.stopping = threading.Event()
        self._next_stats = 0.0
        self._next_service = 0.0
        self._errors_logged: set = set()
        self.inputs: InputSet | None = None
        self.output: Output | None = None
        self.servers: list = []                # a gateway's interface servers (e.g. the web server)
        self.app_stats: dict | None = None     # the whole app's statistics, sent by the supervisor
        self.app_graph: dict | None = None
        self.router = None                     # routes edges across hosts in a distributed run

    def stop(self, *_: object) -> None:
        """Ask the loop to finish after the current hook (signal-safe); a publish stuck on back-pressure
        gives up at once."""
        self.stopping.set()
        if self.output is not None:
            self.output.publisher.cancel_wait()

    def run(self) -> int:
        """Open rings, run the node's hooks, close everything; 0 when the stream ended or we were stopped."""
        node, failed = None, True
        try:
            self._open()
            node = self.job.spec.make_instance(self.job.replica)
            node.context = NodeContext(self.output, self.metrics)
            node.setup()
            self._start_servers(node)
            self._loop(node)
            failed = False
            return 0
        except Exception:
            if not self.stopping.is_set():
                raise
            failed = False            # interrupted while stopping (e.g. a cancelled back-pressure wait): clean
            return 0
        finally:
            try:
                if node is not None:
                    node.teardown()
            finally:
                for server in self.servers:
                    server.close()
                self._close(failed)

    def _start_servers(self, node) -> None:
        """A gateway's interfaces name their servers ("module:function"); start each here, in this process,
        and route the interface's frames to it. The node layer never imports a web framework itself."""
        for interface in getattr(node, "interfaces", ()):
            target = getattr(interface, "server", None)
            if not target:
                continue
            module, _, function = target.partition(":")
            import importlib
            try:
                factory = getattr(importlib.import_module(module), function)
            except ModuleNotFoundError as exc:   # TEMPORARY until edgeflow.gateway lands
                if not exc.name or not module.startswith(exc.name):
                    raise
                log.warning("%s: %s is not available; frames are counted only", self.name, target)
                continue
            server = factory(interface, GatewayRuntime(self))
            self.servers.append(server)
            interface.on_frame = server.on_frame

    # -- wiring ----------------------------------------------------------------------------------------------
    def _open(self) -> None:
        plan, job = self.job.plan, self.job
        if plan.kind != "sink" and plan.kind != "gateway":
            pub = shm.Publisher(plan.outputs[job.replica], app=job.app, slots=job.slots)
            self.output = Output(self.name, pub)
        if plan.inputs:
            # a fusion node holds up to queue_size frames per input while it waits for partners
            held = max(MAX_HELD, int(job.spec.options.get("queue_size", 10)) + 2) if plan.kind == "fusion" \
                else MAX_HELD
            self.inputs = InputSet.open(job.app, plan.inputs, max_held=held)
        if job.distributed:
            from edgeflow.runtime.router import Router
            self.router = Router(self, job.graph)
            if plan.kind == "gateway":
                self.router.add_tcp_inputs()
            self.router.start()

    def _close(self, failed: bool = False) -> None:
        self._send_stats(force=True)
        if self.router is not None:
            self.router.close()
        if self.inputs is not None:
            self.inputs.close()
        if self.output is None:
            return
        if failed:
            self.output.abandon()      # not the end of the stream: consumers wait for our restart
        else:
            # a finished stream waits for DURABLE consumers to take its last frames; a stopped one does not
            self.output.close(0.0 if self.stopping.is_set() else DRAIN_TIMEOUT)

    # -- loops ---------------------------------------------------------------------------------------------
    def _loop(self, node) -> None:
        if self.job.plan.kind == "producer":
            self._produce_loop(node)
        elif self.job.plan.kind == "fusion":
            from edgeflow.runtime.fusionloop import fusion_loop
            fusion_loop(self, node)
        else:
            self._consume_loop(node)

    def _produce_loop(self, node) -> None:
        fps = getattr(node, "fps", None)
        period = 1.0 / fps if fps else 0.0
        limit = self.job.frames
        due = time.monotonic()
        while not self.stopping.is_set() and (limit is None or self.metrics.frames_out < limit):
            if period:
                if self.stopping.wait(max(0.0, due - time.monotonic())):
                    break
                due += period
                if time.monotonic() - due > period:        # fell behind: do not burst to catch up
                    due = time.monotonic()
            received = time.time()
            t0 = time.perf_counter()
            try:
                result = node.produce()
            except EndOfStream:
                return
            except Exception as exc:          # as for consumers: logged once, counted, and the loop goes on
                self._hook_failed(exc)
                self._service()
                continue
            if result is EndOfStream:
                return
            self._deliver(result, None, received, t0)
            self._service()

    def _consume_loop(self, node) -> None:
        kind = self.job.plan.kind
        hook = node.consume if kind == "sink" else node.process
        while not self.stopping.is_set():
            try:
                frame, inp = self.inputs.next(0.1)
            except HeldFramesError as exc:
                self._log_once("held", f"{self.name}: {exc}")
                raise
            if frame is None:
                if self.inputs.finished():
                    return
                self._service()
                continue
            self.metrics.received(inp.label)
            received = time.time()
            t0 = time.perf_counter()
            node.context.current_frame = frame
            try:
                self._deliver(hook(frame if kind == "gateway" else frame.data), frame, received, t0)
            except Exception as exc:          # a failing hook is logged once, counted, and the loop goes on
                self._hook_failed(exc)
            finally:
                node.context.current_frame = None
                frame.release()
            self._service()

    def _deliver(self, result: Any, source: Frame | None, received: float, t0: float) -> None:
        try:
            if self.output is not None:
                fid = self.output.send(result, source, received)
                if fid is not None:
                    self.metrics.frames_out += 1
            elif source is not None:
                self.metrics.frames_out += 1                # sinks and gateways: consumed
        except NodeError as exc:
            self.metrics.errors += 1
            self.metrics.dropped("unsendable")
            self._log_once(("unsendable", str(exc)), str(exc))
        finally:
            self.metrics.processing.add(time.perf_counter() - t0)
            if source is not None:
                self.metrics.latency.add(time.time() - source.timestamp)

    def _hook_failed(self, exc: Exception) -> None:
        self.metrics.errors += 1
        self.metrics.dropped("error")
        key = (type(exc).__name__, str(exc)[:80])
        self._log_once(key, f"{self.name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    def _log_once(self, key, message: str) -> None:
        if key not in self._errors_logged:
            self._errors_logged.add(key)
            log.error(message)

    # -- supervisor link -------------------------------------------------------------------------------------
    def _service(self) -> None:
        """Between frames, at most every SERVICE_PERIOD: statistics out, control messages in, routes re-decided
        (a poll of the supervisor's pipe is a system call: not one per frame)."""
        now = time.monotonic()
        if now < self._next_service:
            return
        self._next_service = now + SERVICE_PERIOD
        self._send_stats()
        if self.router is not None:
            self.router.refresh()
        if self.conn is None:
            return
        while self.conn.poll():
            message = self.conn.recv()
            if message[0] == "stop":
                self.stopping.set()
            elif message[0] == "source_done" and self.inputs is not None:
                self.inputs.source_done(message[1])
            elif message[0] == "app_stats":
                self.app_stats = message[1]
            elif message[0] == "graph":
                self.app_graph = message[1]

    def _send_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.conn is None or (now < self._next_stats and not force):
            return
        self._next_stats = now + STATS_PERIOD
        snap = self.metrics.snapshot()
        if self.inputs is not None:
            ring = self.inputs.statistics()         # frames the rings skipped (REALTIME, BALANCED)
            for label, s in ring.items():
                snap["edge_drops"][label] = snap["edge_drops"].get(label, 0) + s["drops"]
            snap["drops"]["skipped"] = sum(s["drops"] for s in ring.values())
        try:
            self.conn.send(("stats", snap))
        except (BrokenPipeError, OSError):
            self.conn = None                                # the supervisor is gone; we are being stopped


class GatewayRuntime:
    """What a gateway's server sees of the runtime: names, the app's statistics and graph, readiness."""

    def __init__(self, runner: NodeRunner) -> None:
        self._runner = runner
        self.app = runner.job.app
        self.node = runner.name

    def statistics(self) -> dict:
        """The app-wide snapshot (from the supervisor; this node's own figures in a ``--node`` run)."""
        if self._runner.app_stats is not None:
            return self._runner.app_stats
        own = self._runner.metrics.snapshot()
        return {"app": self.app, "nodes": {self.node: own}, "edges": []}

    def graph(self) -> dict:
        """The pipeline as Graph.to_dict(), with each edge's transport."""
        if self._runner.app_graph is not None:
            return self._runner.app_graph
        graph = self._runner.job.graph
        if graph is None:
            return {"nodes": [], "edges": []}
        out = graph.to_dict()
        routes = self._runner.router.all_routes() if self._runner.router is not None else {}
        for edge in out["edges"]:
            route = routes.get((edge["source"], edge["target"]))
            edge["transport"] = route["transport"] if route else "shm"
            if route:
                edge["route_reason"] = route["reason"]
        return out

    def ready(self) -> bool:
        """True once this node's inputs are attached."""
        return self._runner.inputs is not None or not self._runner.job.plan.inputs


def node_main(job: NodeJob, conn) -> None:
    """Entry point of a node process: run the node, exit 0 when its stream ended or it was stopped."""
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {job.spec.name}[{job.replica}] %(message)s")
    runner = NodeRunner(job, conn)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    try:
        runner.run()
    except ConfigError as exc:             # e.g. a port in use: restarting cannot help, so say it once
        log.error("%s: %s", type(exc).__name__, exc)
        raise SystemExit(CONFIG_EXIT) from None


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent (the supervisor) dies, so no node outlives its app."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass
