"""Helpers for test_bounds.py and test_tcp_fair.py: a TcpServer in a child process (so its memory is measured
alone), raw wire frames, and a flooding child process (idle, unauthenticated or topic floods)."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgeflow.transport import _wire

LOOPBACK = "127.0.0.1"
TOKEN = "s3cret"
ROOT = str(Path(__file__).resolve().parents[2])

SERVER_CHILD = r'''
import dataclasses, json, sys, threading
from edgeflow.transport.tcp import TcpServer

def memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out

server = TcpServer("127.0.0.1", 0, **json.loads(sys.argv[1])).start()
counts, lock = {}, threading.Lock()

def on_frame(frame):
    if frame.topic.startswith("legit"):            # never one entry per flooded name
        with lock:
            counts[frame.topic] = counts.get(frame.topic, 0) + 1

server.on_frame = on_frame
print(json.dumps({"port": server.port}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "stats":
        with lock:
            snapshot = dict(counts)
        print(json.dumps({**dataclasses.asdict(server.statistics()), "counts": snapshot, **memory()}),
              flush=True)
    elif cmd == "reset-peak":                       # VmHWM := VmRSS now (Linux clear_refs 5)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        print(json.dumps(memory()), flush=True)
    else:
        break
server.close()
'''


def raise_nofile() -> None:
    """Room for a few hundred sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ServerChild:
    """A TcpServer in a child process; ``stats()`` asks it for statistics, legit counts and its memory."""

    def __init__(self, **options) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER_CHILD, json.dumps(options)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env())
        line = self.proc.stdout.readline()
        assert line, "the server child did not start"
        self.port = json.loads(line)["port"]

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stats(self) -> dict:
        return self.ask("stats")

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition") -> dict:
        """Poll the child's statistics until ``predicate(stats)`` (they have no event to await)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {stats}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()

    def __enter__(self) -> "ServerChild":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawClient:
    """A hand-driven client: connect (optionally from another loopback address), hello, send raw frames."""

    def __init__(self, port: int, source: str | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect((LOOPBACK, port))

    def read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionResetError("server closed the connection")
            data += chunk
        return data

    def message(self) -> tuple[int, bytes]:
        kind, header_len, _ = _wire.unpack_prefix(self.read(_wire.PREFIX_BYTES))
        return kind, self.read(header_len)

    def hello(self, token: str | None = TOKEN) -> None:
        kind, header = self.message()
        assert kind == _wire.HELLO_S, f"expected the server hello, got kind {kind}: {header!r}"
        nonce, _, _ = _wire.parse_server_hello(header)
        mac = _wire.auth_mac(token.encode(), nonce, 7, "raw") if token else b""
        self.sock.sendall(_wire.client_hello(7, "raw", mac))
        kind, header = self.message()
        assert kind == _wire.ACCEPT, f"not accepted: {kind} {header!r}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def rejected(self) -> str | None:
        """Read until the server closes; the reason of its REJECT (None: closed without one)."""
        data = b""
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        while len(data) >= _wire.PREFIX_BYTES:
            kind, header_len, _ = _wire.unpack_prefix(data)
            header, data = data[16:16 + header_len], data[16 + header_len:]
            if kind == _wire.REJECT:
                return header.decode()
        return None

    def close(self) -> None:
        self.sock.close()


def frame(topic: str, payload: bytes = b"x", *, frame_id: int = 1, kind: int = _wire.KIND_BYTES,
          shape: tuple = (), dtype: bytes = b"", codec: bytes = b"") -> bytes:
    """One FRAME message, prefix + header + payload."""
    header = _wire.frame_header(frame_id, 1.0, kind, shape, topic.encode(), codec, dtype, b"")
    return _wire.message(_wire.FRAME, header, len(payload)) + payload


FLOODER = r'''
import json, os, selectors, socket, sys, time
sys.path.insert(0, os.environ["EF_ROOT"])
from edgeflow.transport import _wire

mode, port, count, sources, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
sel = selectors.DefaultSelector()
hello = _wire.client_hello(9, "flood", b"")
opened = 0

def open_one(i):
    global opened
    s = socket.socket()
    s.setblocking(False)
    s.bind((sources[i % len(sources)], 0))
    try:
        s.connect((("127.0.0.1", port)))
    except BlockingIOError:
        pass
    sel.register(s, selectors.EVENT_READ, {"i": i, "sent": 0})
    opened += 1

def topic_flood():
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    def read(n):
        d = b""
        while len(d) < n:
            c = s.recv(n - len(d))
            if not c: raise SystemExit("closed")
            d += c
        return d
    kind, hl, _ = _wire.unpack_prefix(read(16)); nonce = _wire.parse_server_hello(read(hl))[0]
    import hmac
    s.sendall(_wire.client_hello(5, "flood", _wire.auth_mac(token.encode(), nonce, 5, "flood")))
    assert _wire.unpack_prefix(read(16))[0] == _wire.ACCEPT
    print("ready", flush=True)
    n = 0
    while True:
        batch = []
        for _ in range(2000):
            n += 1
            t = f"flood{n}".encode()
            h = _wire.frame_header(1, 1.0, 0, (), t, b"", b"", b"")
            batch.append(_wire.message(_wire.FRAME, h, 1) + b"x")
        s.sendall(b"".join(batch))

if mode == "topics":
    topic_flood()
for i in range(count):
    open_one(i)
print("ready", flush=True)
reopen = []
while True:
    for key, _ in sel.select(0.05):
        s = key.fileobj
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:                                  # closed (evicted, timed out): come back a little later
            sel.unregister(s); s.close()
            reopen.append((time.monotonic() + 0.1, key.data["i"]))
    now = time.monotonic()
    due = [r for r in reopen if r[0] <= now]
    reopen = [r for r in reopen if r[0] > now]
    for _, i in due:
        open_one(i)
    if mode == "unauth":                              # a slow hello: one more byte now and then, never complete
        for key in list(sel.get_map().values()):
            d = key.data
            if d["sent"] < len(hello) - 1 and now - d.get("t", 0) > 0.5:
                try:
                    key.fileobj.send(hello[d["sent"]:d["sent"] + (9 if d["sent"] == 0 else 1)])
                    d["sent"] += 9 if d["sent"] == 0 else 1
                    d["t"] = now
                except OSError:
                    pass
'''


class Flooder:
    """A child process holding ``count`` hostile connections (``idle``: silent; ``unauth``: a hello that never
    completes), reopening each one the server closes; or (``topics``) an authenticated connection sending
    frames of ever new topic names as fast as it can. Connections come from ``sources`` (loopback addresses)."""

    def __init__(self, mode: str, port: int, count: int = 300, sources: list[str] | None = None,
                 token: str = TOKEN) -> None:
        sources = sources or [f"127.0.0.{10 + i}" for i in range(20)]
        env = child_env()
        env["EF_ROOT"] = ROOT
        self.proc = subprocess.Popen([sys.executable, "-c", FLOODER, mode, str(port), str(count),
                                      json.dumps(sources), token], stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "ready", "the flooder did not start"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self) -> "Flooder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
