"""One node replica's life in its own process: open its rings, call its hooks, publish its results.

``node_main`` is the entry point of a node process (started with multiprocessing's "spawn", never fork).
``NodeRunner`` is also used in the foreground by ``python main.py --node X``.

When a hook raises, the error is counted (``errors``, drops by reason "error") and logged with its traceback
the first time (per exception type and place), then one line with the count at the 100th, 1000th and every
further 1000th time. The node's ``on_error`` option then decides: "skip" (default) goes on with the next frame,
"restart" ends the process as a crash (the supervisor restarts it with back-off), "stop" ends it for good and
the run fails. A node whose calls all fail for FAILING_AFTER seconds is reported as failing, once.

DURABLE back-pressure (runtime/outputs.py): a node whose output is full keeps its input frame unreleased and
waits, for as long as the consumer is alive or being restarted, looking after its statistics and the
supervisor's messages meanwhile. It gives up only when the node is stopping, or when the consumer is gone for
good: the supervisor gave up on it (message "consumer_gone"), or in a distributed run its registry entry has
been missing for DURABLE_GRACE seconds ($EDGEFLOW_DURABLE_GRACE). Then the node fails (exit code GONE_EXIT),
naming the consumer, and the run ends.

Every DURABLE input is checked for duplicates by origin (runtime/delivered.py): counted, and dropped before the
hook for a sink with ``exactly_once=True``.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
import traceback
from typing import Any

from edgeflow import _logging
from edgeflow.config import settings
from edgeflow.errors import BackpressureTimeout, ConfigError, HeldFramesError, NodeError
from edgeflow.frame import Frame
from edgeflow.nodes.base import EndOfStream
from edgeflow.qos import QoS
from edgeflow.runtime.control import RunnerControl
from edgeflow.runtime.delivered import Delivered, origin_of
from edgeflow.runtime.inputs import InputSet
from edgeflow.runtime.metrics import FAILING_AFTER, NodeMetrics
from edgeflow.runtime.outputs import WAIT_SLICE, Output
from edgeflow.transport import shm

STATS_PERIOD = 0.5           # seconds between statistics sent to the supervisor
SERVICE_PERIOD = 0.01        # seconds between looks at the supervisor's messages and the routes
CONFIG_EXIT = 2              # a node process's exit code for a configuration error: not restarted
STOP_EXIT = 4                # a node process's exit code after on_error="stop": not restarted, the run fails
GONE_EXIT = 5                # a node's DURABLE consumer is gone for good: not restarted, the run fails
DURABLE_GRACE = settings.EDGEFLOW_DURABLE_GRACE    # seconds a distributed consumer may
                             # be missing from the registry before a node waiting for it gives up
BLOCKED_LOG_AFTER = 5.0      # seconds of back-pressure before a node says whom it waits for (then every minute)
REPEAT_EVERY = 1000          # after the first log line of an error: one at the 100th, then every 1000th
MAX_ERROR_KINDS = 32         # distinct errors logged with a traceback; more are only counted
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


class HookFailure(Exception):
    """A hook raised and the node's on_error policy ("restart" or "stop") ends this process."""

    def __init__(self, node: str, policy: str, error: BaseException) -> None:
        super().__init__(f"node '{node}': {type(error).__name__}: {error} (on_error={policy!r})")
        self.node, self.policy, self.error = node, policy, error


class ConsumerGone(HookFailure):
    """A DURABLE consumer this node waits for is gone for good: the frame cannot be delivered (GONE_EXIT)."""

    def __init__(self, node: str, consumer: str, why: str, detail: str) -> None:
        Exception.__init__(self, f"node '{node}': its DURABLE consumer '{consumer}' is gone for good ({why}); "
                                 f"the frame it waits to send cannot be delivered ({detail})")
        self.node, self.policy, self.error, self.consumer = node, "stop", None, consumer


class NodeContext:
    """The runtime side of a node, as the node sees it through ``self.context``."""

    def __init__(self, output: Output | None, metrics: NodeMetrics, hold_limit: int = 0) -> None:
        self._output = output
        self.metrics = metrics
        self.current_frame: Frame | None = None
        self.current_topic: str | None = None     # the ring topic current_frame came from (frame ids are per ring)
        self.hold_limit = hold_limit     # frames this replica may hold at once (the class's max_held_frames)
        self.held = 0                    # frames held now
        self._kept = False               # the current frame was held: the loop must not release it
        self.stopping = threading.Event()  # set when the node is asked to stop: a retry loop gives up on it
        self.app = ""                    # the app's name (a connector's MQTT client id is made from it)
        self._service = None             # the runner's between-frames service (statistics, messages)

    def output(self, shape, dtype):
        if self._output is None:
            raise NodeError(f"node '{self.metrics.node}' has no output to write into", node=self.metrics.node)
        return self._output.loan(shape, dtype)

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (a connector's retry back-off; 0: just once) while the runtime goes on serving
        statistics and the supervisor's messages; True as soon as the node is asked to stop."""
        deadline = time.monotonic() + seconds
        while True:
            if self._service is not None:
                self._service()
            if self.stopping.is_set():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.stopping.wait(min(left, WAIT_SLICE))

    def hold(self) -> "HeldFrame":
        """Keep the frame being consumed unacknowledged past the hook (a batching sink; see
        ``SinkNode.max_held_frames``): the ring redelivers it if this process dies before it is released.
        Call ``release()`` on what this returns once the frame's result is safe (e.g. committed).

        Raises:
            NodeError: outside a sink's hook, or more than ``hold_limit`` frames held at once.
        """
        frame = self.current_frame
        if frame is None or self.held >= self.hold_limit:
            raise NodeError(f"node '{self.metrics.node}': hold() keeps at most {self.hold_limit} frames, during "
                            "consume() (set max_held_frames on the class)", node=self.metrics.node)
        self.held += 1
        self._kept = True
        return HeldFrame(self, frame)


class HeldFrame:
    """A frame a sink holds past its hook (``context.hold()``); ``release()`` acknowledges it (idempotent)."""

    __slots__ = ("_context", "frame")

    def __init__(self, context: NodeContext, frame: Frame) -> None:
        self._context, self.frame = context, frame

    def release(self) -> None:
        """Acknowledge the frame to its ring: it will not be redelivered."""
        if self._context is not None:
            self._context.held -= 1
            self._context = None
            self.frame.release()


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
        self._errors_seen: dict = {}           # error key -> times it happened (logging back-off)
        self.on_error = getattr(job.plan, "on_error", "skip")
        self.state = "running"                 # then finished, stopped or failed (published with statistics)
        self.inputs: InputSet | None = None
        self.output: Output | None = None
        self.servers: list = []                # a gateway's interface servers (e.g. the web server)
        self.app_stats: dict | None = None     # the whole app's statistics, sent by the supervisor
        self.app_graph: dict | None = None
        self.router = None                     # routes edges across hosts in a distributed run
        self.gone: dict[str, str] = {}         # DURABLE consumers the supervisor gave up on -> why
        self._missing_since: dict[str, float] = {}   # distributed: consumer -> when it left the registry
        self._next_registry_look = 0.0
        self._blocked_logged = 0.0
        self.delivered: Delivered | None = None    # DURABLE inputs: origins delivered (duplicates)
        self.control = RunnerControl(self.name, job.replica)   # control messages (runtime/control.py)

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
            self.control.node = node                 # its on_control() hook answers control messages
            node.context = NodeContext(self.output, self.metrics, getattr(self.job.plan, "hold_limit", 0))
            node.context.stopping = self.stopping
            node.context.app = self.job.app
            node.context._service = self._service
            node.setup()
            self._start_servers(node)
            self._loop(node)
            failed = False
            self.state = "stopped" if self.stopping.is_set() else "finished"
            return 0
        except HookFailure as exc:
            self.state = "failed"
            failed = exc.policy == "restart"      # "stop": the stream ends; "restart": the next process goes on
            raise
        except Exception as exc:
            if not self.stopping.is_set():
                self.state = "failed"
                if isinstance(exc, ConfigError):          # the run's failure names it (final statistics)
                    self.metrics.extra["config_error"] = (str(exc) or type(exc).__name__).splitlines()[0]
                raise
            failed = False            # interrupted while stopping (e.g. a cancelled back-pressure wait): clean
            self.state = "stopped"
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
            pub = shm.Publisher(plan.outputs[job.replica], app=job.app,
                                slots=max(job.slots, getattr(plan, "slots", job.slots)))
            self.output = Output(self.name, pub, on_backpressure=getattr(plan, "on_backpressure", "block"),
                                 waiter=self._backpressure_wait, metrics=self.metrics)
        fed_later = getattr(plan, "fed_later", False)
        if plan.inputs or fed_later:
            # a fusion node holds up to queue_size frames per input while it waits for partners
            held = max(MAX_HELD, int(job.spec.options.get("queue_size", 10)) + 2) if plan.kind == "fusion" \
                else MAX_HELD + getattr(plan, "hold_limit", 0)
            self._max_held = held
            self.inputs = InputSet.open(job.app, plan.inputs, max_held=held, keep_open=fed_later)
            if any(p.qos is QoS.DURABLE for p in plan.inputs):
                self.delivered = (Delivered.shared(job.app, self.name) if getattr(plan, "exactly_once", False)
                                  else Delivered.local())
        if job.distributed:
            from edgeflow.runtime.router import Router
            self.router = Router(self, job.graph)
            if plan.kind == "gateway":
                self.router.add_tcp_inputs()
            self.router.start()

    def _close(self, failed: bool = False) -> None:
        snap = self._send_stats(force=True)
        if self.router is not None:
            self.router.close(snap)          # the final figures stay readable by the gateway for a while
        if self.inputs is not None:
            self.inputs.close()
        if self.delivered is not None:
            # an exactly-once sink's table outlives a crash (the restarted process reads it); at the end of the
            # stream, once every replica is done, nothing can be redelivered: the supervisor sweeps it
            if self.conn is None and self.state == "finished" and self.exactly_once:
                self.delivered.remove()           # --node run: no supervisor sweeps after us
            else:
                self.delivered.close()
        if self.output is None:
            return
        if failed:
            self.output.abandon()      # not the end of the stream: consumers wait for our restart
        else:
            # a finished stream waits for DURABLE consumers to take its last frames (as long as they are alive
            # or being restarted, like any back-pressure); a stopped one does not
            if not self.stopping.is_set() and self.state == "finished":
                self._drain_output()
            self.output.close(0.0)

    def _drain_output(self) -> None:
        """Wait until every DURABLE consumer took every frame of the finished stream, or give up when this
        node is stopped or a consumer is gone for good (WAIT_SLICE at a time, the waiter in between)."""
        publisher, since = self.output.publisher, time.monotonic()
        try:
            while not publisher.drain(WAIT_SLICE):
                self._backpressure_wait(BackpressureTimeout(
                    f"{publisher.topic}: DURABLE consumers have not taken the stream's last frames yet"), since)
            # routes to other hosts too: a Redis publisher holds DURABLE frames until every group acknowledged
            # them (spooled while Redis is down or full); closing it earlier would lose them
            for remote in list(self.output.remotes):
                drain = getattr(remote, "drain", None)
                while drain is not None and not remote.is_closed() and not drain(WAIT_SLICE):
                    self._backpressure_wait(BackpressureTimeout(
                        f"{getattr(remote, 'topic', '?')}: DURABLE consumers on other hosts have not acknowledged "
                        f"the stream's last frames yet ({remote.statistics()})"), since)
        except BackpressureTimeout:
            pass                       # stopping: the app ends, nothing more to deliver to
        except ConsumerGone as exc:
            log.error("%s: %s", self.name, exc)

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
        metrics = self.metrics
        due = time.monotonic()
        # --frames counts attempts: frames sent plus calls that failed (raised, or returned something that
        # cannot be sent), so a producer whose every result is refused still ends
        while not self.stopping.is_set() and (limit is None or metrics.frames_out + metrics.errors < limit):
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
                log.error("%s: %s", self.name, exc)
                raise
            if frame is None:
                if self.inputs.finished():
                    return
                self._idle(node)
                self._service()
                continue
            self.metrics.received(inp.label)
            received = time.time()
            origin = origin_of(frame, inp.topic)
            delivered = self.delivered if inp.qos is QoS.DURABLE else None
            if delivered is not None and delivered.seen(origin):
                self.metrics.duplicates += 1               # at-least-once: this one came before (a crash)
                if self.exactly_once:
                    self.metrics.dropped("duplicate", label=inp.label)
                    frame.release()
                    self._service()
                    continue
            t0 = time.perf_counter()
            node.context.current_frame = frame
            node.context.current_topic = inp.topic
            try:
                result = hook(frame if kind == "gateway" else frame.data)
            except Exception as exc:          # a failing hook is logged once, counted, and the loop goes on
                context = node.context
                context.current_frame = None
                if context._kept:
                    context._kept = False     # held by the sink: it releases the frame after its write
                else:
                    frame.release()
                self._hook_failed(exc)
                self._service()
                continue
            try:
                # the input stays unreleased until its result is accepted downstream (DURABLE back-pressure)
                self._deliver(result, frame, received, t0, origin, [[inp.topic, frame.frame_id]])
                if delivered is not None:
                    delivered.mark(origin)
            finally:
                context = node.context
                context.current_frame = None
                if context._kept:
                    context._kept = False          # held by the sink: it releases the frame itself
                else:
                    frame.release()
            self._service()

    def _idle(self, node) -> None:
        """No input for a while: the node's ``idle()`` hook (flush a due batch); a failure counts as a hook's."""
        try:
            node.idle()
        except Exception as exc:
            self._hook_failed(exc)

    @property
    def exactly_once(self) -> bool:
        return bool(getattr(self.job.plan, "exactly_once", False))

    def _deliver(self, result: Any, source: Frame | None, received: float, t0: float,
                 origin: tuple | None = None, parents: list | None = None) -> None:
        """Send what a hook returned; counts the call, its time, and an unsendable result as an error."""
        metrics = self.metrics
        metrics.calls += 1
        try:
            if self.output is not None:
                fid = self.output.send(result, source, received, origin, parents)
                if fid is not None:
                    metrics.frames_out += 1
            elif source is not None:
                metrics.frames_out += 1                # sinks and gateways: consumed
            if metrics.blocked:
                metrics.blocked = False
            if metrics.streak and metrics.succeeded():
                log.warning("%s: recovered: a call succeeded after failing", self.name)
        except NodeError as exc:               # refused, not raised: counted and logged, the policy is not applied
            self._count_error("unsendable", ("unsendable", str(exc)), str(exc), None)
        finally:
            metrics.processing.add(time.perf_counter() - t0)
            if source is not None:
                metrics.latency.add(time.time() - source.timestamp)

    def _backpressure_wait(self, exc: BackpressureTimeout, since: float) -> None:
        """Called by the output each WAIT_SLICE it waits for a DURABLE consumer: look after the node, and raise
        when it must give up (stopping: ``exc`` again; the consumer gone for good: ConsumerGone)."""
        now = time.monotonic()
        metrics = self.metrics
        if not metrics.blocked:
            metrics.blocked = True
        metrics.blocked_seconds += now - max(since, metrics.blocked_mark)
        metrics.blocked_mark = now
        try:
            if not self.stopping.is_set():
                self._service()
            if self.stopping.is_set():
                raise exc
            consumers = getattr(self.job.plan, "durable_consumers", ())
            for name in consumers:
                if name in self.gone:
                    log.error("%s: its DURABLE consumer '%s' is gone for good (%s); stopping", self.name, name,
                              self.gone[name])
                    raise ConsumerGone(self.name, name, self.gone[name], str(exc).rsplit("; waited", 1)[0])
            self._check_registry(consumers, exc)
            waited = now - since
            # once per wait after BLOCKED_LOG_AFTER seconds, then once a minute while it lasts
            if waited >= BLOCKED_LOG_AFTER and (self._blocked_logged < since or now - self._blocked_logged >= 60.0):
                self._blocked_logged = now
                log.warning("%s: waiting %.0f s for a DURABLE consumer to take frames (back-pressure; nothing is "
                            "dropped): %s", self.name, waited, str(exc).rsplit("; waited", 1)[0])
        finally:
            metrics.blocked_mark = time.monotonic()

    def _check_registry(self, consumers, exc: BackpressureTimeout) -> None:
        """Distributed run: a consumer missing from the registry for DURABLE_GRACE seconds is gone for good."""
        if self.router is None or not consumers:
            return
        now = time.monotonic()
        if self.router.registry.connected is False:
            # our own heartbeat fails too (Redis down, or full: it refuses the registry's writes): a missing
            # entry says nothing about the consumer, so the grace does not run meanwhile
            for name in self._missing_since:
                self._missing_since[name] = now
            return
        if now < self._next_registry_look:
            return
        self._next_registry_look = now + 1.0
        try:
            peers = self.router.registry.peers()
        except Exception:                 # the registry is unreachable: nothing can be concluded from it
            return
        if peers is None:
            return
        present = {node for node, _ in peers}
        for name in consumers:
            if name in present:
                self._missing_since.pop(name, None)
                continue
            since = self._missing_since.setdefault(name, now)
            if now - since >= DURABLE_GRACE:
                why = f"missing from the registry for {DURABLE_GRACE:g} s"
                log.error("%s: its DURABLE consumer '%s' is gone for good (%s); stopping", self.name, name, why)
                raise ConsumerGone(self.name, name, why, str(exc).rsplit("; waited", 1)[0])

    def _hook_failed(self, exc: Exception) -> None:
        """A hook raised ``exc`` (called from its except block): count, log, then apply the on_error policy.
        A ConfigError (e.g. a connector's credentials refused) ends the node as one from setup() does."""
        if isinstance(exc, ConfigError):
            raise exc
        self.metrics.calls += 1
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else None
        # one key per exception type and place it was raised: a message that varies per frame is one problem
        what = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")
        self._count_error("error", (type(exc).__name__, where), what, traceback.format_exc())
        if self.on_error != "skip":
            log.error("%s: on_error=%r: %s", self.name, self.on_error,
                      "ending this process to be restarted" if self.on_error == "restart" else "stopping")
            raise HookFailure(self.name, self.on_error, exc) from exc

    def _count_error(self, reason: str, key, what: str, trace: str | None) -> None:
        """Count one failed call; log it the first time (with ``trace``), then at the 100th, 1000th and every
        further REPEAT_EVERY-th time with the count; say once when the node becomes failing."""
        if self.metrics.failed(reason, what):
            log.error("%s: failing: every call failed for %g s (%d in a row; last: %s)", self.name,
                      FAILING_AFTER, self.metrics.streak, what)
        seen = self._errors_seen
        n = seen.get(key, 0) + 1
        if n == 1 and len(seen) >= MAX_ERROR_KINDS:
            return                              # a flood of distinct errors: counted, not logged one by one
        seen[key] = n
        if n == 1:
            log.error("%s: %s%s", self.name, what, f"\n{trace.rstrip()}" if trace else "")
        elif n == 100 or n % REPEAT_EVERY == 0:
            log.error("%s: %d times so far: %s", self.name, n, what)

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
        self.control.flush(self._send_control)
        while self.conn is not None and self.conn.poll():
            message = self.conn.recv()
            if self.control.handle(message):
                continue
            if message[0] == "stop":
                self.stopping.set()
            elif message[0] == "source_done" and self.inputs is not None:
                self.inputs.source_done(message[1])
            elif message[0] == "app_stats":
                self.app_stats = message[1]
            elif message[0] == "graph":
                self.app_graph = message[1]
            elif message[0] == "consumer_gone":
                self.gone[message[1]] = message[2]
            elif message[0] in ("add_inputs", "remove_inputs", "params"):
                self._change(message)

    def _change(self, message: tuple) -> None:
        """The running app changed (edgeflow.runtime.dynamic): inputs added or removed, or new params."""
        kind, payload = message
        if kind == "params":
            hook = getattr(self.control.node, "on_params", None)
            try:
                if hook is not None:
                    hook(dict(payload))
            except Exception as exc:           # refused: the node goes on with its old params, and says why
                self.metrics.last_error = f"on_params: {type(exc).__name__}: {exc}"
                log.error("%s: on_params(%r) raised %s: %s; the old params stay", self.name, payload,
                          type(exc).__name__, exc)
        elif self.inputs is None:
            log.error("%s: %s for a node without inputs: ignored", self.name, kind)
        elif kind == "add_inputs":
            self.inputs.add_plans(self.job.app, payload, max_held=getattr(self, "_max_held", MAX_HELD))
        else:
            for source in payload:
                self.inputs.remove_source(source)

    def _send_control(self, message: tuple) -> None:
        if self.conn is None:
            return
        try:
            self.conn.send(message)
        except (BrokenPipeError, OSError):
            self.conn = None                                # the supervisor is gone; we are being stopped

    def _send_stats(self, force: bool = False) -> dict | None:
        """Every STATS_PERIOD (or now when forced): this replica's snapshot to the supervisor, and in a
        distributed run to the registry (the gateway reads it there); returns the snapshot."""
        now = time.monotonic()
        if (self.conn is None and self.router is None) or (now < self._next_stats and not force):
            return None
        self._next_stats = now + STATS_PERIOD
        if self.output is not None and self.output.remotes:
            self.metrics.extra["route_states"] = self.output.route_states()
        snap = self.metrics.snapshot()
        snap["state"] = self.state
        if self.inputs is not None:
            ring = self.inputs.statistics()         # frames the rings skipped (REALTIME, BALANCED)
            for label, s in ring.items():
                snap["edge_drops"][label] = snap["edge_drops"].get(label, 0) + s["drops"]
            snap["drops"]["skipped"] = sum(s["drops"] for s in ring.values())
        if self.router is not None:
            self.router.registry.stats = snap               # written by the heartbeat thread, not here
        if self.conn is not None:
            try:
                self.conn.send(("stats", snap))
            except (BrokenPipeError, OSError):
                self.conn = None                            # the supervisor is gone; we are being stopped
        return snap


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
        own["state"] = self._runner.state
        if self._runner.router is not None:                 # --node run: every node's figures, from Redis
            return self._runner.router.app_statistics(own)
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

    def control(self, node: str, message: dict):
        """Send ``message`` to every replica of ``node`` through the supervisor (any thread; never blocks):
        a concurrent Future of ``{"node", "results": [answer per replica]}`` or ``{"node", "error", "status"}``
        (see edgeflow.runtime.control).

        Raises:
            NotImplementedError: a ``--node`` run, which has no supervisor to relay it.
        """
        if self._runner.conn is None:
            raise NotImplementedError(f"gateway '{self.node}': control messages need the supervisor; a --node "
                                      "run has none (send it to that node's own run)")
        return self._runner.control.submit(node, message)


def node_main(job: NodeJob, conn) -> None:
    """Entry point of a node process: run the node, exit 0 when its stream ended or it was stopped."""
    _die_with_parent()
    _logging.configure(job.spec.name, job.replica)
    runner = NodeRunner(job, conn)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    try:
        runner.run()
    except ConfigError as exc:             # e.g. a port in use: restarting cannot help, so say it once
        log.error("%s: %s", type(exc).__name__, exc)
        raise SystemExit(CONFIG_EXIT) from None
    except ConsumerGone:                   # logged once already
        raise SystemExit(GONE_EXIT) from None
    except HookFailure as exc:             # logged with its traceback already: no second one
        raise SystemExit(STOP_EXIT if exc.policy == "stop" else 1) from None


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent (the supervisor) dies, so no node outlives its app."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass
