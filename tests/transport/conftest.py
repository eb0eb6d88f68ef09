"""Redis servers for the transport tests: real ``redis-server`` processes on free loopback ports.

- ``redis_url`` / ``redis_data_url``: two servers shared by the tests of this directory (control and data
  instance of the dual tests). ``EDGEFLOW_TEST_REDIS_URL`` (and ``EDGEFLOW_TEST_REDIS_DATA_URL``, default:
  the same server) point at throw-away servers instead.
- ``redis_server``: a server of the test's own, as a RedisServer that can be SIGKILLed and restarted empty
  on the same port (fault tests); ``redis_server_factory`` makes more of them, with extra server arguments
  if asked (``factory("--maxmemory", "2mb")``).
- ``tcp_proxy``: a TcpProxy in front of a port, whose ``cut()`` makes the link hang like a network partition
  (connections stay open, nothing gets through) until ``heal()``.

Nothing here ever flushes a server: each test uses its own app namespace (the ``app`` fixture), and only
servers these fixtures started are touched at all. The Redis already running on this machine (port 6379) is
never used.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis

START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_exe() -> str:
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                           else None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (CI needs it for the transport tests)")
        pytest.skip("redis-server not installed")
    return exe


class RedisServer:
    """One redis-server process of ours: no persistence, loopback only.

    ``kill()`` SIGKILLs it (nothing is saved: --save "" --appendonly no), ``restart()`` starts a new, empty
    one on the same port, ``stop()`` ends it. ``info(section)`` and ``client()`` talk to it directly.
    """

    def __init__(self, directory: Path, port: int | None = None, args: tuple = ()) -> None:
        self.directory = directory
        self.args = tuple(args)                  # extra redis-server arguments, kept across restarts
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        for _ in range(5):
            self.proc = self._spawn()
            if self._wait_ready():
                return self
            self.port = free_port()              # someone took the port meanwhile: another one
        raise RuntimeError(f"redis-server did not start; see {self.log}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc.wait()
                return False
            try:
                with redis.Redis(port=self.port, socket_timeout=1.0) as r:
                    if r.ping():
                        return True
            except redis.ConnectionError:
                time.sleep(0.01)                 # the process is starting up; nothing to wait on but its port
        self.stop()
        return False

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def restart(self) -> "RedisServer":
        """Kill (if running) and start an empty server on the same port."""
        self.kill()
        self.proc = self._spawn()
        if not self._wait_ready():
            raise RuntimeError(f"redis-server did not restart on port {self.port}; see {self.log}")
        return self

    def _spawn(self) -> subprocess.Popen:
        args = [redis_exe(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory), "--logfile", str(self.log), *self.args]
        quiet = subprocess.DEVNULL
        return subprocess.Popen(args, stdin=quiet, stdout=quiet, stderr=quiet)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        elif self.proc is not None:
            self.proc.wait()

    def client(self) -> redis.Redis:
        """A plain redis-py client of this server (close it)."""
        return redis.Redis(port=self.port, socket_timeout=5.0)

    def info(self, section: str = "server") -> dict:
        with self.client() as r:
            return r.info(section)


class SharedServers:
    """The control and data servers the tests of this directory share.

    They start in ``pytest_runtest_setup`` of the first test here that runs, before its fixtures (so the
    leak check of tests/conftest.py does not count them as that test's children), and stop as soon as the
    run leaves this directory (``pytest_runtest_teardown``), because tests elsewhere check that this process
    has no children at all. Not started when EDGEFLOW_TEST_REDIS_URL names a server, or redis-server is
    missing.
    """

    def __init__(self) -> None:
        self.servers: dict[str, RedisServer] = {}
        self._dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> None:
        if self.servers or os.environ.get("EDGEFLOW_TEST_REDIS_URL") or not shutil.which("redis-server"):
            return
        self._dir = tempfile.TemporaryDirectory(prefix="edgeflow-test-redis-")
        for name in ("control", "data"):
            directory = Path(self._dir.name) / name
            directory.mkdir()
            self.servers[name] = RedisServer(directory).start()

    def url(self, name: str) -> str:
        if name not in self.servers:
            redis_exe()                            # skips (or fails on CI) when redis-server is missing
            pytest.skip("the shared redis servers did not start")
        return self.servers[name].url

    def stop(self) -> None:
        servers, self.servers = self.servers, {}
        for server in servers.values():
            server.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


SHARED = SharedServers()
HERE = Path(__file__).resolve().parent


def pytest_runtest_setup(item):
    SHARED.start()


def pytest_runtest_teardown(item, nextitem):
    """Stop the shared servers when the next test is not one of this directory (or there is none)."""
    if nextitem is None or HERE not in Path(str(nextitem.path)).resolve().parents:
        SHARED.stop()


def pytest_sessionfinish(session, exitstatus):
    SHARED.stop()


@pytest.fixture
def redis_url() -> str:
    """URL of a Redis the transport tests share (the control instance in dual tests)."""
    if url := os.environ.get("EDGEFLOW_TEST_REDIS_URL"):
        return url
    return SHARED.url("control")


@pytest.fixture
def redis_data_url(redis_url) -> str:
    """URL of a second Redis (the data instance in dual tests)."""
    if os.environ.get("EDGEFLOW_TEST_REDIS_URL"):
        return os.environ.get("EDGEFLOW_TEST_REDIS_DATA_URL", redis_url)
    return SHARED.url("data")


@pytest.fixture
def redis_server_factory(tmp_path):
    """Start servers of this test's own (``factory()``, or ``factory(*extra_server_args)``); all are stopped
    when the test ends."""
    started: list[RedisServer] = []

    def factory(*args: str) -> RedisServer:
        directory = tmp_path / f"redis{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, args=args)
        started.append(server)
        return server.start()

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def redis_server(redis_server_factory) -> RedisServer:
    """A redis-server of this test's own, that the test may SIGKILL and restart empty."""
    return redis_server_factory()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port; ``cut()`` stops all traffic without closing anything (a
    partition: calls hang until their timeouts), ``heal()`` lets it flow again. One thread, ended by
    close()."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = False
        self._peers: dict[socket.socket, socket.socket] = {}
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def _run(self) -> None:
        while not self._stop:
            if not self._flowing.wait(0.05):
                continue                                 # cut: leave every byte where it is
            for key, _ in self._sel.select(0.05):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._pump(key.fileobj)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        for a, b in ((conn, upstream), (upstream, conn)):
            a.setblocking(False)
            self._peers[a] = b
            self._sel.register(a, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data and peer is not None:
            try:
                peer.setblocking(True)
                peer.sendall(data)
                peer.setblocking(False)
                return
            except OSError:
                pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        for s in (sock, self._peers.pop(sock, None)):
            if s is not None:
                self._peers.pop(s, None)
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()

    def close(self) -> None:
        self._stop = True
        self._flowing.set()
        self._thread.join(5)
        for sock in list(self._peers):
            self._drop(sock)
        self._sel.close()
        self.listener.close()


@pytest.fixture
def tcp_proxy():
    """``tcp_proxy(port)`` -> a TcpProxy in front of that port; closed when the test ends."""
    proxies: list[TcpProxy] = []

    def make(port: int) -> TcpProxy:
        proxies.append(TcpProxy(port))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()
