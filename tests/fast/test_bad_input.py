"""Bad input to the public shared-memory API: each case raises a clear error (the right class, naming what
was wrong) and corrupts nothing: afterwards a frame received earlier is intact and a normal publish, loan and
receive still work."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import edgeflow as ef
from edgeflow.errors import (ClosedResourceError, ConfigError, FrameTooLarge, HeldFramesError, LayoutMismatch,
                             ReceiveTimeout)
from edgeflow.transport.shm import MAX_META_BYTES

SHM = Path("/dev/shm")
CTL_MAGIC = 0x4C54435746454445               # _layout.h EF_CTL_MAGIC
CTL_VERSION = 1                              # _layout.h EF_LAYOUT_VERSION
CTL_BYTES = 4096 + 64 * 64 + 64 * 1024       # sizeof(ef_ctl): header page, 64 reader lines, 64 group entries


class Pair:
    """A publisher, a DURABLE subscriber and a frame the subscriber holds (zero-copy) before the bad input."""

    def __init__(self, app: str, topic: str = "cam", **pub_options):
        self.pub = ef.Publisher(topic, app=app, **pub_options)
        self.sub = ef.Subscriber(topic, app=app, qos="durable")
        self.earlier = np.arange(3000, dtype=np.int32).reshape(30, 100)
        self.pub.publish(self.earlier, meta={"earlier": True})
        self.held = self.sub.recv(timeout=1)

    def assert_unharmed(self) -> None:
        """The held frame is intact, nothing half-published is pending, and publish/loan/recv still work."""
        np.testing.assert_array_equal(self.held.data, self.earlier)
        assert self.held.meta == {"earlier": True}
        assert self.sub.recv_nowait() is None, "the failed call published something"
        fresh = np.full((40, 50), 7, np.float32)
        fid = self.pub.publish(fresh, meta={"ok": 1})
        with self.sub.recv(timeout=1) as f:
            assert f.frame_id == fid == self.pub.statistics().published, \
                "a frame_id was used up by the failed call"
            np.testing.assert_array_equal(f.data, fresh)
            assert f.meta == {"ok": 1}
        with self.pub.loan((3, 4), "int16") as buf:      # no loan was left open by the failed call
            buf[...] = 5
        with self.sub.recv(timeout=1) as f:
            assert f.data.tolist() == [[5] * 4] * 3

    def close(self) -> None:
        self.held.release()
        self.sub.close()
        self.pub.close()


@pytest.fixture
def pair(app):
    p = Pair(app)
    yield p
    p.close()


# ------------------------------------------------------------------------------------------------------------
# loans


@pytest.mark.parametrize("shape, dtype, error, words", [
    ((3, -1), "uint8", ValueError, ["negative", "(3, -1)"]),
    ((-5,), "float32", ValueError, ["negative"]),
    ((2, 2), object, TypeError, ["cam", "object"]),
    ((1,) * 9, "uint8", ValueError, ["cam", "9 dimensions", "8"]),
], ids=["negative-dim", "negative-1d", "object-dtype", "nine-dims"])
def test_bad_loan_shape_or_dtype(pair, shape, dtype, error, words):
    with pytest.raises(error) as err:
        pair.pub.loan(shape, dtype)
    for w in words:
        assert w in str(err.value), f"{w!r} not in {str(err.value)!r}"
    pair.assert_unharmed()


def test_a_second_open_loan_is_refused(pair):
    loan = pair.pub.loan((10,), "uint8")
    with pytest.raises(ConfigError, match="loan is already open"):
        pair.pub.loan((10,), "uint8")
    loan.abort()
    pair.assert_unharmed()


# ------------------------------------------------------------------------------------------------------------
# publish


@pytest.mark.parametrize("data", [np.array([1, "a", None], dtype=object), np.empty((2, 2), dtype=object),
                                  np.zeros(3, dtype=[("a", "i4"), ("o", "O")])],
                         ids=["object-1d", "object-2d", "struct-with-object"])
def test_object_arrays_are_refused_naming_the_topic(pair, data):
    with pytest.raises(TypeError, match="cam") as err:
        pair.pub.publish(data)
    assert "object" in str(err.value).lower()
    pair.assert_unharmed()


@pytest.mark.parametrize("data", [42, "text", None, (1, 2), {1.5, 2}, {"a": {3, 4}}, [object()],
                                  {"a": np.zeros(2, object)}], ids=repr)
def test_unsupported_payload_types_are_refused_naming_the_topic(pair, data):
    # dicts and lists are messages (edgeflow.transport.message): refused only for what they hold
    with pytest.raises(TypeError, match="cam"):
        pair.pub.publish(data)
    pair.assert_unharmed()


def test_too_many_dimensions_to_publish(pair):
    with pytest.raises(ValueError, match=r"cam.*9 dimensions"):
        pair.pub.publish(np.zeros((1,) * 9, np.uint8))
    pair.assert_unharmed()


@pytest.mark.parametrize("make", [
    lambda a: a[::2, ::3],
    lambda a: a.T,
    lambda a: a[::-1],
    lambda a: a[:, 5:50, 1],
    lambda a: np.lib.stride_tricks.as_strided(a, shape=(4, 4), strides=(0, a.strides[1])),
], ids=["every-other", "transposed", "reversed", "column-slice", "zero-stride"])
def test_non_contiguous_arrays_are_accepted_and_copied(pair, make):
    base = np.arange(60 * 80 * 3, dtype=np.uint16).reshape(60, 80, 3)
    view = make(base)
    assert not view.flags.c_contiguous
    pair.pub.publish(view, meta={"strided": True})
    with pair.sub.recv(timeout=1) as f:
        assert f.data.shape == view.shape and f.data.dtype == view.dtype
        assert f.data.flags.c_contiguous
        np.testing.assert_array_equal(f.data, view)
        assert f.meta == {"strided": True}
    pair.assert_unharmed()


@pytest.mark.parametrize("meta", [{"a": object()}, {"s": {1, 2}}, {"nan": float("nan")},
                                  {"inf": float("inf")}, {"b": b"bytes"}, {"arr": np.zeros(2)}],
                         ids=["object", "set", "nan", "inf", "bytes", "ndarray"])
def test_meta_that_is_not_json_is_a_type_error(pair, meta):
    with pytest.raises(TypeError, match="cam.*meta"):
        pair.pub.publish(b"x", meta=meta)
    with pytest.raises(TypeError, match="cam.*meta"):
        pair.pub.loan((4,), "uint8", meta=meta)
    pair.assert_unharmed()


def test_meta_over_the_limit_is_frame_too_large_and_at_the_limit_is_fine(pair):
    at_limit = {"k": "x" * (MAX_META_BYTES - len('{"k":""}'))}
    over = {"k": "x" * (MAX_META_BYTES - len('{"k":""}') + 1)}
    with pytest.raises(FrameTooLarge, match=f"cam.*{MAX_META_BYTES}"):
        pair.pub.publish(b"x", meta=over)
    with pytest.raises(FrameTooLarge, match=f"cam.*{MAX_META_BYTES}"):
        pair.pub.loan((4,), "uint8", meta=over)
    pair.assert_unharmed()
    pair.pub.publish(b"y", meta=at_limit)
    with pair.sub.recv(timeout=1) as f:
        assert f.meta == at_limit and f.data == b"y"


@pytest.mark.parametrize("slot_bytes", [0, 4096, 10_000])
def test_a_frame_larger_than_the_slot_without_growth_is_refused_whole(app, slot_bytes):
    with ef.Publisher("cam", app=app, slot_bytes=slot_bytes, grow=False) as pub, \
            ef.Subscriber("cam", app=app, qos="durable") as sub:
        first = np.arange(1000, dtype=np.uint8)
        pub.publish(first)                                   # sizes the ring when slot_bytes is 0
        capacity = pub.statistics().slot_bytes
        assert capacity >= max(slot_bytes, 1000)
        exact = np.full(capacity, 3, np.uint8)
        pub.publish(exact)                                   # exactly a slot: fine
        with pytest.raises(FrameTooLarge, match=rf"cam.*{capacity + 1}.*{capacity}"):
            pub.publish(np.zeros(capacity + 1, np.uint8))
        with pytest.raises(FrameTooLarge):
            pub.publish(b"z" * (capacity + 4096))
        with pytest.raises(FrameTooLarge):
            pub.loan((capacity + 1,), "uint8")
        assert pub.statistics().generation == 1
        np.testing.assert_array_equal(sub.recv(timeout=1).data, first)
        got = sub.recv(timeout=1).data
        assert got.nbytes == capacity and (got == 3).all()
        assert sub.recv_nowait() is None, "a refused frame was published (truncated?)"
        pub.publish(b"after")
        assert sub.recv(timeout=1).data == b"after"


# ------------------------------------------------------------------------------------------------------------
# use after close


def test_a_closed_publisher_refuses_everything_and_closes_twice(app):
    pub = ef.Publisher("cam", app=app)
    loan = pub.loan((4,), "uint8")
    pub.close()
    pub.close()
    assert pub.is_closed()
    for call in (lambda: pub.publish(b"x"), lambda: pub.publish(np.zeros(3)), lambda: pub.loan((4,), "uint8"),
                 pub.statistics, lambda: pub.declare_group("g"), loan.commit):
        with pytest.raises(ClosedResourceError, match="cam"):
            call()
    loan.abort()                                            # giving back a dead loan is harmless
    with pub:
        pass


def test_a_closed_subscriber_refuses_everything_and_closes_twice(app):
    import asyncio
    with ef.Publisher("cam", app=app) as pub:
        sub = ef.Subscriber("cam", app=app, qos="durable")
        pub.publish(b"pending")
        sub.close()
        sub.close()
        assert sub.is_closed()
        for call in (lambda: sub.recv(timeout=0.1), sub.recv_nowait, sub.statistics, sub.writer_status,
                     lambda: asyncio.run(sub.arecv(timeout=0.1))):
            with pytest.raises(ClosedResourceError, match="cam"):
                call()
        pub.publish(b"still fine")                  # the closed subscriber does not hold the writer up
        with ef.Subscriber("cam", app=app, qos="durable") as again:
            pub.publish(b"new")
            assert again.recv(timeout=1).data == b"new"


# ------------------------------------------------------------------------------------------------------------
# names and options


BAD_APPS = ["my.app", "", "a/b", "a" * 65, "-x" + "\n", "space here", 5, b"bytes"]
BAD_TOPICS = ["", "a/b", ".hidden", "t" * 101, "with space", "kamera-ü", "x\x00y", 5, None, ("cam",)]


@pytest.mark.parametrize("bad", BAD_APPS, ids=repr)
@pytest.mark.parametrize("cls", ["Publisher", "Subscriber"])
def test_bad_app_names_are_config_errors_naming_them(cls, bad):
    with pytest.raises(ConfigError) as err:
        getattr(ef, cls)("cam", app=bad)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("bad", BAD_TOPICS, ids=repr)
@pytest.mark.parametrize("cls", ["Publisher", "Subscriber"])
def test_bad_topics_are_config_errors_naming_them(app, cls, bad):
    with pytest.raises(ConfigError) as err:
        getattr(ef, cls)(bad, app=app)
    assert repr(bad) in str(err.value)


def test_longest_names_are_accepted(app):
    long_app = (app + "_" + "a" * 64)[:64]
    topic = "t" * 100
    with ef.Publisher(topic, app=long_app) as pub, ef.Subscriber(topic, app=long_app, qos="durable") as sub:
        pub.publish(b"ok")
        assert sub.recv(timeout=1).data == b"ok"


@pytest.mark.parametrize("slots", [-1, 0, 1, 2, 65, 1000, 2 ** 32 + 4])
def test_slots_out_of_range_are_config_errors(app, slots):
    with pytest.raises(ConfigError, match=f"slots.*{slots}|{slots}.*slots"):
        ef.Publisher("cam", app=app, slots=slots)


@pytest.mark.parametrize("slots", [3, 64])
def test_slots_at_the_limits_work(app, slots):
    with ef.Publisher("cam", app=app, slots=slots) as pub, \
            ef.Subscriber("cam", app=app, qos="durable") as sub:
        for k in range(slots):
            pub.publish(bytes([k % 256]))
        assert [sub.recv(timeout=1).data[0] for _ in range(slots)] == [k % 256 for k in range(slots)]


@pytest.mark.parametrize("option, value", [("slot_bytes", -1), ("backpressure_timeout", -0.5)])
def test_negative_sizes_and_timeouts_are_config_errors(app, option, value):
    with pytest.raises(ConfigError, match=option):
        ef.Publisher("cam", app=app, **{option: value})


def test_max_held_below_one_is_a_config_error(app):
    with pytest.raises(ConfigError, match="max_held"):
        ef.Subscriber("cam", app=app, max_held=0)


@pytest.mark.parametrize("qos", ["fastest", "", "DURABLEX", 3])
def test_an_unknown_qos_is_a_value_error_naming_it(app, qos):
    with pytest.raises(ValueError, match="QoS") as err:
        ef.Subscriber("cam", app=app, qos=qos)
    assert repr(qos) in str(err.value)
    with ef.Publisher("cam", app=app) as pub:
        with pytest.raises(ValueError, match="QoS"):
            pub.declare_group("g", qos=qos)


@pytest.mark.parametrize("qos, max_lag", [("durable", 3), ("realtime", 1), ("balanced", 0), ("balanced", -2)])
def test_max_lag_needs_balanced_and_a_positive_value(app, qos, max_lag):
    with pytest.raises(ConfigError, match=rf"cam.*max_lag={max_lag}"):
        ef.Subscriber("cam", app=app, qos=qos, max_lag=max_lag)


@pytest.mark.parametrize("group", ["g" * 48, "é" * 24, "x" * 200, ""],
                         ids=["48-ascii", "48-bytes-utf8", "200", "empty"])
def test_a_group_name_too_long_or_empty_is_a_config_error(pair, app, group):
    with pytest.raises(ConfigError) as err:
        ef.Subscriber("cam", app=app, qos="durable", group=group)
    assert repr(group) in str(err.value)
    with pytest.raises(ConfigError):
        pair.pub.declare_group(group)
    pair.assert_unharmed()


def test_the_longest_group_name_works(pair, app):
    with ef.Subscriber("cam", app=app, qos="durable", group="g" * 47) as member:
        pair.pub.publish(b"to the group")
        assert member.recv(timeout=1).data == b"to the group"
    pair.sub.recv(timeout=1).release()
    pair.assert_unharmed()


# ------------------------------------------------------------------------------------------------------------
# segments that are not ours, a second publisher, holding too much


def _foreign_ctl(kind: str) -> bytes:
    rng = np.random.default_rng(7)
    if kind == "random":
        blob = bytearray(rng.integers(0, 256, CTL_BYTES, dtype=np.uint8).tobytes())
        blob[0] = blob[0] or 1                          # a zero magic would read as "being created right now"
        return bytes(blob)
    if kind == "random-small":
        return b"\x01" + rng.integers(0, 256, 999, dtype=np.uint8).tobytes()
    if kind == "tiny":
        return b"NOTARING!!"
    if kind == "wrong-magic":
        return b"NOTARING" + bytes(CTL_BYTES - 8)
    head = struct.pack("<QIIII", CTL_MAGIC, CTL_VERSION, CTL_BYTES, 64, 64)
    if kind == "wrong-version":
        return struct.pack("<QIIII", CTL_MAGIC, 99, CTL_BYTES, 64, 64) + bytes(CTL_BYTES - 24)
    if kind == "wrong-ctl-bytes":
        return struct.pack("<QIIII", CTL_MAGIC, CTL_VERSION, 12345, 64, 64) + bytes(CTL_BYTES - 24)
    if kind == "right-header-short-file":
        return head + bytes(4096 - 24)
    if kind == "right-header-long-file":
        return head + bytes(CTL_BYTES * 2 - 24)
    raise AssertionError(kind)


FOREIGN = ["random", "random-small", "tiny", "wrong-magic", "wrong-version", "wrong-ctl-bytes",
           "right-header-short-file", "right-header-long-file"]


@pytest.mark.parametrize("kind", FOREIGN)
def test_a_segment_that_is_not_ours_is_a_layout_mismatch_naming_it(app, kind):
    path = SHM / f"edgeflow.{app}.cam.ctl"
    blob = _foreign_ctl(kind)
    path.write_bytes(blob)
    try:
        for make in (lambda: ef.Publisher("cam", app=app), lambda: ef.Subscriber("cam", app=app),
                     lambda: ef.Subscriber("cam", app=app, qos="durable", group="g")):
            with pytest.raises(LayoutMismatch) as err:
                make()
            assert str(path) in str(err.value), str(err.value)
        assert path.read_bytes() == blob, "a segment that is not ours was modified"
        assert sorted(p.name for p in SHM.glob(f"edgeflow.{app}.*")) == [path.name]
    finally:
        path.unlink(missing_ok=True)
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        pub.publish(b"after cleanup")
        assert sub.recv(timeout=1).data == b"after cleanup"


def test_a_second_publisher_on_a_topic_is_refused(pair, app):
    with pytest.raises(ConfigError, match="already has a live publisher"):
        ef.Publisher("cam", app=app)
    pair.assert_unharmed()
    with ef.Publisher("cam", app=f"{app}b") as other_app:     # another app's topic of that name is not taken
        other_app.publish(b"x")


def test_a_publisher_may_follow_a_closed_one(app):
    with ef.Publisher("cam", app=app):
        pass
    with ef.Publisher("cam", app=app) as pub, ef.Subscriber("cam", app=app, qos="durable") as sub:
        pub.publish(b"second")
        assert sub.recv(timeout=1).data == b"second"


@pytest.mark.parametrize("qos", ["durable", "realtime"])
def test_holding_more_than_max_held_frames_raises_naming_the_limit(app, qos):
    with ef.Publisher("cam", app=app, slots=8) as pub, \
            ef.Subscriber("cam", app=app, qos=qos, max_held=2) as sub:
        frames = [np.full(8192, k, np.uint8) for k in range(3)]
        held = []
        for k in range(2):
            pub.publish(frames[k])
            held.append(sub.recv(timeout=1))
        pub.publish(frames[2])
        with pytest.raises(HeldFramesError, match="max_held=2") as err:
            sub.recv(timeout=1)
        assert "cam" in str(err.value)
        with pytest.raises(HeldFramesError):
            sub.recv_nowait()
        assert [int(f.data[0]) for f in held] == [0, 1], "held frames changed"
        held.pop(0).release()
        with sub.recv(timeout=1) as f:                   # the frame that could not be taken was not lost
            assert f.frame_id == 3 and int(f.data[0]) == 2
        held.pop().release()
        assert sub.statistics().held == 0
        pub.publish(b"more")
        assert sub.recv(timeout=1).data == b"more"
        with pytest.raises(ReceiveTimeout):
            sub.recv(timeout=0.02)
