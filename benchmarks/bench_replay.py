"""Replay at ``--speed max``: frames/s into a ring, next to reading the file alone with the ``mcap`` reader.

    python benchmarks/bench_replay.py [--frames 300] [--shape 480,640,3] [--rounds 3]
    pytest benchmarks --benchmark-only -k replay

A recording of camera-like uint8 frames (gradient, texture, noise; lz4, the recorder's defaults) is written
once with McapRecorder. Then, alternating over ``--rounds`` rounds (medians printed):

- ``mcap read``: ``mcap.reader.SeekingReader.iter_messages(log_time_order=True)`` over the file, touching each
  message's bytes (decompression and record parsing: the floor any replay pays);
- ``replay``: ``Player(path, speed="max").publish(app)``: every frame decoded back to an exact Frame (array,
  id, timestamp, meta) and published into a shared-memory ring (no reader attached, so the ring never waits:
  the replay's own cost);
- ``replay + reader``: the same with a DURABLE subscriber in another process taking every frame (the ring's
  back-pressure included), as a consumer node would.

Printed: frames/s and MB/s of frame data for each, and the ratio replay / mcap read.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout that is not pip-installed; children inherit it

import numpy as np  # noqa: E402

from edgeflow.frame import Frame  # noqa: E402
from edgeflow.record.replay import Player  # noqa: E402
from edgeflow.record.writer import McapRecorder  # noqa: E402

FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"
SHAPE = (48, 64, 3) if FAST else (480, 640, 3)
FRAMES = 20 if FAST else 300

READER = """
import sys
from edgeflow.transport import shm
from edgeflow.errors import WriterGone
app, n = sys.argv[1], 0
with shm.Subscriber("camera", app=app, qos="DURABLE", group="bench") as sub:
    while True:
        try:
            f = sub.recv(timeout=60)
        except WriterGone:
            break
        n += 1
        f.release()
print(n)
"""


def pictures(shape: tuple, n: int = 8) -> list[np.ndarray]:
    """Camera-like uint8 frames: a gradient, some texture and a little noise (lz4 has work to do)."""
    rng = np.random.default_rng(16)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    out = []
    for i in range(n):
        base = (x * 255 // shape[1] + y * 128 // shape[0] + 9 * i) % 256
        texture = ((x // 16 + y // 16 + i) % 2) * 24
        img = np.stack([base, (base + texture) % 256, (255 - base + texture) % 256], axis=-1)
        out.append(np.ascontiguousarray((img + rng.integers(0, 6, img.shape)).clip(0, 255).astype(np.uint8)))
    return out


def make_recording(path: pathlib.Path, shape: tuple, frames: int) -> None:
    pics = pictures(shape)
    t0 = time.time()
    with McapRecorder(path, app="bench") as rec:
        for i in range(frames):
            rec.write("camera", Frame(pics[i % len(pics)], frame_id=i + 1, timestamp=t0 + i / 30,
                                      meta={"i": i}), node="camera")


def mcap_read(path: pathlib.Path) -> tuple[float, int]:
    """(seconds, messages) of reading every message with mcap's own reader."""
    from mcap.reader import SeekingReader
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for _schema, _channel, message in SeekingReader(f).iter_messages(log_time_order=True):
            n += len(message.data) > 0
    return time.perf_counter() - t0, n


def replay(path: pathlib.Path, app: str, with_reader: bool) -> tuple[float, int]:
    """(seconds, frames) of a max-speed replay into ring ``camera`` of ``app``."""
    player = Player(path, speed="max")
    reader = None
    if with_reader:
        reader = subprocess.Popen([sys.executable, "-c", READER, app], stdout=subprocess.PIPE, text=True)
    try:
        stats = player.publish(app, wait=30 if with_reader else 0)
        if reader is not None:
            out, _ = reader.communicate(timeout=60)
            assert int(out) == stats.frames, f"the reader took {out.strip()} of {stats.frames} frames"
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
            reader.communicate()
    return stats.seconds, stats.frames


def measure(shape: tuple = SHAPE, frames: int = FRAMES, rounds: int = 3) -> dict:
    """Medians over ``rounds`` of each way, in frames/s; the file is made once."""
    app = f"benchreplay{os.getpid()}"
    frame_mb = int(np.prod(shape)) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "run.mcap"
        make_recording(path, shape, frames)
        size_mb = path.stat().st_size / 1e6
        rates: dict[str, list[float]] = {"mcap read": [], "replay": [], "replay + reader": []}
        for _ in range(rounds):
            seconds, n = mcap_read(path)
            assert n == frames
            rates["mcap read"].append(n / seconds)
            seconds, n = replay(path, app, with_reader=False)
            assert n == frames
            rates["replay"].append(n / seconds)
            seconds, n = replay(path, app, with_reader=True)
            assert n == frames
            rates["replay + reader"].append(n / seconds)
    leftover = [n for n in os.listdir("/dev/shm") if n.startswith(f"edgeflow.{app}.")]
    assert not leftover, f"replay left {leftover} in /dev/shm"
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"shape": shape, "frames": frames, "file_mb": size_mb, "frame_mb": frame_mb, "fps": med,
            "ratio": med["replay"] / med["mcap read"], "ratio_reader": med["replay + reader"] / med["mcap read"]}


def report(r: dict) -> str:
    lines = [f"replay at speed max: {r['frames']} frames of {'x'.join(map(str, r['shape']))} uint8 "
             f"({r['frame_mb']:.2f} MB each; file {r['file_mb']:.1f} MB, lz4)"]
    for name, fps in r["fps"].items():
        lines.append(f"  {name:<16} {fps:9.0f} frames/s  {fps * r['frame_mb']:8.0f} MB/s")
    lines.append(f"  ratio replay / mcap read: {r['ratio']:.2f}x  (with a reader process: {r['ratio_reader']:.2f}x)")
    return "\n".join(lines)


def test_replay_speed_max(benchmark):
    rounds = 1 if FAST else 3
    result = benchmark.pedantic(measure, kwargs={"rounds": rounds}, rounds=1)
    print("\n" + report(result))
    assert result["fps"]["replay"] > 0 and result["ratio"] > 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--shape", default=",".join(map(str, SHAPE)), help="e.g. 1080,1920,3")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(report(measure(tuple(int(v) for v in args.shape.split(",")), args.frames, args.rounds)))
