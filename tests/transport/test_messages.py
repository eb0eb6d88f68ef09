"""Messages (issue 11): dicts and lists with numpy arrays nested, on every transport and through the runtime.

The encoding (edgeflow.transport.message) round-trips bit-exact; its decoder refuses hostile input with a
ProtocolError before allocating anything; shared memory hands the arrays out as read-only views of the slot;
Redis (single and dual) and TCP carry the same bytes; nodes return messages and consumers and fusion nodes
receive them as ``frame.data``. The per-transport round trip is also in test_contract.py (payloads
``message`` and ``message-list``).
"""

from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc

import numpy as np
import pytest

from edgeflow import ConsumerNode, EdgeApp, Frame, FusionNode, NodeError, ProducerNode, QoS, SinkNode
from edgeflow.errors import FrameTooLarge, ProtocolError
from edgeflow.transport import codecs, message, shm

RECV_TIMEOUT = 5.0

ARRAYS = {
    "float32-points": lambda: np.random.default_rng(0).random((1000, 3), dtype=np.float32),
    "uint8-image": lambda: np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8),
    "big-endian": lambda: np.arange(12, dtype=">i4").reshape(3, 4),
    "int64-extremes": lambda: np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max]),
    "complex": lambda: np.array([1 + 2j, -3.5j], np.complex128),
    "float16-nan": lambda: np.array([np.nan, np.inf, -0.0, 1.5], np.float16),
    "bool": lambda: np.array([[True, False], [False, True]]),
    "unicode": lambda: np.array(["ä", "lidar"], "<U6"),
    "datetime": lambda: np.array(["2024-01-01T00:00:00.123"], "datetime64[ms]"),
    "structured": lambda: np.array([(1.5, 2, b"abc"), (-1.0, -7, b"")],
                                   dtype=[("x", "<f4"), ("y", "<i2"), ("name", "S5")]),
    "structured-aligned": lambda: np.zeros(3, np.dtype([("a", "u1"), ("b", "<f8")], align=True)),
    "subarray": lambda: np.zeros(2, np.dtype([("m", "<f4", (2, 2))])),
    "0-d": lambda: np.array(3.25),
    "empty": lambda: np.zeros((3, 0, 2), np.uint16),
    "empty-1d": lambda: np.zeros(0, np.float64),
    "fortran": lambda: np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
    "strided": lambda: np.arange(40, dtype=np.int16).reshape(4, 10)[:, ::3],
}


def assert_same(got, want):
    """Recursively equal; arrays bit-exact (dtype, shape, bytes in C order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray)
        assert (got.dtype, got.shape, got.dtype.names) == (want.dtype, want.shape, want.dtype.names)
        assert got.tobytes() == want.tobytes()
    elif isinstance(want, np.generic):
        assert type(got) is type(want) and got.tobytes() == want.tobytes()
    elif isinstance(want, float) and want != want:
        assert isinstance(got, float) and got != got
    else:
        assert type(got) is type(want) and got == want


def lidar(n: int = 1000) -> dict:
    return {"angle": 1.5, "raw_points": np.random.default_rng(n).random((n, 3), dtype=np.float32)}


def base_object(array: np.ndarray):
    """The object at the end of an array's ``base`` chain (a memoryview's exporter, for views of buffers)."""
    obj = array
    while isinstance(obj, np.ndarray) and obj.base is not None:
        obj = obj.base
    return obj.obj if isinstance(obj, memoryview) else obj


# -- the encoding ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_in_messages_round_trip_bit_exact(name):
    array = ARRAYS[name]()
    msg = {"a": array, "in_list": [array, {"deeper": array}]}
    got = message.decode(message.encode(msg).to_bytes())
    assert_same(got, msg)
    assert not got["a"].flags.writeable


def test_json_values_nested_lists_scalars_and_bytes_round_trip():
    msg = [{"angle": 1.5, "name": "lidar-ü", "ok": True, "off": False, "none": None, "big": 2 ** 70,
            "nan": float("nan"), "inf": float("-inf"), "nested": [[], {}, [[1, [2, [3]]]]]},
           np.int64(-5), np.float32(1.25), np.bool_(True), np.array(7, np.uint64),
           b"\x00bytes", bytearray(b"ba"), "plain", 3]
    got = message.decode(message.encode(msg).to_bytes())
    want = list(msg)
    want[6] = b"ba"                                    # bytearray arrives as bytes
    assert_same(got, want)
    assert type(got[1]) is np.int64 and type(got[3]) is np.bool_


def test_tuples_travel_as_lists():
    got = message.decode(message.encode({"size": (640, 480)}).to_bytes())
    assert got == {"size": [640, 480]}


def test_layout_prefix_header_and_64_byte_aligned_buffers():
    pts = np.arange(30, dtype=np.float32).reshape(10, 3)
    enc = message.encode({"angle": 1.5, "pts": pts, "ids": np.arange(3, dtype=np.uint8)})
    blob = enc.to_bytes()
    assert len(blob) == enc.nbytes
    magic, version, flags, reserved, header_len, count, data_len = struct.unpack_from("<4sBBHIIQ", blob)
    assert (magic, version, flags, reserved, count) == (b"EFMS", 1, 0, 0, 2)
    header = json.loads(blob[24:24 + header_len])
    start = (24 + header_len + 63) // 64 * 64
    assert start + data_len == len(blob)
    assert header["angle"] == 1.5
    kind, dtype, shape, offset, nbytes = header["pts"]["__ef_buf__"]
    assert (kind, dtype, shape, nbytes) == ("a", "<f4", [10, 3], 120)
    assert offset % 64 == 0 and header["ids"]["__ef_buf__"][3] % 64 == 0
    assert blob[start + offset:start + offset + nbytes] == pts.tobytes()
    assert blob[24 + header_len:start] == bytes(start - 24 - header_len), "padding is zeros"


def test_write_into_a_buffer_matches_to_bytes():
    msg = {"a": ARRAYS["strided"](), "b": [b"xyz", np.float32(2.0)], "c": ARRAYS["structured"]()}
    enc = message.encode(msg)
    buf = bytearray(b"\xff" * (enc.nbytes + 10))
    enc.write_into(buf)
    assert bytes(buf[:enc.nbytes]) == enc.to_bytes()


def test_copy_message_and_frame_copy_are_deep_and_writable():
    got = message.decode(message.encode(lidar(10)).to_bytes())
    frame = Frame(got, frame_id=3, meta={"m": 1})
    copied = frame.copy()
    assert copied.data["raw_points"].flags.writeable
    assert not np.shares_memory(copied.data["raw_points"], got["raw_points"])
    assert_same(copied.data, got)
    assert copied.meta == {"m": 1} and copied.frame_id == 3


@pytest.mark.parametrize("bad,match", [
    ({"a": np.array([object()], dtype=object)}, "Python objects"),
    ({"a": np.zeros(2, dtype=[("x", "i4"), ("o", "O")])}, "Python objects"),
    ({"a": {1, 2}}, "set"),
    ([object()], "object"),
    ({"__ef_buf__": 1}, "reserved"),
    (["__ef_buf__"], "reserved"),
    ("not a message", "dict or a list"),
    ((1, 2), "dict or a list"),
], ids=["object-array", "object-field", "set", "object", "reserved-key", "reserved-string", "str", "tuple"])
def test_what_cannot_be_encoded_is_a_type_error_naming_where(bad, match):
    with pytest.raises(TypeError, match=f"cam.*{match}"):
        message.encode(bad, "cam")


def test_circular_and_too_deep_messages_are_type_errors():
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError, match="cam"):
        message.encode(loop, "cam")
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TypeError, match="cam.*deeply"):
        message.encode(deep, "cam")


def test_a_header_over_the_limit_is_frame_too_large(monkeypatch):
    monkeypatch.setattr(message, "MAX_HEADER_BYTES", 100)
    with pytest.raises(FrameTooLarge, match="cam"):
        message.encode({"k": "x" * 200}, "cam")


def test_codecs_carry_messages_raw_and_lz4():
    msg = lidar(50)
    for codec in (None, "lz4", "jpeg"):
        header, payload = codecs.encode(msg, codec)
        assert header["kind"] == "message" and header["codec"] == ("lz4" if codec == "lz4" else "raw")
        assert_same(codecs.decode(json.loads(json.dumps(header)), payload), msg)
    assert codecs.decode({"kind": "json", "codec": "raw"}, b'{"old": 1}') == {"old": 1}   # 0.2 peers


# -- hostile input ---------------------------------------------------------------------------------------------

def _blob(msg=None) -> bytes:
    return message.encode(lidar(8) if msg is None else msg).to_bytes()


def _forge(header, data_len: int = 64, *, count: int | None = None, version: int = 1, magic: bytes = b"EFMS",
           header_len: int | None = None, flags: int = 0, tail: bytes | None = None) -> bytes:
    """A message of our making: ``header`` as given (dict/list -> JSON, or raw bytes)."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    if count is None:
        count = text.count(b'"__ef_buf__"')
    hlen = len(text) if header_len is None else header_len
    prefix = struct.pack("<4sBBHIIQ", magic, version, flags, 0, hlen, count, data_len)
    start = (24 + len(text) + 63) // 64 * 64
    body = prefix + text + bytes(start - 24 - len(text))
    return body + (bytes(data_len) if tail is None else tail)


def _placeholder(kind="a", dtype="<f4", shape=(4,), offset=0, nbytes=16):
    return {"__ef_buf__": [kind, dtype, list(shape), offset, nbytes]}


HOSTILE = {
    "empty": b"",
    "short-prefix": b"EFMS\x01",
    "bad-magic": b"PK\x03\x04" + _blob()[4:],
    "bad-version": _blob()[:4] + b"\x02" + _blob()[5:],
    "version-0": _blob()[:4] + b"\x00" + _blob()[5:],
    "unknown-flags": _forge({"a": 1}, 0, flags=1),
    "huge-header-len": _forge({"a": 1}, 0, header_len=0xFFFFFFFF),
    "header-len-past-end": _forge({"a": 1}, 0, header_len=10_000),
    "huge-data-len": _forge({"a": 1}, 0)[:16] + struct.pack("<Q", 1 << 62) + _forge({"a": 1}, 0)[24:],
    "huge-count": _forge({"a": 1}, 0, count=0xFFFFFFFF),
    "count-too-high": _forge({"a": _placeholder()}, 64, count=2),
    "count-too-low": _forge({"a": _placeholder(), "b": _placeholder()}, 64, count=1),
    "truncated-data": _blob()[:-1],
    "extra-bytes": _blob() + b"\x00",
    "not-json": _forge(b"{not json", 0),
    "not-utf8": _forge(b'{"a": "\xff"}', 0),
    "top-level-scalar": _forge(b"42", 0),
    "deep-nesting": _forge(b"[" * 200_000 + b"]" * 200_000, 0),
    "placeholder-extra-key": _forge({"__ef_buf__": ["a", "<f4", [4], 0, 16], "x": 1}, 64),
    "placeholder-not-list": _forge({"x": {"__ef_buf__": 5}}, 64),
    "placeholder-short": _forge({"x": {"__ef_buf__": ["a", "<f4", [4]]}}, 64),
    "unknown-kind": _forge({"x": _placeholder(kind="z")}, 64),
    "bad-dtype": _forge({"x": _placeholder(dtype="nonsense")}, 64),
    "object-dtype": _forge({"x": _placeholder(dtype="|O", shape=(2,), nbytes=16)}, 64),
    "object-field": _forge({"x": _placeholder(dtype="D:[('a', '|O')]", shape=(2,), nbytes=16)}, 64),
    "dtype-code-eval": _forge({"x": _placeholder(dtype="D:__import__('os').system('true')")}, 64),
    "dtype-not-string": _forge({"x": _placeholder(dtype=["<f4"])}, 64),
    "dtype-too-long": _forge({"x": _placeholder(dtype="D:" + "[" * 10_000)}, 64),
    "negative-shape": _forge({"x": _placeholder(shape=(-4,), nbytes=-16)}, 64),
    "float-shape": _forge({"x": _placeholder(shape=(4.0,))}, 64),
    "too-many-dims": _forge({"x": _placeholder(shape=(1,) * 33, nbytes=4)}, 64),
    "huge-shape": _forge({"x": _placeholder(shape=(1 << 40, 1 << 40), nbytes=4 << 80)}, 64),
    "nbytes-mismatch": _forge({"x": _placeholder(nbytes=12)}, 64),
    "offset-out-of-range": _forge({"x": _placeholder(offset=64)}, 64),
    "offset-negative": _forge({"x": _placeholder(offset=-64)}, 64),
    "offset-unaligned": _forge({"x": _placeholder(offset=8)}, 64),
    "offset-float": _forge({"x": _placeholder(offset=0.0)}, 64),
    "huge-offset": _forge({"x": _placeholder(offset=1 << 62)}, 64),
    "scalar-with-shape": _forge({"x": _placeholder(kind="s")}, 64),
    "bytes-of-float": _forge({"x": _placeholder(kind="b")}, 64),
    "zero-size-dtype-huge-count": _forge({"x": _placeholder(dtype="|V0", shape=(1 << 40, 1 << 20), nbytes=0)},
                                         64),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_raises_protocol_error_without_large_allocations(name):
    blob = HOSTILE[name]
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as err:
            message.decode(blob, "cam")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(err.value).startswith("cam: ") or "cam" in str(err.value) or "dtype" in str(err.value)
    assert peak < 8 * len(blob) + 4 * 1024 * 1024, f"{peak} bytes allocated decoding {len(blob)} bytes"


def test_every_truncation_of_a_message_is_a_protocol_error():
    blob = _blob({"a": np.arange(5, dtype=np.int16), "b": "text", "c": [b"xy", np.float64(1)]})
    for n in range(len(blob)):
        with pytest.raises(ProtocolError):
            message.decode(blob[:n])


def test_unknown_version_error_says_which():
    with pytest.raises(ProtocolError, match="version 2.*version 1"):
        message.decode(HOSTILE["bad-version"])


def test_random_corruption_never_raises_anything_but_protocol_error():
    rng = np.random.default_rng(5)
    blob = bytearray(_blob({"a": np.arange(6, dtype="<u2").reshape(2, 3), "s": "x" * 10, "n": [1, 2.5]}))
    for _ in range(2000):
        bad = bytearray(blob)
        for pos in rng.integers(0, len(bad), rng.integers(1, 4)):
            bad[pos] = int(rng.integers(0, 256))
        try:
            message.decode(bytes(bad))
        except ProtocolError:
            pass


def test_a_hostile_message_over_codecs_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        codecs.decode({"kind": "message", "codec": "raw"}, HOSTILE["offset-out-of-range"])


# -- shared memory: one slot, zero-copy views -------------------------------------------------------------------

def test_shm_message_arrays_are_read_only_views_of_the_slot(app):
    from edgeflow._fast import ring
    msg = lidar(100_000)
    with shm.Subscriber("lidar", app=app, qos=QoS.DURABLE) as sub, shm.Publisher("lidar", app=app) as pub:
        fid = pub.publish(msg, timestamp=12.5, meta={"seq": 1})
        frame = sub.recv(timeout=RECV_TIMEOUT)
        assert (frame.frame_id, frame.timestamp, frame.meta) == (fid, 12.5, {"seq": 1})
        got = frame.data
        assert_same(got, msg)
        pts = got["raw_points"]
        assert not pts.flags.writeable and not pts.flags.owndata
        view = base_object(pts)
        assert isinstance(view, ring.SlotView) and not view.is_copy, "the array views the slot itself"
        assert pts.__array_interface__["data"][0] % 64 == 0, "buffers are 64-byte aligned in the slot"
        with pytest.raises(ValueError):
            pts[0, 0] = 1.0
        assert pub.statistics().pinned_slots == 1
        frame.release()
        assert pub.statistics().pinned_slots == 1, "a live array keeps the slot pinned"
        del got, pts, view
        assert pub.statistics().pinned_slots == 0


def test_shm_message_handed_out_as_a_copy_when_pins_run_out_is_the_same(app):
    from edgeflow._fast import ring
    sent = [lidar(10 + i) for i in range(4)]
    with shm.Subscriber("t", app=app, qos=QoS.DURABLE) as sub, shm.Publisher("t", app=app, slots=4) as pub:
        for msg in sent:
            pub.publish(msg)
        got = [sub.recv(timeout=RECV_TIMEOUT) for _ in sent]        # all held: the last ones are copies
        views = [base_object(f.data["raw_points"]) for f in got]
        assert all(isinstance(v, ring.SlotView) for v in views)
        assert any(v.is_copy for v in views) and sub.statistics().copies >= 1
        for frame, msg in zip(got, sent):
            assert_same(frame.data, msg)


def test_shm_message_without_arrays_pins_nothing_and_lists_work(app):
    with shm.Subscriber("t", app=app, qos=QoS.DURABLE) as sub, shm.Publisher("t", app=app) as pub:
        pub.publish({"a": 1, "b": ["x", None, {"c": 2.5}]})
        pub.publish([1, [2, [3]], {"k": np.arange(3)}])
        first, second = sub.recv(timeout=RECV_TIMEOUT), sub.recv(timeout=RECV_TIMEOUT)
        assert first.data == {"a": 1, "b": ["x", None, {"c": 2.5}]}
        assert_same(second.data, [1, [2, [3]], {"k": np.arange(3)}])
        del first
        assert pub.statistics().pinned_slots == 1          # only the frame with an array


def test_shm_messages_grow_the_ring_and_arrays_and_messages_interleave(app):
    with shm.Subscriber("t", app=app, qos=QoS.DURABLE) as sub, shm.Publisher("t", app=app, slots=4) as pub:
        sent = [np.arange(10, dtype=np.uint8), lidar(10), b"raw", lidar(200_000), np.zeros((2, 2)), [lidar(3)]]
        for item in sent:
            pub.publish(item)
        for item in sent:
            with sub.recv(timeout=RECV_TIMEOUT) as frame:
                if isinstance(item, bytes):
                    assert frame.data == item
                else:
                    assert_same(frame.data, item)
        assert pub.statistics().generation >= 2


def test_shm_message_encoding_errors_leave_the_publisher_usable(app):
    with shm.Subscriber("cam", app=app, qos=QoS.DURABLE) as sub, shm.Publisher("cam", app=app) as pub:
        with pytest.raises(TypeError, match="cam.*Python objects"):
            pub.publish({"x": np.array([None], object)})
        pub.publish({"ok": np.ones(2)})
        assert_same(sub.recv(timeout=RECV_TIMEOUT).data, {"ok": np.ones(2)})


def test_a_received_message_republished_is_the_same(app):
    with shm.Subscriber("a", app=app, qos=QoS.DURABLE) as sub_a, shm.Publisher("a", app=app) as pub_a, \
            shm.Subscriber("b", app=app, qos=QoS.DURABLE) as sub_b, shm.Publisher("b", app=app) as pub_b:
        msg = lidar(1000)
        pub_a.publish(msg)
        pub_b.publish(sub_a.recv(timeout=RECV_TIMEOUT))    # a Frame holding a message: views into ring a
        assert_same(sub_b.recv(timeout=RECV_TIMEOUT).data, msg)


# -- network transports: the same bytes, with codecs -------------------------------------------------------------

def test_tcp_carries_messages_raw_and_lz4(app):
    from edgeflow.transport.tcp import TcpSender, TcpServer
    msg = {"angle": 0.25, "raw_points": ARRAYS["float32-points"](), "tags": ["a", {"b": np.int8(-3)}]}
    with TcpServer("127.0.0.1", 0).start() as server:
        for codec in (None, "lz4"):
            topic = f"lidar-{codec}"
            with server.subscriber(topic) as sub, TcpSender(topic, "127.0.0.1", server.port, app=app,
                                                            codec=codec) as pub:
                fid = pub.publish(msg, meta={"codec": str(codec)})
                frame = sub.recv(timeout=RECV_TIMEOUT)
                assert (frame.frame_id, frame.meta) == (fid, {"codec": str(codec)})
                assert_same(frame.data, msg)
                assert not frame.data["raw_points"].flags.writeable


def test_tcp_sender_copies_a_message_at_publish(app):
    from edgeflow.transport.tcp import TcpSender, TcpServer
    pts = np.zeros(1000, np.float64)
    with TcpServer("127.0.0.1", 0).start() as server, server.subscriber("t") as sub, \
            TcpSender("t", "127.0.0.1", server.port, app=app) as pub:
        pub.publish({"p": pts})
        pts[:] = 1.0                                          # the caller may reuse its arrays at once
        assert_same(sub.recv(timeout=RECV_TIMEOUT).data, {"p": np.zeros(1000, np.float64)})


@pytest.mark.parametrize("dual", [False, True], ids=["redis", "dual-redis"])
def test_redis_carries_messages_durable_and_lz4(request, app, dual):
    from edgeflow.comms import brokers
    from edgeflow.transport import redis
    url = request.getfixturevalue("redis_url")
    broker = brokers.DualRedisBroker(url, request.getfixturevalue("redis_data_url")) if dual else \
        brokers.RedisBroker(url)
    sent = [lidar(500), [1, {"x": np.arange(4, dtype="<i8")}], {"empty": np.zeros((0, 3), np.float32)}]
    for codec in (None, "lz4"):
        topic = f"lidar-{codec}"
        with redis.RedisSubscriber(topic, app=app, broker=broker, qos=QoS.DURABLE, group="g") as sub, \
                redis.RedisPublisher(topic, app=app, broker=broker, codec=codec) as pub:
            for item in sent:
                pub.publish(item)
            for item in sent:
                assert_same(sub.recv(timeout=RECV_TIMEOUT).data, item)


# -- the runtime: nodes return messages, consumers and fusion nodes receive them ----------------------------

def summary(data) -> dict:
    """What a node reports about a received lidar message (JSON for the test to read)."""
    pts = data["raw_points"]
    return {"type": type(data).__name__, "angle": data["angle"], "dtype": pts.dtype.str,
            "shape": list(pts.shape), "writeable": bool(pts.flags.writeable), "sum": float(pts.sum()),
            "first": pts[0].tolist()}


def expected(i: int) -> dict:
    pts = Lidar.points(i)
    return {"type": "dict", "angle": i * 0.5, "dtype": "<f4", "shape": [64, 3], "writeable": False,
            "sum": float(pts.sum()), "first": pts[0].tolist()}


class Lidar(ProducerNode):
    """Returns ``{"angle": a, "raw_points": (64, 3) float32}``; ``count`` frames, then the stream ends."""
    count = 5

    @staticmethod
    def points(i: int) -> np.ndarray:
        return np.random.default_rng(i).random((64, 3), dtype=np.float32)

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= self.count:
            from edgeflow import EndOfStream
            raise EndOfStream
        self.i += 1
        return {"angle": (self.i - 1) * 0.5, "raw_points": self.points(self.i - 1)}


class Relay(ConsumerNode):
    """Passes the message on with meta of its own: a received message republished as it is."""
    def process(self, data):
        return data, {"relayed": True}


class Record(SinkNode):
    def consume(self, data):
        with open(self.out, "a") as f:
            f.write(json.dumps(summary(data)) + "\n")


class Camera(ProducerNode):
    count = 5

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= self.count:
            from edgeflow import EndOfStream
            raise EndOfStream
        self.i += 1
        return np.full((4, 4), self.i, np.uint8)


class FuseRecord(FusionNode):
    """Writes what it got per input: the lidar message's summary and the camera array's shape."""
    def process(self, frames):
        lidar_frame, camera_frame = frames
        with open(self.out, "a") as f:
            f.write(json.dumps({"lidar": summary(lidar_frame.data),
                                "camera": list(camera_frame.data.shape)}) + "\n")
        return {"angle": lidar_frame.data["angle"], "camera": camera_frame.data}


def read_records(path, n: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= n:
                return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records in {path} within {timeout} s")


@pytest.mark.slow
def test_a_producer_returning_a_dict_reaches_consumers_as_the_same_dict(app, tmp_path):
    out = tmp_path / "records.jsonl"
    ef = EdgeApp(app)
    ef.node(Lidar, name="lidar", fps=None)
    ef.node(Relay, name="relay")
    ef.node(Record, name="record", out=str(out))
    ef.link("lidar").to("relay", qos=QoS.DURABLE).to("record", qos=QoS.DURABLE)
    with ef.start() as running:
        code = running.wait(60)
        stats = running.statistics()
    assert code == 0, stats
    assert read_records(out, 5) == [expected(i) for i in range(5)]
    assert stats["nodes"]["relay"]["errors"] == 0


@pytest.mark.slow
def test_a_fusion_node_gets_messages_as_frame_data(app, tmp_path):
    out = tmp_path / "fused.jsonl"
    ef = EdgeApp(app)
    ef.node(Lidar, name="lidar", fps=20, count=1000)
    ef.node(Camera, name="camera", fps=20, count=1000)
    ef.node(FuseRecord, name="fuse", out=str(out), slop=0.05, queue_size=20)
    ef.link("lidar").to("fuse")
    ef.link("camera").to("fuse")
    with ef.start():
        records = read_records(out, 3)
    for r in records:
        assert r["camera"] == [4, 4]
        i = int(r["lidar"]["angle"] / 0.5)
        assert r["lidar"] == expected(i)


# -- edgeflow.testing.run_node -------------------------------------------------------------------------------------

class Inspect(ConsumerNode):
    def process(self, data):
        return {"seen": summary(data), "raw_points": data["raw_points"]}


class BadMessage(ConsumerNode):
    def process(self, data):
        return {"points": np.array([object()], dtype=object)}


def test_run_node_passes_messages_through():
    from edgeflow.testing import run_node
    result = run_node(Lidar, frames=3)
    assert result.errors == [] and len(result.outputs) == 3
    assert_same(result.outputs[1].data, {"angle": 0.5, "raw_points": Lidar.points(1)})

    result = run_node(Inspect, [{"angle": 2.0, "raw_points": Lidar.points(7)}])
    [out] = result.outputs
    assert out.data["seen"]["writeable"] is False, "arrays in a message input are read-only, as in the runtime"
    assert_same(out.data["raw_points"], Lidar.points(7))


def test_a_message_that_cannot_be_encoded_is_a_node_error_naming_the_node():
    from edgeflow.testing import run_node
    result = run_node(BadMessage, [{"angle": 1.0}], name="lidar_filter")
    [err] = result.errors
    assert isinstance(err, NodeError) and err.node == "lidar_filter"
    assert "node 'lidar_filter'" in str(err) and "Python objects" in str(err)
    assert result.statistics["drops"].get("unsendable") == 1


def test_output_send_turns_an_unencodable_message_into_a_node_error(app):
    from edgeflow.runtime.outputs import Output
    with shm.Publisher("out", app=app) as pub:
        output = Output("lidar_filter", pub)
        with pytest.raises(NodeError, match="node 'lidar_filter'.*Python objects") as err:
            output.send({"p": np.array([None], object)}, None, time.time())
        assert err.value.node == "lidar_filter"
        assert output.send({"p": np.ones(3)}, None, time.time()) == 1


def _take_one_and_hang(app: str, took) -> None:
    """A DURABLE group member that takes one frame, keeps it unreleased and waits to be killed."""
    sub = shm.Subscriber("telemetry", app=app, qos=QoS.DURABLE, group="sink")
    frame = sub.recv(timeout=RECV_TIMEOUT)
    took.put(frame.data["seq"])
    time.sleep(60)                                 # killed long before this ends


@pytest.mark.parametrize("payload", ["message", "bytes"])
def test_a_killed_member_holding_a_decoded_frame_gets_it_redelivered(app, payload):
    """Messages and bytes are decoded out of their slot, but the frame holds the slot until released: a member
    SIGKILLed before that does not lose the frame (the ring hands it to the next member)."""
    import multiprocessing
    import signal as _signal
    ctx = multiprocessing.get_context("spawn")
    encode = (lambda i: {"seq": i}) if payload == "message" else (lambda i: json.dumps({"seq": i}).encode())
    with shm.Publisher("telemetry", app=app) as pub:
        pub.declare_group("sink", QoS.DURABLE)
        for i in range(3):
            pub.publish(encode(i))
        took = ctx.Queue()
        child = ctx.Process(target=_take_one_and_hang, args=(app, took)) if payload == "message" else \
            ctx.Process(target=_take_one_bytes_and_hang, args=(app, took))
        child.start()
        assert took.get(timeout=30) == 0
        os.kill(child.pid, _signal.SIGKILL)
        child.join(10)
        with shm.Subscriber("telemetry", app=app, qos=QoS.DURABLE, group="sink") as sub:
            seqs: list = []
            deadline = time.monotonic() + 10
            # the producer goes on publishing: its housekeeping (every 0.5 s) hands the dead member's frame out
            while 0 not in seqs and time.monotonic() < deadline:
                pub.publish(encode(3 + len(seqs)))
                data = sub.recv(timeout=RECV_TIMEOUT).data
                seqs.append(data["seq"] if isinstance(data, dict) else json.loads(bytes(data))["seq"])
    assert 0 in seqs, f"frame 0, taken by the killed member, was lost: got {seqs}"
    assert sorted(seqs) == list(range(len(seqs))), f"a frame lost or twice: {seqs}"


def _take_one_bytes_and_hang(app: str, took) -> None:
    sub = shm.Subscriber("telemetry", app=app, qos=QoS.DURABLE, group="sink")
    frame = sub.recv(timeout=RECV_TIMEOUT)
    took.put(json.loads(bytes(frame.data))["seq"])
    time.sleep(60)
