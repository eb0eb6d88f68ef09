"""Bounded memory (issue 12, section 3): every decoder is bounded before it runs, per-topic state is bounded.

lz4, PNG and JPEG bombs sent to a TcpServer in a child process are rejected and counted while the child's
peak RSS stays near its baseline (each bomb would take 144 MiB to 1 GiB decoded); zero-size dtypes and shapes
whose product overflows are refused; 1,000,000 distinct topic names leave the server's memory within a bound
and its topic table at its cap; the gateway hub keeps at most its max_topics.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
import tracemalloc
import zlib

import cv2
import lz4.frame
import numpy as np
import pytest

from edgeflow.errors import ProtocolError
from edgeflow.frame import Frame
from edgeflow.gateway.hub import Hub
from edgeflow.transport import _wire, codecs, message
from edgeflow.transport.tcp import TcpSender, TcpServer

from _tcp_floods import LOOPBACK, TOKEN, RawClient, ServerChild, frame

MiB = 1 << 20
LIMIT = 16 * MiB                     # the child server's max_frame_bytes
PEAK_BOUND = 64 * MiB                # the child's peak RSS may grow this much over its baseline, all bombs included


# ------------------------------------------------------------------------------------------------------------
# bombs: built in pieces, so the test itself never holds what they expand to

@functools.lru_cache(maxsize=None)
def lz4_bomb(size: int = 1 << 30, store_size: bool = True) -> bytes:
    """An lz4 frame of ``size`` zero bytes (4.4 MB for 1 GiB), with or without its size in the header."""
    ctx = lz4.frame.create_compression_context()
    parts = [lz4.frame.compress_begin(ctx, source_size=size if store_size else 0)]
    zeros = bytes(16 * MiB)
    parts += [lz4.frame.compress_chunk(ctx, zeros) for _ in range(size // len(zeros))]
    parts.append(lz4.frame.compress_flush(ctx))
    return b"".join(parts)


@functools.lru_cache(maxsize=None)
def png_bomb(side: int = 12000) -> bytes:
    """A valid grey PNG of side x side zeros (144 MB decoded, ~110 KB encoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    comp = zlib.compressobj(9)
    rows = bytes(side + 1) * 500                       # filter byte 0 + a row of zeros, 500 rows at a time
    idat = b"".join(comp.compress(rows) for _ in range(side // 500)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A real 8x8 JPEG whose SOF marker claims width x height (OpenCV would allocate 2.7 GB for it)."""
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def array_frame(topic: str, shape: tuple, dtype: str, codec: str, payload: bytes, frame_id: int = 1) -> bytes:
    return frame(topic, payload, kind=_wire.KIND_ARRAY, shape=shape, dtype=dtype.encode(), codec=codec.encode(),
                 frame_id=frame_id)


BOMBS = {
    # name: (frame, the reason the server rejects it under)
    "lz4-array-claims-8-bytes": (lambda: array_frame("b", (8,), "|u1", "lz4", lz4_bomb()), "oversized"),
    "lz4-bytes-without-size": (lambda: frame("b", lz4_bomb(store_size=False), codec=b"lz4"), "oversized"),
    "lz4-message-without-size": (lambda: frame("b", lz4_bomb(store_size=False), kind=_wire.KIND_MESSAGE,
                                               codec=b"lz4"), "oversized"),
    "lz4-array-declared-1GiB": (lambda: array_frame("b", (1 << 30,), "|u1", "lz4", lz4_bomb()), "oversized"),
    "png-claims-8x8": (lambda: array_frame("b", (8, 8), "|u1", "png", png_bomb()), "bad_codec"),
    "png-declared-at-its-size": (lambda: array_frame("b", (12000, 12000), "|u1", "png", png_bomb()),
                                 "oversized"),
    "jpeg-claims-8x8": (lambda: array_frame("b", (8, 8, 3), "|u1", "jpeg", jpeg_bomb()), "bad_codec"),
    "zero-size-dtype": (lambda: array_frame("b", (1 << 40, 1 << 40), "|V0", "", b""), "malformed"),
    "overflowing-shape-lz4": (lambda: array_frame("b", (1 << 32, 1 << 32), "|u1", "lz4", lz4.frame.compress(b"")),
                              "oversized"),
    "overflowing-shape-raw": (lambda: array_frame("b", (1 << 32, 1 << 32), "|u1", "", b""), "malformed"),
}


def test_bombs_are_rejected_before_allocation_and_counted():
    bombs = {name: make() for name, (make, _) in BOMBS.items()}     # built before the baseline is taken
    with ServerChild(token=TOKEN, max_frame_bytes=LIMIT) as server:
        good = RawClient(server.port)
        good.hello()
        good.send(frame("legit", b"warm-up") + array_frame("legit", (8, 8), "|u1", "png",
                                                           cv2.imencode(".png", np.ones((8, 8), np.uint8))[1]
                                                           .tobytes(), frame_id=2))
        server.wait_for(lambda s: s["counts"].get("legit") == 2, what="the warm-up frames")
        base = server.ask("reset-peak")["VmRSS"]
        for name, data in bombs.items():
            peer = RawClient(server.port)
            try:
                peer.hello()
                try:
                    peer.send(data)
                except (ConnectionResetError, BrokenPipeError):
                    pass                      # refused from its header: the server closed before the payload
                assert peer.rejected() in (BOMBS[name][1], None), name     # None: a reset overtook the REJECT
            finally:
                peer.close()
        good.send(frame("legit", b"after", frame_id=3))                # the server is fine, and so is the
        stats = server.wait_for(lambda s: s["counts"].get("legit") == 3, what="a frame after the bombs")
        good.close()
    expected: dict = {}
    for _, reason in BOMBS.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert stats["rejected"] == expected
    grew = stats["VmHWM"] - base
    assert grew < PEAK_BOUND, f"peak RSS grew by {grew / MiB:.0f} MiB while rejecting the bombs"


@pytest.mark.parametrize("name", ["lz4-array-claims-8-bytes", "lz4-bytes-without-size", "png-claims-8x8",
                                  "jpeg-claims-8x8", "png-declared-at-its-size"])
def test_codecs_decode_refuses_a_bomb_before_allocating(name):
    """The same bounds hold for every transport (Redis decodes with codecs.decode too)."""
    data = BOMBS[name][0]()
    _, header_len, payload_len = _wire.unpack_prefix(data)
    start = _wire.PREFIX_BYTES + header_len
    info = _wire.payload_header(_wire.parse_frame_header(data[_wire.PREFIX_BYTES:start], payload_len), payload_len)
    payload = data[start:]
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            codecs.decode(info, payload, max_bytes=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # at most the limit plus lz4's last pieces (4 MiB each): never what the bomb expands to (144 MiB - 1 GiB)
    assert peak < LIMIT + 12 * MiB, f"{peak / MiB:.0f} MiB allocated refusing {name}"


def test_zero_size_dtypes_and_overflowing_shapes_are_refused_everywhere(app):
    v0 = np.dtype("V0")
    for shape in ([1 << 40, 1 << 40], [4], [0]):
        with pytest.raises(ProtocolError, match="zero-size"):
            codecs.decode({"kind": "array", "codec": "raw", "dtype": "|V0", "shape": shape, "size": 0}, b"")
    for codec in ("raw", "lz4"):          # int64 would wrap to 0 here: Python ints make it just too large
        with pytest.raises(ProtocolError, match="limit"):
            codecs.decode({"kind": "array", "codec": codec, "dtype": "|u1", "shape": [1 << 32, 1 << 32]},
                          lz4.frame.compress(b"") if codec == "lz4" else b"")
    with pytest.raises(TypeError, match="zero-size"):
        codecs.encode(np.empty(3, v0))
    with pytest.raises(TypeError, match="zero-size"):
        message.encode({"x": np.empty(3, v0)})
    with TcpServer(LOOPBACK, 0) as server:
        server.start()
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            with pytest.raises(TypeError, match="zero-size"):
                sender.publish(np.empty(3, v0))
            with pytest.raises(ValueError, match="zero-size"):
                sender.loan((3,), v0)


def test_image_headers_are_read_without_decoding():
    for shape, colour in (((5, 7), 0), ((5, 7, 3), 2), ((5, 7, 4), 6)):     # grey, RGB, RGBA
        png = cv2.imencode(".png", np.zeros(shape, np.uint8))[1].tobytes()
        assert codecs.png_header(png) == (7, 5, 8, colour)
    for shape, components in (((9, 11), 1), ((9, 11, 3), 3)):
        jpeg = cv2.imencode(".jpg", np.zeros(shape, np.uint8))[1].tobytes()
        assert codecs.jpeg_header(jpeg) == (11, 9, 8, components)
    for junk in (b"", b"\x89PNG", b"\xff\xd8" + b"\xff\xe0\x00\x02" * 2000, bytes(100)):
        with pytest.raises(ProtocolError):
            codecs.jpeg_header(junk)
        with pytest.raises(ProtocolError):
            codecs.png_header(junk)


def test_codec_frames_are_decoded_in_the_pool_not_on_the_loop(app):
    """A png frame goes through the decode pool's thread; a raw one never starts it."""
    image = np.arange(64 * 48 * 3, dtype=np.uint8).reshape(64, 48, 3)
    with TcpServer(LOOPBACK, 0) as server:
        server.start()
        loop_thread = []
        server.on_frame = lambda f: loop_thread.append(threading.current_thread().name)
        sub = server.subscriber("cam")
        with TcpSender("cam", LOOPBACK, server.port, app=app) as raw:
            raw.publish(image)
            assert sub.recv(timeout=5).data.shape == image.shape
            assert not [t for t in threading.enumerate() if t.name.startswith("edgeflow-tcp-decode")]
        with TcpSender("cam", LOOPBACK, server.port, app=app, codec="png") as png:
            png.publish(image)
            np.testing.assert_array_equal(sub.recv(timeout=5).data, image)
            assert [t for t in threading.enumerate() if t.name.startswith("edgeflow-tcp-decode")]
        assert server.statistics().decoding == 0 and loop_thread[0].startswith("edgeflow-tcp-server")


# ------------------------------------------------------------------------------------------------------------
# per-topic state

def wait_until(predicate, what: str, timeout: float = 5.0) -> None:
    """Poll a counter (statistics have no event to await)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


_FIXED = {n: _wire.FRAME_FIXED.pack(1, 1.0, _wire.KIND_BYTES, 0, n, 0, 0, 0) for n in range(1, 101)}


def _names_frames(start: int, stop: int) -> bytes:
    """Frames of topics n<start>..n<stop-1>, one byte each, built fast (the 1 M test is about the server)."""
    out = []
    for i in range(start, stop):
        topic = b"n%d" % i
        header = _FIXED[len(topic)] + topic
        out.append(_wire.PREFIX.pack(_wire.MAGIC, _wire.VERSION, _wire.FRAME, len(header), 1) + header + b"x")
    return b"".join(out)


@pytest.mark.slow
def test_a_million_distinct_topic_names_leave_memory_within_a_bound():
    n, cap = 1_000_000, 1024
    with ServerChild(token=TOKEN, max_topics=cap, topic_idle=2.0) as server:
        client = RawClient(server.port, timeout=60)
        client.hello()
        client.send(_names_frames(0, 100))
        server.wait_for(lambda s: s["frames"] == 100, what="the warm-up frames")
        base = server.ask("reset-peak")["VmRSS"]
        biggest = 0
        for start in range(0, n, 50_000):
            client.send(_names_frames(start, start + 50_000))
            biggest = max(biggest, server.stats()["topics"])
        stats = server.wait_for(lambda s: s["frames"] - 100 + s["topics_refused"] + s["stale"] >= n,
                                timeout=60, what="every frame handled")
        assert max(biggest, stats["topics"]) <= cap and stats["topics_refused"] > 0
        grew = stats["VmHWM"] - base
        assert grew < 32 * MiB, f"the server's peak RSS grew by {grew / MiB:.0f} MiB for {n} topic names"
        idle = server.wait_for(lambda s: s["topics"] == 0, what="the idle topics to be forgotten")
        assert idle["topics_forgotten"] >= cap and idle["connections"] == 1     # the connection stayed
        client.close()


def test_the_topic_table_refuses_new_topics_only_while_full_of_active_ones(app):
    with TcpServer(LOOPBACK, 0, max_topics=3, topic_idle=0.2) as server:
        server.start()
        seen = []
        server.on_frame = lambda f: seen.append(f.topic)
        client = RawClient(server.port)
        client.hello(token=None)
        client.send(b"".join(frame(t) for t in ("a", "b", "c", "d")))
        wait_until(lambda: server.statistics().topics_refused == 1, "d refused")
        assert seen == ["a", "b", "c"] and server.statistics().topics == 3
        wait_until(lambda: server.statistics().topics == 0, "the sweep to forget them after topic_idle")
        client.send(frame("d"))
        wait_until(lambda: seen[-1] == "d", "d delivered")
        stats = server.statistics()
        assert seen[-1] == "d" and stats.topics == 1 and stats.topics_forgotten == 3
        client.close()


def test_the_hub_keeps_at_most_max_topics_and_forgets_idle_unwatched_ones():
    hub = Hub(max_topics=64, topic_idle=5.0)
    hub.expect(["camera"])
    hub.publish(Frame(b"first", frame_id=1, topic="camera"))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(100_000):
            hub.publish(Frame(b"x", frame_id=i, topic=f"flood{i}"))
        hub.publish(Frame(b"second", frame_id=2, topic="camera"))    # a named topic always gets through
        after, _ = tracemalloc.get_traced_memory()
        assert len(hub.topics) == 64 and hub.topics_refused == 100_000 - 63
        assert hub.topic("camera").latest.data == b"second"
        watched = hub.topic("flood1")
        watched.viewers["mjpeg"] += 1
        assert hub.forget_idle(now=time.perf_counter() + 10) == 62
        gone, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(hub.topics) == ["camera", "flood1"] and hub.topics_forgotten == 62
    assert after - before < 2 * MiB and gone - before < 256 * 1024, (before, after, gone)
    hub.publish(Frame(b"new", frame_id=1, topic="later"))         # room again
    assert hub.topic("later").latest.data == b"new"


def test_legitimate_lz4_without_a_declared_size_still_decodes_in_pieces():
    data = np.random.default_rng(3).integers(0, 4, 9 * MiB, dtype=np.uint8)     # more than two 4 MiB pieces
    blob = lz4.frame.compress(data.tobytes(), store_size=False)
    assert lz4.frame.get_frame_info(blob)["content_size"] == 0
    assert codecs.decode({"kind": "bytes", "codec": "lz4"}, blob) == data.tobytes()
    out = codecs.decode({"kind": "array", "codec": "lz4", "dtype": "|u1", "shape": [3, 3 * MiB]}, blob)
    np.testing.assert_array_equal(out.reshape(-1), data)
    with pytest.raises(ProtocolError, match="limit"):
        codecs.decode({"kind": "bytes", "codec": "lz4"}, blob, max_bytes=9 * MiB - 1)
    with pytest.raises(ProtocolError, match="truncated|decompress"):
        codecs.decode({"kind": "bytes", "codec": "lz4"}, blob[:len(blob) // 2])


def test_frames_behind_one_being_decoded_wait_and_keep_their_order(app):
    """A png frame, a large-header message and raw frames in one burst: decoded off the loop, delivered in order."""
    image = np.arange(32 * 24, dtype=np.uint8).reshape(32, 24)
    png = cv2.imencode(".png", image)[1].tobytes()
    big = message.encode({"values": list(range(20_000))}).to_bytes()      # a JSON header over 64 KiB
    with TcpServer(LOOPBACK, 0) as server:
        server.start()
        got = []
        server.on_frame = lambda f: got.append((f.frame_id, f.data))
        client = RawClient(server.port)
        client.hello(token=None)
        client.send(frame("cam", b"one", frame_id=1) + array_frame("cam", (32, 24), "|u1", "png", png, 2)
                    + frame("cam", b"three", frame_id=3) + frame("cam", big, frame_id=4, kind=_wire.KIND_MESSAGE)
                    + frame("cam", b"five", frame_id=5))
        wait_until(lambda: len(got) == 5, "five frames")
        client.close()
    assert [fid for fid, _ in got] == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(got[1][1], image)
    assert got[3][1] == {"values": list(range(20_000))} and got[4][1] == b"five"
