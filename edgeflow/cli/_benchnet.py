"""Bench cases that edgeflow.bench.ring does not have: Redis, dual Redis, TCP, pickle over a pipe and plain
redis-py, run by the same two-process ``Session`` (paced latency, then an unpaced burst, every frame checked
by the consumer) so their figures compare with the shared-memory ones.

They plug into ``edgeflow.bench.producer.Session`` through its sender contract (``kind``, ``every``,
``burst_seq``, ``spec``, ``channel()``, ``send()``, ``send_body()``, ``close(peer_ok=)``) and hand their
consumer-side receivers to it (``Session(..., receivers=NET_RECEIVERS)``).

The EdgeFlow Redis and TCP transports (edgeflow/transport/redis.py: RedisPublisher/RedisSubscriber,
edgeflow/transport/tcp.py: TcpSender/TcpServer) are imported lazily; until they exist their cases are
reported as skipped with the ImportError. How they are called is in the ``_open_*`` adapters below.

``RedisServer`` starts a throw-away ``redis-server`` on a free loopback port (never the machine's 6379).
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import numpy as np

from edgeflow.bench.baselines import BaselineSender
from edgeflow.bench.children import spawn_context
from edgeflow.bench.payload import BURST, make_frame, parse_size, read_markers, write_markers
from edgeflow.bench.producer import Session, bench_app
from edgeflow.bench.results import BenchConfig, BenchResult

LABELS = {
    "redis": "edgeflow Redis DURABLE",
    "dual-redis": "edgeflow dual Redis DURABLE",
    "tcp": "edgeflow TCP REALTIME",
    "pickle-pipe": "pickle over mp.Pipe",
    "redis-py": "redis-py RPUSH/BLPOP",
}
NEEDS_REDIS = ("redis", "dual-redis", "redis-py")
_TRANSPORTS = {"redis": ("edgeflow.transport.redis", ("RedisPublisher", "RedisSubscriber")),
               "dual-redis": ("edgeflow.transport.redis", ("RedisPublisher", "RedisSubscriber")),
               "tcp": ("edgeflow.transport.tcp", ("TcpSender", "TcpServer"))}


def transport_missing(case: str) -> str | None:
    """Why an EdgeFlow network transport case cannot run yet (its module or classes missing), or None."""
    if case not in _TRANSPORTS:
        return None
    module, names = _TRANSPORTS[case]
    try:
        mod = importlib.import_module(module)
        for name in names:
            getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        return f"transport not available ({exc})"
    return None


def redis_py_missing() -> str | None:
    """Why redis-py cannot be used, or None."""
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        return f"redis-py not installed ({exc})"
    return None


# -- adapters to the EdgeFlow network transports (the only lines that know their signatures) -----------------

GROUP = "bench"


def _broker(spec: dict[str, Any]) -> Any:
    from edgeflow.comms.brokers import DualRedisBroker, RedisBroker
    if spec.get("data_url"):
        return DualRedisBroker(spec["url"], spec["data_url"])
    return RedisBroker(spec["url"])


def _open_redis_publisher(spec: dict[str, Any]) -> Any:
    from edgeflow.transport.redis import RedisPublisher
    # the group exists before the first frame, so the consumer (started later) gets every one
    return RedisPublisher(spec["topic"], app=spec["app"], broker=_broker(spec), durable_groups=[GROUP])


def _open_redis_subscriber(spec: dict[str, Any]) -> Any:
    from edgeflow.qos import QoS
    from edgeflow.transport.redis import RedisSubscriber
    return RedisSubscriber(spec["topic"], app=spec["app"], broker=_broker(spec), qos=QoS.DURABLE, group=GROUP)


def _reset_redis(spec: dict[str, Any]) -> None:
    """Delete the bench app's keys (only ours: the app is ``bench<pid>``)."""
    from edgeflow.transport.redis import reset_app
    reset_app(spec["app"], broker=_broker(spec))


def _open_tcp_sender(spec: dict[str, Any]) -> Any:
    from edgeflow.transport.tcp import TcpSender
    sender = TcpSender(spec["topic"], spec["host"], spec["port"], app=spec["app"])
    return sender


class _TcpEnd:
    """The gateway's side of TCP: a TcpServer serving in its thread and its subscriber to one topic."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from edgeflow.transport.tcp import TcpServer
        self._server = TcpServer(spec["host"], spec["port"]).start()
        try:
            self._sub = self._server.subscriber(spec["topic"])
        except BaseException:
            self._server.close()
            raise

    def recv(self, timeout: float) -> Any:
        return self._sub.recv(timeout=timeout)

    def close(self) -> None:
        try:
            self._sub.close()
        finally:
            self._server.close()


def _open_tcp_server(spec: dict[str, Any]) -> Any:
    return _TcpEnd(spec)


# -- the consumer side (runs in the child) -------------------------------------------------------------------

class _FrameReceiver:
    """A receiver over anything whose ``recv(timeout=)`` returns a Frame (or a tuple ending with one)."""

    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        opener = _open_tcp_server if spec["transport"] == "tcp" else _open_redis_subscriber
        self._sub, self.notes = opener(spec), []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, int | None, int]:
        got = self._sub.recv(timeout=timeout)
        now = time.time()
        frame = got[-1] if isinstance(got, tuple) else got
        data = frame.data
        nbytes = data.nbytes if isinstance(data, np.ndarray) else len(data)
        stamp, idx, kind, tail = read_markers(data, nbytes)
        out = (now, stamp, idx, kind, tail, getattr(frame, "frame_id", None), nbytes)
        getattr(frame, "release", lambda: None)()
        return out

    def close(self) -> None:
        self._sub.close()


class _PickleReceiver:
    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        self._conn, self.notes = chan, []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"pickle pipe: nothing received in {timeout}s")
        arr = self._conn.recv()                         # unpickles: one more copy of the frame
        now = time.time()
        stamp, idx, kind, tail = read_markers(arr, arr.nbytes)
        return now, stamp, idx, kind, tail, None, arr.nbytes

    def close(self) -> None:
        self._conn.close()


class _RedisPyReceiver:
    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        import redis
        self._r, self._key, self.notes = redis.Redis.from_url(spec["url"]), spec["key"], []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        got = self._r.blpop([self._key], timeout=timeout)
        now = time.time()
        if got is None:
            raise TimeoutError(f"redis-py: nothing in {self._key} within {timeout}s")
        data = got[1]
        stamp, idx, kind, tail = read_markers(data, len(data))
        return now, stamp, idx, kind, tail, None, len(data)

    def close(self) -> None:
        self._r.close()


NET_RECEIVERS = {"ef-net": _FrameReceiver, "pickle": _PickleReceiver, "redis-py": _RedisPyReceiver}
"""This module's receivers by sender kind, for ``Session(receivers=...)``."""


# -- the producer side ---------------------------------------------------------------------------------------

class _FrameSender:
    """Publishes over an EdgeFlow network transport; every frame is a fresh stamp on one buffer."""

    kind, burst_seq = "ef-net", True

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, spec: dict[str, Any]) -> None:
        self.every = spec["transport"] != "tcp"        # Redis cases are DURABLE: every frame, in order
        self.spec, self._src, self._pub = spec, make_frame(shape), None
        if spec["transport"] != "tcp":
            self._pub = _open_redis_publisher(spec)

    def channel(self) -> None:
        return None

    def _publisher(self) -> Any:
        if self._pub is None:                          # TCP: the consumer's server is up once it is ready
            self._pub = _open_tcp_sender(self.spec)   # it connects on its first publish
        return self._pub

    def send(self, kind: int, idx: int) -> None:
        pub = self._publisher()
        stamp = time.time()
        write_markers(self._src, stamp, idx, kind)
        pub.publish(self._src, timestamp=stamp)

    def send_body(self, idx: int) -> None:
        self.send(BURST, idx)

    def close(self, *, peer_ok: bool) -> None:
        try:
            if self._pub is not None:
                self._pub.close()
        finally:
            if self.spec["transport"] != "tcp":
                _reset_redis(self.spec)


class _PickleSender(BaselineSender):
    """``Connection.send(array)``: the array is pickled (one copy), written to the pipe, unpickled."""

    kind = "pickle"

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, ctx: Any) -> None:
        super().__init__(shape)
        self._rx, self._tx = ctx.Pipe(duplex=False)

    def channel(self) -> Any:
        return self._rx

    def started(self) -> None:
        self._rx.close()                               # the child has its own; EOF reaches it if we die

    def _push(self, buf: np.ndarray) -> None:
        self._tx.send(buf)

    def close(self, *, peer_ok: bool) -> None:
        self._rx.close()
        self._tx.close()


class _RedisPySender(BaselineSender):
    """What a plain redis-py pipeline does: RPUSH raw bytes to a list, BLPOP on the other side. At most
    ``slots`` frames wait in the list (like the Queue's maxsize), so a burst cannot fill Redis's memory."""

    kind = "redis-py"

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, url: str, key: str) -> None:
        import redis
        super().__init__(shape)
        self.spec = {"url": url, "key": key}
        self._r, self._key, self._slots = redis.Redis.from_url(url), key, cfg.slots
        self._r.delete(key)

    def channel(self) -> None:
        return None

    def _push(self, buf: np.ndarray) -> None:
        if self._r.rpush(self._key, buf.data.cast("B")) >= self._slots:
            while self._r.llen(self._key) >= self._slots:
                time.sleep(0.0002)

    def close(self, *, peer_ok: bool) -> None:
        try:
            self._r.delete(self._key)                  # only our own key: never FLUSHDB
        finally:
            self._r.close()


_COUNT = iter(range(1 << 30))


def run_case(case: str, size: str, cfg: BenchConfig, redis: dict[str, str] | None) -> BenchResult:
    """One case of this module at one size; skipped (with the reason) when its transport or Redis is missing.

    ``redis``: {"url": control URL, "data_url": data URL} of the Redis to use, or None.
    """
    label, shape = LABELS[case], parse_size(size)
    nbytes = int(np.prod(shape))
    why = transport_missing(case) or (redis_py_missing() if case == "redis-py" else None)
    if why is None and case in NEEDS_REDIS and not redis:
        why = "no Redis (give --redis URL, or install redis-server)"
    if why:
        return BenchResult(label, size, nbytes, skipped=why)
    k, app = next(_COUNT), bench_app()
    if case == "pickle-pipe":
        sender: Any = _PickleSender(shape, cfg, spawn_context())
    elif case == "redis-py":
        sender = _RedisPySender(shape, cfg, redis["url"], f"edgeflow:{app}:redis-py:{k}")
    elif case == "tcp":
        sender = _FrameSender(shape, cfg, {"transport": "tcp", "app": app, "topic": f"tcp-{k}",
                                           "host": "127.0.0.1", "port": free_port()})
    else:
        spec = {"transport": case, "app": app, "topic": f"{case}-{k}", "url": redis["url"]}
        if case == "dual-redis":
            spec["data_url"] = redis["data_url"]
        sender = _FrameSender(shape, cfg, spec)
    with Session(label, size, sender, cfg, receivers=NET_RECEIVERS) as session:
        session.warmup()
        session.latency_phase()
        session.burst()
    return session.result()


# -- a throw-away Redis --------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port nobody listens on now (bind 127.0.0.1:0, read it, close); never Redis's 6379."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 6379:
            return port


class RedisServer:
    """A ``redis-server`` of our own on a free loopback port, without persistence, stopped by ``close()``.

    Raises (on enter):
        RuntimeError: redis-server is not installed, or did not answer PING within ``timeout``.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout, self.proc, self.url = timeout, None, ""
        self._dir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not installed")
        try:
            for _ in range(3):                          # a port taken between free_port() and bind: retry
                if self._start(exe):
                    return self
            raise RuntimeError("redis-server did not start on a free port (3 tries)")
        except BaseException:
            self.close()
            raise

    def _start(self, exe: str) -> bool:
        self._dir = self._dir or tempfile.TemporaryDirectory(prefix="edgeflow-bench-redis-")
        port = free_port()
        self.proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self._dir.name],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"redis-server on port {port} did not answer PING within {self.timeout:g} s")

    def version(self) -> str:
        """The server's version, from ``redis-server --version``."""
        out = subprocess.run([shutil.which("redis-server") or "redis-server", "--version"],
                             capture_output=True, text=True).stdout
        return next((w[2:] for w in out.split() if w.startswith("v=")), "?")

    def close(self) -> None:
        """Stop the server and remove its folder (idempotent)."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_url(url: str) -> str:
    """The URL without its password, for the table's header."""
    from edgeflow.comms.brokers import RedisBroker
    return RedisBroker(url).redacted()
