"""Recording 1920x1080x3 uint8 frames to MCAP with lz4: McapRecorder next to plain ``mcap`` from a Python loop.

    python benchmarks/bench_record.py [--frames 150] [--rounds 3] [--seconds 10]

- ``plain``: ``mcap.writer.Writer`` (lz4, 4 MiB chunks, CRCs on: its defaults) and a loop of
  ``add_message(channel, t, frame_bytes, t)``. The frames are made into ``bytes`` before the clock starts (the
  plain loop's best case: no ``tobytes()`` counted).
- ``edgeflow``: ``McapRecorder.write(topic, frame)`` of the same frames as numpy arrays (foxglove.RawImage
  messages with the EdgeFlow envelope; the array is handed to the compressor as a view, never copied).
Both write as fast as they can to a file in a temporary folder; the throughput (frames/s, MB/s of frame data)
and CPU per frame are the medians over ``--rounds`` alternating rounds, the ratio edgeflow / plain is printed
(issue 16 target: >= 0.9x).

- ``live``: a publisher process sends 1080p frames at 30 fps into a ring for ``--seconds``; this process
  records them as ``edgeflow record`` does (``run_recording``: a BALANCED subscriber group). Printed: frames
  published, recorded, dropped, and the recorder's CPU per frame (issue 16 target: no frame dropped).

The frames are a camera-like picture (gradients, texture and sensor noise), so lz4 has some work to do; a
frame of pure noise or of zeros would make either side unrealistically slow or fast.
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
from edgeflow.record.writer import McapRecorder  # noqa: E402

SHAPE = (1080, 1920, 3)
FRAME_BYTES = int(np.prod(SHAPE))
DISTINCT = 8                                  # different pictures cycled through (memory stays small)


def pictures(n: int = DISTINCT) -> list[np.ndarray]:
    """Camera-like 1080p BGR frames: a moving gradient, some texture, a little noise."""
    rng = np.random.default_rng(16)
    y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    out = []
    for i in range(n):
        base = (x * 255 // SHAPE[1] + y * 128 // SHAPE[0] + 9 * i) % 256
        texture = ((x // 16 + y // 16 + i) % 2) * 24
        img = np.stack([base, (base + texture) % 256, (255 - base + texture) % 256], axis=-1)
        img = img + rng.integers(0, 6, SHAPE)
        out.append(np.ascontiguousarray(img.clip(0, 255).astype(np.uint8)))
    return out


def plain(path: str, frames: list[bytes], count: int) -> tuple[float, float]:
    """(seconds, CPU seconds) of writing ``count`` frames with mcap's own Writer."""
    from mcap.writer import CompressionType, Writer
    with open(path, "wb") as f:
        w = Writer(f, chunk_size=4 << 20, compression=CompressionType.LZ4)
        w.start()
        sid = w.register_schema("foxglove.RawImage", "protobuf", b"")
        cid = w.register_channel("camera", "protobuf", sid)
        t0, c0 = time.perf_counter(), time.process_time()
        base = time.time_ns()
        for i in range(count):
            t = base + i * 33_333_333
            w.add_message(cid, t, frames[i % len(frames)], t, sequence=i)
        w.finish()
        return time.perf_counter() - t0, time.process_time() - c0


def edgeflow(path: str, frames: list[np.ndarray], count: int) -> tuple[float, float]:
    """(seconds, CPU seconds) of recording ``count`` frames with McapRecorder."""
    rec = McapRecorder(path, app="bench", compression="lz4", chunk_bytes=4 << 20)
    t0, c0 = time.perf_counter(), time.process_time()
    base = time.time()
    meta = {"edgeflow.trace": [["camera", 1, 2]]}
    for i in range(count):
        rec.write("camera", Frame(frames[i % len(frames)], frame_id=i + 1, timestamp=base + i / 30, meta=meta),
                  node="camera")
    rec.close()
    return time.perf_counter() - t0, time.process_time() - c0


PUBLISHER = r"""
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from edgeflow.transport import shm
app, seconds = sys.argv[2], float(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from bench_record import pictures
pics = pictures()
pub = shm.Publisher("camera", app=app, slots=8)
print("ready", flush=True)
sys.stdin.readline()                       # the recorder attached
start = time.monotonic()
n = 0
while True:
    due = start + n / 30
    now = time.monotonic()
    if due - start >= seconds:
        break
    if due > now:
        time.sleep(due - now)
    with pub.loan((1080, 1920, 3)) as buf:
        buf[...] = pics[n % len(pics)]
    n += 1
pub.close(timeout=5.0)
print(n, flush=True)
"""


def live(folder: str, seconds: float) -> dict:
    """Publisher process at 30 fps, recorded here through a ring as ``edgeflow record`` records."""
    import threading

    from edgeflow.cli.record import run_recording
    from edgeflow.transport import shm
    app = f"benchrec{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(ROOT), app, str(seconds),
                             str(ROOT / "benchmarks")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        published: list = []

        def start_publisher() -> None:
            # the recorder (below, in this thread: where `edgeflow record` runs it) waits for the ring
            while shm.writer_status("camera", app=app) != "running":
                time.sleep(0.01)
            time.sleep(0.3)                    # its subscriber attaches: BALANCED groups see frames from then on
            proc.stdin.write("go\n")
            proc.stdin.flush()
            published.append(int(proc.stdout.readline()))
        thread = threading.Thread(target=start_publisher, daemon=True)
        thread.start()
        import resource
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        result = run_recording(app, [("camera", "camera")], os.path.join(folder, "live.mcap"), quiet=True,
                               compression="lz4")
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        result["user"], result["sys"] = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        thread.join(timeout=30)
        result["published"] = published[0] if published else -1
        return result
    finally:
        proc.wait(timeout=30)
        shm.sweep_app(app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    from edgeflow.record.writer import keep_freed_memory
    keep_freed_memory()            # as recording processes do (both cases run with it)
    arrays = pictures()
    blobs = [a.tobytes() for a in arrays]
    results: dict[str, list] = {"plain": [], "edgeflow": []}
    with tempfile.TemporaryDirectory(prefix="edgeflow-bench-record-") as folder:
        for _ in range(args.rounds):
            for name in ("plain", "edgeflow"):
                path = os.path.join(folder, f"{name}.mcap")
                if name == "plain":
                    wall, cpu = plain(path, blobs, args.frames)
                else:
                    wall, cpu = edgeflow(path, arrays, args.frames)
                results[name].append((wall, cpu, os.path.getsize(path)))
                os.unlink(path)
        print(f"{args.frames} frames of {SHAPE[1]}x{SHAPE[0]}x3 uint8 ({FRAME_BYTES / 1e6:.1f} MB), lz4, "
              f"median of {args.rounds} rounds")
        med = {}
        for name, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            size = rows[-1][2]
            med[name] = args.frames / wall
            print(f"  {name:<9} {args.frames / wall:7.1f} frames/s  {args.frames * FRAME_BYTES / wall / 1e6:7.0f} "
                  f"MB/s in  {cpu / args.frames * 1e3:6.2f} ms CPU/frame  file {size / 1e6:.0f} MB "
                  f"({size / (args.frames * FRAME_BYTES):.2f} of raw)")
        print(f"  ratio edgeflow / plain: {med['edgeflow'] / med['plain']:.2f}x throughput (target >= 0.9x)")
        r = live(folder, args.seconds)
        frames = max(r.get("frames", 0), 1)
        print(f"live 30 fps for {args.seconds:g} s through a ring: published {r['published']}, recorded "
              f"{r.get('frames')}, dropped {r.get('drops')} (target 0); recorder CPU per frame "
              f"{(r['user'] + r['sys']) / frames * 1e3:.2f} ms ({r['user'] / frames * 1e3:.2f} user, "
              f"{r['sys'] / frames * 1e3:.2f} system: the kernel's file writes), "
              f"{r.get('bytes', 0) / 1e6 / args.seconds:.0f} MB/s written")


if __name__ == "__main__":
    main()
