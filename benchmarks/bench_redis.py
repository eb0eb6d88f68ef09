"""The Redis transport's throughput next to plain redis-py issuing the same commands, single and dual Redis.

    python benchmarks/bench_redis.py [--frames 400] [--rounds 5] [--sizes 640x480x3,1920x1080x3]
    pytest benchmarks/bench_redis.py --benchmark-only

The benchmark starts its own two redis-server processes (free loopback ports, no persistence) and stops them
at the end; no other Redis is touched. As deployed, the producer runs in another process (in production,
another host) than the consumer, and every case moves the same payload with the same commands:

- ``edgeflow``: a child's RedisPublisher publishes a DURABLE topic (group declared first: ``SET .. PX`` of the
  raw payload and ``XADD``, one pipeline per instance; the publisher keeps a copy of each frame until it is
  acknowledged, within its default bound of 256 MiB, so it runs at most that far ahead of the consumer);
  the parent's RedisSubscriber (DURABLE, same group) receives each frame (acknowledge + XREADGROUP in one
  script call, then ``GET``).
- ``plain``: the child pipelines the same ``SET .. PX`` + ``XADD MAXLEN ~``; the parent pipelines ``XACK`` +
  ``XREADGROUP`` and then ``GET``s the blob into an array (``np.frombuffer``, as edgeflow does).

Single mode puts blobs and stream on one server; dual mode puts the blobs on the second (DualRedisBroker). The
figure is frames per second received by the consumer, from its first frame to its last. Every frame is checked
(index stamped at both ends of the payload, shape, order, count), so a fast wrong answer fails. Cases
alternate ``--rounds`` times and the median is shown with the ratios (issue 6 targets: edgeflow >= 0.8x plain;
dual no slower than single at 1920x1080x3).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout that is not pip-installed; children inherit it

import redis  # noqa: E402

from edgeflow.comms.brokers import DualRedisBroker, RedisBroker  # noqa: E402
from edgeflow.qos import QoS  # noqa: E402
from edgeflow.transport.redis import RedisPublisher, RedisSubscriber, declare_group, reset_app  # noqa: E402

SIZES = ("640x480x3", "1920x1080x3")
CASES = ("plain", "edgeflow")
MODES = ("single", "dual")
TARGET, DUAL_TARGET = 0.8, 1.0
BLOB_TTL = 20.0
GROUP = "bench"
_mp = multiprocessing.get_context("spawn")     # the parent runs threads: never fork it


def parse_shape(size: str) -> tuple[int, ...]:
    """``"640x480x3"`` -> (480, 640, 3): width x height x channels, as people write frame sizes."""
    w, h, *c = (int(part) for part in size.lower().split("x"))
    return (h, w, *c)


def stamped_frame(shape: tuple, i: int) -> np.ndarray:
    frame = np.full(shape, i % 251, np.uint8)
    flat = frame.reshape(-1)
    flat[:8].view(np.uint64)[0] = i
    flat[-8:].view(np.uint64)[0] = i
    return frame


def check(data: np.ndarray, shape: tuple, i: int) -> None:
    flat = data.reshape(-1)
    if data.shape != shape or int(flat[:8].view(np.uint64)[0]) != i or int(flat[-8:].view(np.uint64)[0]) != i:
        raise AssertionError(f"frame {i}: wrong payload (shape {data.shape}, stamps "
                             f"{int(flat[:8].view(np.uint64)[0])}/{int(flat[-8:].view(np.uint64)[0])})")


# -- servers ----------------------------------------------------------------------------------------------

class Servers:
    """Two redis-server processes of the benchmark's own (control, data)."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = tempfile.TemporaryDirectory(prefix="edgeflow-bench-redis-")
        self.procs, self.urls = [], []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self.procs.append(subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self.dir.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.urls.append(f"redis://127.0.0.1:{port}/0")
        for url, proc in zip(self.urls, self.procs):
            deadline = time.monotonic() + 10
            while True:
                try:
                    with redis.Redis.from_url(url) as r:
                        r.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        self.close()
                        raise RuntimeError(f"redis-server for {url} did not start") from None
                    time.sleep(0.02)

    def settle(self) -> None:
        """Wait until both servers freed what the last run UNLINKed (lazy free runs in a background thread and
        would slow the next run down)."""
        for url in self.urls:
            with redis.Redis.from_url(url) as r:
                deadline = time.monotonic() + 10
                while r.info("memory").get("lazyfree_pending_objects", 0) and time.monotonic() < deadline:
                    time.sleep(0.01)

    def broker(self, mode: str) -> RedisBroker | DualRedisBroker:
        return RedisBroker(self.urls[0]) if mode == "single" else DualRedisBroker(self.urls[0], self.urls[1])

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)
        self.dir.cleanup()

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- producers (child processes) ------------------------------------------------------------------------

def produce(case: str, broker, app: str, shape: tuple, n: int, go, done) -> None:
    frames = [stamped_frame(shape, i) for i in range(4)]        # made up front: the loop only sends
    go.wait()
    if case == "edgeflow":
        with RedisPublisher("bench", app=app, broker=broker, durable_groups=(GROUP,),
                            blob_ttl=BLOB_TTL) as pub:
            for i in range(n):
                frame = frames[i % 4]
                frame.reshape(-1)[:8].view(np.uint64)[0] = i
                frame.reshape(-1)[-8:].view(np.uint64)[0] = i
                pub.publish(frame)
            pub.drain(60.0)
    else:
        ctrl = redis.Redis.from_url(broker.url)
        data = redis.Redis.from_url(broker.data_url) if isinstance(broker, DualRedisBroker) else ctrl
        stream = f"edgeflow:{app}:stream:bench"
        header = '{"kind":"array","codec":"raw","dtype":"|u1","shape":%s}' % list(shape)
        for i in range(n):
            frame = frames[i % 4]
            frame.reshape(-1)[:8].view(np.uint64)[0] = i
            frame.reshape(-1)[-8:].view(np.uint64)[0] = i
            key = f"edgeflow:{app}:blob:bench:plain:{i}"
            fields = {"f": i, "s": "plain", "t": time.time(), "h": header}
            if data is ctrl:
                pipe = ctrl.pipeline(transaction=False)
                pipe.set(key, memoryview(frame.reshape(-1)), px=int(BLOB_TTL * 1000))
                pipe.xadd(stream, fields, maxlen=10_000, approximate=True)
                pipe.execute()
            else:
                pipe = data.pipeline(transaction=False)
                pipe.set(key, memoryview(frame.reshape(-1)), px=int(BLOB_TTL * 1000))
                pipe.execute()
                pipe = ctrl.pipeline(transaction=False)
                pipe.xadd(stream, fields, maxlen=10_000, approximate=True)
                pipe.execute()
        ctrl.close()
        if data is not ctrl:
            data.close()
    done.set()


# -- consumers (this process) -----------------------------------------------------------------------------

def consume_edgeflow(broker, app: str, shape: tuple, n: int, start) -> list[float]:
    stamps = []
    with RedisSubscriber("bench", app=app, broker=broker, qos=QoS.DURABLE, group=GROUP) as sub:
        start()
        for i in range(n):
            frame = sub.recv(timeout=60.0)
            check(frame.data, shape, i)
            stamps.append(time.perf_counter())
    return stamps


def consume_plain(broker, app: str, shape: tuple, n: int, start) -> list[float]:
    ctrl = redis.Redis.from_url(broker.url)
    data = redis.Redis.from_url(broker.data_url) if isinstance(broker, DualRedisBroker) else ctrl
    stream, stamps, ack = f"edgeflow:{app}:stream:bench", [], None
    try:
        start()
        for i in range(n):
            pipe = ctrl.pipeline(transaction=False)
            if ack is not None:
                pipe.xack(stream, GROUP, ack)
            pipe.xreadgroup(GROUP, "c", {stream: ">"}, count=1, block=60_000)
            reply = pipe.execute()[-1]
            entry_id, fields = reply[0][1][0]
            fid = int(fields[b"f"])
            payload = data.get(f"edgeflow:{app}:blob:bench:plain:{fid}")
            array = np.frombuffer(payload, np.uint8).reshape(shape)
            check(array, shape, i)
            ack = entry_id
            stamps.append(time.perf_counter())
        ctrl.xack(stream, GROUP, ack)
    finally:
        ctrl.close()
        if data is not ctrl:
            data.close()
    return stamps


def run_case(servers: Servers, case: str, mode: str, size: str, n: int, tag: str) -> float:
    """Frames per second through one producer child and this consumer; checks every frame."""
    shape = parse_shape(size)
    broker = servers.broker(mode)
    app = f"bench{tag}"
    declare_group("bench", GROUP, app=app, broker=broker)
    go, done = _mp.Event(), _mp.Event()
    child = _mp.Process(target=produce, args=(case, broker, app, shape, n, go, done))
    child.start()
    try:
        consume = consume_edgeflow if case == "edgeflow" else consume_plain
        stamps = consume(broker, app, shape, n, go.set)
        if not done.wait(60):
            raise AssertionError(f"{case}/{mode}: the producer did not finish")
        child.join(30)
        if child.exitcode != 0:
            raise AssertionError(f"{case}/{mode}: producer exit code {child.exitcode}")
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        reset_app(app, broker=broker)
        servers.settle()
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def measure(servers: Servers, sizes, frames: int, rounds: int, progress=print) -> dict:
    """{(size, mode, case): [frames/s per round]}. The cases alternate within a round, in the reverse order
    every other round (whatever runs right after another case is not always the same one)."""
    results: dict = {}
    k = 0
    for size in sizes:
        n = frames if size != "1920x1080x3" else max(50, frames * 3 // 4)
        for r in range(rounds):
            order = [(mode, case) for mode in MODES for case in CASES]
            for mode, case in (order if r % 2 == 0 else order[::-1]):
                k += 1
                fps = run_case(servers, case, mode, size, n, f"{k}")
                results.setdefault((size, mode, case), []).append(fps)
                progress(f"  {size:>12} {mode:>6} {case:>9} round {r + 1}: {fps:8.1f} frames/s")
    return results


def table(results: dict, sizes) -> tuple[str, list[str]]:
    lines = [f"{'size':>12} {'mode':>6} {'plain f/s':>10} {'edgeflow f/s':>13} {'MB/s':>8} {'ratio':>6}"]
    failures = []
    med = {key: statistics.median(v) for key, v in results.items()}
    for size in sizes:
        mb = int(np.prod(parse_shape(size))) / 1e6
        for mode in MODES:
            plain, ef = med[(size, mode, "plain")], med[(size, mode, "edgeflow")]
            ratio = ef / plain
            lines.append(f"{size:>12} {mode:>6} {plain:10.1f} {ef:13.1f} {ef * mb:8.0f} {ratio:5.2f}x")
            if ratio < TARGET:
                failures.append(f"{size} {mode}: edgeflow {ratio:.2f}x plain (target {TARGET}x)")
        dual = med[(size, "dual", "edgeflow")] / med[(size, "single", "edgeflow")]
        dual_plain = med[(size, "dual", "plain")] / med[(size, "single", "plain")]
        lines.append(f"{size:>12}   dual/single: edgeflow {dual:.2f}x, plain {dual_plain:.2f}x")
        if size == "1920x1080x3" and dual < DUAL_TARGET:
            failures.append(f"{size}: dual edgeflow {dual:.2f}x single (target: no slower)")
    return "\n".join(lines), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400,
                        help="frames per run at 640x480 (3/4 of it at 1080p)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default=",".join(SIZES))
    args = parser.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    with Servers() as servers:
        results = measure(servers, sizes, args.frames, args.rounds)
    text, failures = table(results, sizes)
    print()
    print(text)
    for failure in failures:
        print(f"below target: {failure}")
    return 0


# -- pytest-benchmark ---------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:                         # plain-script mode needs no pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def servers():
        if not shutil.which("redis-server") and not pathlib.Path("/usr/bin/redis-server").exists():
            if os.environ.get("CI"):              # CI installs it: a missing tool there is a failure
                pytest.fail("redis-server is not installed (CI needs it for the Redis benchmarks)")
            pytest.skip("redis-server not installed: the Redis benchmarks start their own")
        with Servers() as s:
            yield s

    FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"

    @pytest.mark.parametrize("size", SIZES[:1] if FAST else SIZES)
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("case", CASES)
    def test_redis_throughput(benchmark, servers, case: str, mode: str, size: str) -> None:
        benchmark.group = f"redis {size}"
        n = 20 if FAST else 100 if size == "640x480x3" else 40
        counter = iter(range(1, 1 << 30))
        def once() -> float:
            return run_case(servers, case, mode, size, n, f"{case}{mode}{next(counter)}")

        fps = benchmark.pedantic(once, rounds=3, iterations=1)
        benchmark.extra_info.update(frames_per_s=fps, frames=n)
        assert fps > 0


if __name__ == "__main__":
    sys.exit(main())
