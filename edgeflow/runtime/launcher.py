"""``app.run()`` / ``python main.py``: parse the run's flags, validate the graph, and run it.

    python main.py                 every node on this host, each replica in its own process, every edge over
                                   shared memory; supervised; Ctrl-C stops everything and cleans up
    python main.py --node camera   only that node, in the foreground (nodes started this way on one host find
                                   each other over shared memory)
    --frames N     each producer stops after N frames; the run ends when every node has drained
    --duration S   stop after S seconds
    --stats [S]    print node statistics every S seconds (default 5)
    --log-format F text (default) or json: one JSON object per log line, node processes included

Every run ends with a summary (per node: frames in/out, errors, restarts, drops by reason; what failed) and
exits 0 only when nothing failed: see supervisor.py. A ``--node`` run exits 1 when its node failed, was
failing, errored on every call, or its hook raised with on_error "restart" (whoever started it restarts it)
or "stop".
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from edgeflow import _logging
from edgeflow.config import settings
from edgeflow.errors import ConfigError, EdgeFlowError
from edgeflow.runtime import plan as planning
from edgeflow.transport import shm

log = logging.getLogger("edgeflow")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The run's own flags; anything else on the command line is left for the user's script."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)   # a script's --log stays its own
    parser.add_argument("--node", default=settings.EDGEFLOW_NODE)
    parser.add_argument("--replica", type=int, default=0)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--stats", type=float, nargs="?", const=5.0, default=None)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--log-format", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration {args.duration}: must be positive")
    if args.log_format not in (None, *_logging.FORMATS):
        raise ConfigError(f"--log-format {args.log_format}: must be text or json")
    return args


def run_app(app, argv: list[str] | None = None) -> int:
    """Run ``app`` as the command line asks; returns the exit code (0 ok, 1 a node failed, 2 config error)."""
    try:
        args = parse_args(argv)
        _logging.configure(level=logging.DEBUG if args.debug else None, log_format=args.log_format)
        graph = app.graph()
        if args.node:
            return run_one(graph, args)
        return run_all(graph, args)
    except EdgeFlowError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1


def _broker_note(graph) -> None:
    if graph.broker is not None:
        print(f"note: broker {graph.broker.redacted()} is configured, but every node runs on this host, "
              "so it is not used")


def run_all(graph, args) -> int:
    """Every node on this host under one supervisor."""
    from edgeflow.runtime.supervisor import Supervisor
    plans = planning.plan(graph)             # a ConfigError (e.g. an on_error value) before anything is printed
    running = shm.live_writers(graph.app)
    if running:
        raise ConfigError(f"app '{graph.app}' is already running on this host (pid {running[0][1]}); "
                          "stop it first or give this app another name")
    stale = shm.sweep_app(graph.app)
    if stale:
        print(f"note: removed {len(stale)} shared-memory segments left by an earlier run of '{graph.app}'")
    _broker_note(graph)
    for line in planning.edge_lines(graph):
        print(line)
    sup = Supervisor(graph, plans, frames=args.frames, duration=args.duration, stats_interval=args.stats)
    previous = {sig: signal.signal(sig, sup.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sup.start()
        return sup.wait()
    finally:
        sup.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_one(graph, args) -> int:
    """One node (one replica) in the foreground, as ``python main.py --node X``."""
    from edgeflow.runtime.loop import HookFailure, NodeJob, NodeRunner
    spec = graph.node(args.node)             # GraphError with a did-you-mean for an unknown name
    if not 0 <= args.replica < spec.replicas:
        raise ConfigError(f"--replica {args.replica}: node '{spec.name}' has {spec.replicas} replica(s)")
    plans = planning.plan(graph)
    distributed = graph.broker is not None
    if distributed:            # routes are decided from the registry and printed as they are decided
        print(f"{spec.name}: distributed run, registry at {graph.broker.redacted()}", flush=True)
    else:
        for line in planning.edge_lines(graph):
            if line.startswith(f"{spec.name} -> ") or f" -> {spec.name}:" in line:
                print(line)
    frames = args.frames if spec.kind == "producer" else None
    runner = NodeRunner(NodeJob(graph.app, spec, plans[spec.name], args.replica, frames, graph=graph,
                                distributed=distributed))
    previous = {sig: signal.signal(sig, runner.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    timer = None
    if args.duration:
        import threading
        timer = threading.Timer(args.duration, runner.stop)
        timer.daemon = True
        timer.start()
    code = 1
    try:
        runner.run()
        code = 0
    except HookFailure:                   # logged with its traceback already
        pass
    finally:
        if timer is not None:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        code = _summarize_one(runner, code)
    return code


def _summarize_one(runner, code: int) -> int:
    """Print a --node run's summary once; its exit code (1 as well when the node's figures say it failed)."""
    from edgeflow.runtime import metrics
    node = metrics.merge([runner.metrics.snapshot()])
    node["states"] = [runner.state]
    if code == 0 and metrics.failure(node):
        code = 1
    print(metrics.format_summary({runner.name: node}, code), flush=True)
    return code


class RunningApp:
    """An app started in the background by ``EdgeApp.start()``: a supervisor driven by its own thread."""

    def __init__(self, sup) -> None:
        import threading
        self.supervisor = sup
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"edgeflow:{sup.app}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.exit_code = self.supervisor.wait()

    def statistics(self) -> dict:
        """The running app's statistics snapshot (nodes and edges)."""
        return self.supervisor.statistics()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the run ends (every stream finished or a node failed); its exit code, None on timeout."""
        self._thread.join(timeout)
        return None if self._thread.is_alive() else self.exit_code

    def stop(self) -> int | None:
        """Stop every node, clean up, and return the exit code."""
        self.supervisor.request_stop()
        self._thread.join()
        return self.exit_code

    # -- changing it while it runs (edgeflow.runtime.dynamic) --------------------------------------------
    def add(self, fragment: Any, /, *, to: Any = (), timeout: float = 30.0, **options: Any) -> list[str]:
        """Add nodes and links to the running app without stopping the others; the names added.

        ``fragment``: an EdgeApp holding the new nodes and their links (links may name the running app's
        nodes), or a node class with its options, e.g. ``running.add(Camera, name="cam2", to="gateway")``.
        Validated with the running graph as at start: a cycle, an unknown node or a refused option raises
        GraphError/ConfigError and nothing changes.
        """
        from edgeflow.graph import EdgeApp
        if isinstance(fragment, type):
            part = EdgeApp(self.supervisor.app)
            handle = part.node(fragment, **options)
            for target in ([to] if isinstance(to, str) else to):
                part.link(handle).to(target)
            fragment = part
        elif options or to:
            raise TypeError("add(): options and to= go with a node class, not with an EdgeApp fragment")
        dynamic = self.supervisor.dynamic
        return self._result(dynamic.submit(lambda: dynamic.add(fragment)), timeout)

    def remove(self, names: Any, *, timeout: float = 30.0) -> list[str]:
        """Remove nodes (a name or a list) and their links; returns once their processes are gone and their
        rings removed. What is left must be a valid graph (GraphError otherwise, nothing changes)."""
        dynamic = self.supervisor.dynamic
        return self._result(dynamic.submit(lambda: dynamic.remove(names)), timeout)

    @property
    def streams(self) -> "Streams":
        """The app's streams (its ``app.streams(...)`` template): activate, deactivate, update, list."""
        return Streams(self)

    def _result(self, future, timeout: float):
        if not self._thread.is_alive():
            future.cancel()
            raise RuntimeError(f"app '{self.supervisor.app}' is not running (exit code {self.exit_code})")
        return future.result(timeout)

    def __enter__(self) -> "RunningApp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Streams:
    """``running.streams``: the stream template's subgraphs of a running app, by stream id (any string of
    letters, digits, '-', '_', e.g. a UUID)."""

    def __init__(self, running: RunningApp) -> None:
        self._running = running
        self._dynamic = running.supervisor.dynamic

    def activate(self, stream_id: str, url: Any, params: dict | None = None, *, timeout: float = 30.0) -> dict:
        """Start stream ``stream_id`` reading ``url``, its workers given ``params``; its info (``nodes``,
        ``topics``: the node names whose frames reach the template's ``to`` nodes)."""
        return self._running._result(self._dynamic.submit(
            lambda: self._dynamic.activate(stream_id, url, {} if params is None else params)), timeout)

    def deactivate(self, stream_id: str, *, timeout: float = 30.0) -> dict:
        """Stop stream ``stream_id``; returns once its processes are gone and its rings removed."""
        return self._running._result(self._dynamic.submit(lambda: self._dynamic.deactivate(stream_id)), timeout)

    def update(self, stream_id: str, params: dict, *, timeout: float = 30.0) -> dict:
        """Give a running stream's workers new params (their ``on_params`` hook, no restart)."""
        return self._running._result(self._dynamic.submit(
            lambda: self._dynamic.update(stream_id, params)), timeout)

    def list(self) -> dict:
        """Every active stream's state, as ``statistics()["streams"]``."""
        return self._running.statistics().get("streams", {})


def start_app(app, *, frames: int | None = None, duration: float | None = None) -> RunningApp:
    """Validate and start ``app`` on this host in the background (see EdgeApp.start)."""
    from edgeflow.runtime.supervisor import Supervisor
    graph = app.graph()
    running = shm.live_writers(graph.app)
    if running:
        raise ConfigError(f"app '{graph.app}' is already running on this host (pid {running[0][1]})")
    shm.sweep_app(graph.app)
    sup = Supervisor(graph, planning.plan(graph), frames=frames, duration=duration, echo=log.info)
    try:
        sup.start()
    except BaseException:
        sup.stop()
        raise
    return RunningApp(sup)
