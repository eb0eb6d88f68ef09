"""The runtime benchmark (issue 4): the node framework measured beside the raw ring, in one run.

Three measurements, each next to its baseline from the same run:

- per-hop latency: a producer node -> a consumer node at 1920x1080x3, paced at ``fps`` so nothing queues.
  The runtime stamps the capture time (``Frame.timestamp``: the loan's time for ``self.output()``, or the
  moment a returned array is published); the consumer computes ``time.time() -
  self.current_frame.timestamp`` on entry to its hook. Baseline: the raw Publisher/Subscriber cases of
  ``edgeflow.bench.ring`` (loan for the zero-copy output, publish for a returned array), through
  ``ring.open_session`` at the same pace.
- CPU per frame and hop: producer -> consumer -> sink with trivial hooks, DURABLE links (every frame crosses
  every hop), ``fps=None``, at 640x480x3. Each process reads ``time.process_time()`` every ``cpu_window``
  frames in its hook; the median window gives its CPU per frame, summed over the processes and divided by
  the hops. Baselines metered the same way: a raw Publisher process and a DURABLE Subscriber process, and a
  raw three-process chain of the pipeline's shape.
- startup: a real ``python main.py --frames N`` until its last node holds its first frame
  (``edgeflow.bench.startup``).

The nodes and apps are in ``edgeflow.bench.nodes``. ``benchmarks/run_runtime.py`` prints tables and target
checks.

Example:
    >>> from edgeflow.bench import runtime
    >>> run = runtime.run_all(runtime.RuntimeConfig.quick())
    >>> run.errors(), [r.p50_us for r in run.latency]
"""

from __future__ import annotations

import dataclasses
import glob
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeflow.bench.children import receive_message, run_all_steps, spawn_context, start_child, stop_child
from edgeflow.bench.nodes import (CPU_NODES, CPU_SIZE, LATENCY_SIZE, CpuMeter, app_prefix, await_ready, cpu_app,
                                  latency_app, leftovers, new_app_name, read_report, run_app)
from edgeflow.bench.payload import parse_size
from edgeflow.bench.producer import Session
from edgeflow.bench.results import BenchConfig, BenchError, BenchResult, percentiles
from edgeflow.bench.ring import EDGEFLOW_CASES, open_session
from edgeflow.bench.startup import IMPORT_CASE, STARTUP_CASE, StartupResult, import_floor, startup
from edgeflow.transport import shm

RAW_FOR_MODE = {"REALTIME": {"loan": "rt-loan", "copy": "rt-publish"},
                "DURABLE": {"loan": "durable-loan", "copy": "durable-publish"}}
RAW_CPU_CASES = {1: "raw Publisher->Subscriber", 2: "raw Publisher->relay->Subscriber"}
NODE_CPU_CASE = "node producer->consumer->sink"
NODE_CPU_NOTE = "hooks return untouched loans; DURABLE links, fps=None"
RAW_CPU_NOTE = "untouched loan().commit(); DURABLE recv + release"



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
    ring: BenchConfig = BenchConfig()
    timeout_s: float = 30.0

    @classmethod
    def quick(cls, **overrides: Any) -> "RuntimeConfig":
        """A few seconds per measurement: enough to check that everything works, not to quote."""
        values = dict(latency_n=60, warmup_n=15, round_n=20, durable=False, cpu_frames=800, cpu_warmup=100,
                      cpu_window=100, cpu_repeats=1, startup_runs=1, startup_frames=10,
                      ring=BenchConfig.quick())
        return cls(**{**values, **overrides})

    def raw_config(self) -> BenchConfig:
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


@dataclasses.dataclass
class RuntimeRun:
    """Everything one run measured: latency (raw and node cases), CPU, startup; ``seconds`` the run took."""

    latency: list[BenchResult] = dataclasses.field(default_factory=list)
    cpu: list[CpuResult] = dataclasses.field(default_factory=list)
    startup: list[StartupResult] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    cleanup_error: str | None = None

    def errors(self) -> list[str]:
        """Every failed case, one line each (a missed target is a figure, not an error)."""
        out = [f"{r.case} {r.size}: {r.error}" for r in self.latency if r.error]
        out += [f"{r.case}: {r.error}" for r in [*self.cpu, *self.startup] if r.error]
        return out + ([self.cleanup_error] if self.cleanup_error else [])



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


def _alternate(running: Any, session: Session, pause: Path, cfg: RuntimeConfig) -> None:
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
            raise BenchError(f"{session.case} {session.size}: the node app did not send its frames")


def _node_result(report: dict[str, Any], label: str, size: str, cfg: RuntimeConfig) -> BenchResult:
    n, p50, p99, p999 = percentiles(report["samples"])
    errors = list(report["errors"])
    # REALTIME may skip frames when the shared machine stalls a process (a quick run has only 40); a broken
    # node measures next to none
    if n < cfg.latency_n * 0.75:
        errors.append(f"measured {n} of {cfg.latency_n} frames (received {report['received']})")
    capture, hook = np.median(np.asarray(report["split"]), axis=0) if report["split"] else (np.nan, np.nan)
    note = (f"capture -> trace sent {capture:.1f} us, sent -> hook {hook:.1f} us"
            + (f"; skipped {report['gaps']} (latest-wins)" if report["gaps"] else ""))
    return BenchResult(label, size, int(np.prod(parse_size(size))), n, p50, p99, p999, note=note,
                             error="; ".join(errors) or None)


def latency_pair(qos: str, mode: str, cfg: RuntimeConfig,
                 size: str = LATENCY_SIZE) -> tuple[BenchResult, BenchResult]:
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
            with open_session(RAW_FOR_MODE[qos][mode], size, cfg.raw_config()) as session:
                session.warmup()
                if not await_ready(run_dir, ("source",), cfg.timeout_s):
                    raise BenchError(f"app {app.name}: the producer never got ready")
                _alternate(running, session, pause, cfg)
                session.collect()
            code = running.wait(cfg.timeout_s)
        finally:
            final = running.stop()
        if code is None or final:
            why = "did not finish" if code is None else f"ended with exit code {final}"
            raise BenchError(f"app {app.name}: {why}")
        report = read_report(Path(run_dir), "probe")
    markers = "; writes markers only" if mode == "loan" else ""
    raw = session.result(f"rounds of {cfg.round_n} at {cfg.fps:g}/s{markers}")
    return raw, _node_result(report, node_case(qos, mode), size, cfg)


def latency_pairs(cfg: RuntimeConfig) -> list[BenchResult]:
    """Raw case then node case, per QoS (REALTIME; DURABLE too with ``cfg.durable``) and produce mode."""
    out = []
    nbytes = int(np.prod(parse_size(LATENCY_SIZE)))
    for qos in ("REALTIME", "DURABLE") if cfg.durable else ("REALTIME",):
        for mode, case_id in RAW_FOR_MODE[qos].items():
            labels = (EDGEFLOW_CASES[case_id][0], node_case(qos, mode))
            out += _guarded(lambda: latency_pair(qos, mode, cfg),
                            lambda e: [BenchResult(label, LATENCY_SIZE, nbytes, error=e)
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
        return {name: read_report(Path(run_dir), name) for name in CPU_NODES}


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
            raise BenchError("no go from the parent")
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
        run_all_steps(*[r.close for r in (pub, sub) if r is not None])
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
    ctx, app, shape = spawn_context(), new_app_name("raw"), parse_size(size)
    roles = ("publisher", "relay", "subscriber") if hops == 2 else ("publisher", "subscriber")
    procs, ctls, reports = [], [], {}
    try:
        go = ctx.Event()
        for k, role in enumerate(roles):                # upstream first: each stage declares the next's group
            topics = (f"hop{k}" if k else None, f"hop{k + 1}" if k < hops else None)
            ctl, child = ctx.Pipe(duplex=False)
            ctls.append(ctl)
            args = (role, app, topics, shape, cfg.cpu_frames, cfg.cpu_warmup, cfg.cpu_window, child, go)
            procs.append(start_child(_raw_cpu_child, args, child, f"rtbench raw {role}"))
            receive_message(ctl, procs[-1], "ready", cfg.timeout_s, f"raw CPU {role}")
        go.set()
        for role, ctl, proc in zip(roles, ctls, procs):
            reports[role] = receive_message(ctl, proc, "report", cfg.timeout_s, f"raw CPU {role}")
    finally:
        run_all_steps(*[lambda p=p: stop_child(p) for p in procs], *[c.close for c in ctls])
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
