"""Workloads of the runtime benchmarks (issue 4): the node framework measured beside the raw ring, in one run.

Three measurements, each next to its baseline from the same run:

- per-hop latency: a producer node -> a consumer node at 1920x1080x3, paced at ``fps`` so nothing queues. The
  runtime stamps the capture time (``Frame.timestamp``: the loan's time for ``self.output()``, or the moment the
  returned array is published); the consumer computes ``time.time() - self.current_frame.timestamp`` on entry to
  its hook. Baseline: the raw Publisher/Subscriber cases of ``bench.py`` (loan for the zero-copy output, publish
  for a returned array), driven through ``bench.open_session``.
- CPU per frame and hop: producer -> consumer -> sink with trivial hooks, DURABLE links (every frame crosses every
  hop), ``fps=None``, at 640x480x3. Each process reads ``time.process_time()`` every ``cpu_window`` frames in its
  hook; the median window gives CPU per frame, summed over the processes and divided by the hops. Baseline: a raw
  loan/commit Publisher process and a DURABLE Subscriber process measured the same way.
- startup: a real ``python main.py --frames N`` (3 nodes, written into a temp dir) until its last node holds its
  first frame (it writes ``time.time()`` to a file), from just before ``Popen``. Baseline: ``python -c "import
  numpy, edgeflow"`` timed from Popen to exit.

Node processes report to files in a per-run directory (their ``teardown`` writes JSON): a node process has no
other channel back to the benchmark. Every app is named ``rtbench<pid>-<k>``; ``leftovers()`` finds what a run
left in /dev/shm or in the process table.

Example:
    >>> from edgeflow.runtime import benchnodes
    >>> run = benchnodes.run_all(benchnodes.RuntimeConfig.quick())
    >>> [c.passed for c in benchnodes.check_targets(run)]
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeflow.graph import EdgeApp
from edgeflow.nodes.base import ConsumerNode, ProducerNode, SinkNode
from edgeflow.runtime import bench
from edgeflow.runtime.benchtable import TargetCheck
from edgeflow.runtime.outputs import TRACE_KEY

LATENCY_SIZE, CPU_SIZE = "1920x1080x3", "640x480x3"
RAW_FOR_MODE = {"loan": "rt-loan", "copy": "rt-publish"}          # REALTIME, as a producer -> consumer link
RAW_DURABLE_FOR_MODE = {"loan": "durable-loan", "copy": "durable-publish"}
LATENCY_LIMIT, CPU_LIMIT_US, STARTUP_LIMIT_S = 2.0, 50.0, 2.0
ROOT = Path(__file__).resolve().parents[2]        # the checkout: a subprocess imports this edgeflow
_COUNTER = itertools.count()


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How much to measure. ``RuntimeConfig.quick()`` is the small variant for tests.

    Attributes:
        latency_n, warmup_n: latency frames measured per case, after ``warmup_n`` discarded ones.
        fps: the latency producer's rate (paced sends, nothing queues).
        durable: also measure the latency cases over DURABLE links (against the raw DURABLE cases).
        cpu_frames, cpu_warmup, cpu_window: frames of the CPU runs, frames ignored first, frames per window.
        startup_runs, startup_frames: ``python main.py`` runs and their ``--frames``.
        ring: the raw cases' configuration (pace, samples, timeouts).
        timeout_s: longest wait for one app or subprocess.
    """

    latency_n: int = 400
    warmup_n: int = 40
    fps: float = 300.0
    durable: bool = False
    cpu_frames: int = 4000
    cpu_warmup: int = 400
    cpu_window: int = 200
    startup_runs: int = 3
    startup_frames: int = 30
    ring: bench.BenchConfig = bench.BenchConfig(latency_n=400, warmup_n=40)
    timeout_s: float = 30.0

    @classmethod
    def quick(cls, **overrides: Any) -> "RuntimeConfig":
        """A few seconds per measurement: enough to check that everything works, not to quote."""
        values = dict(latency_n=60, warmup_n=15, cpu_frames=800, cpu_warmup=100, cpu_window=100, startup_runs=1,
                      startup_frames=10, ring=bench.BenchConfig.quick(latency_n=60, warmup_n=15))
        return cls(**{**values, **overrides})


@dataclasses.dataclass(frozen=True)
class CpuResult:
    """CPU time per frame of a pipeline: each process's median window, and their sum per frame and hop (µs)."""

    case: str
    size: str
    hops: int
    frames: int = 0
    per_process_us: dict[str, float] = dataclasses.field(default_factory=dict)
    windows: int = 0
    note: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the case ran and every check passed."""
        return self.error is None and bool(self.per_process_us)

    @property
    def per_frame_hop_us(self) -> float | None:
        """CPU of every process per frame, divided by the hops."""
        return sum(self.per_process_us.values()) / self.hops if self.per_process_us else None


@dataclasses.dataclass(frozen=True)
class StartupResult:
    """Seconds from just before Popen to an event (the last node's first frame, or the interpreter's exit)."""

    case: str
    runs_s: tuple[float, ...] = ()
    exit_s: tuple[float, ...] = ()
    note: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every run finished and passed its checks."""
        return self.error is None and bool(self.runs_s)

    @property
    def median_s(self) -> float | None:
        """The median of ``runs_s``."""
        return statistics.median(self.runs_s) if self.runs_s else None


@dataclasses.dataclass
class RuntimeRun:
    """Everything one run measured: latency (raw and node cases), CPU, startup; ``seconds`` the run took."""

    latency: list[bench.BenchResult] = dataclasses.field(default_factory=list)
    cpu: list[CpuResult] = dataclasses.field(default_factory=list)
    startup: list[StartupResult] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    cleanup_error: str | None = None

    def errors(self) -> list[str]:
        """Every failed case, one line each (a missed target is not an error)."""
        out = [f"{r.case} {r.size}: {r.error}" for r in self.latency if r.error]
        out += [f"{r.case}: {r.error}" for r in [*self.cpu, *self.startup] if r.error]
        return out + ([self.cleanup_error] if self.cleanup_error else [])


# --------------------------------------------------------------------------------------------- run directory

def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)                     # the reader never sees half a report


def _signal_ready(run_dir: str, name: str) -> None:
    Path(run_dir, f"ready.{name}").touch()


def _await_ready(run_dir: str, names: tuple[str, ...], timeout: float) -> bool:
    """Wait until every named node ran its setup (its inputs are attached): REALTIME loses what came before."""
    deadline = time.monotonic() + timeout
    while not all(Path(run_dir, f"ready.{n}").exists() for n in names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _read_report(run_dir: Path, name: str) -> dict[str, Any]:
    path = run_dir / f"{name}.json"
    if not path.exists():
        raise bench.BenchError(f"node {name!r} wrote no report (it crashed or never ran its teardown)")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------ latency nodes

class StampSource(ProducerNode):
    """Latency producer: writes the frame index markers (bench.py's layout) into a loan or its own array.

    Options: ``shape``, ``mode`` ("loan": ``self.output()``, zero copy; "copy": a returned array, one copy),
    ``run_dir`` and ``wait_for`` (nodes whose setup must have run before the first frame).
    """

    fps = 300.0
    shape: tuple = bench.parse_size(LATENCY_SIZE)
    mode = "loan"
    run_dir = ""
    wait_for: tuple = ()

    def setup(self) -> None:
        self.shape, self._idx = tuple(self.shape), 0
        self._src = bench.make_frame(self.shape) if self.mode == "copy" else None
        if not _await_ready(self.run_dir, tuple(self.wait_for), 20.0):
            self.log.warning("%s: downstream nodes not ready after 20 s; frames may be lost", self.name)

    def produce(self) -> np.ndarray:
        buf = self.output(self.shape, np.uint8) if self._src is None else self._src
        bench._write_markers(buf, 0.0, self._idx, bench.LAT)      # the runtime stamps Frame.timestamp
        self._idx += 1
        return buf


class _LatencyProbe:
    """The measuring side, shared by the consumer and the sink variant: latency, hop split and every check."""

    shape: tuple = bench.parse_size(LATENCY_SIZE)
    run_dir = ""
    warmup = 0
    every = False                             # DURABLE: a gap in the frame ids is an error

    def setup(self) -> None:
        self.shape = tuple(self.shape)
        self._nbytes = int(np.prod(self.shape))
        self._lat: list[float] = []
        self._split: list[tuple[float, float]] = []
        self._errors: list[str] = []
        self._next_idx = self._offset = None
        self._received = self._gaps = 0
        _signal_ready(self.run_dir, self.name)

    def _error(self, message: str) -> None:
        if len(self._errors) < 8:
            self._errors.append(message)

    def _measure(self, data: Any) -> None:
        now = time.time()
        frame = self.current_frame
        stamp, idx, kind, tail = bench._read(data, self._nbytes)
        self._check(data, frame, idx, kind, tail)
        if idx >= self.warmup:
            self._lat.append((now - frame.timestamp) * 1e6)
            hop = (frame.meta.get(TRACE_KEY) or [[None, 0.0, 0.0]])[-1]
            self._split.append(((hop[2] - frame.timestamp) * 1e6, (now - hop[2]) * 1e6))

    def _check(self, data: Any, frame: Any, idx: int, kind: int, tail: int) -> None:
        self._received += 1
        if not isinstance(data, np.ndarray) or data.shape != self.shape or data.dtype != np.uint8:
            self._error(f"got {type(data).__name__} {getattr(data, 'shape', '')}, expected uint8{list(self.shape)}")
        elif data.flags.writeable or data.base is None:
            self._error("the input is not a read-only view of the slot")
        if tail != idx or kind != bench.LAT:
            self._error(f"torn frame: index {idx} at the start, {tail} at the end (kind {kind})")
        if self._offset is None:
            self._offset = frame.frame_id - idx
        elif frame.frame_id - idx != self._offset:
            self._error(f"frame_id {frame.frame_id} carries index {idx}: not the frame it says")
        if self._next_idx is not None and idx != self._next_idx:
            if idx < self._next_idx or self.every:
                self._error(f"frame {idx} after {self._next_idx - 1}")
            self._gaps += idx - self._next_idx
        self._next_idx = idx + 1

    def teardown(self) -> None:
        _write_json(Path(self.run_dir, f"{self.name}.json"),
                    {"samples": self._lat, "split": self._split, "errors": self._errors,
                     "received": self._received, "gaps": self._gaps, "last": (self._next_idx or 0) - 1})


class LatencyConsumer(_LatencyProbe, ConsumerNode):
    """Latency consumer: measures each frame on entry to ``process`` and sends nothing."""

    def process(self, data: Any) -> None:
        self._measure(data)


class LatencySink(_LatencyProbe, SinkNode):
    """Latency sink (DURABLE by default): measures each frame on entry to ``consume``."""

    def consume(self, data: Any) -> None:
        self._measure(data)


def latency_app(name: str, run_dir: str, *, mode: str = "loan", qos: str = "REALTIME",
                size: str = LATENCY_SIZE, fps: float = 300.0, warmup: int = 0) -> EdgeApp:
    """A producer -> consumer app (a sink for DURABLE) measuring one-way latency per frame.

    Args:
        name: the app name. run_dir: an existing directory for the handshake and the report (``probe.json``).
        mode: "loan" (zero-copy ``self.output()``) or "copy" (a returned array). qos: the link's QoS name.
        size: frame size label. fps: the producer's rate. warmup: frame indices below this are not measured.

    Raises:
        ConfigError: a bad mode or size.
    """
    if mode not in RAW_FOR_MODE:
        raise bench.ConfigError(f"latency mode {mode!r}: expected 'loan' or 'copy'")
    shape = bench.parse_size(size)
    app = EdgeApp(name)
    app.node(StampSource, name="source", fps=fps, shape=shape, mode=mode, run_dir=run_dir, wait_for=("probe",))
    durable = qos.upper() == "DURABLE"
    app.node(LatencySink if durable else LatencyConsumer, name="probe", shape=shape, run_dir=run_dir,
             warmup=warmup, every=durable)
    app.link("source").to("probe", qos=qos)
    return app


# ---------------------------------------------------------------------------------------------- CPU nodes

class CpuMeter:
    """``time.process_time()`` every ``window`` frames after ``warmup``: the CPU a process spends per frame."""

    def __init__(self, warmup: int, window: int) -> None:
        self.warmup, self.window, self.count = warmup, window, 0
        self.marks: list[float] = []

    def tick(self) -> None:
        """Count one frame (call it at the same point of every iteration)."""
        self.count += 1
        if self.count > self.warmup and (self.count - self.warmup - 1) % self.window == 0:
            self.marks.append(time.process_time())

    def per_frame_us(self) -> list[float]:
        """CPU µs per frame of each complete window."""
        return [(b - a) * 1e6 / self.window for a, b in zip(self.marks, self.marks[1:])]


class _CpuNode:
    """Shared by the CPU nodes: the meter, the frame-id check (DURABLE: every frame, in order) and the report."""

    run_dir = ""
    warmup = 0
    window = 100
    trace: tuple = ()                        # the hops every input frame must have passed, in order

    def setup(self) -> None:
        self._meter = CpuMeter(self.warmup, self.window)
        self._last_fid: int | None = None
        self._errors: list[str] = []

    def _check_input(self) -> None:
        frame = self.current_frame
        if self._last_fid is not None and frame.frame_id != self._last_fid + 1:
            if len(self._errors) < 8:
                self._errors.append(f"frame_id {frame.frame_id} after {self._last_fid}")
        self._last_fid = frame.frame_id
        if self._meter.count % self.window == 0:            # the trace once a window: keep the hook trivial
            hops = [hop[0] for hop in frame.meta.get(TRACE_KEY, ())]
            if hops != list(self.trace) and len(self._errors) < 8:
                self._errors.append(f"frame {frame.frame_id} went through {hops}, expected {list(self.trace)}")

    def teardown(self) -> None:
        _write_json(Path(self.run_dir, f"{self.name}.json"),
                    {"per_frame_us": self._meter.per_frame_us(), "frames": self._meter.count,
                     "errors": self._errors})


class CpuSource(_CpuNode, ProducerNode):
    """Returns a loaned buffer it never touches: the framework's cost of producing a frame."""

    fps = None
    shape: tuple = bench.parse_size(CPU_SIZE)

    def setup(self) -> None:
        super().setup()
        self.shape = tuple(self.shape)

    def produce(self) -> np.ndarray:
        self._meter.tick()
        return self.output(self.shape, np.uint8)


class CpuRelay(_CpuNode, ConsumerNode):
    """Returns an untouched loan of its input's shape: one hop in, one hop out, no pixel work."""

    def process(self, data: Any) -> np.ndarray:
        self._meter.tick()
        self._check_input()
        return self.output(data.shape, data.dtype)


class CpuSink(_CpuNode, SinkNode):
    """Does nothing with its input but count it."""

    def consume(self, data: Any) -> None:
        self._meter.tick()
        self._check_input()


CPU_NODES = ("source", "relay", "sink")


def cpu_app(name: str, run_dir: str, *, size: str = CPU_SIZE, warmup: int = 0, window: int = 100) -> EdgeApp:
    """producer -> consumer -> sink over DURABLE links with trivial hooks, as fast as the sink takes frames.

    Each node writes ``<run_dir>/<node>.json`` (CPU µs per frame of each window, frames, errors) at teardown.
    """
    common = dict(run_dir=run_dir, warmup=warmup, window=window)
    app = EdgeApp(name)
    app.node(CpuSource, name="source", fps=None, shape=bench.parse_size(size), **common)
    app.node(CpuRelay, name="relay", trace=("source",), **common)
    app.node(CpuSink, name="sink", trace=("source", "relay"), **common)
    app.link("source").to("relay", qos="DURABLE").to("sink", qos="DURABLE")
    return app


# ------------------------------------------------------------------------------------------- running apps

def app_prefix() -> str:
    """Every app of this process's runtime benchmarks starts with this (``rtbench<pid>-``)."""
    return f"rtbench{os.getpid()}-"


def new_app_name(tag: str) -> str:
    """A fresh app name of this process: ``rtbench<pid>-<tag><k>``."""
    return f"{app_prefix()}{tag}{next(_COUNTER)}"


def run_app(app: EdgeApp, frames: int, timeout: float) -> None:
    """Start ``app`` with ``frames`` per producer, wait until every node finished, stop it either way.

    Raises:
        BenchError: the app did not finish within ``timeout`` seconds, or ended with a non-zero code.
    """
    running = app.start(frames=frames)
    try:
        code = running.wait(timeout)
    finally:
        final = running.stop()
    if code is None:
        raise bench.BenchError(f"app {app.name}: did not finish {frames} frames within {timeout:g} s")
    if final:
        raise bench.BenchError(f"app {app.name}: ended with exit code {final} (a node failed)")


def _with_run_dir(fn: Callable[[str], Any]) -> Any:
    with tempfile.TemporaryDirectory(prefix="edgeflow-rtbench-") as run_dir:
        return fn(run_dir)


# ------------------------------------------------------------------------------------------------ latency

def node_latency(mode: str, cfg: RuntimeConfig, qos: str = "REALTIME", size: str = LATENCY_SIZE) -> bench.BenchResult:
    """One-way latency through a producer node and a consumer node (a sink for DURABLE), paced at ``cfg.fps``.

    Returns a BenchResult (case ``node <QOS> loan output`` / ``node <QOS> returned array``) whose note gives the
    median split: capture -> the producer's trace "sent" time (normalize, meta) and "sent" -> the hook.

    Raises:
        BenchError: the app failed or timed out, or the probe wrote no report.
    """
    label = f"node {qos.upper()} {'loan output' if mode == 'loan' else 'returned array'}"
    shape = bench.parse_size(size)

    def run(run_dir: str) -> dict[str, Any]:
        app = latency_app(new_app_name("lat"), run_dir, mode=mode, qos=qos, size=size, fps=cfg.fps,
                          warmup=cfg.warmup_n)
        run_app(app, cfg.warmup_n + cfg.latency_n, cfg.timeout_s + (cfg.warmup_n + cfg.latency_n) / cfg.fps)
        return _read_report(Path(run_dir), "probe")

    report = _with_run_dir(run)
    n, p50, p99, p999 = bench._percentiles(report["samples"])
    errors = list(report["errors"])
    if n < cfg.latency_n * 0.9:
        errors.append(f"measured {n} of {cfg.latency_n} frames (received {report['received']})")
    split = np.median(np.asarray(report["split"]), axis=0) if report["split"] else (float("nan"),) * 2
    note = (f"fps {cfg.fps:g}; capture -> trace sent {split[0]:.1f} us, sent -> hook {split[1]:.1f} us"
            + (f"; {report['gaps']} frames skipped" if report["gaps"] else ""))
    return bench.BenchResult(label, size, int(np.prod(shape)), n, p50, p99, p999, note=note,
                             error="; ".join(errors) or None)


def raw_latency(case_id: str, cfg: RuntimeConfig, size: str = LATENCY_SIZE) -> bench.BenchResult:
    """The raw Publisher/Subscriber baseline of ``bench.py``: its warm-up and paced latency phase (no burst)."""
    with bench.open_session(case_id, size, cfg.ring) as session:
        session.warmup()
        session.latency_phase()
    return session.result("writes markers only" if case_id.endswith("loan") else "")


def _guard_latency(label: str, size: str, fn: Callable[[], bench.BenchResult]) -> bench.BenchResult:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - reported in the table; the other cases still run
        return bench.BenchResult(label, size, int(np.prod(bench.parse_size(size))),
                                 error=f"{type(exc).__name__}: {exc}")


def latency_pairs(cfg: RuntimeConfig) -> list[bench.BenchResult]:
    """Raw then node, per produce mode (and QoS): interleaved, so drifting load hits both sides alike."""
    out = []
    qoses = ("REALTIME", "DURABLE") if cfg.durable else ("REALTIME",)
    for qos in qoses:
        raw_ids = RAW_FOR_MODE if qos == "REALTIME" else RAW_DURABLE_FOR_MODE
        for mode, case_id in raw_ids.items():
            out.append(_guard_latency(bench.EDGEFLOW_CASES[case_id][0], LATENCY_SIZE,
                                      lambda: raw_latency(case_id, cfg)))
            out.append(_guard_latency(f"node {qos} {mode}", LATENCY_SIZE, lambda: node_latency(mode, cfg, qos)))
    return out


# ---------------------------------------------------------------------------------------------------- CPU

def _cpu_summary(case: str, size: str, hops: int, reports: dict[str, dict], expect: int, note: str) -> CpuResult:
    errors = [f"{who}: {e}" for who, r in reports.items() for e in r["errors"]]
    per_process = {}
    for who, r in reports.items():
        if r["frames"] != expect:
            errors.append(f"{who}: handled {r['frames']} frames, expected {expect}")
        if r["per_frame_us"]:
            per_process[who] = float(np.median(r["per_frame_us"]))
        else:
            errors.append(f"{who}: no complete CPU window")
    windows = min((len(r["per_frame_us"]) for r in reports.values()), default=0)
    return CpuResult(case, size, hops, expect, per_process, windows, note, "; ".join(errors) or None)


def node_cpu(cfg: RuntimeConfig, size: str = CPU_SIZE) -> CpuResult:
    """CPU per frame and hop of producer -> consumer -> sink (trivial hooks, DURABLE, unpaced).

    Raises:
        BenchError: the app failed or timed out, or a node wrote no report.
    """
    def run(run_dir: str) -> dict[str, dict]:
        app = cpu_app(new_app_name("cpu"), run_dir, size=size, warmup=cfg.cpu_warmup, window=cfg.cpu_window)
        run_app(app, cfg.cpu_frames, cfg.timeout_s)
        return {name: _read_report(Path(run_dir), name) for name in CPU_NODES}

    return _cpu_summary("node producer->consumer->sink", size, 2, _with_run_dir(run), cfg.cpu_frames,
                        "trivial hooks: loans returned untouched; DURABLE links, fps=None")


def _raw_cpu_publisher(app: str, topic: str, shape: tuple, frames: int, warmup: int, window: int,
                       ctl: Any, go: Any) -> None:
    """Raw baseline, publisher process: ``loan().commit()`` of an untouched slot, ``frames`` times."""
    import edgeflow as ef

    try:
        with ef.Publisher(topic, app=app) as pub:
            pub.declare_group("sink", ef.QoS.DURABLE)
            ctl.send(("ready", None))
            if not go.wait(30.0):
                raise bench.BenchError("no go from the parent")
            meter = CpuMeter(warmup, window)
            for _ in range(frames):
                meter.tick()
                pub.loan(shape, np.uint8).commit()
            pub.drain(10.0)
        ctl.send(("report", {"per_frame_us": meter.per_frame_us(), "frames": meter.count, "errors": []}))
    except BaseException:  # noqa: BLE001 - reported by the parent
        import traceback
        ctl.send(("error", traceback.format_exc()))
    finally:
        ctl.close()


def _raw_cpu_subscriber(app: str, topic: str, frames: int, warmup: int, window: int, ctl: Any) -> None:
    """Raw baseline, subscriber process: DURABLE ``recv`` and ``release``, checking every frame_id."""
    import edgeflow as ef

    try:
        errors: list[str] = []
        meter, last = CpuMeter(warmup, window), None
        with ef.Subscriber(topic, app=app, qos=ef.QoS.DURABLE, group="sink") as sub:
            ctl.send(("ready", None))
            for _ in range(frames):
                frame = sub.recv(timeout=30.0)
                meter.tick()
                if last is not None and frame.frame_id != last + 1 and len(errors) < 8:
                    errors.append(f"frame_id {frame.frame_id} after {last}")
                last = frame.frame_id
                frame.release()
        ctl.send(("report", {"per_frame_us": meter.per_frame_us(), "frames": meter.count, "errors": errors}))
    except BaseException:  # noqa: BLE001 - reported by the parent
        import traceback
        ctl.send(("error", traceback.format_exc()))
    finally:
        ctl.close()


def raw_cpu(cfg: RuntimeConfig, size: str = CPU_SIZE) -> CpuResult:
    """The raw baseline: a Publisher process and a DURABLE Subscriber process, metered like the nodes.

    Raises:
        BenchError: a child failed, died or timed out.
    """
    ctx, app, shape = bench._ctx(), new_app_name("raw"), bench.parse_size(size)
    args = (cfg.cpu_frames, cfg.cpu_warmup, cfg.cpu_window)
    procs, ctls, reports = [], [], {}
    try:
        go = ctx.Event()
        pub_ctl, child = ctx.Pipe(duplex=False)
        ctls.append(pub_ctl)
        procs.append(bench._start_child(_raw_cpu_publisher, (app, "cpu", shape, *args, child, go), child,
                                        "rtbench raw publisher"))
        bench._receive(pub_ctl, procs[0], "ready", cfg.timeout_s, "raw CPU publisher")
        sub_ctl, child = ctx.Pipe(duplex=False)
        ctls.append(sub_ctl)
        procs.append(bench._start_child(_raw_cpu_subscriber, (app, "cpu", *args, child), child,
                                        "rtbench raw subscriber"))
        bench._receive(sub_ctl, procs[1], "ready", cfg.timeout_s, "raw CPU subscriber")
        go.set()
        for who, ctl, proc in zip(("publisher", "subscriber"), ctls, procs):
            reports[who] = bench._receive(ctl, proc, "report", cfg.timeout_s, f"raw CPU {who}")
    finally:
        bench._run_all_steps(*[lambda p=p: bench._stop_child(p) for p in procs],
                             *[c.close for c in ctls])
    return _cpu_summary("raw Publisher->Subscriber", size, 1, reports, cfg.cpu_frames,
                        "loan().commit() untouched; DURABLE recv + release")


def _guard_cpu(case: str, size: str, hops: int, fn: Callable[[], CpuResult]) -> CpuResult:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - reported in the table; the other cases still run
        return CpuResult(case, size, hops, error=f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------------ startup

STARTUP_SCRIPT = '''\
"""camera -> detector -> store: the startup benchmark's main.py (the store stamps its first frame)."""
import os
import time

import numpy as np

from edgeflow import ConsumerNode, EdgeApp, ProducerNode, SinkNode

app = EdgeApp(os.environ["EDGEFLOW_BENCH_APP"])


@app.node(name="camera", fps=100)
class Camera(ProducerNode):
    def produce(self):
        return self.output((480, 640, 3), np.uint8)


@app.node(name="detector")
class Detector(ConsumerNode):
    def process(self, data):
        return data


@app.node(name="store")
class Store(SinkNode):
    def setup(self):
        self.stamped = False

    def consume(self, data):
        if not self.stamped:
            self.stamped = True
            path = os.environ["EDGEFLOW_BENCH_STAMP"]
            with open(path + ".tmp", "w") as f:
                f.write(repr(time.time()))
            os.replace(path + ".tmp", path)


app.link("camera").to("detector").to("store")

if __name__ == "__main__":
    app.run()
'''


def _env(**extra: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), **extra}


def _startup_once(folder: Path, frames: int, timeout: float) -> tuple[float, float, str]:
    """One ``python main.py --frames N``: (to the first frame at the store, to exit, its output)."""
    app, stamp = new_app_name("start"), folder / "first-frame"
    stamp.unlink(missing_ok=True)
    env = _env(EDGEFLOW_BENCH_APP=app, EDGEFLOW_BENCH_STAMP=str(stamp))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "main.py", "--frames", str(frames)], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise bench.BenchError(f"python main.py --frames {frames} did not exit within {timeout:g} s:\n{out}")
    t_exit = time.time() - t0
    if proc.returncode != 0:
        raise bench.BenchError(f"python main.py exited with code {proc.returncode}:\n{out}")
    if not stamp.exists():
        raise bench.BenchError(f"the store never received a frame:\n{out}")
    if "camera -> detector: shm" not in out:
        raise bench.BenchError(f"python main.py did not print its edges:\n{out}")
    return float(stamp.read_text()) - t0, t_exit, app


def startup(cfg: RuntimeConfig) -> StartupResult:
    """``python main.py --frames N`` (3 nodes) to the last node's first frame, ``cfg.startup_runs`` times.

    Raises:
        BenchError: a run failed, timed out, or left segments or node processes behind.
    """
    case = "python main.py (3 nodes) -> first frame at the last node"
    runs, exits = [], []
    with tempfile.TemporaryDirectory(prefix="edgeflow-rtbench-") as folder:
        Path(folder, "main.py").write_text(STARTUP_SCRIPT)
        for _ in range(cfg.startup_runs):
            first, t_exit, app = _startup_once(Path(folder), cfg.startup_frames, cfg.timeout_s)
            if left := leftovers(app):
                raise bench.BenchError(f"python main.py left {', '.join(left)}")
            runs.append(first)
            exits.append(t_exit)
    note = f"--frames {cfg.startup_frames} at 100 fps; exit after {statistics.median(exits):.2f} s (median)"
    return StartupResult(case, tuple(runs), tuple(exits), note)


def import_floor(cfg: RuntimeConfig) -> StartupResult:
    """The floor of any startup: ``python -c "import numpy, edgeflow"``, Popen to exit."""
    runs = []
    for _ in range(max(cfg.startup_runs, 1)):
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "import numpy, edgeflow"], env=_env(), check=True,
                       timeout=cfg.timeout_s)
        runs.append(time.time() - t0)
    return StartupResult('python -c "import numpy, edgeflow" (floor)', tuple(runs), tuple(runs), "Popen to exit")


def _guard_startup(case: str, fn: Callable[[], StartupResult]) -> StartupResult:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - reported in the table; the other cases still run
        return StartupResult(case, error=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------- a full run

def _processes_with_env(needle: bytes) -> list[int]:
    """Pids of processes whose environment contains ``needle`` (node processes of a benchmark's main.py)."""
    found = []
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(environ, "rb") as f:
                if needle in f.read():
                    found.append(int(environ.split("/")[2]))
        except (OSError, ValueError):
            continue                          # gone, or not ours to read
    return [pid for pid in found if pid != os.getpid()]


def leftovers(app: str | None = None) -> list[str]:
    """What runs of this process left behind: /dev/shm segments of its apps, children, main.py's node processes.

    ``app`` narrows it to one app (its segments and the processes that carry its name).
    """
    prefix = app + "." if app else app_prefix()
    left = [f"segment {p}" for p in sorted(glob.glob(f"/dev/shm/edgeflow.{prefix}*"))]
    left += [f"process {pid}" for pid in _processes_with_env(f"EDGEFLOW_BENCH_APP={app or app_prefix()}".encode())]
    if app is None:
        left += [f"child {pid} {cmd!r}" for pid, cmd in bench.live_children()]
    return left


def run_all(cfg: RuntimeConfig | None = None, on_progress: Callable[[str], None] | None = None) -> RuntimeRun:
    """Every measurement of issue 4 with its baselines, in one run; a failing case is recorded, not raised.

    ``on_progress`` gets one line per finished case. Leftover segments or processes after the run become
    ``cleanup_error`` (the segments are removed).
    """
    cfg = RuntimeConfig() if cfg is None else cfg
    say = on_progress or (lambda line: None)
    run, started = RuntimeRun(), time.monotonic()
    for result in latency_pairs(cfg):
        run.latency.append(result)
        say(f"{result.case} {result.size}: " + ("ERROR" if result.error else f"p50 {result.p50_us:,.1f} us"))
    for case, hops, fn in (("raw Publisher->Subscriber", 1, raw_cpu), ("node producer->consumer->sink", 2, node_cpu)):
        result = _guard_cpu(case, CPU_SIZE, hops, lambda: fn(cfg))
        run.cpu.append(result)
        say(f"{case} {CPU_SIZE}: " + ("ERROR" if result.error else f"{result.per_frame_hop_us:.1f} us CPU per frame and hop"))
    for case, fn in (('python -c "import numpy, edgeflow" (floor)', import_floor),
                     ("python main.py (3 nodes) -> first frame at the last node", startup)):
        result = _guard_startup(case, lambda: fn(cfg))
        run.startup.append(result)
        say(f"{case}: " + ("ERROR" if result.error else f"{result.median_s:.2f} s"))
    run.seconds = time.monotonic() - started
    if left := leftovers():
        for path in glob.glob(f"/dev/shm/edgeflow.{app_prefix()}*"):
            os.unlink(path)
        run.cleanup_error = "left after the run: " + ", ".join(left)
    return run
