"""``edgeflow record``: record topics of an app running on this host to MCAP; ``--recover`` repairs a file.

    edgeflow record main.py --topics camera,detector -o run.mcap [--duration S] [--frames N]
        [--compression lz4|zstd|none] [--rotate-mb N] [--rotate-s N] [--jpeg] [--ros2]
    edgeflow record --recover run.mcap

FILE is loaded (not run) to learn the app's name and each named node's ring topics (one per replica:
``detector.r0``, ``detector.r1``); a name may also be a ring topic itself. The recorder then attaches to those
rings as its own BALANCED subscriber group (``record-<pid>``): it takes every frame while it keeps up, skips
to the newest (counted as drops) when it falls more than MAX_LAG frames behind, and never makes the app's
publishers wait. Frames go from the ring slot into the compressor without a copy.

A progress line on stderr shows frames, MB, MB/s and drops. Ctrl-C (SIGINT) or SIGTERM closes the file
cleanly (chunk, summary) and exits 0; so do --duration, --frames and the app ending. A full disk stops the
recording with one error line and exit code 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import click

from edgeflow.errors import ConfigError

MAX_LAG = 6             #: frames the recorder may fall behind before it skips (a ring has 8 slots by default)
WAIT_FOR_APP = 10.0     #: seconds to wait for the app's rings to appear (it may be starting)


def ring_topics(graph: Any, names: list[str]) -> list[tuple[str, str]]:
    """(ring topic, node) for each name: a node's output topics (one per replica), or a ring topic given as is.

    Raises:
        ConfigError: a name that is neither a node with an output nor one of their ring topics.
    """
    from edgeflow.runtime import plan

    nodes = {spec.name: spec for spec in graph.nodes}
    out: list[tuple[str, str]] = []
    for name in names:
        spec = nodes.get(name)
        if spec is not None:
            if spec.kind in ("sink", "gateway"):
                raise ConfigError(f"--topics {name}: node '{name}' is a {spec.kind}: it has no output to record")
            out += [(plan.output_topic(name, spec.replicas, i), name) for i in range(spec.replicas)]
            continue
        owner = next((n for n in sorted(nodes, key=len, reverse=True) if name.startswith(n + ".")), None)
        if owner is None:
            producing = ", ".join(n for n, s in nodes.items() if s.kind not in ("sink", "gateway"))
            raise ConfigError(f"--topics {name}: no such node in app '{graph.app}' (nodes with an output: "
                              f"{producing})")
        out.append((name, owner))
    seen: set = set()
    return [t for t in out if not (t[0] in seen or seen.add(t[0]))]


def _wait_for_rings(app: str, topics: list[str], timeout: float, stop: threading.Event) -> None:
    """Wait until every topic's ring exists on this host (the app is running), without creating any."""
    from edgeflow.transport import shm

    deadline = time.monotonic() + timeout
    while True:
        missing = [t for t in topics if shm.writer_status(t, app=app) == "absent"]
        if not missing or stop.is_set():
            return
        if time.monotonic() >= deadline:
            raise ConfigError(f"app '{app}' is not running on this host: no ring for topic "
                              f"{', '.join(missing)} after {timeout:g} s (start it, or check --app)")
        stop.wait(0.05)


class _Progress:
    """The live progress line: rewritten in place on a terminal, a line every few seconds otherwise."""

    def __init__(self, quiet: bool, every: float | None = None) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = every if every is not None else (0.5 if self.tty else 5.0)
        self.next = time.monotonic() + self.every

    def line(self, stats: dict, drops: int) -> str:
        return (f"recording: {stats['frames']} frames, {stats['bytes'] / 1e6:.1f} MB, "
                f"{stats['mb_per_s']:.1f} MB/s, {drops} dropped")

    def tick(self, stats: dict, drops: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (now < self.next and not force):
            return
        self.next = now + self.every
        end = "\r" if self.tty and not force else "\n"
        sys.stderr.write(self.line(stats, drops).ljust(70 if self.tty else 0) + end)
        sys.stderr.flush()


def run_recording(app: str, topics: list[tuple[str, str]], output: str, *, duration: float | None = None,
                  frames: int | None = None, stop: threading.Event | None = None, quiet: bool = False,
                  wait: float = WAIT_FOR_APP, progress_s: float | None = None, **options: Any) -> dict:
    """Record ``topics`` ((ring topic, node) pairs) of ``app`` to ``output`` until ``stop`` is set, ``duration``
    seconds or ``frames`` frames have passed, or every publisher closed; returns the recorder's stats (with
    ``drops`` counting frames the subscribers skipped too)."""
    from edgeflow.qos import QoS
    from edgeflow.record.writer import McapRecorder, keep_freed_memory
    from edgeflow.transport import shm

    keep_freed_memory()
    stop = stop or threading.Event()
    _wait_for_rings(app, [t for t, _ in topics], wait, stop)
    rec = McapRecorder(output, app=app, **options)
    group = f"record-{os.getpid()}"
    subs: list = []
    progress = _Progress(quiet, progress_s)
    try:
        for topic, _node in topics:
            subs.append(shm.Subscriber(topic, app=app, qos=QoS.BALANCED, group=group, max_lag=MAX_LAG))
        nodes = [node for _, node in topics]
        deadline = None if duration is None else time.monotonic() + duration
        closed = [False] * len(subs)
        while not stop.is_set() and rec.error is None:
            got = False
            for i, sub in enumerate(subs):
                frame = sub.recv_nowait()
                if frame is None:
                    continue
                got = True
                try:
                    rec.write(sub.topic, frame, node=nodes[i])
                finally:
                    frame.release()
                if frames is not None and rec.stats()["frames"] >= frames:
                    stop.set()
                    break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not got:
                for i, sub in enumerate(subs):
                    closed[i] = closed[i] or sub.writer_state() == "closed"
                if all(closed):
                    break                 # the app ended: everything it published was taken
                rec.flush_due()
                shm.wait_any(subs, 0.1)
            progress.tick(rec.stats(), _drops(rec, subs))
    finally:
        rec.close()
        stats = rec.stats()
        stats["drops"] = _drops(rec, subs)
        for sub in subs:
            sub.close()
    progress.tick(stats, stats["drops"], force=True)
    return stats


def _drops(rec: Any, subs: list) -> int:
    return rec.stats()["drops"] + sum(s.statistics().drops for s in subs if not s.is_closed())


@click.command("record")
@click.argument("file", required=False, type=click.Path(dir_okay=True))
@click.option("--topics", "-t", default=None, help="Comma-separated nodes (all their replicas) or ring topics.")
@click.option("--output", "-o", default="run.mcap", show_default=True, help="The MCAP file to write.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--frames", type=int, default=None, help="Stop after this many frames (all topics together).")
@click.option("--compression", type=click.Choice(["lz4", "zstd", "none"]), default="lz4", show_default=True)
@click.option("--rotate-mb", type=float, default=None, help="Start a new file (run-0001.mcap...) at this size.")
@click.option("--rotate-s", type=float, default=None, help="Start a new file after this many seconds of frames.")
@click.option("--jpeg", is_flag=True, help="uint8 mono/BGR images as JPEG (foxglove.CompressedImage; lossy).")
@click.option("--ros2", is_flag=True, help="ROS 2 CDR messages (sensor_msgs/msg/Image, std_msgs/msg/String).")
@click.option("--app", "app_name", default=None, help="Record from this app name instead of the file's.")
@click.option("--wait", type=float, default=WAIT_FOR_APP, show_default=True,
              help="Seconds to wait for the app's rings to appear.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@click.option("--progress", "progress_s", type=float, default=None,
              help="Seconds between progress lines (default 0.5 on a terminal, else 5).")
@click.option("--recover", "recover_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Give FILE.mcap, whose recorder was killed, its summary back (in place), and exit.")
def record(file: str | None, topics: str | None, output: str, duration: float | None, frames: int | None,
           compression: str, rotate_mb: float | None, rotate_s: float | None, jpeg: bool, ros2: bool,
           app_name: str | None, wait: float, quiet: bool, progress_s: float | None,
           recover_path: str | None) -> None:
    """Record topics of FILE's app, running on this host, to MCAP (see docs/recording.md)."""
    if recover_path is not None:
        from edgeflow.record.repair import recover
        result = recover(recover_path)
        if result.status == "complete":
            click.echo(f"{result.path}: already complete (it has a summary); nothing to do")
        else:
            click.echo(f"{result.path}: recovered {result.messages} messages in {result.chunks} chunks "
                       f"({result.cut_bytes} torn bytes cut off)")
        return
    if file is None:
        raise ConfigError("edgeflow record: give the app's FILE (main.py or pipeline.yaml), or --recover FILE")
    if not topics:
        raise ConfigError("edgeflow record: --topics: which nodes to record (e.g. --topics camera,detector)")
    for name, value in (("--duration", duration), ("--frames", frames), ("--rotate-mb", rotate_mb),
                        ("--rotate-s", rotate_s)):
        if value is not None and value <= 0:
            raise ConfigError(f"edgeflow record: {name} {value}: a number > 0")
    import contextlib

    from edgeflow.cli import _load
    with contextlib.redirect_stdout(sys.stderr), _load.reported():
        graph = _load.load_any(file).graph()
    chosen = ring_topics(graph, [t.strip() for t in topics.split(",") if t.strip()])
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = run_recording(app_name or graph.app, chosen, output, duration=duration, frames=frames,
                              stop=stop, quiet=quiet, wait=wait, progress_s=progress_s, compression=compression,
                              rotate_bytes=None if rotate_mb is None else int(rotate_mb * 1e6),
                              rotate_seconds=rotate_s, jpeg=jpeg, ros2=ros2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    files = ", ".join(stats["files"])
    if stats["error"]:
        click.echo(stats["error"], err=True)
        raise SystemExit(1)
    click.echo(f"recorded {stats['frames']} frames ({stats['bytes'] / 1e6:.1f} MB, {stats['drops']} dropped) "
               f"to {files}", err=True)
