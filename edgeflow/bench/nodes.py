"""The nodes and apps of the runtime benchmark (edgeflow.bench.runtime), and the bookkeeping of its apps.

- latency: ``StampSource`` (a producer node writing the payload markers into ``self.output()`` or into an
  array it returns) -> ``LatencyProbe`` (a consumer node computing ``time.time() -
  self.current_frame.timestamp`` on entry to its hook and checking every frame): ``latency_app``.
- CPU: ``CpuSource`` -> ``CpuRelay`` -> ``CpuSink`` with trivial hooks over DURABLE links, each reading
  ``time.process_time()`` every window of frames (``CpuMeter``): ``cpu_app``.

Node processes report through files in a per-run directory (their ``teardown`` writes JSON): a node has no
other channel back to the benchmark. Every app is named ``rtbench<pid>-<tag><k>``; ``leftovers()`` lists what
runs left in /dev/shm or in the process table.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeflow.bench.children import live_children
from edgeflow.bench.payload import LAT, make_frame, parse_size, read_markers, write_markers
from edgeflow.bench.results import BenchError
from edgeflow.errors import ConfigError
from edgeflow.graph import EdgeApp
from edgeflow.nodes.base import ConsumerNode, ProducerNode, SinkNode
from edgeflow.runtime.outputs import TRACE_KEY

LATENCY_SIZE, CPU_SIZE = "1920x1080x3", "640x480x3"
CPU_NODES = ("source", "relay", "sink")
_COUNTER = itertools.count()

# --------------------------------------------------------------------------------------------- run directory

def _write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)                     # the reader never sees half a report


def _signal_ready(run_dir: str, name: str) -> None:
    Path(run_dir, f"ready.{name}").touch()


def await_ready(run_dir: str, names: tuple[str, ...], timeout: float) -> bool:
    """Wait until every named node ran its setup (its inputs are attached): REALTIME loses earlier frames."""
    deadline = time.monotonic() + timeout
    while not all(Path(run_dir, f"ready.{n}").exists() for n in names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def read_report(run_dir: Path, name: str) -> dict[str, Any]:
    """The JSON report node ``name`` wrote at teardown.

    Raises:
        BenchError: the node wrote none (it crashed or never ran its teardown).
    """
    path = run_dir / f"{name}.json"
    if not path.exists():
        raise BenchError(f"node {name!r} wrote no report (it crashed or never ran its teardown)")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------ latency nodes

class StampSource(ProducerNode):
    """Latency producer: writes the frame index markers (edgeflow.bench.payload's layout) into a loan or into its own array.

    Options: ``shape``; ``mode`` ("loan": ``self.output()``, zero copy; "copy": a returned array, one copy);
    ``run_dir`` and ``wait_for`` (nodes whose setup must have run before the first frame); ``pause_file``
    (nothing is sent while it exists).
    """

    fps = 300.0
    shape: tuple = parse_size(LATENCY_SIZE)
    mode = "loan"
    run_dir = ""
    wait_for: tuple = ()
    pause_file = ""

    def setup(self) -> None:
        """Node hook: read the options, get ready (and tell the benchmark so)."""
        self.shape, self._idx = tuple(self.shape), 0
        self._src = make_frame(self.shape) if self.mode == "copy" else None
        if not await_ready(self.run_dir, tuple(self.wait_for), 20.0):
            self.log.warning("%s: downstream nodes not ready after 20 s; frames may be lost", self.name)
        _signal_ready(self.run_dir, self.name)

    def produce(self) -> np.ndarray | None:
        """Node hook: the next frame."""
        if self.pause_file and os.path.exists(self.pause_file):
            return None
        buf = self.output(self.shape, np.uint8) if self._src is None else self._src
        write_markers(buf, 0.0, self._idx, LAT)      # the runtime stamps Frame.timestamp
        self._idx += 1
        return buf


class LatencyProbe(ConsumerNode):
    """Latency consumer: ``time.time() - current_frame.timestamp`` on entry to ``process``; sends nothing.

    Checks every frame: a read-only uint8 view of the slot, of the expected shape; markers intact; index and
    frame_id in step; indices increasing (consecutive when ``every``, i.e. DURABLE). Frames with an index
    below ``warmup`` are checked, not measured. ``teardown`` writes ``<run_dir>/<name>.json``.
    """

    shape: tuple = parse_size(LATENCY_SIZE)
    run_dir = ""
    warmup = 0
    every = False

    def setup(self) -> None:
        """Node hook: read the options, get ready (and tell the benchmark so)."""
        self.shape = tuple(self.shape)
        self._nbytes = int(np.prod(self.shape))
        self._lat: list[float] = []
        self._split: list[tuple[float, float]] = []
        self._errors: list[str] = []
        self._next_idx = self._offset = None
        self._received = self._gaps = 0
        _signal_ready(self.run_dir, self.name)

    def process(self, data: Any) -> None:
        """Node hook: one input frame, checked and measured."""
        now = time.time()
        frame = self.current_frame
        _, idx, kind, tail = read_markers(data, self._nbytes)
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
        if tail != idx or kind != LAT:
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
        """Node hook: write this node's report for the benchmark."""
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
    shape = parse_size(size)
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
        """Node hook: read the options, get ready (and tell the benchmark so)."""
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
        """Node hook: write this node's report for the benchmark."""
        _write_json(Path(self.run_dir, f"{self.name}.json"), self._meter.report(self._errors))


class CpuSource(_CpuNode, ProducerNode):
    """Returns a loaned buffer it never touches: the framework's cost of producing a frame."""

    fps = None
    shape: tuple = parse_size(CPU_SIZE)

    def setup(self) -> None:
        """Node hook: read the options, get ready (and tell the benchmark so)."""
        super().setup()
        self.shape = tuple(self.shape)

    def produce(self) -> np.ndarray:
        """Node hook: the next frame."""
        self._meter.tick()
        return self.output(self.shape, np.uint8)


class CpuRelay(_CpuNode, ConsumerNode):
    """Returns an untouched loan of its input's shape: one hop in, one hop out, no pixel work."""

    def process(self, data: Any) -> np.ndarray:
        """Node hook: one input frame, checked and measured."""
        self._meter.tick()
        self._check_input()
        return self.output(data.shape, data.dtype)


class CpuSink(_CpuNode, SinkNode):
    """Does nothing with its input but count and check it."""

    def consume(self, data: Any) -> None:
        """Node hook: one input frame, counted and checked."""
        self._meter.tick()
        self._check_input()


def cpu_app(name: str, run_dir: str, *, size: str = CPU_SIZE, warmup: int = 0, window: int = 100) -> EdgeApp:
    """producer -> consumer -> sink over DURABLE links with trivial hooks, as fast as the sink takes frames.

    Each node writes ``<run_dir>/<node>.json`` (CPU µs per frame of each window, sleeps, frames, errors) at
    teardown.
    """
    common = dict(run_dir=run_dir, warmup=warmup, window=window)
    app = EdgeApp(name)
    app.node(CpuSource, name="source", fps=None, shape=parse_size(size), **common)
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
        raise BenchError(f"app {app.name}: did not finish {frames} frames within {timeout:g} s")
    if final:
        raise BenchError(f"app {app.name}: ended with exit code {final} (a node failed)")


# ------------------------------------------------------------------------------------------ what is left

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
        left += [f"child {pid} {cmd!r}" for pid, cmd in live_children()]
    return left


