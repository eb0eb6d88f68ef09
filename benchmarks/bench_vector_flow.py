"""The vector-flow example's streams: activation to first frame; CPU per stream beside a plain OpenCV loop.

    python benchmarks/bench_vector_flow.py [--streams 8] [--seconds 10] [--rounds 2] [--activations 5]
    python benchmarks/bench_vector_flow.py --quick
    pytest benchmarks/bench_vector_flow.py --benchmark-only

Both parts run the example's own classes (examples/vector_flow/flow.py) in an app of their own: a stream
template ``VideoSource -> FlowWorker -> frames`` (``frames``: a sink in place of the gateway, which sends a
UDP datagram to this process for each frame it takes: topic and arrival time), the streams activated with
``running.streams.activate(...)`` on examples/data/vtest.avi (768x576, looped, resized to 640x480 by the
source).

- activation: from the ``activate`` call to the first frame of the stream at the sink (both clocks are the
  host's CLOCK_MONOTONIC), for ``--activations`` streams one after the other (each deactivated before the
  next). Target: under 1 s.
- CPU: ``--streams`` streams of 640x480 at 15 fps at once. Over a window of ``--seconds`` (after a warm-up),
  each process's CPU time from ``/proc/<pid>/stat`` (utime + stime: every thread of the process), the frames
  each stream delivered to the sink (achieved fps), and the worker's CPU per frame. The baseline, in the
  same run: the same FlowTracker + draw code (``flow.FlowTracker.step``, a copy of the frame, ``draw_arrows``)
  as a plain OpenCV loop in one process over the same frames (decoded and resized the same way beforehand),
  one tracker per stream, paced at 15 fps per stream; its CPU per frame from ``time.process_time()``. The
  framework's overhead is (worker CPU per frame - plain CPU per frame) / plain CPU per frame: what EdgeFlow
  adds to the worker's own work (receiving a frame, the output loan, statistics, metrics). Target: < 5%.
  Being the difference of two large figures, it moves with whatever else the host runs; so it is measured
  directly as well: the same streams with ``PassWorker`` (FlowWorker's loan, copy and metric calls without
  the flow), whose CPU per frame less a plain copy's is the framework's own cost per frame; and the plain
  loop is run once more as one process per stream (no EdgeFlow), which shows how much of the gap is the
  processes' own cost (caches, context switches) rather than EdgeFlow's.

Fast mode (``EDGEFLOW_BENCH_FAST=1`` or ``--benchmark-disable``: tests/unit/test_benchmarks_run.py) runs two
activations and two streams for a second, checking only that every figure is there and sane; ``--quick``
(``EDGEFLOW_BENCH_QUICK=1``) three streams for three seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import socket
import statistics
import sys
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout that is not pip-installed; children inherit it

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edgeflow import ConsumerNode, EdgeApp, SinkNode  # noqa: E402
from edgeflow.sources import VideoSource  # noqa: E402
from examples.vector_flow import flow  # noqa: E402

VIDEO = ROOT / "examples" / "data" / "vtest.avi"
WIDTH, HEIGHT, FPS = 640, 480, 15.0
PARAMS = {"grid_size": flow.DEFAULT_GRID_SIZE, "threshold": flow.DEFAULT_THRESHOLD}
ACTIVATION_TARGET_S = 1.0
OVERHEAD_TARGET = 0.05
TICKS = os.sysconf("SC_CLK_TCK")


class FrameLog(SinkNode):
    """Stands in for the gateway: one UDP datagram ``b"<topic> <monotonic>"`` per frame it takes."""

    notify_port: int = 0

    def setup(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.to = ("127.0.0.1", int(self.notify_port))

    def consume(self, data):
        self.sock.sendto(f"{self.current_frame.topic} {time.monotonic()}".encode(), self.to)

    def teardown(self):
        self.sock.close()


class PassWorker(ConsumerNode):
    """FlowWorker without the flow: the same output loan and copy, the same metric calls and meta. Its CPU per
    frame, less a plain copy's, is what the framework costs per frame, measured directly."""

    params: dict = {}

    def process(self, frame):
        out = self.output(frame.shape, frame.dtype)
        np.copyto(out, frame)
        for name in ("vector_flow_magnitude_avg", "vector_flow_magnitude_max", "vector_flow_vector_count",
                     "vector_flow_fps"):
            self.gauge(name, 0.0)
        self.count("vector_flow_frames_processed_total", 1)
        return out, {"vectors": 0, "magnitude_avg": 0.0, "magnitude_max": 0.0}


class Arrivals:
    """The datagrams of a FrameLog, received in a thread: per topic the arrival times (monotonic)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.times: dict[str, list[float]] = {}
        self._changed = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(512)
            except socket.timeout:
                continue
            except OSError:
                return
            topic, _, stamp = data.decode().rpartition(" ")
            with self._changed:
                self.times.setdefault(topic, []).append(float(stamp))
                self._changed.notify_all()

    def first(self, topic: str, timeout: float) -> float:
        """The arrival time of ``topic``'s first frame (waits for it)."""
        with self._changed:
            if not self._changed.wait_for(lambda: topic in self.times, timeout):
                raise AssertionError(f"no frame of {topic} within {timeout} s")
            return self.times[topic][0]

    def count(self, topic: str, start: float, end: float) -> int:
        """Frames of ``topic`` that arrived in [start, end)."""
        with self._changed:
            return sum(1 for t in self.times.get(topic, ()) if start <= t < end)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def make_app(port: int, tag: str, worker: type = flow.FlowWorker) -> EdgeApp:
    """The benchmark's app: the sink ``frames`` and the example's stream template (its source looped and
    resized to 640x480 at 15 fps; ``worker``: FlowWorker, or PassWorker)."""
    app = EdgeApp(f"benchvf{os.getpid()}{tag}")
    app.node(FrameLog, name="frames", notify_port=port)
    app.streams(source=VideoSource, workers=[worker], to="frames",
                source_options={"fps": FPS, "loop": True, "width": WIDTH, "height": HEIGHT})
    return app


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process ``pid`` so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as file:
        fields = file.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS        # utime, stime: fields 14 and 15 of stat


def pids_of(running, names: list[str]) -> dict[str, int]:
    """The pid of each named node's (one) process."""
    found = {}
    for rep in running.supervisor.replicas:
        name = rep.job.spec.name
        if name in names and rep.process is not None:
            found[name] = rep.process.pid
    missing = sorted(set(names) - set(found))
    if missing:
        raise AssertionError(f"no process for {missing}")
    return found


# -- activation to first frame -------------------------------------------------------------------------------

def measure_activation(n: int) -> list[float]:
    """Seconds from ``activate`` to the stream's first frame at the sink, for n streams one after another."""
    arrivals = Arrivals()
    seconds = []
    try:
        with make_app(arrivals.port, "a").start() as running:
            for _ in range(n):
                stream_id = uuid.uuid4().hex[:12]
                started = time.monotonic()
                info = running.streams.activate(stream_id, str(VIDEO), PARAMS)
                first = arrivals.first(info["topics"][0], timeout=30)
                seconds.append(first - started)
                running.streams.deactivate(stream_id)
    finally:
        arrivals.close()
    return seconds


# -- CPU per stream ------------------------------------------------------------------------------------------

def frames_of_video(limit: int | None = None) -> list[np.ndarray]:
    """vtest.avi's frames resized to 640x480 as VideoSource resizes them (INTER_AREA)."""
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    try:
        while limit is None or len(frames) < limit:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
    finally:
        capture.release()
    if not frames:
        raise AssertionError(f"{VIDEO}: no frames")
    return frames


def run_plain(frames: list[np.ndarray], streams: int, seconds: float, warmup: float, offset: int = 0) -> dict:
    """The baseline: the worker's code as a plain loop in this process, one tracker per stream, every stream
    one frame per tick of 1/15 s (behind schedule it does not sleep), each at its own place in the video (no
    frame is read twice in a row from a warm cache). CPU per frame over the window."""
    cv2.setNumThreads(1)
    trackers = [flow.FlowTracker(**PARAMS) for _ in range(streams)]
    period = 1.0 / FPS
    spread = max(1, len(frames) // streams)      # each stream at its own place in the video, as live streams
    k = offset
    start = time.monotonic()
    due, done, cpu0, window_start = start, 0, None, None
    while True:
        now = time.monotonic()
        if cpu0 is None and now - start >= warmup:
            cpu0, window_start, done = time.process_time(), now, 0
        if window_start is not None and now - window_start >= seconds:
            break
        for i, tracker in enumerate(trackers):
            frame = frames[(k + i * spread) % len(frames)]
            result = tracker.step(frame)
            out = frame.copy()
            flow.draw_arrows(out, result)
        done += streams
        k += 1
        due += period
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - window_start
    cpu = time.process_time() - cpu0
    return {"cpu_per_frame_ms": 1e3 * cpu / done, "fps_per_stream": done / streams / elapsed,
            "cpu_share": cpu / elapsed}


def _plain_child(conn, frames, seconds, warmup, offset, phase) -> None:
    time.sleep(phase)                    # staggered ticks, as independent streams (not all at once)
    conn.send(run_plain(frames, 1, seconds, warmup, offset))
    conn.close()


def run_plain_processes(frames: list[np.ndarray], streams: int, seconds: float, warmup: float) -> dict:
    """The same plain loop as one process per stream (forked: they share the decoded frames), no EdgeFlow:
    what running the streams in processes of their own costs by itself (caches, context switches), to tell
    it apart from what EdgeFlow adds. CPU per frame: the processes' summed over their frames."""
    context = multiprocessing.get_context("fork")
    pipes, children = [], []
    for i in range(streams):
        parent, child = context.Pipe(duplex=False)
        proc = context.Process(target=_plain_child, args=(child, frames, seconds, warmup,
                                                          i * max(1, len(frames) // streams),
                                                          i / streams / FPS), daemon=True)
        proc.start()
        child.close()
        pipes.append(parent)
        children.append(proc)
    results = [pipe.recv() for pipe in pipes]
    for proc in children:
        proc.join(10)
    cpu = sum(r["cpu_per_frame_ms"] * r["fps_per_stream"] for r in results)      # ms CPU per second, summed
    fps = sum(r["fps_per_stream"] for r in results)
    return {"cpu_per_frame_ms": cpu / fps, "fps_per_stream": statistics.median(r["fps_per_stream"]
                                                                                for r in results)}


def run_edgeflow(streams: int, seconds: float, warmup: float, worker: type = flow.FlowWorker) -> dict:
    """``streams`` streams at once; per stream: achieved fps at the sink, source and worker CPU (share of a
    core), worker CPU per frame; over all of them the workers' CPU per frame (``cpu_per_frame_ms``: their
    CPU summed over their frames summed, which rounds /proc's 10 ms ticks least); the sink's CPU share."""
    arrivals = Arrivals()
    try:
        with make_app(arrivals.port, "c" if worker is flow.FlowWorker else "p", worker).start() as running:
            infos = []
            for _ in range(streams):
                infos.append(running.streams.activate(uuid.uuid4().hex[:12], str(VIDEO), PARAMS))
            for info in infos:
                arrivals.first(info["topics"][0], timeout=30)
            time.sleep(warmup)                               # trackers warm, rates settled
            names = [name for info in infos for name in info["nodes"]] + ["frames"]
            pids = pids_of(running, names)
            t0 = time.monotonic()
            cpu0 = {name: process_cpu(pid) for name, pid in pids.items()}
            time.sleep(seconds)
            t1 = time.monotonic()
            cpu1 = {name: process_cpu(pid) for name, pid in pids.items()}
            snapshot = running.statistics()
            for info in infos:
                running.streams.deactivate(info["id"])
    finally:
        arrivals.close()
    elapsed = t1 - t0
    per_stream = []
    for info in infos:
        source, worker = info["nodes"]
        frames = arrivals.count(info["topics"][0], t0, t1)
        worker_cpu = cpu1[worker] - cpu0[worker]
        per_stream.append({"fps": frames / elapsed, "source_cpu": (cpu1[source] - cpu0[source]) / elapsed,
                           "worker_cpu": worker_cpu / elapsed,
                           "cpu_per_frame_ms": 1e3 * worker_cpu / frames if frames else float("nan"),
                           "hook_ms": snapshot["nodes"][worker]["processing_ms"]["mean"]})
    total_frames = sum(arrivals.count(info["topics"][0], t0, t1) for info in infos)
    total_cpu = sum(cpu1[info["nodes"][1]] - cpu0[info["nodes"][1]] for info in infos)
    return {"streams": per_stream, "sink_cpu": (cpu1["frames"] - cpu0["frames"]) / elapsed,
            "seconds": elapsed, "cpu_per_frame_ms": 1e3 * total_cpu / max(1, total_frames)}


def copy_ms(frames: list[np.ndarray], n: int = 400) -> float:
    """CPU ms per ``frame.copy()`` of the frames in turn: the plain loop's part of what PassWorker does."""
    start = time.process_time()
    for k in range(n):
        frames[(k * 7) % len(frames)].copy()
    return 1e3 * (time.process_time() - start) / n


def measure_cpu(streams: int, seconds: float, warmup: float, frames: list[np.ndarray],
                rounds: int = 1, direct: bool = True) -> dict:
    """The plain loop and the framework in the same run, alternating (plain first in even rounds):
    {"plain": median round, "edgeflow": median round, "worker_cpu_per_frame_ms", "overhead", "load", and
    with ``direct`` "direct": PassWorker's CPU per frame less a plain copy's, as a share of the plain
    loop's CPU per frame}; the median round is the one of median CPU per frame."""
    plains, edgeflows = [], []
    load = [os.getloadavg()[0]]
    for r in range(rounds):
        for case in (("plain", "edgeflow") if r % 2 == 0 else ("edgeflow", "plain")):
            if case == "plain":
                plains.append(run_plain(frames, streams, seconds, warmup))
            else:
                edgeflows.append(run_edgeflow(streams, seconds, warmup))
        load.append(os.getloadavg()[0])
    passed = run_edgeflow(streams, seconds, warmup, PassWorker) if direct else None
    apart = run_plain_processes(frames, streams, seconds, warmup) if direct else None
    plain = sorted(plains, key=lambda p: p["cpu_per_frame_ms"])[len(plains) // 2]
    edgeflow = sorted(edgeflows, key=lambda e: e["cpu_per_frame_ms"])[len(edgeflows) // 2]
    per_frame = edgeflow["cpu_per_frame_ms"]
    out = {"plain": plain, "edgeflow": edgeflow, "worker_cpu_per_frame_ms": per_frame,
           "overhead": per_frame / plain["cpu_per_frame_ms"] - 1.0, "rounds": rounds, "load": load,
           "ratios": [e["cpu_per_frame_ms"] / p["cpu_per_frame_ms"] for p, e in zip(plains, edgeflows)]}
    if apart is not None:
        out.update(apart=apart, vs_apart=per_frame / apart["cpu_per_frame_ms"] - 1.0)
    if passed is not None:
        copied = copy_ms(frames)
        out.update(pass_ms=passed["cpu_per_frame_ms"], copy_ms=copied, pass_fps=statistics.median(
            s["fps"] for s in passed["streams"]),
            direct=(passed["cpu_per_frame_ms"] - copied) / plain["cpu_per_frame_ms"])
    return out


def report_activation(activation: list[float]) -> tuple[list[str], list[str]]:
    """The activation figures as lines, and the target missed."""
    median = statistics.median(activation)
    lines = [f"activation -> first frame at the sink: median {median * 1e3:.0f} ms, max "
             f"{max(activation) * 1e3:.0f} ms over {len(activation)} streams (target < "
             f"{ACTIVATION_TARGET_S * 1e3:.0f} ms)"]
    missed = [f"activation median {median:.2f} s (target < {ACTIVATION_TARGET_S} s)"] \
        if median >= ACTIVATION_TARGET_S else []
    return lines, missed


def report_cpu(cpu: dict) -> tuple[list[str], list[str]]:
    """The CPU figures as lines (per stream, medians, the ratio to the plain loop), and the targets missed."""
    ef, plain = cpu["edgeflow"], cpu["plain"]
    lines, missed = [], []
    lines.append(f"{len(ef['streams'])} streams of {WIDTH}x{HEIGHT} at {FPS:.0f} fps, FlowWorker "
                 f"(grid {PARAMS['grid_size']} px, threshold {PARAMS['threshold']} px), "
                 f"{ef['seconds']:.1f} s:")
    lines.append(f"  {'stream':>6} {'fps':>6} {'source CPU':>11} {'worker CPU':>11} {'worker ms/frame':>16} "
                 f"{'hook ms':>8}")
    for i, s in enumerate(ef["streams"]):
        lines.append(f"  {i:>6} {s['fps']:6.2f} {s['source_cpu']:11.1%} {s['worker_cpu']:11.1%} "
                     f"{s['cpu_per_frame_ms']:16.2f} {s['hook_ms']:8.2f}")
    fps = statistics.median(s["fps"] for s in ef["streams"])
    per_stream = statistics.median(s["source_cpu"] + s["worker_cpu"] for s in ef["streams"])
    lines.append(f"  median: {fps:.2f} fps, {per_stream:.1%} of a core per stream (source + worker); the "
                 f"sink {ef['sink_cpu']:.1%}")
    lines.append(f"plain OpenCV loop, one process, same frames: {plain['cpu_per_frame_ms']:.2f} ms CPU per "
                 f"frame, {plain['fps_per_stream']:.2f} fps per stream ({plain['cpu_share']:.0%} of a core)")
    lines.append(f"worker CPU per frame: edgeflow {cpu['worker_cpu_per_frame_ms']:.2f} ms / plain "
                 f"{plain['cpu_per_frame_ms']:.2f} ms = {1 + cpu['overhead']:.3f}x: framework overhead "
                 f"{cpu['overhead']:+.1%} of the worker's CPU (target < {OVERHEAD_TARGET:.0%})")
    lines.append(f"  medians of {cpu['rounds']} alternating round(s); ratio per round: "
                 f"{', '.join(f'{r:.3f}x' for r in cpu['ratios'])}; load average "
                 f"{' -> '.join(f'{v:.1f}' for v in cpu['load'])} on {os.cpu_count()} cores (other work on "
                 "the host inflates both, the many processes more)")
    if "apart" in cpu:
        lines.append(f"the plain loop as one process per stream (no EdgeFlow): "
                     f"{cpu['apart']['cpu_per_frame_ms']:.2f} ms CPU per frame, "
                     f"{cpu['apart']['fps_per_stream']:.2f} fps per stream; edgeflow's workers "
                     f"{1 + cpu['vs_apart']:.3f}x that ({cpu['vs_apart']:+.1%})")
    if "direct" in cpu:
        lines.append(f"directly: a worker without the flow (same loan, copy, metrics) takes "
                     f"{cpu['pass_ms']:.3f} ms CPU per frame ({cpu['pass_fps']:.2f} fps), a plain copy "
                     f"{cpu['copy_ms']:.3f} ms: the framework's {cpu['pass_ms'] - cpu['copy_ms']:.3f} ms per "
                     f"frame is {cpu['direct']:.1%} of the plain worker's CPU")
    if cpu["overhead"] >= OVERHEAD_TARGET:
        missed.append(f"overhead {cpu['overhead']:.1%} (target < {OVERHEAD_TARGET:.0%})")
    if fps < 0.95 * FPS:
        missed.append(f"median {fps:.2f} fps per stream (asked {FPS:.0f})")
    return lines, missed


def check(activation: list[float], cpu: dict, streams: int) -> None:
    """What every run must give, whatever the machine: a figure for every stream, frames from each."""
    assert len(activation) >= 1 and all(0 < s < 30 for s in activation), activation
    assert len(cpu["edgeflow"]["streams"]) == streams
    for s in cpu["edgeflow"]["streams"]:
        assert s["fps"] > 0 and s["worker_cpu"] > 0 and s["cpu_per_frame_ms"] > 0, s
    assert cpu["plain"]["cpu_per_frame_ms"] > 0 and cpu["plain"]["fps_per_stream"] > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="the CPU window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--activations", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of plain and edgeflow")
    parser.add_argument("--quick", action="store_true", help="3 streams, 3 s, 3 activations, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.seconds, args.warmup, args.activations, args.rounds = 3, 3.0, 1.0, 3, 1
    activation = measure_activation(args.activations)
    cpu = measure_cpu(args.streams, args.seconds, args.warmup, frames_of_video(), args.rounds)
    check(activation, cpu, args.streams)
    lines, missed = report_activation(activation)
    more_lines, more_missed = report_cpu(cpu)
    print("\n".join(lines + more_lines))
    for line in missed + more_missed:
        print(f"below target: {line}")
    return 0


# -- pytest-benchmark ---------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:                         # plain-script mode needs no pytest
    pytest = None

if pytest is not None:
    FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"
    QUICK = os.environ.get("EDGEFLOW_BENCH_QUICK") == "1"
    if FAST:
        STREAMS, SECONDS, WARMUP, ACTIVATIONS, FRAMES = 2, 1.0, 0.5, 2, 40
    elif QUICK:
        STREAMS, SECONDS, WARMUP, ACTIVATIONS, FRAMES = 3, 3.0, 1.0, 3, None
    else:
        STREAMS, SECONDS, WARMUP, ACTIVATIONS, FRAMES = 8, 10.0, 2.0, 5, None

    def test_vector_flow_activation_to_first_frame(benchmark) -> None:
        benchmark.group = "vector flow"
        seconds = benchmark.pedantic(lambda: measure_activation(ACTIVATIONS), rounds=1, iterations=1)
        benchmark.extra_info.update(activation_s=seconds, median_s=statistics.median(seconds))
        assert len(seconds) == ACTIVATIONS and all(0 < s < 30 for s in seconds)
        print("\n".join(report_activation(seconds)[0]))

    def test_vector_flow_cpu_per_stream(benchmark) -> None:
        benchmark.group = "vector flow"
        frames = frames_of_video(FRAMES)
        cpu = benchmark.pedantic(lambda: measure_cpu(STREAMS, SECONDS, WARMUP, frames, direct=not FAST),
                                 rounds=1, iterations=1)
        check([1.0], cpu, STREAMS)
        print("\n".join(report_cpu(cpu)[0]))
        benchmark.extra_info.update(overhead=cpu["overhead"], plain_ms=cpu["plain"]["cpu_per_frame_ms"],
                                    edgeflow_ms=cpu["worker_cpu_per_frame_ms"],
                                    fps=[s["fps"] for s in cpu["edgeflow"]["streams"]])


if __name__ == "__main__":
    sys.exit(main())
