"""A full Redis (issue 12, section 1 and 4): ``maxmemory`` with ``noeviction`` is back-pressure for DURABLE
frames, never a loss; REALTIME frames are dropped and counted; blobs are deleted as soon as every group
acknowledged their frame, not left to their TTL.

Every server is a real redis-server of the test's own (tests/transport/conftest.py), started with a small
``maxmemory``; nothing is flushed. Waiting is on events (``recv``) or, for publisher counters, by polling
``statistics()`` with a deadline.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from edgeflow.comms.brokers import DualRedisBroker, RedisBroker
from edgeflow.errors import BackpressureTimeout
from edgeflow.qos import QoS
from edgeflow.transport.backoff import Backoff
from edgeflow.transport.redis import RedisPublisher, RedisSubscriber

pytestmark = pytest.mark.filterwarnings("error")

FAST = Backoff(initial=0.02, maximum=0.2, factor=2.0)
WAIT = 10.0
TOPIC = "camera"
FULL = ("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
FRAME = 64 * 1024                         # bytes per frame: a 2 MB Redis holds a dozen or two


def wait_until(predicate, timeout: float = WAIT, what: str = "condition") -> None:
    """Poll a condition (publisher counters have no event to await) until a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def payload(i: int) -> np.ndarray:
    """Frame i's payload: distinct bytes everywhere, so a mixed-up or damaged frame cannot pass."""
    return np.random.default_rng(i).integers(0, 256, FRAME, dtype=np.uint8)


def blobs(url: str, app: str) -> list[bytes]:
    with redis.Redis.from_url(url, socket_timeout=5.0) as r:
        return sorted(r.scan_iter(match=f"edgeflow:{app}:blob:*", count=1000))


def fill(url: str, app: str) -> int:
    """Fill a Redis with keys of the app's namespace until it refuses writes; how many went in."""
    with redis.Redis.from_url(url, socket_timeout=5.0) as r:
        for n in range(10_000):
            try:
                r.set(f"edgeflow:{app}:filler:{n}", b"x" * 16384)
            except redis.exceptions.OutOfMemoryError:
                return n
    raise AssertionError("redis never became full")


def pub_(broker, app, **kw) -> RedisPublisher:
    kw.setdefault("backoff", FAST)
    kw.setdefault("poll_interval", 0.05)
    return RedisPublisher(TOPIC, app=app, broker=broker, **kw)


def sub_(broker, app, **kw) -> RedisSubscriber:
    kw.setdefault("backoff", FAST)
    return RedisSubscriber(TOPIC, app=app, broker=broker, **kw)


@pytest.fixture(params=["single", "dual"])
def full_broker(request, redis_server_factory):
    """A broker whose blob instance is a 2 MB noeviction Redis (dual: the control instance is ordinary)."""
    if request.param == "single":
        return RedisBroker(redis_server_factory(*FULL).url)
    control = redis_server_factory()
    return DualRedisBroker(control.url, redis_server_factory(*FULL).url)


def data_url(broker) -> str:
    return broker.data_url if isinstance(broker, DualRedisBroker) else broker.url


def test_a_full_redis_back_pressures_durable_frames_and_loses_none(full_broker, app):
    with sub_(full_broker, app, qos=QoS.DURABLE, group="g") as sub, \
            pub_(full_broker, app, spool_frames=64, backpressure_timeout=0.3) as pub:
        published = 0
        with pytest.raises(BackpressureTimeout, match=r"camera: redis .* is full .*maxmemory.*held here"):
            while published < 200:            # the subscriber is not reading: Redis fills, then the bound
                pub.publish(payload(published))
                published += 1
        stats = pub.statistics()
        assert stats.state == "full" and stats.full_events == 1 and stats.full_seconds > 0
        assert stats.dropped == 0 and stats.dropped_full == 0 and stats.spooled > 0
        assert stats.published == published == stats.spooled + stats.retained
        assert 0 < len(blobs(data_url(full_broker), app)) < published, "some frames wait here, not in Redis"

        for i in range(published):            # every frame, in order, bit-exact, as space frees
            frame = sub.recv(timeout=WAIT)
            assert frame.frame_id == i + 1
            assert np.array_equal(frame.data, payload(i))
        assert sub.recv_nowait() is None      # acknowledges the last frame
        assert blobs(data_url(full_broker), app) == [], "acknowledged blobs are deleted at once"
        assert sub.statistics().lost == 0
        wait_until(lambda: pub.statistics().state == "up", what="the publisher to leave the full state")
        stats = pub.statistics()
        assert stats.sent == published and stats.spooled == 0 and stats.dropped == 0

        assert pub.publish(payload(published)) == published + 1   # and the link goes on
        assert np.array_equal(sub.recv(timeout=WAIT).data, payload(published))


def test_a_full_redis_drops_and_counts_realtime_frames(redis_server_factory, app):
    server = redis_server_factory(*FULL)
    broker = RedisBroker(server.url)
    with pub_(broker, app) as pub, sub_(broker, app, qos=QoS.REALTIME) as sub:
        assert fill(server.url, app) > 0
        for i in range(5):
            pub.publish(payload(i))           # never raises
        stats = pub.statistics()
        assert (stats.state, stats.dropped, stats.dropped_full, stats.sent) == ("full", 5, 5, 0)
        with server.client() as r:
            for key in r.scan_iter(match=f"edgeflow:{app}:filler:*"):
                r.unlink(key)
        pub.publish(payload(5))
        assert pub.statistics().state == "up" and pub.statistics().full_events == 1
        frame = sub.recv(timeout=WAIT)
        assert frame.frame_id == 6 and np.array_equal(frame.data, payload(5))


@pytest.fixture(params=["single", "dual"])
def broker(request, redis_url, redis_data_url):
    if request.param == "single":
        return RedisBroker(redis_url)
    return DualRedisBroker(redis_url, redis_data_url)


def test_a_blob_is_deleted_when_the_last_group_acknowledges_it(broker, app):
    url = data_url(broker)
    with pub_(broker, app, durable_groups=("a", "b")) as pub, \
            sub_(broker, app, qos=QoS.DURABLE, group="a") as a, sub_(broker, app, qos=QoS.DURABLE, group="b") as b:
        for i in range(3):
            pub.publish(payload(i))
        assert [a.recv(timeout=WAIT).frame_id for _ in range(3)] == [1, 2, 3]
        assert a.recv_nowait() is None        # group a acknowledged all three
        assert [k.rsplit(b":", 1)[1] for k in blobs(url, app)] == [b"1", b"2", b"3"], "b still needs them"
        assert [b.recv(timeout=WAIT).frame_id for _ in range(2)] == [1, 2]      # acknowledges frame 1
        assert b.recv_nowait().frame_id == 3  # acknowledges frame 2
        assert [k.rsplit(b":", 1)[1] for k in blobs(url, app)] == [b"3"]
    assert blobs(url, app) == [], "b's close() acknowledged frame 3: its blob is gone long before its TTL"


def test_live_readers_keep_the_newest_blobs_while_a_durable_group_acknowledges(broker, app):
    url = data_url(broker)
    with pub_(broker, app, durable_groups=("rec",)) as pub, sub_(broker, app, qos=QoS.DURABLE, group="rec") as rec, \
            sub_(broker, app, qos=QoS.REALTIME) as live:
        assert live.recv_nowait() is None     # marks the topic as read live
        pub.publish(payload(0))
        assert rec.recv(timeout=WAIT).frame_id == 1
        assert rec.recv_nowait() is None      # acknowledged by the only group; it is the newest frame, though
        frame = live.recv(timeout=WAIT)
        assert frame.frame_id == 1 and np.array_equal(frame.data, payload(0))
        for i in range(1, 6):
            pub.publish(payload(i))
            assert rec.recv(timeout=WAIT).frame_id == i + 1
        assert rec.recv_nowait() is None
        # the newest two stay for live readers; older acknowledged ones are gone
        assert [k.rsplit(b":", 1)[1] for k in blobs(url, app)] == [b"5", b"6"]
        frame = live.recv(timeout=WAIT)       # the newest, with its blob; frames 2-5 were skipped
        assert frame.frame_id == 6 and np.array_equal(frame.data, payload(5)) and live.statistics().drops == 4
