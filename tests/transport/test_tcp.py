"""The direct-TCP transport (issue 6, section 2): TcpSender -> TcpServer over loopback.

Round trips; hostile peers (garbage, wrong magic or version, malformed headers, oversized frames, missing or
wrong tokens, slowloris) are each refused, closed and counted while a good sender keeps delivering; the sender
reconnects with back-off; a stalled or absent gateway makes it keep only the newest frame, in bounded memory.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest

from edgeflow.errors import ClosedResourceError, ConfigError, FrameTooLarge, ReceiveTimeout
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import _wire
from edgeflow.transport.tcp import TcpSender, TcpServer

TOKEN = "s3cret"
LOOPBACK = "127.0.0.1"


def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll a counter-style condition (statistics have no event to await)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def server():
    srv = TcpServer(LOOPBACK, 0).start()
    yield srv
    srv.close()


@pytest.fixture
def guarded():
    """A server with a token, a 1 MiB frame limit and a 0.3 s read timeout, plus a good sender on it."""
    srv = TcpServer(LOOPBACK, 0, token=TOKEN, max_frame_bytes=1 << 20, read_timeout=0.3).start()
    sub = srv.subscriber("good")
    sender = TcpSender("good", LOOPBACK, srv.port, app="good", token=TOKEN)
    yield srv, sub, sender
    sender.close()
    srv.close()


def deliver(sub, sender, value: int) -> None:
    """The good sender still gets a frame through."""
    fid = sender.publish(np.full(64, value, np.uint8))
    frame = sub.recv(timeout=5)
    assert frame.frame_id == fid and frame.data[0] == value


# ------------------------------------------------------------------------------------------------------------
# round trips

def test_arrays_bytes_and_frames_round_trip_bit_exact(server, app):
    sub = server.subscriber("cam")
    cases = [np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8),
             np.arange(24, dtype=">i4").reshape(2, 3, 4),
             np.array([(1.5, 2, b"abc")], dtype=[("x", "<f4"), ("y", "<i2"), ("name", "S5")]),
             np.array(["2024-01-01T00:00:00.000000001"], dtype="M8[ns]"),
             np.array(3.25), np.zeros((3, 0, 2), np.uint16), np.arange(12.0)[::2],   # 0-d, empty, strided
             b"raw bytes", b""]
    with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
        for i, data in enumerate(cases):
            meta = {"i": i, "nested": {"list": [1, 2.5, None, "ü"]}}
            fid = sender.publish(data, timestamp=1234.5 + i / 3, meta=meta)
            frame = sub.recv(timeout=5)
            assert (frame.frame_id, frame.timestamp) == (fid, 1234.5 + i / 3)
            assert (frame.meta, frame.topic) == (meta, "cam")
            if isinstance(data, bytes):
                assert type(frame.data) is bytes and frame.data == data
            else:
                assert frame.data.dtype == data.dtype and frame.data.shape == data.shape
                assert frame.data.tobytes() == data.tobytes()
                assert not frame.data.flags.writeable and frame.copy().data.flags.writeable
        src = Frame(np.ones(5), timestamp=7.0, meta={"from": "frame"})        # a received Frame passes on
        fid = sender.publish(src)
        got = sub.recv(timeout=5)
        assert (got.frame_id, got.timestamp, got.meta) == (fid, 7.0, {"from": "frame"})


def test_sender_copies_so_the_caller_may_reuse_its_buffer(server, app):
    sub = server.subscriber("cam")
    buf = np.zeros(1 << 16, np.uint8)
    with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
        sender.publish(buf)
        buf[:] = 255                                       # overwritten before the thread may have sent it
        assert not sub.recv(timeout=5).data.any()


def test_a_loan_publishes_in_place_and_an_aborted_one_publishes_nothing(server, app):
    sub = server.subscriber("cam")
    with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
        with sender.loan((2, 3), ">f8", timestamp=5.0, meta={"loan": True}) as buf:
            buf[:] = np.arange(6).reshape(2, 3)
        frame = sub.recv(timeout=5)
        assert (frame.frame_id, frame.timestamp, frame.meta) == (1, 5.0, {"loan": True})
        assert frame.data.dtype == np.dtype(">f8") and frame.data.tolist() == [[0, 1, 2], [3, 4, 5]]
        assert not buf.flags.writeable
        with pytest.raises(ZeroDivisionError):
            with sender.loan(16) as buf:
                1 / 0
        loan = sender.loan(16)
        loan.array[:] = 9
        assert loan.commit() == 2                       # the aborted loan took no frame id
        with pytest.raises(ClosedResourceError):
            loan.commit()
        assert sub.recv(timeout=5).data.tolist() == [9] * 16
        assert sender.statistics().published == 2


def test_wait_ready_tells_when_a_publish_would_supersede_nothing(app):
    with TcpServer(LOOPBACK, 0) as server:              # not serving yet: the frame stays pending
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            assert sender.wait_ready(0)
            sender.publish(b"first")
            assert not sender.wait_ready(0.05)
            server.start()
            assert sender.wait_ready(5)
            assert sender.flush(5) and sender.statistics().dropped == 0


def test_topics_fan_out_to_subscribers_and_on_frame(server, app):
    seen = []
    server.on_frame = lambda frame: seen.append((frame.topic, frame.frame_id))
    a1, a2, b = server.subscriber("a"), server.subscriber("a"), server.subscriber("b")
    with TcpSender("a", LOOPBACK, server.port, app=app) as sa, \
            TcpSender("b", LOOPBACK, server.port, app=app) as sb:
        sa.publish(b"x")
        sb.publish(b"y")
        assert a1.recv(timeout=5).data == a2.recv(timeout=5).data == b"x"
        assert b.recv(timeout=5).data == b"y"
        assert a1.recv_nowait() is None
    assert sorted(seen) == [("a", 1), ("b", 1)]
    assert server.statistics().frames == 2


def test_arecv_wakes_on_a_uvloop_loop(server, app):
    uvloop = pytest.importorskip("uvloop")
    sub = server.subscriber("cam")

    async def main(sender):
        task = asyncio.ensure_future(sub.arecv(timeout=5))
        await asyncio.sleep(0)
        fid = sender.publish(b"async")
        frame = await task
        with pytest.raises(ReceiveTimeout):
            await sub.arecv(timeout=0.05)
        return fid, frame

    with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
        loop = uvloop.new_event_loop()
        try:
            fid, frame = loop.run_until_complete(main(sender))
        finally:
            loop.close()
    assert (frame.frame_id, frame.data) == (fid, b"async")


def test_serve_inside_a_running_loop_until_close(app):
    async def main():
        server = TcpServer(LOOPBACK, 0)
        serving = asyncio.ensure_future(server.serve())
        sub = server.subscriber("cam")
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            fid = sender.publish(b"in-loop")
            frame = await sub.arecv(timeout=5)
        server.close()                                     # from the loop's own thread: serve() returns
        await asyncio.wait_for(serving, 5)
        return fid, frame

    fid, frame = asyncio.run(main())
    assert frame.frame_id == fid


def test_a_failing_on_frame_is_counted_and_the_connection_goes_on(server, app):
    server.on_frame = lambda frame: 1 / 0
    sub = server.subscriber("cam")
    with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
        for i in (1, 2):
            deliver(sub, sender, i)
    stats = server.statistics()
    assert stats.callback_errors == 2 and stats.rejected == {}


# ------------------------------------------------------------------------------------------------------------
# hostile and broken peers: each is closed and counted; the good sender on another connection keeps going

class RawPeer:
    """A hand-driven client socket speaking (or not) the wire protocol."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=5)

    def read_server_hello(self) -> bytes:
        kind, header_len, _ = _wire.unpack_prefix(self.read(_wire.PREFIX_BYTES))
        assert kind == _wire.HELLO_S
        nonce, auth_required, _ = _wire.parse_server_hello(self.read(header_len))
        return nonce

    def hello(self, token: str | None = TOKEN) -> None:
        nonce = self.read_server_hello()
        mac = _wire.auth_mac(token.encode(), nonce, 7, "raw") if token else b""
        self.sock.sendall(_wire.client_hello(7, "raw", mac))
        assert _wire.unpack_prefix(self.read(_wire.PREFIX_BYTES))[0] == _wire.ACCEPT

    def read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_closed(self) -> str | None:
        """Read until the server closes; the reason of its REJECT, if one came through."""
        data = b""
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        while len(data) >= _wire.PREFIX_BYTES:
            kind, header_len, _ = _wire.unpack_prefix(data)
            header, data = data[16:16 + header_len], data[16 + header_len:]
            if kind == _wire.REJECT:
                return header.decode()
        return None

    def close(self) -> None:
        self.sock.close()


def frame_msg(payload_len: int = 4, *, header: bytes | None = None, magic: bytes = _wire.MAGIC,
              version: int = _wire.VERSION, kind: int = _wire.FRAME, shape=(4,), dtype=b"|u1") -> bytes:
    if header is None:
        header = _wire.frame_header(1, 1.0, _wire.KIND_ARRAY, shape, b"raw", b"", dtype, b"")
    return struct.pack("<4sBBHQ", magic, version, kind, len(header), payload_len) + header


BAD_PEERS = {
    # name: (authenticate first?, bytes to send, reason)
    "http-request": (False, b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n", "bad_magic"),
    "random-bytes": (False, bytes(range(200, 256)) * 4, "bad_magic"),
    "wrong-magic": (True, frame_msg(magic=b"EFTQ") + b"\0" * 4, "bad_magic"),
    "wrong-version": (True, frame_msg(version=_wire.VERSION + 1) + b"\0" * 4, "bad_version"),
    "unknown-kind": (True, frame_msg(kind=99) + b"\0" * 4, "malformed"),
    "garbage-header": (True, frame_msg(header=bytes(range(40))) + b"\0" * 4, "malformed"),
    "size-lies": (True, frame_msg(payload_len=3, shape=(4,)) + b"\0" * 3, "malformed"),
    "object-dtype": (True, frame_msg(payload_len=8, shape=(1,), dtype=b"|O") + b"\0" * 8, "malformed"),
    "second-hello": (True, _wire.client_hello(7, "raw", b""), "malformed"),
    "oversized": (True, frame_msg(payload_len=(1 << 20) + 1, shape=((1 << 20) + 1,)), "oversized"),
    "frame-before-hello": (False, frame_msg() + b"\0" * 4, "unauthenticated"),
    "hello-without-token": ("no-token", b"", "unauthenticated"),
    "hello-wrong-token": ("wrong-token", b"", "unauthenticated"),
    "silent": (False, b"", "timeout"),
    "slowloris-hello": (False, _wire.client_hello(7, "raw", b"")[:9], "timeout"),
    "slowloris-frame": (True, frame_msg(payload_len=4)[:20], "timeout"),
    "slowloris-payload": (True, frame_msg(payload_len=4) + b"\0", "timeout"),
}


@pytest.mark.parametrize("case", list(BAD_PEERS))
def test_a_bad_peer_is_closed_and_counted_while_others_are_served(guarded, case):
    server, sub, sender = guarded
    auth, data, reason = BAD_PEERS[case]
    deliver(sub, sender, 1)
    peer = RawPeer(server.port)
    try:
        if auth is True:
            peer.hello()
        elif auth in ("no-token", "wrong-token"):
            nonce = peer.read_server_hello()
            mac = _wire.auth_mac(b"wrong", nonce, 7, "raw") if auth == "wrong-token" else b""
            peer.send(_wire.client_hello(7, "raw", mac))
        if data:
            peer.send(data)
        deliver(sub, sender, 2)                         # while the bad peer is still connected (or stalling)
        assert peer.wait_closed() in (reason, None)     # None: a reset overtook the REJECT
    finally:
        peer.close()
    deliver(sub, sender, 3)
    stats = server.statistics()
    assert stats.rejected == {reason: 1}
    assert stats.frames == 3 and stats.connections == 1


def test_connections_beyond_the_limit_are_refused(app):
    with TcpServer(LOOPBACK, 0, max_connections=1) as server:
        server.start()
        sub = server.subscriber("cam")
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            deliver(sub, sender, 1)
            peer = RawPeer(server.port)
            try:
                assert peer.wait_closed() == "too_many_connections"
            finally:
                peer.close()
            deliver(sub, sender, 2)
        assert server.statistics().rejected == {"too_many_connections": 1}


def test_a_sender_with_a_wrong_token_is_refused_and_keeps_retrying(guarded, app):
    server, sub, good = guarded
    with TcpSender("good", LOOPBACK, server.port, app=app, token="wrong", backoff=(0.01, 0.05)) as bad, \
            TcpSender("good", LOOPBACK, server.port, app=app, backoff=(0.01, 0.05)) as none:
        bad.publish(b"intruder")
        none.publish(b"intruder")
        wait_until(lambda: server.statistics().rejected.get("unauthenticated", 0) >= 4, what="4 rejections")
        deliver(sub, good, 1)
        for s in (bad, none):
            stats = s.statistics()
            assert stats.sent == 0 and stats.connects == 0 and stats.connect_failures >= 1
            assert "unauthenticated" in stats.last_error
        bad.terminate()
        none.terminate()
    assert sub.recv_nowait() is None


def test_a_frame_over_the_gateway_limit_is_dropped_by_the_sender(app):
    with TcpServer(LOOPBACK, 0, max_frame_bytes=1000) as server:
        server.start()
        sub = server.subscriber("cam")
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            sender.publish(bytes(1001))                 # the limit is not known before the first connection
            assert sender.flush(5)
            assert sender.statistics().too_large == 1
            deliver(sub, sender, 1)                     # the connection is fine
            with pytest.raises(FrameTooLarge):
                sender.publish(np.zeros(1001, np.uint8))
        assert server.statistics().rejected == {}


# ------------------------------------------------------------------------------------------------------------
# reconnecting, newest-only and bounded memory

def test_sender_reconnects_with_backoff_to_a_new_server_on_the_same_port(app):
    first = TcpServer(LOOPBACK, 0).start()
    port = first.port
    sender = TcpSender("cam", LOOPBACK, port, app=app, backoff=(0.02, 0.2))
    try:
        sub = first.subscriber("cam")
        deliver(sub, sender, 1)
        first.close()
        wait_until(lambda: not sender.is_connected(), what="the sender to notice")
        pending = sender.publish(np.full(64, 2, np.uint8))          # kept while nobody listens
        wait_until(lambda: sender.statistics().connect_failures >= 2, what="refused attempts")
        with TcpServer(LOOPBACK, port) as second:
            sub2 = second.subscriber("cam")
            second.start()
            frame = sub2.recv(timeout=5)
            assert frame.frame_id == pending and frame.data[0] == 2
            deliver(sub2, sender, 3)
            assert sender.flush(5)                      # counted once the send returned, maybe after delivery
            stats = sender.statistics()
            assert (stats.connects, stats.reconnects, stats.connected) == (2, 1, True)
            assert stats.sent == 3 and stats.dropped == 0
    finally:
        sender.close()
        first.close()


def test_a_server_not_started_yet_gets_only_the_newest_frame(app):
    with TcpServer(LOOPBACK, 0) as server:              # listening (the kernel accepts) but not serving
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            ids = [sender.publish(np.full(1024, i % 256, np.uint8)) for i in range(50)]
            assert sender.statistics().dropped == 49
            sub = server.subscriber("cam")
            server.start()
            frame = sub.recv(timeout=5)
            assert frame.frame_id == ids[-1] and frame.data[0] == 49
            assert sender.flush(5)
            stats = sender.statistics()
            assert (stats.published, stats.sent, stats.dropped) == (50, 1, 49)
        assert sub.recv_nowait() is None


def stalled_server():
    """A started server whose loop sits in on_frame (so it reads nothing) until the returned gate is set."""
    gate, entered = threading.Event(), threading.Event()

    def on_frame(frame):
        entered.set()
        gate.wait(20)

    server = TcpServer(LOOPBACK, 0).start()
    server.on_frame = on_frame
    return server, gate, entered


def test_a_stalled_server_makes_the_sender_drop_old_frames_and_deliver_the_newest(app):
    server, gate, entered = stalled_server()
    try:
        sub = server.subscriber("cam")
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            frame = np.zeros(1 << 20, np.uint8)
            sender.publish(frame)
            assert entered.wait(5)
            for i in range(2, 201):
                frame[:8] = i % 256
                sender.publish(frame)
            assert sender.statistics().dropped >= 100
            gate.set()
            ids = []
            while not ids or ids[-1] != 200:
                got = sub.recv(timeout=5)
                ids.append(got.frame_id)
            assert ids == sorted(set(ids)) and got.data[0] == 200 % 256
            assert sender.flush(5)
            stats = sender.statistics()
            assert stats.sent + stats.dropped == 200 and stats.dropped >= 100
    finally:
        gate.set()
        server.close()


def test_memory_stays_bounded_while_the_gateway_is_stalled(app):
    size, count = 1 << 20, 300
    server, gate, entered = stalled_server()
    try:
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            frame = np.ones(size, np.uint8)
            sender.publish(frame)
            assert entered.wait(5)
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                for _ in range(count):
                    sender.publish(frame)
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            # the frame on the wire, the pending one, spares, the server's partial read: a handful, not 300
            assert peak < 8 * size, f"{peak / size:.1f} frames of memory for {count} published"
            assert sender.statistics().dropped >= count - 20
            gate.set()
    finally:
        gate.set()
        server.close()


def test_a_gateway_that_stops_reading_is_dropped_after_stall_timeout(app):
    """A peer that accepts us and then never reads: the sender gives up that connection and tries again."""
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        conns = []

        def accept_and_ignore():
            for _ in range(2):
                conn, _ = listener.accept()
                conns.append(conn)
                conn.sendall(_wire.server_hello(b"\0" * 32, False, 1 << 30))
                conn.recv(1024)                          # the client hello
                conn.sendall(_wire.message(_wire.ACCEPT))

        acceptor = threading.Thread(target=accept_and_ignore)
        acceptor.start()
        try:
            with TcpSender("cam", LOOPBACK, port, app=app, stall_timeout=0.3, backoff=(0.01, 0.05)) as sender:
                data = np.zeros(4 << 20, np.uint8)
                deadline = time.monotonic() + 10
                while sender.statistics().connects < 2:      # 4 MB frames fill the socket buffers at once
                    assert time.monotonic() < deadline, "the sender never gave up the stalled connection"
                    sender.publish(data)
                    time.sleep(0.01)                         # pacing a producer, not synchronisation
                stats = sender.statistics()
                assert stats.reconnects == 1 and stats.dropped >= 1
                sender.terminate()
        finally:
            acceptor.join(10)
            for conn in conns:
                conn.close()


# ------------------------------------------------------------------------------------------------------------
# configuration and resource ownership

def test_bad_options_are_config_errors(server):
    with pytest.raises(ConfigError, match="REALTIME only"):
        server.subscriber("cam", qos=QoS.DURABLE)
    with pytest.raises(ConfigError, match="topic"):
        server.subscriber("../etc")
    with pytest.raises(ConfigError, match="port in use"):
        TcpServer(LOOPBACK, server.port)
    with pytest.raises(ConfigError, match="port"):
        TcpSender("cam", LOOPBACK, 70000)
    with pytest.raises(ConfigError, match="codec"):
        TcpSender("cam", LOOPBACK, server.port, codec="webp-not-built")
    with pytest.raises(ConfigError, match="token"):
        TcpServer(LOOPBACK, 0, token="")


def test_close_is_idempotent_and_use_after_close_raises(app):
    server = TcpServer(LOOPBACK, 0).start()
    sub = server.subscriber("cam")
    sender = TcpSender("cam", LOOPBACK, server.port, app=app)
    deliver(sub, sender, 1)
    waiting = []
    waiter = threading.Thread(target=lambda: waiting.append(pytest.raises(ClosedResourceError, sub.recv, 10)))
    waiter.start()
    sender.close()
    sender.close()
    server.close()                                   # wakes the waiting recv, closes its subscribers
    server.close()
    waiter.join(5)
    assert waiting and not waiter.is_alive()
    for call in (lambda: sender.publish(b"x"), sender.statistics, sub.recv_nowait, server.statistics,
                 lambda: server.subscriber("cam")):
        with pytest.raises(ClosedResourceError):
            call()


def test_unclosed_sender_and_server_warn_and_clean_up(app):
    server = TcpServer(LOOPBACK, 0).start()
    sender = TcpSender("cam", LOOPBACK, server.port, app=app)
    sender.publish(b"x")
    assert sender.wait_connected(5)
    with pytest.warns(ResourceWarning, match="unclosed <TcpSender"):
        del sender
        gc.collect()
    core = server._core
    with pytest.warns(ResourceWarning, match="unclosed <TcpServer"):
        del server
        gc.collect()
    assert core.stopped.wait(5)
    core.thread.join(5)
