"""The transport contract, written once and run against every transport (STYLE section 7).

Each transport is a factory in FACTORIES that opens a (publisher, subscriber) pair for a topic and a QoS:

    shm          edgeflow.transport.shm Publisher / Subscriber
    tcp          TcpSender -> TcpServer.subscriber(topic)
    redis        RedisPublisher / RedisSubscriber over RedisBroker(redis_url)
    dual-redis   the same over DualRedisBroker(redis_url, redis_data_url)

The Redis ones import edgeflow.transport.redis lazily and take their URLs from the ``redis_url`` and
``redis_data_url`` fixtures (tests/transport/conftest.py); they skip with "redis transport not built yet"
while that module or those fixtures do not exist. A transport that cannot offer a QoS declares it
(``SUPPORTED_QOS``, read by edgeflow.transport.base.supported_qos) and the combination is skipped with that
reason.

The contract: REALTIME never repeats a frame or goes back, and the newest frame arrives; DURABLE delivers each
frame once, in order; frames round-trip bit-exact (dtype, shape, bytes, meta, timestamp, frame_id); close() is
idempotent and use after close raises ClosedResourceError; statistics() returns frozen snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import threading
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from edgeflow.errors import ClosedResourceError, ConfigError, ReceiveTimeout
from edgeflow.qos import QoS
from edgeflow.transport import base

RECV_TIMEOUT = 5.0
NOT_BUILT = "redis transport not built yet"


# ------------------------------------------------------------------------------------------------------------
# the registry of transports

@dataclasses.dataclass
class Transport:
    """One transport under test: its name, the QoS it offers, and how to open a pair."""
    name: str
    supported: frozenset
    opener: Callable[[str, QoS], contextlib.AbstractContextManager]

    def open(self, qos: QoS = QoS.REALTIME, topic: str = "contract") -> contextlib.AbstractContextManager:
        """A (publisher, subscriber) pair; skips the test when the transport does not offer ``qos``."""
        if qos not in self.supported:
            pytest.skip(f"{self.name}: {qos.name} is not offered (SUPPORTED_QOS = "
                        f"{sorted(q.name for q in self.supported)})")
        return self.opener(topic, qos)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, str], Transport]] = {}


def factory(name: str):
    """Register ``fn(request, app) -> Transport`` under ``name``."""
    def register(fn):
        FACTORIES[name] = fn
        return fn
    return register


@factory("shm")
def shm_transport(request, app: str) -> Transport:
    from edgeflow.transport import shm

    @contextlib.contextmanager
    def opener(topic: str, qos: QoS) -> Iterator[tuple[Any, Any]]:
        sub = shm.Subscriber(topic, app=app, qos=qos)          # first, so a DURABLE one sees every frame
        try:
            pub = shm.Publisher(topic, app=app)
            try:
                yield pub, sub
            finally:
                pub.close()
        finally:
            sub.close()

    return Transport("shm", base.supported_qos(shm.Subscriber), opener)


@factory("tcp")
def tcp_transport(request, app: str) -> Transport:
    from edgeflow.transport.tcp import TcpSender, TcpServer, TcpSubscriber

    @contextlib.contextmanager
    def opener(topic: str, qos: QoS) -> Iterator[tuple[Any, Any]]:
        server = TcpServer("127.0.0.1", 0).start()
        try:
            sub = server.subscriber(topic, qos=qos)
            pub = TcpSender(topic, "127.0.0.1", server.port, app=app)
            try:
                yield pub, sub
            finally:
                pub.close()
                sub.close()
        finally:
            server.close()

    return Transport("tcp", base.supported_qos(TcpSubscriber) & base.supported_qos(TcpSender), opener)


def _redis_module():
    try:
        return importlib.import_module("edgeflow.transport.redis")
    except ModuleNotFoundError as exc:
        if exc.name == "edgeflow.transport.redis":
            pytest.skip(NOT_BUILT)
        raise


def _fixture(request, name: str) -> str:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"{NOT_BUILT} (no {name!r} fixture)")


def _redis_transport(request, app: str, dual: bool) -> Transport:
    redis = _redis_module()
    url = _fixture(request, "redis_url")
    from edgeflow.comms import brokers
    if dual:
        broker_cls = getattr(redis, "DualRedisBroker", brokers.DualRedisBroker)
        broker = broker_cls(url, _fixture(request, "redis_data_url"))
    else:
        broker = getattr(redis, "RedisBroker", brokers.RedisBroker)(url)

    @contextlib.contextmanager
    def opener(topic: str, qos: QoS) -> Iterator[tuple[Any, Any]]:
        sub = redis.RedisSubscriber(topic, app=app, broker=broker, qos=qos)
        try:
            pub = redis.RedisPublisher(topic, app=app, broker=broker)
            try:
                yield pub, sub
            finally:
                pub.close()
        finally:
            sub.close()

    supported = base.supported_qos(redis.RedisSubscriber) & base.supported_qos(redis.RedisPublisher)
    return Transport("dual-redis" if dual else "redis", supported, opener)


@factory("redis")
def redis_transport(request, app: str) -> Transport:
    return _redis_transport(request, app, dual=False)


@factory("dual-redis")
def dual_redis_transport(request, app: str) -> Transport:
    return _redis_transport(request, app, dual=True)


@pytest.fixture(params=list(FACTORIES))
def transport(request, app) -> Transport:
    return FACTORIES[request.param](request, app)


# ------------------------------------------------------------------------------------------------------------
# the contract

PAYLOADS = {
    "image-uint8": lambda: np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    "float32-3d": lambda: np.linspace(-1e6, 1e6, 1001, dtype=np.float32).reshape(7, 11, 13),
    "big-endian": lambda: np.arange(6, dtype=">i4").reshape(2, 3),
    "int64-extremes": lambda: np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max]),
    "bool": lambda: np.array([[True, False], [False, True]]),
    "structured": lambda: np.array([(1.5, 2, b"abc"), (-1.0, -7, b"")],
                                   dtype=[("x", "<f4"), ("y", "<i2"), ("name", "S5")]),
    "0-d": lambda: np.array(3.25),
    "empty": lambda: np.zeros((3, 0, 2), np.uint16),
    "bytes": lambda: bytes(range(256)) * 3,
    "message": lambda: {"angle": 1.5, "raw_points": np.random.default_rng(1).random((100, 3), dtype=np.float32),
                        "name": "lidar-ü", "ok": True, "none": None, "nested": {"ids": [1, 2, 3],
                        "pose": np.arange(16, dtype=">f8").reshape(4, 4)}},
    "message-list": lambda: [{"box": np.array([1, 2, 3, 4], np.int16), "score": 0.5}, "x", [],
                             np.zeros((0, 3), np.float32), np.array(7, np.uint64)],
}


def assert_same(got, want):
    """``got`` equals ``want``: bytes equal, arrays bit-exact (dtype, shape, bytes), messages recursively."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, np.ndarray):
        got = np.asarray(got)
        assert (got.dtype, got.shape, got.dtype.names) == (want.dtype, want.shape, want.dtype.names)
        assert got.tobytes() == want.tobytes()
    else:
        assert type(got) is type(want) and got == want


def numbered(i: int) -> np.ndarray:
    """A small frame that carries its own sequence number."""
    return np.full(256, i, dtype=np.int64)


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_frames_round_trip_bit_exact(transport, kind):
    data = PAYLOADS[kind]()
    meta = {"kind": kind, "nested": {"list": [1, 2.5, None, True, "ü"]}}
    timestamp = 1_700_000_000.123456789
    with transport.open(QoS.REALTIME) as (pub, sub):
        fid = pub.publish(data, timestamp=timestamp, meta=meta)
        frame = sub.recv(timeout=RECV_TIMEOUT)
        assert (frame.frame_id, frame.timestamp, frame.meta) == (fid, timestamp, meta)
        assert_same(frame.data, data)


def test_one_meta_limit_on_every_transport(transport):
    from edgeflow.errors import FrameTooLarge
    from edgeflow.transport.codecs import MAX_META_BYTES
    assert MAX_META_BYTES == 8 * 1024
    at_limit = {"k": "x" * (MAX_META_BYTES - len('{"k":""}'))}
    over = {"k": "x" * (MAX_META_BYTES - len('{"k":""}') + 1)}
    with transport.open(QoS.REALTIME) as (pub, sub):
        with pytest.raises(FrameTooLarge, match=str(MAX_META_BYTES)):
            pub.publish(b"x", meta=over)
        fid = pub.publish(b"x", meta=at_limit)
        frame = sub.recv(timeout=RECV_TIMEOUT)
        assert (frame.frame_id, frame.meta) == (fid, at_limit)


def test_realtime_never_repeats_or_goes_back_and_the_newest_arrives(transport):
    count = 300
    with transport.open(QoS.REALTIME) as (pub, sub):
        received: list[int] = []
        failure: list[BaseException] = []

        def consume():
            try:
                while not received or received[-1] != count:
                    frame = sub.recv(timeout=RECV_TIMEOUT)
                    assert int(np.asarray(frame.data)[0]) == frame.frame_id
                    received.append(frame.frame_id)
            except BaseException as exc:              # reported by the main thread
                failure.append(exc)

        consumer = threading.Thread(target=consume)
        consumer.start()
        ids = [pub.publish(numbered(i)) for i in range(1, count + 1)]
        consumer.join(RECV_TIMEOUT * 2)
        assert not consumer.is_alive() and not failure, failure
        assert ids == list(range(1, count + 1))
        assert received == sorted(set(received)), "a frame came twice or an older one came after a newer one"
        assert received[-1] == count, "the newest frame never arrived"
        assert sub.recv_nowait() is None
        with pytest.raises(ReceiveTimeout):
            sub.recv(timeout=0.1)


def test_durable_delivers_every_frame_once_in_order(transport):
    count = 100
    with transport.open(QoS.DURABLE) as (pub, sub):
        ids: list[int] = []
        producer = threading.Thread(target=lambda: ids.extend(pub.publish(numbered(i)) for i in range(count)))
        producer.start()
        got = []
        for _ in range(count):
            frame = sub.recv(timeout=RECV_TIMEOUT)
            got.append((frame.frame_id, int(np.asarray(frame.data)[0])))
            frame.release()
        producer.join(RECV_TIMEOUT)
        assert [fid for fid, _ in got] == ids
        assert [value for _, value in got] == list(range(count))
        with pytest.raises(ReceiveTimeout):
            sub.recv(timeout=0.1)


def test_nothing_published_means_none_and_receive_timeout(transport):
    with transport.open(QoS.REALTIME) as (pub, sub):
        assert sub.recv_nowait() is None
        with pytest.raises(TimeoutError):
            sub.recv(timeout=0.05)


def test_arecv_receives_without_blocking_the_loop(transport):
    async def main(pub, sub):
        ticks = 0

        async def heartbeat():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.ensure_future(heartbeat())
        waiting = asyncio.ensure_future(sub.arecv(timeout=RECV_TIMEOUT))
        # the heartbeat ticks while arecv waits (a loaded machine may take a while to give it 5 ticks); an arecv
        # that blocked the loop would have returned (timed out) before the heartbeat ran at all
        deadline = asyncio.get_running_loop().time() + RECV_TIMEOUT / 2
        while ticks < 5 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.001)
        assert ticks >= 5 and not waiting.done(), "arecv blocked the event loop"
        fid = pub.publish(b"async")
        frame = await waiting
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        return fid, frame, ticks

    with transport.open(QoS.REALTIME) as (pub, sub):
        fid, frame, ticks = asyncio.run(main(pub, sub))
        assert (frame.frame_id, frame.data) == (fid, b"async")
        assert ticks >= 5, "arecv blocked the event loop"


def test_close_is_idempotent_and_use_after_close_raises(transport):
    with transport.open(QoS.REALTIME) as (pub, sub):
        pub.publish(b"x")
        sub.recv(timeout=RECV_TIMEOUT)
        pub.close()
        pub.close()
        sub.close()
        sub.close()
        with pytest.raises(ClosedResourceError):
            pub.publish(b"y")
        with pytest.raises(ClosedResourceError):
            sub.recv_nowait()
        with pytest.raises(ClosedResourceError):
            sub.recv(timeout=0.1)
        with pytest.raises(ClosedResourceError):
            asyncio.run(sub.arecv(timeout=0.1))


def test_statistics_are_frozen_snapshots_of_counters(transport):
    with transport.open(QoS.REALTIME) as (pub, sub):
        assert isinstance(pub, base.Publisher) and isinstance(sub, base.Subscriber)
        before = (pub.statistics(), sub.statistics())
        pub.publish(b"counted")
        sub.recv(timeout=RECV_TIMEOUT)
        after = (pub.statistics(), sub.statistics())
        for old, new in zip(before, after):
            assert dataclasses.is_dataclass(old) and not isinstance(old, type)
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(old, dataclasses.fields(old)[0].name, None)
            counters = [f.name for f in dataclasses.fields(old)
                        if type(getattr(old, f.name)) is int]
            assert counters, f"{type(old).__name__} has no counters"
            assert any(getattr(new, c) > getattr(old, c) for c in counters), \
                f"{type(old).__name__}: no counter moved after a frame went through"


def test_a_qos_that_is_not_offered_is_refused(transport):
    refused = [q for q in (QoS.REALTIME, QoS.DURABLE) if q not in transport.supported]
    assert QoS.REALTIME in transport.supported
    for qos in refused:
        with pytest.raises(ConfigError, match=qos.name):
            with transport.opener("refused", qos):
                pass
