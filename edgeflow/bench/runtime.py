"""Workloads of the runtime benchmarks (issue 4): the node framework measured beside the raw ring, in one run.

Three measurements, each next to its baseline from the same run:

- per-hop latency: a producer node -> a consumer node at 1920x1080x3, paced at ``fps`` so nothing queues.
  The runtime stamps the capture time (``Frame.timestamp``: the loan's time for ``self.output()``, or the
  moment a returned array is published); the consumer computes ``time.time() -
  self.current_frame.timestamp`` on entry to its hook. Baseline: the raw Publisher/Subscriber cases of
  ``bench.py`` (loan for the zero-copy output, publish for a returned array), through ``bench.open_session``
  at the same pace.
- CPU per frame and hop: producer -> consumer -> sink with trivial hooks, DURABLE links (every frame crosses
  every hop), ``fps=None``, at 640x480x3. Each process reads ``time.process_time()`` every ``cpu_window``
  frames in its hook; the median window gives its CPU per frame, summed over the processes and divided by
  the hops. Baselines metered the same way: a raw Publisher process and a DURABLE Subscriber process, and a
  raw three-process chain of the pipeline's shape.
- startup: a real ``python main.py --frames N`` (3 nodes, written into a temp dir) until its last node holds
  its first frame (it writes ``time.time()`` to a file), from just before ``Popen``. Floor: ``python -c
  "import numpy, edgeflow"`` from Popen to exit.

Node processes report through files in a per-run directory (their ``teardown`` writes JSON): a node has no
other channel back to the benchmark. Every app is named ``rtbench<pid>-<tag><k>``; ``leftovers()`` lists what
runs left in /dev/shm or in the process table. ``benchmarks/run_runtime.py`` prints tables and target checks.

Example:
    >>> from edgeflow.runtime import benchnodes
    >>> run = benchnodes.run_all(benchnodes.RuntimeConfig.quick())
    >>> run.errors(), [r.p50_us for r in run.latency]
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeflow.errors import ConfigError
from edgeflow.graph import EdgeApp
from edgeflow.nodes.base import ConsumerNode, ProducerNode, SinkNode
from edgeflow.runtime import bench
from edgeflow.runtime.outputs import TRACE_KEY
from edgeflow.transport import shm

LATENCY_SIZE, CPU_SIZE = "1920x1080x3", "640x480x3"
RAW_FOR_MODE = {"REALTIME": {"loan": "rt-loan", "copy": "rt-publish"},
                "DURABLE": {"loan": "durable-loan", "copy": "durable-publish"}}
RAW_CPU_CASES = {1: "raw Publisher->Subscriber", 2: "raw Publisher->relay->Subscriber"}
NODE_CPU_CASE = "node producer->consumer->sink"
NODE_CPU_NOTE = "hooks return untouched loans; DURABLE links, fps=None"
RAW_CPU_NOTE = "untouched loan().commit(); DURABLE recv + release"
STARTUP_CASE = "python main.py (3 nodes) -> first frame at the last node"
IMPORT_CASE = 'python -c "import numpy, edgeflow" (floor)'
CPU_NODES = ("source", "relay", "sink")
ROOT = Path(__file__).resolve().parents[2]        # the checkout: main.py's subprocess imports this edgeflow
_COUNTER = itertools.count()


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How much to measure. ``RuntimeConfig.quick()`` is the small variant for tests.

    Attributes:
        latency_n, warmup_n: latency frames measured per case, after ``warmup_n`` unmeasured ones.
        fps: the latency producer's rate; the raw cases send at the same pace.
        round_n: frames per round: the node and raw cases of a pair take turns (see ``latency_pair``).
        durable: measure the latency cases over DURABLE links too (against the raw DURABLE cases).
        cpu_frames, cpu_warmup, cpu_window: frames of a CPU run, frames before the first window, window size.
        cpu_repeats: rounds of the CPU cases (interleaved; their windows are pooled).
        startup_runs, startup_frames: ``python main.py`` runs and their ``--frames``.
        ring: the raw cases' configuration (timeouts, slots); samples and pace come from the fields above.
        timeout_s: longest wait for one app, child or subprocess.
    """

    latency_n: int = 400
    warmup_n: int = 40
    fps: float = 300.0
    round_n: int = 50
    durable: bool = True
    cpu_frames: int = 4000
    cpu_warmup: int = 400
    cpu_window: int = 200
    cpu_repeats: int = 3
    startup_runs: int = 3
    startup_frames: int = 30
    ring: bench.BenchConfig = bench.BenchConfig()
    timeout_s: float = 30.0

    @classmethod
    def quick(cls, **overrides: Any) -> "RuntimeConfig":
        """A few seconds per measurement: enough to check that everything works, not to quote."""
        values = dict(latency_n=60, warmup_n=15, round_n=20, durable=False, cpu_frames=800, cpu_warmup=100,
                      cpu_window=100, cpu_repeats=1, startup_runs=1, startup_frames=10,
                      ring=bench.BenchConfig.quick())
        return cls(**{**values, **overrides})

    def raw_config(self) -> bench.BenchConfig:
        """The raw cases' configuration: as many samples as the node cases, one send every ``1 / fps``."""
        return dataclasses.replace(self.ring, pace_s=1.0 / self.fps, latency_n=self.latency_n,
                                   warmup_n=self.warmup_n)


@dataclasses.dataclass(frozen=True)
class CpuResult:
    """CPU per frame of a pipeline: each process's median window (µs) and its sleeps (voluntary switches).

    ``runs_us`` is each round's own figure per frame and hop; ``windows`` the fewest windows of a process.
    """

    case: str
    size: str
    hops: int
    frames: int = 0
    per_process_us: dict[str, float] = dataclasses.field(default_factory=dict)
    sleeps: dict[str, float] = dataclasses.field(default_factory=dict)
    runs_us: tuple[float, ...] = ()
    windows: int = 0
    note: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the case ran and every check passed."""
        return self.error is None and bool(self.per_process_us)

    @property
    def per_frame_hop_us(self) -> float | None:
        """CPU of all the processes per frame, divided by the hops."""
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
        """Every failed case, one line each (a missed target is a figure, not an error)."""
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
    """Wait until every named node ran its setup (its inputs are attached): REALTIME loses earlier frames."""
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
    """Latency producer: writes the frame index markers (bench.py's layout) into a loan or into its own array.

    Options: ``shape``; ``mode`` ("loan": ``self.output()``, zero copy; "copy": a returned array, one copy);
    ``run_dir`` and ``wait_for`` (nodes whose setup must have run before the first frame); ``pause_file``
    (nothing is sent while it exists).
    """

    fps = 300.0
    shape: tuple = bench.parse_size(LATENCY_SIZE)
    mode = "loan"
    run_dir = ""
    wait_for: tuple = ()
    pause_file = ""

    def setup(self) -> None:
        self.shape, self._idx = tuple(self.shape), 0
        self._src = bench.make_frame(self.shape) if self.mode == "copy" else None
        if not _await_ready(self.run_dir, tuple(self.wait_for), 20.0):
            self.log.warning("%s: downstream nodes not ready after 20 s; frames may be lost", self.name)
        _signal_ready(self.run_dir, self.name)

    def produce(self) -> np.ndarray | None:
        if self.pause_file and os.path.exists(self.pause_file):
            return None
        buf = self.output(self.shape, np.uint8) if self._src is None else self._src
        bench._write_markers(buf, 0.0, self._idx, bench.LAT)      # the runtime stamps Frame.timestamp
        self._idx += 1
        return buf


class LatencyProbe(ConsumerNode):
    """Latency consumer: ``time.time() - current_frame.timestamp`` on entry to ``process``; sends nothing.

    Checks every frame: a read-only uint8 view of the slot, of the expected shape; markers intact; index and
    frame_id in step; indices increasing (consecutive when ``every``, i.e. DURABLE). Frames with an index
    below ``warmup`` are checked, not measured. ``teardown`` writes ``<run_dir>/<name>.json``.
    """

    shape: tuple = bench.parse_size(LATENCY_SIZE)
    run_dir = ""
    warmup = 0
    every = False

    def setup(self) -> None:
        self.shape = tuple(self.shape)
        self._nbytes = int(np.prod(self.shape))
        self._lat: list[float] = []
        self._split: list[tuple[float, float]] = []
        self._errors: list[str] = []
        self._next_idx = self._offset = None
        self._received = self._gaps = 0
        _signal_ready(self.run_dir, self.name)

    def process(self, data: Any) -> None:
        now = time.time()
        frame = self.current_frame
        _, idx, kind, tail = bench._read(data, self._nbytes)
        self._check(data, frame, idx, kind, tail)
        if idx >= self.warmup:
            self._lat.append((now - frame.timestamp) * 1e6)
            sent = (frame.meta.get(TRACE_KEY) or [[None, 0, 0]])[-1][2] / 1e6   # the producer's hop (µs)
            self._split.append(((sent - frame.timestamp) * 1e6, (now - sent) * 1e6))

    def _error(self, message: str) -> None:
        if len(self._errors) < 8:
            self._errors.append(message)

    def _check(self, data: Any, frame: Any, idx: int, kind: int, tail: int) -> None:
        self._received += 1
        if not isinstance(data, np.ndarray) or data.shape != self.shape or data.dtype != np.uint8:
            self._error(f"got {type(data).__name__} {getattr(data, 'shape', '')}, "
                        f"expected uint8{list(self.shape)}")
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
            elif idx >= self.warmup:
                self._gaps += idx - self._next_idx
        self._next_idx = idx + 1

    def teardown(self) -> None:
        _write_json(Path(self.run_dir, f"{self.name}.json"),
                    {"samples": self._lat, "split": self._split, "errors": self._errors,
                     "received": self._received, "gaps": self._gaps})


def latency_app(name: str, run_dir: str, *, mode: str = "loan", qos: str = "REALTIME",
                size: str = LATENCY_SIZE, fps: float = 300.0, warmup: int = 0,
                pause_file: str = "") -> EdgeApp:
    """A producer -> consumer app measuring one-way latency per frame (the consumer writes ``probe.json``).

    Args:
        name: the app name. run_dir: an existing directory for the handshake and the report.
        mode: "loan" (zero-copy ``self.output()``) or "copy" (a returned array). qos: the link's QoS name.
        size: frame size label. fps: the producer's rate. warmup: frame indices below this are not measured.
        pause_file: the producer sends nothing while this file exists ("": never pauses).

    Raises:
        ConfigError: a bad mode or size; GraphError: a bad QoS.
    """
    if mode not in ("loan", "copy"):
        raise ConfigError(f"latency mode {mode!r}: expected 'loan' or 'copy'")
    shape = bench.parse_size(size)
    app = EdgeApp(name)
    app.node(StampSource, name="source", fps=fps, shape=shape, mode=mode, run_dir=run_dir,
             wait_for=("probe",), pause_file=pause_file)
    app.node(LatencyProbe, name="probe", shape=shape, run_dir=run_dir, warmup=warmup,
             every=qos.upper() == "DURABLE")
    app.link("source").to("probe", qos=qos)
    return app


# ---------------------------------------------------------------------------------------------- CPU nodes

class CpuMeter:
    """CPU time and sleeps every ``window`` frames after ``warmup``: what a process spends per frame.

    Sleeps are voluntary context switches: a futex wait for a frame or for a free slot. Each sleep and wake-up
    costs CPU of its own, which is why they are reported beside the CPU time.
    """

    def __init__(self, warmup: int, window: int) -> None:
        self.warmup, self.window, self.count = warmup, window, 0
        self.marks: list[tuple[float, int]] = []

    def tick(self) -> None:
        """Count one frame (call it at the same point of every iteration)."""
        self.count += 1
        if self.count > self.warmup and (self.count - self.warmup - 1) % self.window == 0:
            self.marks.append((time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw))

    def per_frame_us(self) -> list[float]:
        """CPU µs per frame of each complete window."""
        return [(b[0] - a[0]) * 1e6 / self.window for a, b in zip(self.marks, self.marks[1:])]

    def sleeps_per_frame(self) -> float | None:
        """Voluntary context switches per frame over all complete windows."""
        if len(self.marks) < 2:
            return None
        return (self.marks[-1][1] - self.marks[0][1]) / (self.window * (len(self.marks) - 1))

    def report(self, errors: list[str]) -> dict[str, Any]:
        """What a metered process sends back: CPU per window, sleeps per frame, frames counted, errors."""
        return {"per_frame_us": self.per_frame_us(), "sleeps": self.sleeps_per_frame(), "frames": self.count,
                "errors": errors}


class _CpuNode:
    """Shared by the CPU nodes: the meter, the input checks (DURABLE: each frame, in order), the report."""

    run_dir = ""
    warmup = 0
    window = 100
    trace: tuple = ()                        # the hops every input frame must have gone through, in order

    def setup(self) -> None:
        self._meter = CpuMeter(self.warmup, self.window)
        self._last_fid: int | None = None
        self._errors: list[str] = []

    def _check_input(self) -> None:
        frame = self.current_frame
        if self._last_fid is not None and frame.frame_id != self._last_fid + 1 and len(self._errors) < 8:
            self._errors.append(f"frame_id {frame.frame_id} after {self._last_fid}")
        self._last_fid = frame.frame_id
        if self._meter.count % self.window == 0:            # the trace once a window: keep the hook trivial
            hops = [hop[0] for hop in frame.meta.get(TRACE_KEY, ())]
            if hops != list(self.trace) and len(self._errors) < 8:
                self._errors.append(f"frame {frame.frame_id} went through {hops}, "
                                    f"expected {list(self.trace)}")

    def teardown(self) -> None:
        _write_json(Path(self.run_dir, f"{self.name}.json"), self._meter.report(self._errors))


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
    """Does nothing with its input but count and check it."""

    def consume(self, data: Any) -> None:
        self._meter.tick()
        self._check_input()


def cpu_app(name: str, run_dir: str, *, size: str = CPU_SIZE, warmup: int = 0, window: int = 100) -> EdgeApp:
    """producer -> consumer -> sink over DURABLE links with trivial hooks, as fast as the sink takes frames.

    Each node writes ``<run_dir>/<node>.json`` (CPU µs per frame of each window, sleeps, frames, errors) at
    teardown.
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
    """Start ``app`` with ``frames`` per producer, wait until every node finished, and stop it either way.

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


def _guarded(fn: Callable[[], Any], failed: Callable[[str], Any]) -> Any:
    """``fn()``, or ``failed(message)`` if it raises: a failed case is a row of the table; the run goes on."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - reported in the table; the other cases still run
        return failed(f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------------ latency

def node_case(qos: str, mode: str) -> str:
    """The label of a node latency case: ``node REALTIME loan output``, ``node DURABLE returned array``."""
    return f"node {qos.upper()} {'loan output' if mode == 'loan' else 'returned array'}"


def _alternate(running: Any, session: bench.Session, pause: Path, cfg: RuntimeConfig) -> None:
    """Rounds of ``round_n`` frames, the node pipeline's then the raw case's, until both sent all of theirs.

    Short rounds put both sides under the same load: on a shared machine the floor drifts within seconds.
    """
    period, raw_left = 1.0 / cfg.fps, cfg.latency_n
    deadline = time.monotonic() + cfg.timeout_s + 3 * (cfg.warmup_n + 2 * cfg.latency_n) * period
    while raw_left > 0 or running.wait(0) is None:
        if running.wait(0) is None:
            pause.unlink()
            time.sleep(cfg.round_n * period)
            pause.touch()
            time.sleep(3 * period)                  # the round's last frame lands before the raw case sends
        for _ in range(min(cfg.round_n, raw_left)):
            session.pace()
            session.roundtrip()
        raw_left = max(0, raw_left - cfg.round_n)
        if time.monotonic() > deadline:
            raise bench.BenchError(f"{session.case} {session.size}: the node app did not send its frames")


def _node_result(report: dict[str, Any], label: str, size: str, cfg: RuntimeConfig) -> bench.BenchResult:
    n, p50, p99, p999 = bench._percentiles(report["samples"])
    errors = list(report["errors"])
    if n < cfg.latency_n * 0.9:
        errors.append(f"measured {n} of {cfg.latency_n} frames (received {report['received']})")
    capture, hook = np.median(np.asarray(report["split"]), axis=0) if report["split"] else (np.nan, np.nan)
    note = (f"capture -> trace sent {capture:.1f} us, sent -> hook {hook:.1f} us"
            + (f"; skipped {report['gaps']} (latest-wins)" if report["gaps"] else ""))
    return bench.BenchResult(label, size, int(np.prod(bench.parse_size(size))), n, p50, p99, p999, note=note,
                             error="; ".join(errors) or None)


def latency_pair(qos: str, mode: str, cfg: RuntimeConfig,
                 size: str = LATENCY_SIZE) -> tuple[bench.BenchResult, bench.BenchResult]:
    """One-way latency of a raw Publisher/Subscriber case and of producer node -> consumer node, interleaved.

    Both send at ``cfg.fps`` in alternating rounds (the node producer idles while its pause file exists), so
    both see the same load. Returns (raw, node) BenchResults; the node's note splits its median at the
    producer's trace "sent" time: capture -> sent (its hook, normalize, meta), sent -> the consumer's hook.

    Raises:
        BenchError: the app or the raw consumer failed or timed out, or the probe wrote no report.
    """
    frames = cfg.warmup_n + cfg.latency_n
    with tempfile.TemporaryDirectory(prefix="edgeflow-rtbench-") as run_dir:
        pause = Path(run_dir, "pause")
        pause.touch()
        app = latency_app(new_app_name("lat"), run_dir, mode=mode, qos=qos, size=size, fps=cfg.fps,
                          warmup=cfg.warmup_n, pause_file=str(pause))
        running = app.start(frames=frames)
        try:
            with bench.open_session(RAW_FOR_MODE[qos][mode], size, cfg.raw_config()) as session:
                session.warmup()
                if not _await_ready(run_dir, ("source",), cfg.timeout_s):
                    raise bench.BenchError(f"app {app.name}: the producer never got ready")
                _alternate(running, session, pause, cfg)
                session.collect()
            code = running.wait(cfg.timeout_s)
        finally:
            final = running.stop()
        if code is None or final:
            why = "did not finish" if code is None else f"ended with exit code {final}"
            raise bench.BenchError(f"app {app.name}: {why}")
        report = _read_report(Path(run_dir), "probe")
    markers = "; writes markers only" if mode == "loan" else ""
    raw = session.result(f"rounds of {cfg.round_n} at {cfg.fps:g}/s{markers}")
    return raw, _node_result(report, node_case(qos, mode), size, cfg)


def latency_pairs(cfg: RuntimeConfig) -> list[bench.BenchResult]:
    """Raw case then node case, per QoS (REALTIME; DURABLE too with ``cfg.durable``) and produce mode."""
    out = []
    nbytes = int(np.prod(bench.parse_size(LATENCY_SIZE)))
    for qos in ("REALTIME", "DURABLE") if cfg.durable else ("REALTIME",):
        for mode, case_id in RAW_FOR_MODE[qos].items():
            labels = (bench.EDGEFLOW_CASES[case_id][0], node_case(qos, mode))
            out += _guarded(lambda: latency_pair(qos, mode, cfg),
                            lambda e: [bench.BenchResult(label, LATENCY_SIZE, nbytes, error=e)
                                       for label in labels])
    return out


# ---------------------------------------------------------------------------------------------------- CPU

def _cpu_summary(case: str, size: str, hops: int, runs: list[dict[str, dict]], expect: int,
                 note: str) -> CpuResult:
    """Pool the windows of every run per process: medians per process, and each run's own figure per hop."""
    errors: list[str] = []
    windows: dict[str, list[float]] = {}
    sleeps: dict[str, list[float]] = {}
    per_run = []
    for reports in runs:
        for who, r in reports.items():
            errors += [f"{who}: {e}" for e in r["errors"]]
            if r["frames"] != expect:
                errors.append(f"{who}: handled {r['frames']} frames, expected {expect}")
            windows.setdefault(who, []).extend(r["per_frame_us"])
            if r["sleeps"] is not None:
                sleeps.setdefault(who, []).append(r["sleeps"])
        if all(r["per_frame_us"] for r in reports.values()):
            per_run.append(sum(float(np.median(r["per_frame_us"])) for r in reports.values()) / hops)
    errors += [f"{who}: no complete CPU window" for who, w in windows.items() if not w]
    medians = {who: float(np.median(w)) for who, w in windows.items() if w}
    return CpuResult(case, size, hops, expect, medians, {who: float(np.mean(v)) for who, v in sleeps.items()},
                     tuple(per_run), min((len(w) for w in windows.values()), default=0), note,
                     "; ".join(dict.fromkeys(errors)) or None)


def _node_cpu_run(cfg: RuntimeConfig, size: str) -> dict[str, dict]:
    """One round of the node pipeline's CPU case: the report of each node."""
    with tempfile.TemporaryDirectory(prefix="edgeflow-rtbench-") as run_dir:
        app = cpu_app(new_app_name("cpu"), run_dir, size=size, warmup=cfg.cpu_warmup, window=cfg.cpu_window)
        run_app(app, cfg.cpu_frames, cfg.timeout_s)
        return {name: _read_report(Path(run_dir), name) for name in CPU_NODES}


def _raw_stage(role: str, app: str, topics: tuple[str | None, str | None], shape: tuple, frames: int,
               meter: CpuMeter, ctl: Any, go: Any) -> list[str]:
    """One raw process: recv + release (DURABLE, frame ids checked), an untouched loan().commit(), or both."""
    import edgeflow as ef

    errors: list[str] = []
    sub = pub = None
    try:
        sub = ef.Subscriber(topics[0], app=app, qos=ef.QoS.DURABLE, group="next") if topics[0] else None
        pub = ef.Publisher(topics[1], app=app) if topics[1] else None
        if pub is not None:
            pub.declare_group("next", ef.QoS.DURABLE)     # the next stage gets every frame from the first
        ctl.send(("ready", None))
        if sub is None and not go.wait(30.0):
            raise bench.BenchError("no go from the parent")
        last = None
        for _ in range(frames):
            frame = sub.recv(timeout=30.0) if sub is not None else None
            meter.tick()
            if frame is not None:
                if last is not None and frame.frame_id != last + 1 and len(errors) < 8:
                    errors.append(f"{role}: frame_id {frame.frame_id} after {last}")
                last = frame.frame_id
            if pub is not None:
                pub.loan(shape, np.uint8).commit()
            if frame is not None:
                frame.release()
        if pub is not None:
            pub.drain(10.0)
    finally:
        bench._run_all_steps(*[r.close for r in (pub, sub) if r is not None])
    return errors


def _raw_cpu_child(role: str, app: str, topics: tuple, shape: tuple, frames: int, warmup: int, window: int,
                   ctl: Any, go: Any) -> None:
    """Child process of the raw CPU baselines: run one stage, send its meter's report (or the traceback)."""
    try:
        meter = CpuMeter(warmup, window)
        errors = _raw_stage(role, app, topics, shape, frames, meter, ctl, go)
        ctl.send(("report", meter.report(errors)))
    except BaseException:  # noqa: BLE001 - reported by the parent
        import traceback
        ctl.send(("error", traceback.format_exc()))
    finally:
        ctl.close()


def _raw_cpu_run(cfg: RuntimeConfig, hops: int, size: str) -> dict[str, dict]:
    """One round of a raw baseline; its report per process, plus ``"swept"``: segments left after it."""
    ctx, app, shape = bench._ctx(), new_app_name("raw"), bench.parse_size(size)
    roles = ("publisher", "relay", "subscriber") if hops == 2 else ("publisher", "subscriber")
    procs, ctls, reports = [], [], {}
    try:
        go = ctx.Event()
        for k, role in enumerate(roles):                # upstream first: each stage declares the next's group
            topics = (f"hop{k}" if k else None, f"hop{k + 1}" if k < hops else None)
            ctl, child = ctx.Pipe(duplex=False)
            ctls.append(ctl)
            args = (role, app, topics, shape, cfg.cpu_frames, cfg.cpu_warmup, cfg.cpu_window, child, go)
            procs.append(bench._start_child(_raw_cpu_child, args, child, f"rtbench raw {role}"))
            bench._receive(ctl, procs[-1], "ready", cfg.timeout_s, f"raw CPU {role}")
        go.set()
        for role, ctl, proc in zip(roles, ctls, procs):
            reports[role] = bench._receive(ctl, proc, "report", cfg.timeout_s, f"raw CPU {role}")
    finally:
        bench._run_all_steps(*[lambda p=p: bench._stop_child(p) for p in procs], *[c.close for c in ctls])
    # A DURABLE reader that closes while its writer closes can leave the ring behind (both see the other one
    # still there; about 1 in 700 in a tight loop): every process of the app is gone, so remove what is left.
    reports["swept"] = len(shm.sweep_app(app))
    return reports


def cpu_cases(cfg: RuntimeConfig, size: str = CPU_SIZE) -> list[CpuResult]:
    """Raw pub/sub, the node pipeline and the raw chain, in ``cfg.cpu_repeats`` interleaved rounds (drifting
    load hits them alike); each case's windows are pooled. A failing case is a result with ``error``."""
    cases = ((RAW_CPU_CASES[1], 1, lambda: _raw_cpu_run(cfg, 1, size), RAW_CPU_NOTE),
             (NODE_CPU_CASE, 2, lambda: _node_cpu_run(cfg, size), NODE_CPU_NOTE),
             (RAW_CPU_CASES[2], 2, lambda: _raw_cpu_run(cfg, 2, size), RAW_CPU_NOTE))
    runs: dict[str, list] = {case: [] for case, *_ in cases}
    failed: dict[str, str] = {}
    for _ in range(max(cfg.cpu_repeats, 1)):
        for case, _, fn, _ in cases:
            if case not in failed:
                _guarded(lambda: runs[case].append(fn()), lambda e: failed.setdefault(case, e))
    out = []
    for case, hops, _, note in cases:
        swept = sum(reports.pop("swept", 0) for reports in runs[case])
        note += f"; removed {swept} segments left by the ring's close race" if swept else ""
        out.append(CpuResult(case, size, hops, error=failed[case]) if case in failed
                   else _cpu_summary(case, size, hops, runs[case], cfg.cpu_frames, note))
    return out


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
    """One ``python main.py --frames N``: (seconds to the store's first frame, seconds to exit, app name)."""
    app, stamp = new_app_name("start"), folder / "first-frame"
    stamp.unlink(missing_ok=True)
    env = _env(EDGEFLOW_BENCH_APP=app, EDGEFLOW_BENCH_STAMP=str(stamp))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "main.py", "--frames", str(frames)], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()                           # its nodes follow: PR_SET_PDEATHSIG
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
    runs, exits = [], []
    with tempfile.TemporaryDirectory(prefix="edgeflow-rtbench-") as folder:
        Path(folder, "main.py").write_text(STARTUP_SCRIPT)
        for _ in range(cfg.startup_runs):
            first, t_exit, app = _startup_once(Path(folder), cfg.startup_frames, cfg.timeout_s)
            if left := leftovers(app):
                raise bench.BenchError(f"python main.py left {', '.join(left)}")
            runs.append(first)
            exits.append(t_exit)
    note = f"--frames {cfg.startup_frames} at 100 fps; exits after {statistics.median(exits):.2f} s"
    return StartupResult(STARTUP_CASE, tuple(runs), tuple(exits), note)


def import_floor(cfg: RuntimeConfig) -> StartupResult:
    """The floor of any startup: ``python -c "import numpy, edgeflow"``, Popen to exit."""
    runs = []
    for _ in range(max(cfg.startup_runs, 1)):
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "import numpy, edgeflow"], env=_env(), check=True,
                       timeout=cfg.timeout_s)
        runs.append(time.time() - t0)
    return StartupResult(IMPORT_CASE, tuple(runs), tuple(runs), "Popen to exit")


# ---------------------------------------------------------------------------------------------- a full run

def _processes_with_env(needle: bytes) -> list[int]:
    """Pids of processes whose environment holds ``needle`` (main.py's node processes inherit its own)."""
    found = []
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(environ, "rb") as f:
                if needle in f.read():
                    found.append(int(environ.split("/")[2]))
        except (OSError, ValueError):
            continue                          # exited while we looked, or not ours to read
    return [pid for pid in found if pid != os.getpid()]


def leftovers(app: str | None = None) -> list[str]:
    """What runs of this process left: /dev/shm segments of its apps, main.py's node processes, children.

    ``app`` narrows it to one app: its segments and the processes started under its name.
    """
    prefix = app + "." if app else app_prefix()
    needle = f"EDGEFLOW_BENCH_APP={app}\0" if app else f"EDGEFLOW_BENCH_APP={app_prefix()}"
    left = [f"segment {p}" for p in sorted(glob.glob(f"/dev/shm/edgeflow.{prefix}*"))]
    left += [f"process {pid}" for pid in _processes_with_env(needle.encode())]
    if app is None:
        left += [f"child {pid} {cmd!r}" for pid, cmd in bench.live_children()]
    return left


def run_all(cfg: RuntimeConfig | None = None, on_progress: Callable[[str], None] | None = None) -> RuntimeRun:
    """Every measurement of issue 4 beside its baselines, in one run; a failing case is recorded, not raised.

    ``on_progress`` gets one line per finished case. Segments or processes left after the run become
    ``cleanup_error`` (the segments are removed).
    """
    cfg = RuntimeConfig() if cfg is None else cfg
    say = on_progress or (lambda line: None)
    run, started = RuntimeRun(), time.monotonic()
    for result in latency_pairs(cfg):
        run.latency.append(result)
        say(f"{result.case} {result.size}: " + ("ERROR" if result.error else f"p50 {result.p50_us:,.1f} us"))
    for cpu in cpu_cases(cfg):
        run.cpu.append(cpu)
        say(f"{cpu.case} {cpu.size}: " + ("ERROR" if cpu.error else f"{cpu.per_frame_hop_us:.1f} us per hop"))
    for case, fn in ((IMPORT_CASE, lambda: import_floor(cfg)), (STARTUP_CASE, lambda: startup(cfg))):
        started_up = _guarded(fn, lambda e: StartupResult(case, error=e))
        run.startup.append(started_up)
        say(f"{case}: " + ("ERROR" if started_up.error else f"{started_up.median_s:.2f} s"))
    run.seconds = time.monotonic() - started
    if left := leftovers():
        for path in glob.glob(f"/dev/shm/edgeflow.{app_prefix()}*"):
            os.unlink(path)
        run.cleanup_error = "left after the run: " + ", ".join(left)
    return run
