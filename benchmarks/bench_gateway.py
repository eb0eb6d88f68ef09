"""Gateway benchmark: viewers of a 1280x720 30 fps topic, side by side in one run (issue 5, section 5).

    pytest benchmarks/bench_gateway.py --benchmark-only      (pytest-benchmark; figures in extra_info)
    python benchmarks/bench_gateway.py [--quick] [--json] [--seconds S] [--size 1280x720] [--fps 30]

Cases, each a fresh server process (the gateway's Server fed by a thread at the topic's rate, as the node loop
would) watched by raw-socket MJPEG viewers in this process:

    edgeflow x1     one viewer
    edgeflow x4     four viewers of the same size: one encode per frame, fanned out
    per-viewer x4   baseline: four viewers asking for four JPEG qualities, i.e. one encode per viewer and
                    frame, as a server that encodes for each client would do

Figures: the server process's CPU (utime + stime from /proc, all its threads), frames each viewer received,
encodes per frame (from /metrics), and the latency the gateway adds: frame handed to the server -> its bytes
written to the viewer's socket (``edgeflow_topic_delivery_seconds``, p50/p99), next to the JPEG encode time of
the same frames alone (cv2.imencode in one thread, no server). Targets: 4 viewers cost at most 1.3x the CPU
of 1; added latency p50 under 10 ms. A missed target is a figure, not a failure; a wrong answer (a viewer
starved, a frame whose content does not match its id, frames encoded twice) fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout that is not pip-installed

import cv2  # noqa: E402
import numpy as np  # noqa: E402

DISTINCT = 30                 # distinct pre-made frames the feeder cycles through
PATCH = (slice(300, 420), slice(560, 720))     # painted with the frame's grey level: checked after JPEG
TARGET_CPU_RATIO = 1.3
TARGET_ADDED_P50_MS = 10.0


@dataclasses.dataclass
class Config:
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    seconds: float = 6.0
    warmup: float = 1.5
    quality: int = 80

    @classmethod
    def quick(cls) -> "Config":
        return cls(seconds=2.5, warmup=1.0)


@dataclasses.dataclass
class CaseResult:
    case: str
    viewers: int
    cpu_percent: float            # of one core
    sent: int                     # frames published during the window
    received: list[int]           # per viewer
    encodes_per_frame: float
    delivery_p50_ms: float | None
    delivery_p99_ms: float | None
    client_p50_ms: float | None   # capture timestamp -> part fully read by the viewer (same host clock)
    error: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def grey(n: int) -> int:
    return 16 + 7 * (n % DISTINCT)


def make_frames(cfg: Config) -> list[np.ndarray]:
    """Camera-like frames: a gradient, shapes, text and mild noise (JPEG sizes like a real scene)."""
    rng = np.random.default_rng(7)
    ys, xs = np.mgrid[0:cfg.height, 0:cfg.width]
    base = np.dstack([(xs * 255 // cfg.width), (ys * 255 // cfg.height), ((xs + ys) * 127 // cfg.width)])
    frames = []
    for n in range(DISTINCT):
        img = base.astype(np.uint8).copy()
        for k in range(12):
            centre = (int(rng.integers(0, cfg.width)), int(rng.integers(0, cfg.height)))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.circle(img, centre, int(rng.integers(10, 80)), colour, -1)
        cv2.putText(img, f"frame {n}", (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 4)
        img = cv2.add(img, rng.integers(0, 12, img.shape, dtype=np.uint8))
        img[PATCH] = grey(n)
        img.flags.writeable = False
        frames.append(img)
    return frames


# -- the server process -------------------------------------------------------------------------------------
def serve_main(cfg: Config) -> None:
    """Child: serve on a free port, feed frames at cfg.fps, print the port; stop at stdin EOF."""
    from edgeflow.frame import Frame
    from edgeflow.gateway.app import Server, StaticRuntime
    from edgeflow.nodes.gateway.interfaces.web import WebInterface

    frames = make_frames(cfg)
    server = Server(WebInterface(host="127.0.0.1", port=0, jpeg_quality=cfg.quality), StaticRuntime("bench"))
    stop = threading.Event()

    def feed() -> None:
        n, due = 0, time.perf_counter()
        while not stop.is_set():
            n += 1
            server.on_frame(Frame(frames[n % DISTINCT], frame_id=n, topic="camera"))
            due += 1.0 / cfg.fps
            stop.wait(max(0.0, due - time.perf_counter()))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    print(server.port, flush=True)
    sys.stdin.read()                                 # the parent closes our stdin to stop us
    stop.set()
    feeder.join(5)
    server.close()


class ServerProcess:
    """The benchmark's server child (``python bench_gateway.py --serve``)."""

    def __init__(self, cfg: Config) -> None:
        args = [sys.executable, __file__, "--serve", "--size", f"{cfg.width}x{cfg.height}",
                "--fps", str(cfg.fps), "--quality", str(cfg.quality)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip():
            self.close()
            raise RuntimeError("the benchmark server did not start")
        self.port = int(line)

    def cpu_seconds(self) -> float:
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[tuple, float]:
        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return {(s.name, s.labels.get("quantile")): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


# -- viewers ------------------------------------------------------------------------------------------------
class Viewer(threading.Thread):
    """A raw-socket MJPEG viewer that counts parts from ``start`` to ``stop`` and checks their content."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        # HTTP/1.0: the server then streams the body as it is; with 1.1, aiohttp sends a StreamResponse with
        # chunked transfer encoding, whose chunk-size lines this parser (which trusts Content-Length) would
        # read as part bytes
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        self.counting = threading.Event()
        self.done = threading.Event()
        self.received = 0
        self.latencies: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            for k, (headers, jpeg) in enumerate(_parts(self.sock)):
                if self.done.is_set():
                    break
                if not self.counting.is_set():
                    continue
                self.received += 1
                self.latencies.append(time.time() - float(headers["X-Timestamp"]))
                if k % 15 == 0:
                    self._check(int(headers["X-Frame-Id"]), jpeg)
        except (OSError, ValueError, AssertionError) as exc:
            if not self.done.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.sock.close()

    def _check(self, fid: int, jpeg: bytes) -> None:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        level = float(img[PATCH].mean())
        sent = grey(fid % DISTINCT)
        assert abs(level - sent) < 4, f"frame {fid}: patch {level:.1f}, sent {sent}"


def _parts(sock: socket.socket):
    buf = b""

    def until(marker: bytes) -> bytes:
        nonlocal buf
        while marker not in buf:
            chunk = sock.recv(1 << 18)
            if not chunk:
                raise ConnectionError("stream ended")
            buf += chunk
        head, buf = buf.split(marker, 1)
        return head

    until(b"\r\n\r\n")                                          # the response's own headers
    while True:
        lines = until(b"\r\n\r\n").decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines if ": " in line)
        size = int(headers["Content-Length"]) + 2
        while len(buf) < size:
            chunk = sock.recv(1 << 18)
            if not chunk:
                raise ConnectionError("stream ended")
            buf += chunk
        yield headers, buf[:size - 2]
        buf = buf[size:]


# -- cases --------------------------------------------------------------------------------------------------
def run_case(case: str, viewers: int, cfg: Config) -> CaseResult:
    """One server process, ``viewers`` viewers; CPU and deliveries over cfg.seconds after a warm-up."""
    server = ServerProcess(cfg)
    watchers: list[Viewer] = []
    try:
        for i in range(viewers):
            query = f"?quality={cfg.quality - i}" if case == "per-viewer" else ""
            watchers.append(Viewer(server.port, "/video/camera" + query))
        for w in watchers:
            w.start()
        time.sleep(cfg.warmup)
        before = server.metrics()
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        for w in watchers:
            w.counting.set()
        time.sleep(cfg.seconds)
        for w in watchers:
            w.counting.clear()
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        after = server.metrics()
    finally:
        for w in watchers:
            w.done.set()
            try:
                w.sock.shutdown(socket.SHUT_RDWR)
            except OSError:                         # the viewer's thread already closed it (it failed)
                pass
        for w in watchers:
            w.join(5)
        server.close()
    frames = after[("edgeflow_topic_frames_total", None)] - before[("edgeflow_topic_frames_total", None)]
    encodes = (after[("edgeflow_topic_jpeg_encodes_total", None)]
               - before[("edgeflow_topic_jpeg_encodes_total", None)])
    delivery = {q: after.get(("edgeflow_topic_delivery_seconds", q)) for q in ("0.5", "0.99")}
    latencies = sorted(x for w in watchers for x in w.latencies)
    errors = [w.error for w in watchers if w.error]
    return CaseResult(case, viewers, 100.0 * (cpu1 - cpu0) / (t1 - t0), int(frames),
                      [w.received for w in watchers], encodes / frames if frames else 0.0,
                      None if delivery["0.5"] is None else 1e3 * delivery["0.5"],
                      None if delivery["0.99"] is None else 1e3 * delivery["0.99"],
                      1e3 * latencies[len(latencies) // 2] if latencies else None,
                      errors[0] if errors else None)


def encode_alone(cfg: Config, rounds: int = 90) -> dict:
    """cv2.imencode of the benchmark's frames in one thread, nothing else running: p50/p99 ms and bytes."""
    frames = make_frames(cfg)
    times, sizes = [], []
    for n in range(rounds):
        t0 = time.perf_counter()
        ok, buf = cv2.imencode(".jpg", frames[n % DISTINCT], [cv2.IMWRITE_JPEG_QUALITY, cfg.quality])
        times.append(time.perf_counter() - t0)
        sizes.append(len(buf))
    times.sort()
    return {"p50_ms": 1e3 * times[len(times) // 2], "p99_ms": 1e3 * times[int(len(times) * 0.99)],
            "jpeg_bytes": int(statistics.median(sizes))}


def check(result: CaseResult, cfg: Config) -> None:
    """A wrong answer fails: every viewer fed at (nearly) the full rate, content matching, one encode per
    frame and size."""
    assert result.error is None, result.error
    expected = cfg.fps * cfg.seconds
    assert result.sent >= 0.8 * expected, f"{result.case}: only {result.sent} frames published"
    for got in result.received:
        assert got >= 0.75 * result.sent, f"{result.case}: a viewer got {got} of {result.sent} frames"
    per_frame = result.viewers if result.case == "per-viewer" else 1
    # an encode in flight as the window opens or closes is counted on one side of it: up to one per
    # encoder and edge, which short windows (fast mode: 30 frames) feel
    slack = max(0.05, 1.5 * per_frame / max(result.sent, 1))
    assert result.encodes_per_frame <= per_frame + slack, \
        f"{result.case}: {result.encodes_per_frame} encodes per frame"


def run_all(cfg: Config, progress=lambda s: None) -> dict:
    """Every case and the encode-alone figure, with the target checks."""
    progress("encode alone")
    alone = encode_alone(cfg)
    results = []
    for case, viewers in (("edgeflow", 1), ("edgeflow", 4), ("per-viewer", 4)):
        progress(f"{case} x{viewers}")
        results.append(run_case(case, viewers, cfg))
    one, four = results[0], results[1]
    ratio = four.cpu_percent / one.cpu_percent if one.cpu_percent else float("inf")
    added = one.delivery_p50_ms
    targets = {
        "cpu_4_vs_1": {"target": f"<= {TARGET_CPU_RATIO}x", "value": round(ratio, 3),
                       "pass": ratio <= TARGET_CPU_RATIO},
        "added_latency_p50_ms": {"target": f"< {TARGET_ADDED_P50_MS} ms", "value": added,
                                 "encode_alone_p50_ms": alone["p50_ms"],
                                 "pass": added is not None and added < TARGET_ADDED_P50_MS},
    }
    return {"config": dataclasses.asdict(cfg), "cpus": os.cpu_count(), "encode_alone": alone,
            "cases": [r.to_dict() for r in results], "targets": targets}


def table(report: dict) -> str:
    cfg, alone = report["config"], report["encode_alone"]
    ms = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    rows = [f"gateway: {cfg['width']}x{cfg['height']} @ {cfg['fps']:g} fps, JPEG quality {cfg['quality']}, "
            f"{cfg['seconds']:g} s per case, {report['cpus']} CPUs",
            "",
            f"{'case':<14} {'viewers':>7} {'server CPU':>11} {'frames':>7} {'per viewer':>16} "
            f"{'encodes/frame':>14} {'added p50':>10} {'added p99':>10} {'client p50':>11}"]
    for r in report["cases"]:
        rows.append(f"{r['case']:<14} {r['viewers']:>7} {r['cpu_percent']:>10.1f}% {r['sent']:>7} "
                    f"{'/'.join(map(str, r['received'])):>16} {r['encodes_per_frame']:>14.2f} "
                    f"{ms(r['delivery_p50_ms']):>8} ms {ms(r['delivery_p99_ms']):>7} ms "
                    f"{ms(r['client_p50_ms']):>8} ms")
    rows += ["", f"JPEG encode alone (one thread, no server): p50 {alone['p50_ms']:.2f} ms, "
                 f"p99 {alone['p99_ms']:.2f} ms, {alone['jpeg_bytes'] // 1024} KiB per frame", "", "targets:"]
    t = report["targets"]
    cpu, lat = t["cpu_4_vs_1"], t["added_latency_p50_ms"]
    per_viewer = report["cases"][2]["cpu_percent"] / report["cases"][0]["cpu_percent"]
    rows.append(f"  4 viewers cost <= {TARGET_CPU_RATIO}x the CPU of 1: {'PASS' if cpu['pass'] else 'MISS'} "
                f"({cpu['value']:.2f}x; encoding per viewer: {per_viewer:.2f}x)")
    rows.append(f"  added latency p50 < {TARGET_ADDED_P50_MS:g} ms: {'PASS' if lat['pass'] else 'MISS'} "
                f"({ms(lat['value'])} ms, of which JPEG encode alone {lat['encode_alone_p50_ms']:.2f} ms)")
    return "\n".join(rows)


# -- pytest-benchmark ---------------------------------------------------------------------------------------
def test_gateway_viewers(benchmark) -> None:
    """All cases in one run, so the figures sit side by side; pytest-benchmark times the whole run once."""
    if os.environ.get("EDGEFLOW_BENCH_FAST") == "1":
        cfg = Config(seconds=1.0, warmup=0.5)
    else:
        cfg = Config.quick() if os.environ.get("EDGEFLOW_BENCH_QUICK") == "1" else Config()
    benchmark.group = "gateway"
    report = benchmark.pedantic(run_all, args=(cfg,), rounds=1, iterations=1)
    benchmark.extra_info.update(report)
    for case in report["cases"]:
        check(CaseResult(**case), cfg)
    print("\n" + table(report))


# -- plain script -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short windows: checks that every case works")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--seconds", type=float, help="measured seconds per case")
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--quality", type=int, default=80)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)     # the server child
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.quick() if args.quick else Config()
    cfg.width, cfg.height = (int(v) for v in args.size.lower().split("x"))
    cfg.fps, cfg.quality = args.fps, args.quality
    if args.seconds:
        cfg.seconds = args.seconds
    if args.serve:
        serve_main(cfg)
        return 0
    report = run_all(cfg, progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True))
    failed = []
    for case in report["cases"]:
        try:
            check(CaseResult(**case), cfg)
        except AssertionError as exc:
            failed.append(str(exc))
    print(json.dumps(report, indent=2) if args.json else table(report))
    for line in failed:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
