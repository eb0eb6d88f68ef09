"""The public shared-memory API: edgeflow.Publisher / Subscriber / Frame / Loan, end to end in one process."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

import edgeflow as ef
from edgeflow._fast.ring import SlotView
from edgeflow.errors import ClosedResourceError, ReceiveTimeout, WriterGone


def payload(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape, dtype=np.uint8).astype(dtype)


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def base_chain(obj) -> list:
    """obj, its .base, that one's .base ... (a memoryview continues with .obj)."""
    chain = []
    while obj is not None and len(chain) < 20:
        chain.append(obj)
        obj = obj.obj if isinstance(obj, memoryview) else getattr(obj, "base", None)
    return chain


# ------------------------------------------------------------------------------------------------------------
# round trips

ARRAYS = {
    "uint8-image": lambda: payload((480, 640, 3)),
    "float32": lambda: np.linspace(-1e6, 1e6, 1001, dtype=np.float32).reshape(7, 11, 13),
    "int64": lambda: np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max], np.int64),
    "bool": lambda: np.array([[True, False, True], [False, False, True]]),
    "float16": lambda: np.arange(10, dtype=np.float16),
    "complex128": lambda: np.array([1 + 2j, -3.5j], np.complex128),
    "big-endian": lambda: np.arange(6, dtype=">i4").reshape(2, 3),
    "unicode": lambda: np.array(["a", "bcd", ""], dtype="U3"),
    "datetime64": lambda: np.array(["2024-01-01T00:00:00.000000001", "1970-01-01"], dtype="M8[ns]"),
    "structured": lambda: np.array([(1.5, 2, b"abc"), (-1.0, -7, b"")],
                                   dtype=[("x", "<f4"), ("y", "<i2"), ("name", "S5")]),
    "structured-subarray": lambda: np.array([(1, (1.0, 2.0, 3.0))],
                                            dtype=[("id", "u1"), ("pos", "<f4", (3,))]),
    "structured-aligned": lambda: np.array([(1.0, 2.0), (3.0, 4.0)],
                                           dtype=np.dtype([("x", "<f4"), ("y", "<f8")], align=True)),
    "0-d": lambda: np.array(3.25, dtype=np.float64),
    "8-d": lambda: np.arange(2 ** 8, dtype=np.int16).reshape((2,) * 8),
    "empty-1d": lambda: np.zeros((0,), np.float32),
    "empty-3d": lambda: np.zeros((3, 0, 2), np.uint16),
    "big-8MB": lambda: payload((2, 1024, 1024, 4)),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_round_trip_with_dtype_shape_and_values(app, name):
    data = ARRAYS[name]()
    meta = {"name": name, "nested": {"list": [1, 2.5, "x", None, True]}, "unicode": "kamera-ü"}
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos=ef.QoS.DURABLE) as sub:
        fid = pub.publish(data, meta=meta)
        with sub.recv(timeout=1.0) as frame:
            got = frame.data
            assert isinstance(got, np.ndarray)
            assert got.dtype == data.dtype, f"dtype {data.dtype} arrived as {got.dtype}"
            assert got.dtype.names == data.dtype.names
            assert got.shape == data.shape
            assert got.tobytes() == data.tobytes()
            np.testing.assert_array_equal(got, data)
            assert frame.meta == meta
            assert frame.frame_id == fid == 1
            assert frame.topic == "cam"


@pytest.mark.parametrize("data", [b"", b"hello\x00world", bytearray(b"\xff" * 5000),
                                  memoryview(b"view-bytes"), memoryview(bytearray(range(256)))],
                         ids=["empty-bytes", "bytes", "bytearray", "memoryview", "memoryview-bytearray"])
def test_bytes_like_round_trip_as_bytes(app, data):
    with ef.Publisher("raw", app=app) as pub, ef.Subscriber("raw", app=app, qos="durable") as sub:
        pub.publish(data)
        frame = sub.recv(timeout=1.0)
        assert type(frame.data) is bytes
        assert frame.data == bytes(data)
        assert frame.meta == {}
        frame.release()


def test_meta_is_optional_and_round_trips(app):
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        pub.publish(b"a")
        pub.publish(b"b", meta={})
        pub.publish(b"c", meta={"exposure": 0.01, "ids": [1, 2], "ok": False, "none": None})
        assert sub.recv(timeout=1).meta == {}
        assert sub.recv(timeout=1).meta == {}
        assert sub.recv(timeout=1).meta == {"exposure": 0.01, "ids": [1, 2], "ok": False, "none": None}


def test_timestamp_defaults_to_now_and_explicit_is_kept(app):
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        before = time.time()
        pub.publish(b"now")
        after = time.time()
        pub.publish(b"then", timestamp=1234.5)
        pub.publish(np.zeros(3), timestamp=1_700_000_000.123456)
        assert before <= sub.recv(timeout=1).timestamp <= after
        assert sub.recv(timeout=1).timestamp == 1234.5
        assert sub.recv(timeout=1).timestamp == 1_700_000_000.123456


def test_frame_ids_increase_by_one_and_are_what_the_subscriber_sees(app):
    with ef.Publisher("cam", app=app, slots=4) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        ids, got = [], []
        for k in range(12):
            ids.append(pub.publish(np.full(10, k, np.uint8)))
            with sub.recv(timeout=1) as f:
                got.append((f.frame_id, int(f.data[0])))
        assert ids == list(range(1, 13))
        assert got == [(i, i - 1) for i in ids]
        assert pub.statistics().published == 12


def test_a_received_frame_can_be_published_again_with_its_timestamp_and_meta(app):
    with ef.Publisher("a", app=app) as pa, ef.Publisher("b", app=app) as pb, \
            ef.Subscriber("a", app=app, qos="durable") as sa, \
            ef.Subscriber("b", app=app, qos="durable") as sb:
        data = payload((20, 30))
        pa.publish(data, timestamp=42.0, meta={"k": "v"})
        with sa.recv(timeout=1) as f:
            pb.publish(f)
        with sb.recv(timeout=1) as g:
            np.testing.assert_array_equal(g.data, data)
            assert (g.timestamp, g.meta, g.topic) == (42.0, {"k": "v"}, "b")


# ------------------------------------------------------------------------------------------------------------
# zero copy, loans, release


def test_a_large_received_array_views_the_slot_and_is_read_only(app):
    data = payload((64, 64, 3))          # 12 KiB: above the 4 KiB a transport may copy
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        pub.publish(data)
        with sub.recv(timeout=1) as frame:
            arr = frame.data
            assert arr.flags.owndata is False
            assert arr.flags.writeable is False
            assert any(isinstance(o, SlotView) for o in base_chain(arr)), \
                f"frame.data is not a view of a slot: {[type(o).__name__ for o in base_chain(arr)]}"
            view = next(o for o in base_chain(arr) if isinstance(o, SlotView))
            assert view.is_copy is False
            with pytest.raises(ValueError):
                arr[0, 0, 0] = 1
            with pytest.raises(ValueError):
                arr.flags.writeable = True
            np.testing.assert_array_equal(arr, data)
            del arr, view


def test_a_loan_hands_out_a_slot_as_it_is_not_cleared(app):
    shape = (64, 128)
    with ef.Publisher("cam", app=app, slots=3) as pub:
        earlier = [np.full(shape, 10 + k, np.uint8) for k in range(3)]
        for a in earlier:
            pub.publish(a)
        loan = pub.loan(shape, "uint8")
        try:
            assert loan.array.flags.writeable
            assert any(np.array_equal(loan.array, a) for a in earlier), \
                "a loan's array should hold the old bytes of the slot it reuses (not cleared, not copied)"
        finally:
            loan.abort()


def test_a_loan_publishes_in_place_and_becomes_read_only(app):
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        before = time.time()
        with pub.loan((120, 160, 3), np.uint8, meta={"src": "loan"}) as buf:
            after = time.time()
            assert buf.shape == (120, 160, 3) and buf.dtype == np.uint8
            buf[...] = 7
            buf[0, 0] = (1, 2, 3)
        assert buf.flags.writeable is False
        with pytest.raises(ValueError):
            buf[0, 0, 0] = 9
        with sub.recv(timeout=1) as frame:
            assert frame.frame_id == 1
            assert frame.meta == {"src": "loan"}
            assert before <= frame.timestamp <= after        # the loan's moment, not the commit's
            assert frame.data.shape == (120, 160, 3)
            assert frame.data[0, 0].tolist() == [1, 2, 3] and (frame.data[1:] == 7).all()


def test_a_loan_commit_returns_the_frame_id_and_takes_meta_and_timestamp(app):
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        pub.publish(b"first")
        loan = pub.loan((4,), "float32")
        loan.array[:] = [1, 2, 3, 4]
        assert loan.commit(timestamp=5.0, meta={"n": 4}) == 2
        assert loan.array.flags.writeable is False
        assert sub.recv(timeout=1).data == b"first"
        with sub.recv(timeout=1) as f:
            assert (f.frame_id, f.timestamp, f.meta) == (2, 5.0, {"n": 4})
            assert f.data.tolist() == [1, 2, 3, 4]


def test_a_loan_left_by_an_exception_publishes_nothing(app):
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        assert pub.publish(b"one") == 1
        with pytest.raises(RuntimeError, match="boom"):
            with pub.loan((100, 100), "uint8") as buf:
                buf[...] = 1
                raise RuntimeError("boom")
        assert buf.flags.writeable is False
        assert sub.recv(timeout=1).data == b"one"
        assert sub.recv_nowait() is None
        assert pub.statistics().published == 1
        assert pub.publish(b"two") == 2           # no frame_id was used up by the aborted loan
        assert sub.recv(timeout=1).data == b"two"


def test_release_keeps_the_slot_while_a_derived_array_lives(app):
    first = payload(8192, seed=1)
    with ef.Publisher("cam", app=app, slots=4) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        pub.publish(first)
        frame = sub.recv(timeout=1)
        slot_address = address(frame.data)
        derived = frame.data[100:]
        frame.release()
        assert frame.is_released()
        assert sub.statistics().held == 1, "the derived array should keep the slot pinned"
        for k in range(10):                        # more frames than slots
            data = payload(8192, seed=10 + k)
            pub.publish(data)
            with sub.recv(timeout=1) as f:
                assert address(f.data) != slot_address, "a pinned slot was reused"
                np.testing.assert_array_equal(f.data, data)
        np.testing.assert_array_equal(derived, first[100:])
        del derived
        assert sub.statistics().held == 0
        assert pub.statistics().pinned_slots == 0
        last = payload(8192, seed=99)
        pub.publish(last)
        with sub.recv(timeout=1) as f:
            assert address(f.data) == slot_address, "the slot freed by the last derived array was not reused"
            np.testing.assert_array_equal(f.data, last)


def test_with_recv_releases_and_data_after_release_raises(app):
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        pub.publish(payload(10_000))
        with sub.recv(timeout=1) as frame:
            assert frame.data.nbytes == 10_000
            assert sub.statistics().held == 1
        assert frame.is_released()
        assert sub.statistics().held == 0
        with pytest.raises(ClosedResourceError, match="released"):
            frame.data
        frame.release()                            # twice is fine


def test_copy_keeps_the_data_after_release_and_overwrites(app):
    data = payload(20_000, seed=3)
    with ef.Publisher("cam", app=app, slots=3) as pub, ef.Subscriber("cam", app=app) as sub:
        pub.publish(data, meta={"a": 1}, timestamp=7.0)
        frame = sub.recv(timeout=1)
        kept = frame.copy()
        frame.release()
        for k in range(6):
            pub.publish(payload(20_000, seed=50 + k))
            sub.recv(timeout=1).release()
        assert kept.data.flags.owndata and kept.data.flags.writeable
        np.testing.assert_array_equal(kept.data, data)
        assert (kept.frame_id, kept.timestamp, kept.meta, kept.topic) == (1, 7.0, {"a": 1}, "cam")
        kept.data[0] = 1                           # a copy is the caller's to write
        kept.release()


# ------------------------------------------------------------------------------------------------------------
# asyncio


def _run(runner: str, coro_fn):
    if runner == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(coro_fn())
    return asyncio.run(coro_fn())


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_arecv_waits_without_blocking_the_loop_and_times_out(app, runner):
    data = payload((100, 100))

    async def main():
        loop = asyncio.get_running_loop()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
            task = asyncio.create_task(ticker())
            loop.call_later(0.1, pub.publish, data)
            frame = await sub.arecv(timeout=2.0)
            assert ticks >= 5, f"the event loop was blocked while arecv waited ({ticks} ticks)"
            np.testing.assert_array_equal(frame.data, data)
            frame.release()
            pub.publish(b"ready")                      # already there: no wait
            assert (await sub.arecv(timeout=1.0)).data == b"ready"
            start = time.monotonic()
            with pytest.raises(ReceiveTimeout):
                await sub.arecv(timeout=0.15)
            assert 0.14 <= time.monotonic() - start < 1.0
            task.cancel()
            return type(loop).__module__

    module = _run(runner, main)
    assert module.startswith("uvloop") == (runner == "uvloop")


# ------------------------------------------------------------------------------------------------------------
# lifecycle


def test_a_subscriber_started_before_its_publisher_gets_every_frame(app):
    with ef.Subscriber("cam", app=app, qos="durable") as durable, ef.Subscriber("cam", app=app) as latest:
        assert durable.writer_status() == "none"
        with pytest.raises(ReceiveTimeout):
            durable.recv(timeout=0.05)
        with ef.Publisher("cam", app=app) as pub:
            assert durable.writer_status() == "running"
            for k in range(3):
                pub.publish(np.full(8, k, np.uint8))
            got = [durable.recv(timeout=1) for _ in range(3)]
            assert [f.frame_id for f in got] == [1, 2, 3]
            assert [int(f.data[0]) for f in got] == [0, 1, 2]
            with latest.recv(timeout=1) as f:
                assert f.frame_id == 3
            for f in got:
                f.release()


def test_the_ring_grows_for_larger_frames_and_a_subscriber_gets_them_all(app):
    frames = [payload(64, seed=1), payload((480, 640, 3), seed=2), payload((1080, 1920, 3), seed=3)]
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        for f in frames:
            pub.publish(f)
        stats = pub.statistics()
        assert stats.generation == 3
        assert stats.slot_bytes >= 1080 * 1920 * 3
        got = [sub.recv(timeout=2) for _ in frames]
        for f, want in zip(got, frames):
            assert f.data.shape == want.shape
            assert f.data.tobytes() == want.tobytes()
        assert [f.frame_id for f in got] == [1, 2, 3]
        with pytest.raises(ReceiveTimeout):
            sub.recv(timeout=0.05)
        # and growth while the subscriber holds frames of the older generations
        pub.publish(payload((2160, 3840, 3), seed=4))
        with sub.recv(timeout=2) as f4:
            assert f4.data.tobytes() == payload((2160, 3840, 3), seed=4).tobytes()
        for f, want in zip(got, frames):
            assert f.data.tobytes() == want.tobytes(), "a frame held across growth changed"
            f.release()


def test_backpressure_timeout_names_the_topic_and_the_lagging_subscriber(app):
    with ef.Publisher("cam", app=app, slots=3, backpressure_timeout=0.1) as pub, \
            ef.Subscriber("cam", app=app, qos="durable", group="slowpoke") as sub:
        for k in range(3):
            pub.publish(np.full(100, k, np.uint8))
        start = time.monotonic()
        with pytest.raises(ef.BackpressureTimeout) as err:
            pub.publish(np.full(100, 3, np.uint8))
        assert time.monotonic() - start >= 0.1
        assert isinstance(err.value, TimeoutError)
        assert "cam" in str(err.value) and "slowpoke" in str(err.value), str(err.value)
        # nothing lost or overwritten: the subscriber catches up and the publisher goes on
        with sub.recv(timeout=1) as f:
            assert (f.frame_id, int(f.data[0])) == (1, 0)
        assert pub.publish(np.full(100, 4, np.uint8)) == 4
        got = [sub.recv(timeout=1) for _ in range(3)]
        assert [(f.frame_id, int(f.data[0])) for f in got] == [(2, 1), (3, 2), (4, 4)]
        for f in got:
            f.release()


def test_backpressure_timeout_names_a_private_subscriber_by_pid(app):
    with ef.Publisher("cam", app=app, slots=3, backpressure_timeout=0.02) as pub, \
            ef.Subscriber("cam", app=app, qos="durable"):
        for k in range(3):
            pub.publish(b"x")
        with pytest.raises(ef.BackpressureTimeout, match=rf"cam.*{os.getpid()}"):
            pub.publish(b"y")


def test_realtime_recv_returns_the_newest_frame_and_counts_the_skipped(app):
    with ef.Publisher("cam", app=app, slots=4) as pub, ef.Subscriber("cam", app=app, qos="realtime") as sub:
        for k in range(20):
            pub.publish(np.full(16, k, np.uint8))
        with sub.recv(timeout=1) as f:
            assert f.frame_id == 20 and int(f.data[0]) == 19
        assert sub.recv_nowait() is None
        stats = sub.statistics()
        assert (stats.received, stats.drops, stats.lag) == (1, 19, 0)
        pub.publish(np.full(16, 99, np.uint8))
        with sub.recv(timeout=1) as f:
            assert f.frame_id == 21 and int(f.data[0]) == 99
        assert sub.statistics().drops == 19


def test_two_apps_with_the_same_topic_do_not_see_each_other(app):
    other = f"{app}x"
    with ef.Publisher("cam", app=app) as p1, ef.Publisher("cam", app=other) as p2, \
            ef.Subscriber("cam", app=app, qos="durable") as s1, \
            ef.Subscriber("cam", app=other, qos="durable") as s2:
        p1.publish(b"from-1")
        p2.publish(b"from-2")
        p2.publish(b"from-2-again")
        assert s1.recv(timeout=1).data == b"from-1"
        assert s1.recv_nowait() is None
        assert [s2.recv(timeout=1).data for _ in range(2)] == [b"from-2", b"from-2-again"]
        assert s2.recv_nowait() is None


@pytest.mark.parametrize("received_before_close", [False, True], ids=["nothing-received-yet", "one-received"])
def test_writer_gone_after_draining_then_a_new_publisher_is_received(app, received_before_close):
    """A DURABLE subscriber drains the frames published before the publisher closed, then sees
    WriterGone(clean), then receives from a new publisher of the topic (same Subscriber object)."""
    with ef.Subscriber("cam", app=app, qos="durable") as sub:
        with ef.Publisher("cam", app=app) as pub:
            sent = [bytes([k]) * 10 for k in range(4)]
            for data in sent:
                pub.publish(data)
            if received_before_close:
                assert sub.recv(timeout=1).data == sent.pop(0)
        got = []
        for _ in sent:
            try:
                got.append(sub.recv(timeout=1).data)
            except WriterGone:
                got.append("WriterGone")
                break
        assert got == sent, "frames published before close() were not drained"
        with pytest.raises(WriterGone) as err:
            sub.recv(timeout=1)
        assert err.value.clean is True
        assert "cam" in str(err.value)
        with pytest.raises(ReceiveTimeout):       # still usable: it waits for a new publisher
            sub.recv(timeout=0.05)
        with ef.Publisher("cam", app=app) as pub2:
            pub2.publish(b"again")
            with sub.recv(timeout=1) as f:
                # the subscriber kept the ring, so the new publisher took it over: ids go on increasing per topic
                assert f.data == b"again" and f.frame_id == 5


def test_a_durable_subscriber_gets_the_frames_of_a_publisher_that_restarted_before_it_noticed(app):
    """DURABLE: every frame published after subscribing. A publisher that closes and comes back before the
    subscriber's next recv must not make it lose the new publisher's first frames."""
    with ef.Subscriber("cam", app=app, qos="durable") as sub:
        with ef.Publisher("cam", app=app) as pub:
            pub.publish(b"warm-up")
            assert sub.recv(timeout=1).data == b"warm-up"
            pub.publish(b"old")
        with ef.Publisher("cam", app=app) as pub2:
            pub2.publish(b"new-1")
            pub2.publish(b"new-2")
            got = []
            for _ in range(4):
                try:
                    got.append(sub.recv(timeout=0.3).data)
                except WriterGone:
                    got.append("WriterGone")
                except ReceiveTimeout:
                    break
            # the new publisher took the ring over before the subscriber waited: it may never see a gap at all
            assert [g for g in got if g != "WriterGone"] == [b"old", b"new-1", b"new-2"], got
            assert got.count("WriterGone") <= 1, got
