"""The Redis transport (issue 6, section 1): RedisPublisher / RedisSubscriber over one Redis or a dual pair.

Every server here is a real redis-server the fixtures started (tests/transport/conftest.py); the machine's own
Redis on 6379 is never touched, and nothing is ever flushed. Faults are real: servers are SIGKILLed and
restarted empty on the same port, a consumer dies by SIGKILL in a child process.

Waiting: a subscriber's ``recv(timeout=...)`` is the event a test waits on. Where only a counter can say that
the publisher noticed something (reconnected, released frames), ``wait_until`` polls ``statistics()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from edgeflow.comms.brokers import DualRedisBroker, RedisBroker
from edgeflow.errors import (BackpressureTimeout, BrokenResourceError, ClosedResourceError, ConfigError,
                             ProtocolError, ReceiveTimeout)
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import codecs
from edgeflow.transport.backoff import Backoff
from edgeflow.transport.redis import (RedisPublisher, RedisSubscriber, declare_group, reset_app, stream_key)

pytestmark = pytest.mark.filterwarnings("error")

ROOT = Path(__file__).resolve().parents[2]
FAST = Backoff(initial=0.02, maximum=0.2, factor=2.0)      # reconnect quickly in tests
WAIT = 10.0                                                 # generous upper bound for anything to happen
TOPIC = "camera"


def wait_until(predicate, timeout: float = WAIT, what: str = "condition") -> None:
    """Poll a statistics counter (counters have no event to await)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def numbered(i: int) -> np.ndarray:
    return np.full(64, i, dtype=np.int64)


def value(frame: Frame) -> int:
    return int(np.asarray(frame.data)[0])


def raw(url: str) -> redis.Redis:
    """A plain redis-py client of one of our test servers."""
    return redis.Redis.from_url(url, socket_timeout=5.0)


@pytest.fixture(params=["single", "dual"])
def broker(request, redis_url, redis_data_url):
    """A RedisBroker, and (second run) a DualRedisBroker, on the session's test servers."""
    if request.param == "single":
        return RedisBroker(redis_url)
    return DualRedisBroker(redis_url, redis_data_url)


@pytest.fixture
def single(redis_url) -> RedisBroker:
    return RedisBroker(redis_url)


def pub_(broker, app, topic=TOPIC, **kw) -> RedisPublisher:
    kw.setdefault("backoff", FAST)
    kw.setdefault("poll_interval", 0.05)
    return RedisPublisher(topic, app=app, broker=broker, **kw)


def sub_(broker, app, topic=TOPIC, **kw) -> RedisSubscriber:
    kw.setdefault("backoff", FAST)
    return RedisSubscriber(topic, app=app, broker=broker, **kw)


# ------------------------------------------------------------------------------------------------------------
# round trips, codecs, frame ids

PAYLOADS = {
    "image": lambda: np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    "float64-fortran": lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "structured": lambda: np.array([(1.5, 2)], dtype=[("x", "<f4"), ("y", "<i2")]),
    "bytes": lambda: b"\x00\xffhello" * 100,
    "dict": lambda: {"boxes": [[1, 2, 3, 4]], "label": "person", "score": 0.5},
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_payloads_round_trip_with_frame_fields(broker, app, kind):
    data = PAYLOADS[kind]()
    with sub_(broker, app, qos=QoS.DURABLE, group="g") as sub, pub_(broker, app) as pub:
        fid = pub.publish(data, timestamp=1234.5, meta={"cam": "left", "n": [1, None]})
        frame = sub.recv(timeout=WAIT)
        assert (frame.frame_id, frame.timestamp, frame.topic) == (fid, 1234.5, TOPIC)
        assert frame.meta == {"cam": "left", "n": [1, None]}
        if isinstance(data, np.ndarray):
            assert (frame.data.dtype, frame.data.shape) == (data.dtype, data.shape)
            np.testing.assert_array_equal(frame.data, data)
        else:
            assert frame.data == data and type(frame.data) is type(data)


def test_frame_ids_start_at_one_increase_and_continue_with_a_new_publisher(single, app):
    with pub_(single, app) as pub:
        assert [pub.publish(b"x") for _ in range(3)] == [1, 2, 3]
    with pub_(single, app) as pub, sub_(single, app) as sub:
        assert pub.publish(b"y") == 4
        assert sub.recv(timeout=WAIT).frame_id == 4


def test_a_frame_passed_as_frame_keeps_timestamp_and_meta(single, app):
    with sub_(single, app) as sub, pub_(single, app) as pub:
        pub.publish(Frame(b"abc", timestamp=99.0, meta={"a": 1}))
        frame = sub.recv(timeout=WAIT)
        assert (frame.data, frame.timestamp, frame.meta) == (b"abc", 99.0, {"a": 1})


@pytest.mark.parametrize("codec", ["jpeg", "png", "lz4"])
def test_codecs_over_redis_and_the_blob_is_the_encoded_payload(broker, app, codec):
    image = np.zeros((120, 160, 3), np.uint8)
    image[20:60, 30:90] = (10, 200, 250)
    with sub_(broker, app) as sub, pub_(broker, app, codec=codec) as pub:
        fid = pub.publish(image)
        frame = sub.recv(timeout=WAIT)
        assert frame.frame_id == fid and frame.data.shape == image.shape and frame.data.dtype == np.uint8
        if codec == "jpeg":
            assert np.abs(frame.data.astype(int) - image).mean() < 3
        else:
            np.testing.assert_array_equal(frame.data, image)
        data_url = broker.data_url if isinstance(broker, DualRedisBroker) else broker.url
        with raw(data_url) as r:
            (key,) = r.keys(f"edgeflow:{app}:blob:{TOPIC}:*")
            assert len(r.get(key)) < image.nbytes / 4, "the blob is not the encoded image"


def test_a_frame_is_encoded_once_whatever_the_number_of_consumers(single, app, monkeypatch):
    calls = []
    real = codecs.encode
    monkeypatch.setattr(codecs, "encode", lambda *a, **k: calls.append(a) or real(*a, **k))
    image = np.ones((64, 64, 3), np.uint8)
    with sub_(single, app) as rt, sub_(single, app, qos=QoS.DURABLE, group="a") as d1, \
            sub_(single, app, qos=QoS.DURABLE, group="b") as d2, pub_(single, app, codec="png") as pub:
        fid = pub.publish(image)
        assert [s.recv(timeout=WAIT).frame_id for s in (rt, d1, d2)] == [fid] * 3
    assert len(calls) == 1


def test_bad_configuration_fails_before_anything_starts(single, app, monkeypatch):
    with pytest.raises(ConfigError, match="codec 'gif'"):
        RedisPublisher(TOPIC, app=app, broker=single, codec="gif")
    with pytest.raises(ConfigError, match="topic"):
        RedisPublisher("bad topic", app=app, broker=single)
    with pytest.raises(ConfigError, match="app name"):
        RedisSubscriber(TOPIC, app="a:b", broker=single)
    with pytest.raises(ConfigError, match="max_lag"):
        RedisSubscriber(TOPIC, app=app, broker=single, qos=QoS.REALTIME, max_lag=3)
    with pytest.raises(ConfigError, match="broker"):
        RedisPublisher(TOPIC, app=app, broker=6379)
    monkeypatch.setitem(sys.modules, "lz4.frame", None)          # as if lz4 were not installed
    monkeypatch.setitem(sys.modules, "lz4", None)
    with pytest.raises(ConfigError, match="pip install lz4"):
        RedisPublisher(TOPIC, app=app, broker=single, codec="lz4")


def test_jpeg_refuses_what_is_not_an_image_and_the_link_keeps_working(single, app):
    with sub_(single, app) as sub, pub_(single, app, codec="jpeg") as pub:
        with pytest.raises(ValueError, match="uint8 images"):
            pub.publish(np.zeros((4, 4), np.float32))
        pub.publish(b"bytes travel raw")
        assert sub.recv(timeout=WAIT).data == b"bytes travel raw"


# ------------------------------------------------------------------------------------------------------------
# keys, no flushing, dual placement, round trips per publish

def test_keys_are_namespaced_and_nothing_flushes(redis_server, app):
    other = app + "x"
    broker = RedisBroker(redis_server.url)
    with redis_server.client() as r:
        r.set("not-ours", "1")
    declare_group(TOPIC, "logger", app=app, broker=broker)
    with pub_(broker, app) as pub, sub_(broker, app, qos=QoS.DURABLE, group="logger") as d, \
            sub_(broker, app, qos=QoS.BALANCED, group="viewers") as b, pub_(broker, other) as pub2:
        pub.publish(np.zeros(4))
        pub2.publish(b"other app")
        d.recv(timeout=WAIT)
        b.recv(timeout=WAIT)
        with redis_server.client() as r:
            keys = sorted(k.decode() for k in r.keys("*"))
    ours = [k for k in keys if k.startswith(f"edgeflow:{app}:")]
    assert set(keys) - set(ours) == {"not-ours", f"edgeflow:{other}:stream:{TOPIC}"} | {
        k for k in keys if k.startswith(f"edgeflow:{other}:blob:{TOPIC}:")}
    assert stream_key(app, TOPIC) == f"edgeflow:{app}:stream:{TOPIC}" and stream_key(app, TOPIC) in ours
    assert any(k.startswith(f"edgeflow:{app}:blob:{TOPIC}:") and k.endswith(":1") for k in ours)
    assert f"edgeflow:{app}:cursor:{TOPIC}:viewers" in ours
    assert reset_app(app, broker=broker) == len(ours)
    with redis_server.client() as r:
        left = sorted(k.decode() for k in r.keys("*"))
    assert "not-ours" in left and not any(k.startswith(f"edgeflow:{app}:") for k in left)
    assert any(k.startswith(f"edgeflow:{other}:") for k in left)
    stats = redis_server.info("commandstats")
    assert "cmdstat_flushall" not in stats and "cmdstat_flushdb" not in stats
    assert "cmdstat_unlink" in stats


def test_dual_puts_blobs_on_the_data_instance_and_entries_on_the_control_one(redis_server_factory, app):
    control, data = redis_server_factory(), redis_server_factory()
    broker = DualRedisBroker(control.url, data.url)
    with sub_(broker, app, qos=QoS.DURABLE, group="g") as sub, pub_(broker, app) as pub:
        for i in range(3):
            pub.publish(numbered(i))
        assert [value(sub.recv(timeout=WAIT)) for _ in range(3)] == [0, 1, 2]
        with control.client() as c, data.client() as d:
            assert [k.decode() for k in c.keys("*")] == [f"edgeflow:{app}:stream:{TOPIC}"]
            # frames 1 and 2 are acknowledged (their blobs deleted); frame 3 is held until the next recv
            blobs = d.keys("*")
            assert [k.decode().rsplit(":", 1)[1] for k in blobs] == ["3"]
            assert blobs[0].startswith(f"edgeflow:{app}:blob:{TOPIC}:".encode())
            assert 0 < d.pttl(blobs[0]) <= 60_000, "blobs must expire"
    with data.client() as d:
        assert d.dbsize() == 0, "close() acknowledged frame 3 and deleted its blob"
    assert "cmdstat_set" not in control.info("commandstats")
    assert "cmdstat_xadd" not in data.info("commandstats")


def test_a_publish_is_one_pipelined_round_trip_per_instance(broker, app, monkeypatch):
    executes, sends = [], []
    real_execute = redis.client.Pipeline.execute
    real_send = redis.client.Redis.execute_command

    def execute(self, *a, **k):
        executes.append([c[0][0] for c in self.command_stack])
        return real_execute(self, *a, **k)

    with sub_(broker, app) as sub, pub_(broker, app, poll_interval=60.0) as pub:
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
        monkeypatch.setattr(redis.client.Redis, "execute_command",
                            lambda self, *a, **k: sends.append(a[0]) or real_send(self, *a, **k))
        pub.publish(np.zeros((480, 640, 3), np.uint8))
        monkeypatch.undo()
        assert sub.recv(timeout=WAIT).data.shape == (480, 640, 3)
    if isinstance(broker, DualRedisBroker):
        assert executes == [["SET"], ["XADD"]]
    else:
        assert executes == [["SET", "XADD"]]          # as MULTI/EXEC: a full Redis takes both or neither
    assert sends == []


# ------------------------------------------------------------------------------------------------------------
# QoS

def test_realtime_gets_the_newest_never_twice_never_older(broker, app):
    with sub_(broker, app) as sub, pub_(broker, app) as pub:
        for i in range(1, 11):
            pub.publish(numbered(i))
        frame = sub.recv(timeout=WAIT)
        assert (frame.frame_id, value(frame)) == (10, 10)
        assert sub.recv_nowait() is None
        assert sub.statistics().drops == 9
        pub.publish(numbered(11))
        pub.publish(numbered(12))
        assert sub.recv(timeout=WAIT).frame_id == 12
        with pytest.raises(ReceiveTimeout):
            sub.recv(timeout=0.05)


def test_realtime_group_members_share_frames(single, app):
    with sub_(single, app, group="viewers") as a, sub_(single, app, group="viewers") as b, \
            pub_(single, app) as pub:
        pub.publish(numbered(1))
        assert a.recv(timeout=WAIT).frame_id == 1
        assert b.recv_nowait() is None
        pub.publish(numbered(2))
        assert b.recv(timeout=WAIT).frame_id == 2
        assert a.recv_nowait() is None


def test_balanced_delivers_in_order_then_skips_to_the_newest(single, app):
    with sub_(single, app, qos=QoS.BALANCED, max_lag=2) as sub, pub_(single, app) as pub:
        pub.publish(numbered(1))
        pub.publish(numbered(2))
        assert [sub.recv(timeout=WAIT).frame_id for _ in range(2)] == [1, 2]
        for i in range(3, 11):
            pub.publish(numbered(i))
        assert sub.recv(timeout=WAIT).frame_id == 10
        assert sub.statistics().drops == 7
        assert sub.recv_nowait() is None


def test_durable_group_shared_by_two_consumers_gives_each_frame_to_one(broker, app):
    declare_group(TOPIC, "workers", app=app, broker=broker)
    with pub_(broker, app) as pub, sub_(broker, app, qos=QoS.DURABLE, group="workers", consumer="w0") as a, \
            sub_(broker, app, qos=QoS.DURABLE, group="workers", consumer="w1") as b:
        ids = [pub.publish(numbered(i)) for i in range(20)]
        got = {"w0": [], "w1": []}
        while len(got["w0"]) + len(got["w1"]) < 20:
            for name, sub in (("w0", a), ("w1", b)):
                frame = sub.recv(timeout=WAIT)
                got[name].append(frame.frame_id)
        assert got["w0"] and got["w1"]
        assert sorted(got["w0"] + got["w1"]) == ids
        assert not set(got["w0"]) & set(got["w1"])
        assert a.recv_nowait() is None and b.recv_nowait() is None


def test_a_declared_group_gets_every_frame_from_the_first(single, app):
    declare_group(TOPIC, "late", app=app, broker=single)
    with pub_(single, app, durable_groups=("also-late",)) as pub:
        ids = [pub.publish(numbered(i)) for i in range(5)]
        for group in ("late", "also-late"):
            with sub_(single, app, qos=QoS.DURABLE, group=group) as sub:
                assert [sub.recv(timeout=WAIT).frame_id for _ in range(5)] == ids == [1, 2, 3, 4, 5]


def test_durable_acknowledges_at_the_next_recv_or_at_close(single, app):
    with pub_(single, app, durable_groups=("g",)) as pub, raw(single.url) as r:
        for i in range(3):
            pub.publish(numbered(i))
        key = stream_key(app, TOPIC)
        entries = [e[0] for e in r.xrange(key)]
        with sub_(single, app, qos=QoS.DURABLE, group="g") as sub:
            first = sub.recv(timeout=WAIT)
            first.release()                      # releasing alone acknowledges nothing
            assert r.xpending(key, "g")["pending"] == 1
            sub.recv(timeout=WAIT)               # the node is done with the first one: acknowledged now
            pending = r.xpending(key, "g")
            assert (pending["pending"], pending["min"]) == (1, entries[1])
        assert r.xpending(key, "g")["pending"] == 0          # close acknowledged the last one
        with sub_(single, app, qos=QoS.DURABLE, group="g") as sub:
            assert sub.recv(timeout=WAIT).frame_id == 3      # the third, not the first two again


# ------------------------------------------------------------------------------------------------------------
# dead consumers, trimming, malformed entries

def test_pending_entries_of_a_consumer_that_died_are_reclaimed(single, app):
    declare_group(TOPIC, "g", app=app, broker=single)
    with pub_(single, app) as pub, raw(single.url) as r:
        ids = [pub.publish(numbered(i)) for i in range(4)]
        key = stream_key(app, TOPIC)
        r.xreadgroup("g", "ghost", {key: ">"}, count=2)      # read, never acknowledged: the ghost "died"
        with sub_(single, app, qos=QoS.DURABLE, group="g", consumer="alive", claim_idle=0.2) as sub:
            got = [sub.recv(timeout=WAIT).frame_id for _ in range(4)]
            assert sorted(got) == ids
            assert sub.statistics().reclaimed == 2
            assert sub.recv_nowait() is None
        assert r.xpending(key, "g")["pending"] == 0


def test_a_restarted_consumer_gets_its_own_pending_frames_first(single, app):
    declare_group(TOPIC, "g", app=app, broker=single)
    with pub_(single, app) as pub, raw(single.url) as r:
        for i in range(3):
            pub.publish(numbered(i))
        r.xreadgroup("g", "node-0", {stream_key(app, TOPIC): ">"}, count=1)   # frame 1, then a crash
        with sub_(single, app, qos=QoS.DURABLE, group="g", consumer="node-0") as sub:
            assert [sub.recv(timeout=WAIT).frame_id for _ in range(3)] == [1, 2, 3]
            assert sub.statistics().reclaimed == 0


CHILD = """
import sys, time
from edgeflow.comms.brokers import RedisBroker
from edgeflow.transport.redis import RedisSubscriber
sub = RedisSubscriber("camera", app=sys.argv[2], broker=RedisBroker(sys.argv[1]), qos="durable", group="g",
                      consumer="victim")
frame = sub.recv(timeout=10)
print(frame.frame_id, flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_a_consumer_killed_by_sigkill_loses_nothing(single, app):
    declare_group(TOPIC, "g", app=app, broker=single)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, single.url, app], stdout=subprocess.PIPE, env=env,
                             text=True)
    try:
        with pub_(single, app) as pub:
            ids = [pub.publish(numbered(i)) for i in range(5)]
            taken = int(child.stdout.readline())          # the child holds this frame, unacknowledged
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            with sub_(single, app, qos=QoS.DURABLE, group="g", consumer="survivor", claim_idle=0.2) as sub:
                got = [sub.recv(timeout=WAIT).frame_id for _ in range(4)]
                assert sorted(got + [taken]) == ids and taken == 1
                assert sub.recv(timeout=WAIT).frame_id == taken     # reclaimed once idle
                assert sub.statistics().reclaimed == 1
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_frames_trimmed_before_the_group_read_them_are_counted(single, app, caplog):
    caplog.set_level(logging.WARNING, logger="edgeflow.transport.redis")
    with pub_(single, app, durable_groups=("slow",), maxlen=10) as pub:
        for i in range(50):
            pub.publish(numbered(i))
        # both ends count: the publisher the frames it held that were trimmed unread (it reports them on its
        # next poll), the group's reader what the group lost (counted atomically, once)
        wait_until(lambda: pub.statistics().trimmed == 40, what="the publisher counting trimmed frames")
        assert pub.statistics().retained == 10
        with sub_(single, app, qos=QoS.DURABLE, group="slow") as sub:
            assert [sub.recv(timeout=WAIT).frame_id for _ in range(10)] == list(range(41, 51))
            assert sub.statistics().lost == 40
            assert sub.recv_nowait() is None
            assert sub.statistics().lost == 40, "a loss must be counted once"
    messages = [r.getMessage() for r in caplog.records]
    assert any("40 frames were trimmed" in m and "'slow'" in m for m in messages)         # the subscriber
    assert any(re.search(r"frames \(\d+-40\) were trimmed .*maxlen 10", m) for m in messages)  # the publisher


def test_a_malformed_entry_raises_protocol_error_once(single, app):
    declare_group(TOPIC, "g", app=app, broker=single)
    with raw(single.url) as r, pub_(single, app) as pub, \
            sub_(single, app, qos=QoS.DURABLE, group="g") as sub:
        r.xadd(stream_key(app, TOPIC), {"f": "1", "junk": "x"})
        pub.publish(b"good")
        with pytest.raises(ProtocolError, match="malformed"):
            sub.recv(timeout=WAIT)
        assert sub.recv(timeout=WAIT).data == b"good"


# ------------------------------------------------------------------------------------------------------------
# Redis down, restarted empty, back-pressure

def test_redis_down_realtime_frames_are_dropped_and_counted(redis_server, app, caplog):
    broker = RedisBroker(redis_server.url)
    with pub_(broker, app) as pub:
        pub.publish(b"before")
        redis_server.kill()
        for _ in range(5):
            pub.publish(b"lost")                          # no exception: REALTIME frames are dropped
        stats = pub.statistics()
        assert (stats.dropped, stats.connected, stats.published) == (5, False, 6)
        redis_server.restart()
        wait_until(pub.is_connected, what="the publisher reconnecting")
        with sub_(broker, app) as sub:
            fid = pub.publish(b"after")
            frame = sub.recv(timeout=WAIT)
            assert (frame.frame_id, frame.data) == (fid, b"after") and fid == 7
    assert any("unreachable" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_durable_frames_are_spooled_while_redis_is_down_and_delivered_in_order(redis_server, app, caplog):
    caplog.set_level(logging.WARNING, logger="edgeflow.transport.redis")
    broker = RedisBroker(redis_server.url)
    with pub_(broker, app, durable_groups=("logger",), spool_frames=100) as pub:
        ids = [pub.publish(numbered(i)) for i in range(5)]            # in Redis, not yet read
        redis_server.kill()
        ids += [pub.publish(numbered(i)) for i in range(5, 15)]       # spooled here
        stats = pub.statistics()
        assert not stats.connected and stats.spooled == 10 and stats.spool_frames == 100
        messages = [r.getMessage() for r in caplog.records]
        assert any("spooled" in m and "bound 100 frames" in m for m in messages)
        redis_server.restart()                                        # empty: the first 5 were lost with it
        with sub_(broker, app, qos=QoS.DURABLE, group="logger") as sub:
            got = [sub.recv(timeout=WAIT) for _ in range(15)]
            assert [f.frame_id for f in got] == ids
            assert [value(f) for f in got] == list(range(15))
            assert sub.recv_nowait() is None
        stats = pub.statistics()
        assert stats.spooled == 0 and stats.republished == 5 and stats.connected


def test_a_full_spool_fails_the_publish_loudly(redis_server, app):
    broker = RedisBroker(redis_server.url)
    with pub_(broker, app, durable_groups=("logger",), spool_frames=4) as pub:
        redis_server.kill()
        for i in range(4):
            pub.publish(numbered(i))
        with pytest.raises(BrokenResourceError, match=r"camera: .*unreachable.*spool is full.*4 frames"):
            pub.publish(numbered(4))
        assert pub.statistics().published == 4


@pytest.mark.slow
def test_redis_restarted_empty_under_a_slow_consumer_loses_nothing(redis_server, app):
    broker = RedisBroker(redis_server.url)
    # a long poll interval: the publisher does not learn of the acknowledgements before the crash, so it
    # publishes every frame again and the consumer must drop the ones it already processed
    with pub_(broker, app, durable_groups=("slow",), poll_interval=30.0) as pub, \
            sub_(broker, app, qos=QoS.DURABLE, group="slow") as sub:
        ids = [pub.publish(numbered(i)) for i in range(30)]
        done = [sub.recv(timeout=WAIT).frame_id for _ in range(10)]
        redis_server.kill()
        redis_server.restart()
        ids.append(pub.publish(numbered(30)))         # notices the restart: stream rebuilt, frames sent again
        done += [sub.recv(timeout=WAIT).frame_id for _ in range(21)]
        assert done == ids
        assert sub.recv_nowait() is None
        assert sub.statistics().duplicates == 10
        assert pub.statistics().republished == 30


@pytest.mark.slow
def test_the_poller_notices_a_restart_while_the_publisher_is_idle(redis_server, app):
    broker = RedisBroker(redis_server.url)
    with pub_(broker, app, durable_groups=("g",)) as pub:
        with sub_(broker, app, qos=QoS.DURABLE, group="g") as sub:
            ids = [pub.publish(numbered(i)) for i in range(5)]
            assert [sub.recv(timeout=WAIT).frame_id for _ in range(2)] == [1, 2]     # 1 acknowledged
            wait_until(lambda: pub.statistics().retained == 4, what="the poller reading acknowledgements")
            redis_server.restart()                     # empty; nobody publishes: only the poller can notice
            assert [sub.recv(timeout=WAIT).frame_id for _ in range(3)] == ids[2:]
            assert sub.recv_nowait() is None
            assert sub.statistics().duplicates == 1    # frame 2: processed, but not known as acknowledged
        wait_until(lambda: pub.statistics().retained == 0, what="the group acknowledging everything")
        assert pub.statistics().republished == 4


@pytest.mark.slow
def test_a_restarted_data_instance_gets_its_blobs_back(redis_server_factory, app):
    control, data = redis_server_factory(), redis_server_factory()
    broker = DualRedisBroker(control.url, data.url)
    with pub_(broker, app, durable_groups=("g",)) as pub:
        ids = [pub.publish(numbered(i)) for i in range(5)]
        data.restart()                                 # blobs gone, entries still on the control instance
        with sub_(broker, app, qos=QoS.DURABLE, group="g") as sub:
            got = [sub.recv(timeout=WAIT) for _ in range(5)]
            assert [f.frame_id for f in got] == ids and [value(f) for f in got] == list(range(5))
            assert sub.statistics().lost == 0


def test_an_expired_blob_is_counted_as_lost(single, app, caplog):
    declare_group(TOPIC, "g", app=app, broker=single)
    with pub_(single, app, spool_frames=1, backpressure_timeout=0.1) as pub, raw(single.url) as r:
        pub.publish(numbered(0))
        (key,) = r.keys(f"edgeflow:{app}:blob:{TOPIC}:*")
        r.delete(key)                                    # as if blob_ttl had passed
        with sub_(single, app, qos=QoS.DURABLE, group="g") as sub:
            with pytest.raises(ReceiveTimeout):
                sub.recv(timeout=0.2)
            assert sub.statistics().lost == 1
    assert any("expired" in r.getMessage() for r in caplog.records)


def test_a_slow_durable_group_applies_back_pressure(single, app):
    with pub_(single, app, durable_groups=("g",), spool_frames=3, backpressure_timeout=0.3) as pub:
        for i in range(3):
            pub.publish(numbered(i))
        with pytest.raises(BackpressureTimeout, match=r"camera: durable group\(s\) g .*3 frames"):
            pub.publish(numbered(3))
        assert pub.statistics().backpressure_waits == 1
        with sub_(single, app, qos=QoS.DURABLE, group="g") as sub:
            sub.recv(timeout=WAIT)
            sub.recv(timeout=WAIT)                     # acknowledges the first: room for one more
            assert pub.publish(numbered(3)) == 4
            assert [sub.recv(timeout=WAIT).frame_id for _ in range(2)] == [3, 4]


def test_an_orphaned_private_group_is_removed(single, app):
    key = stream_key(app, TOPIC)
    with raw(single.url) as r:
        r.xgroup_create(key, "private.ghost", id="$", mkstream=True)
        r.xreadgroup("private.ghost", "ghost", {key: ">"})          # a private subscriber that then died
        with pub_(single, app, orphan_after=0.2) as pub:
            assert pub.statistics().groups == ("private.ghost",)
            wait_until(lambda: pub.statistics().groups == (), what="the orphan's removal")
            assert r.xinfo_groups(key) == []


def test_a_private_durable_subscriber_removes_its_group_at_close(single, app):
    with pub_(single, app) as pub, raw(single.url) as r:
        with sub_(single, app, qos=QoS.DURABLE) as sub:
            groups = [g["name"] for g in r.xinfo_groups(stream_key(app, TOPIC))]
            assert groups == [b"private." + sub.consumer.encode()]
            pub.publish(b"x")
            assert sub.recv(timeout=WAIT).data == b"x"
        assert r.xinfo_groups(stream_key(app, TOPIC)) == []


# ------------------------------------------------------------------------------------------------------------
# asyncio, closing

def test_arecv_durable_and_a_cancelled_arecv_loses_nothing(broker, app):
    async def main():
        async with sub_(broker, app, qos=QoS.DURABLE, group="g", claim_idle=0.2) as sub:
            waiting = asyncio.ensure_future(sub.arecv(timeout=WAIT))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            fids = [pub.publish(numbered(i)) for i in range(3)]
            got = [(await sub.arecv(timeout=WAIT)).frame_id for _ in range(3)]
            return fids, got

    with pub_(broker, app) as pub:
        fids, got = asyncio.run(main())
    assert got == fids


def test_arecv_clients_are_closed_with_the_loop(single, app):
    with pub_(single, app) as pub, sub_(single, app) as sub:
        for n in range(2):                              # two loops one after the other
            pub.publish(b"x")
            assert asyncio.run(sub.arecv(timeout=WAIT)).data == b"x"


def test_use_after_close_raises_and_close_is_idempotent(single, app):
    pub, sub = pub_(single, app), sub_(single, app, qos=QoS.DURABLE, group="g")
    pub.close()
    pub.close()
    sub.close()
    sub.close()
    with pytest.raises(ClosedResourceError):
        pub.publish(b"x")
    with pytest.raises(ClosedResourceError):
        sub.recv(timeout=0.1)
    assert pub.is_closed() and sub.is_closed()


def test_a_subscriber_waiting_for_a_dead_redis_says_so(redis_server, app):
    broker = RedisBroker(redis_server.url)
    with sub_(broker, app) as sub:
        redis_server.kill()
        with pytest.raises(BrokenResourceError, match="unreachable") as err:
            sub.recv(timeout=0.3)
        assert isinstance(err.value.__cause__, redis.ConnectionError)
        assert sub.recv_nowait() is None and not sub.is_connected()
        redis_server.restart()
        with pub_(broker, app) as pub:
            pub.publish(b"back")
            assert sub.recv(timeout=WAIT).data == b"back"
        assert sub.is_connected() and sub.statistics().disconnects == 1


def test_a_publisher_started_while_redis_is_down_spools_and_delivers(redis_server, app):
    broker = RedisBroker(redis_server.url)
    redis_server.kill()
    with pub_(broker, app, durable_groups=("g",)) as pub:
        ids = [pub.publish(numbered(i)) for i in range(3)]
        assert pub.statistics().spooled == 3 and not pub.is_connected()
        redis_server.restart()
        with sub_(broker, app, qos=QoS.DURABLE, group="g") as sub:
            assert [sub.recv(timeout=WAIT).frame_id for _ in range(3)] == ids == [1, 2, 3]
        assert pub.drain(WAIT) and pub.statistics().sent == 3


def test_realtime_cursor_survives_a_stream_rebuilt_with_older_ids(redis_server, app):
    """A restarted server whose clock is behind gives entry ids older than the subscriber's cursor."""
    broker = RedisBroker(redis_server.url)
    with sub_(broker, app) as sub:
        with pub_(broker, app) as pub:
            pub.publish(b"a")
            assert sub.recv(timeout=WAIT).frame_id == 1
        assert reset_app(app, broker=broker) >= 2
        header, payload = codecs.encode(b"rebuilt")
        with raw(redis_server.url) as r:
            r.set(f"edgeflow:{app}:blob:{TOPIC}:newsession:2", payload)
            r.xadd(stream_key(app, TOPIC), {"f": 2, "s": "newsession", "t": 5.0, "h": json.dumps(header)},
                   id="1-0")
        frame = sub.recv(timeout=WAIT)
        assert (frame.frame_id, frame.data, frame.timestamp) == (2, b"rebuilt", 5.0)


@pytest.mark.slow
def test_a_partitioned_network_never_stalls_realtime_publishing(redis_server, tcp_proxy, app):
    proxy = tcp_proxy(redis_server.port)
    broker = RedisBroker(proxy.url)
    with pub_(broker, app, socket_timeout=0.5) as pub, sub_(RedisBroker(redis_server.url), app) as sub:
        pub.publish(b"through")
        assert sub.recv(timeout=WAIT).data == b"through"
        proxy.cut()                                    # nothing gets through, nothing is refused either
        started = time.monotonic()
        pub.publish(b"hangs once")                     # waits for its socket timeout, then counts as dropped
        assert 0.4 < time.monotonic() - started < 3.0
        slowest = 0.0
        # a 40 fps camera for a second: reconnection probes hang meanwhile (each for its socket timeout),
        # publishing must not
        for _ in range(40):
            started = time.monotonic()
            pub.publish(b"dropped")
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.025)                          # the camera's frame period, not a synchronisation
        assert slowest < 0.2, f"a publish waited {slowest:.2f} s for a reconnection attempt"
        assert pub.statistics().dropped == 41 and not pub.is_connected()
        proxy.heal()
        wait_until(pub.is_connected, what="the publisher reconnecting through the healed link")
        fid = pub.publish(b"after")
        assert sub.recv(timeout=WAIT).frame_id == fid


def test_loans_and_declare_group_work_as_on_shared_memory(single, app):
    with pub_(single, app) as pub:
        pub.declare_group("late", QoS.DURABLE)
        assert pub.statistics().groups == ("late",)
        with pub.loan((2, 3), np.int16, meta={"m": 1}) as buf:
            buf[:] = 7
        loan = pub.loan(4)
        loan.abort()
        loan = pub.loan(5, timestamp=12.0)
        loan.array[:] = 1
        fid = loan.commit()
        with sub_(single, app, qos=QoS.DURABLE, group="late") as sub:
            first, second = sub.recv(timeout=WAIT), sub.recv(timeout=WAIT)
        assert (first.frame_id, first.meta, first.data.tolist()) == (1, {"m": 1}, [[7] * 3] * 2)
        assert fid == 2
        assert (second.frame_id, second.timestamp, second.data.tolist()) == (2, 12.0, [1] * 5)
        assert pub.statistics().published == 2


# ------------------------------------------------------------------------------------------------------------
# the publisher's bookkeeping of held frames (no Redis)

def test_held_frames_stay_within_their_bound_and_recycle_buffers():
    from edgeflow.transport._redis_held import GroupPosition, Held, HeldFrames

    held = HeldFrames(max_frames=3, max_bytes=300)
    frames = []
    for fid in (1, 2, 3):
        view, buffer = held.copy_of(bytes([fid]) * 100)
        frames.append(Held(fid, {}, view, f"k{fid}", buffer))
        assert held.has_room(100)
        held.retain(frames[-1], (fid, 0), now=0.0)
    assert not held.has_room(1) and held.nbytes == 300
    buffers = [f.buffer for f in frames]
    # group acknowledged 1 and 2 (delivered up to 3, 3 still pending): two buffers go back to the pool
    assert held.release_acked([GroupPosition(delivered=(3, 0), oldest_pending=(3, 0))]) == 2
    assert list(held.retained) == [3] and held.nbytes == 100 and held.pool_bytes == 200
    view, buffer = held.copy_of(b"\x09" * 100)
    assert any(buffer is b for b in buffers[:2]), "a recycled buffer was not reused"
    assert bytes(view) == b"\x09" * 100 and held.pool_bytes == 100
    # frames published again are not recycled while they are being sent
    again = [held.retained[3]]
    held.forget(again)
    assert again[0].buffer is not None and bytes(again[0].payload) == b"\x03" * 100
    # held frames push recycled buffers out: frames and buffers together stay within max_bytes
    for fid in (4, 5, 6):
        held.add_spooled(Held(fid, {}, b"x" * 100, f"k{fid}"))
    assert held.nbytes + held.pool_bytes <= 300
    assert [f.fid for f in held.take_spool()] == [4, 5, 6] and held.nbytes == 0


def test_trimmed_frames_are_reported_only_when_unread():
    from edgeflow.transport._redis_held import GroupPosition, Held, HeldFrames

    held = HeldFrames(max_frames=10, max_bytes=10_000)
    for fid in range(1, 6):
        held.retain(Held(fid, {}, b"p", f"k{fid}"), (fid, 0), now=0.0)
    reader = GroupPosition(delivered=(2, 0), oldest_pending=(2, 0))     # read 1-2, then the stream lost 1-3
    assert held.drop_trimmed((4, 0), 2, [reader]) == [3]
    assert list(held.retained) == [4, 5]
