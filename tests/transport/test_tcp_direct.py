"""TCP without a per-frame thread hop (issue 17): a TcpSender writes a frame from the publishing thread when the
socket can take it, copying only what it cannot take at once; the TcpServer reads large payloads into reused
buffers that a consumer's frames never share.

Each test would fail on a wrong shortcut: a tail not copied (the receiver sees the caller's later bytes), two
threads writing one socket (ids out of order, a torn stream), a buffer reused while a frame still holds it.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgeflow.transport._tcp_limits import POOL_MIN_BYTES, PayloadBuffers
from edgeflow.transport.tcp import TcpSender, TcpServer

LOOPBACK = "127.0.0.1"
BIG = 24 << 20                     # larger than any loopback send buffer: a non-blocking write takes part of it


@pytest.fixture
def server():
    srv = TcpServer(LOOPBACK, 0).start()
    yield srv
    srv.close()


def connected(server, app, topic="cam") -> TcpSender:
    sender = TcpSender(topic, LOOPBACK, server.port, app=app)
    sender.publish(b"hello")                                  # connects (the first frame goes via the thread)
    assert sender.wait_connected(5) and sender.flush(5)
    return sender


def test_a_frame_larger_than_the_socket_takes_is_exact_though_the_caller_reuses_its_array(server, app):
    sub = server.subscriber("cam")
    sender = connected(server, app)
    try:
        sub.recv(timeout=5)
        rng = np.random.default_rng(7)
        for _ in range(3):
            data = rng.integers(0, 256, BIG, dtype=np.uint8)
            original = data.copy()
            fid = sender.publish(data)
            data[:] = 0                                       # at once: the unsent tail must be the sender's copy
            frame = sub.recv(timeout=10)
            assert frame.frame_id == fid and np.array_equal(frame.data, original)
            assert sender.flush(10)
        stats = sender.statistics()
        assert (stats.published, stats.sent, stats.dropped) == (4, 4, 0)
        assert stats.bytes_sent == 5 + 3 * BIG
    finally:
        sender.close()


def test_a_large_loan_and_bytes_are_written_in_place_and_arrive_whole(server, app):
    sub = server.subscriber("cam")
    sender = connected(server, app)
    try:
        sub.recv(timeout=5)
        with sender.loan(BIG // 8, np.uint64) as buf:
            buf[:] = np.arange(BIG // 8, dtype=np.uint64)
        assert np.array_equal(sub.recv(timeout=10).data, np.arange(BIG // 8, dtype=np.uint64))
        blob = bytes(range(256)) * (BIG // 256)
        fid = sender.publish(blob)
        frame = sub.recv(timeout=10)
        assert frame.frame_id == fid and frame.data == blob
    finally:
        sender.close()


def test_publishing_threads_never_interleave_on_the_socket(server, app):
    """Two threads publish into one sender: every frame that arrives is whole, ids strictly increase."""
    seen: list[int] = []
    server.on_frame = lambda frame: seen.append((frame.frame_id, int(frame.data[0]), int(frame.data[-1])))
    sender = connected(server, app)
    try:
        def produce(value: int) -> None:
            frame = np.full(3 << 20, value, np.uint8)        # partly written at once, the rest by the thread
            for _ in range(150):
                sender.publish(frame)

        threads = [threading.Thread(target=produce, args=(v,)) for v in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sender.flush(10)
        stats = sender.statistics()
        assert stats.published == 301 and stats.sent + stats.dropped == 301
        deadline = time.monotonic() + 5                       # on_frame has no event to await
        while len(seen) < stats.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        ids = [fid for fid, _, _ in seen]
        assert ids == sorted(set(ids)) and len(ids) == stats.sent
        assert all(head == tail for _, head, tail in seen[1:])          # never torn between two frames
        assert server.statistics().stale == 0
    finally:
        sender.close()


def test_closing_during_a_partial_write_counts_the_frame_and_does_not_hang(server, app):
    sender = connected(server, app)
    sender.publish(np.ones(BIG, np.uint8))
    sender.terminate()                                        # while the rest is (likely) still being written
    stats = sender._core.statistics()                         # the public one refuses after close
    assert stats.published == stats.sent + stats.dropped == 2


def test_frames_a_consumer_keeps_keep_their_bytes(server, app):
    """The server reuses payload buffers only once nothing holds them: kept frames are never overwritten."""
    sub = server.subscriber("cam")
    sender = connected(server, app)
    try:
        sub.recv(timeout=5)
        kept = []
        for i in range(12):
            fid = sender.publish(np.full(1 << 20, i, np.uint8))
            frame = sub.recv(timeout=5)
            assert frame.frame_id == fid
            if i % 2 == 0:
                kept.append((i, frame.data))                  # held: its buffer must not come back
            elif i == 1:
                kept.append((1, frame.data[::2]))             # a view alone holds it too
            del frame
        for value, data in kept:
            assert (data == value).all(), f"frame {value} was overwritten"
    finally:
        sender.close()


def test_payload_buffers_are_reused_only_when_free_and_stay_within_bounds():
    pool = PayloadBuffers(budget=3 * POOL_MIN_BYTES, per_size=2, idle=1.0)
    n = POOL_MIN_BYTES
    a = pool.take(n, 0.0)
    a_id = id(a)
    del a
    b = pool.take(n, 0.0)
    assert id(b) == a_id                                       # free again: the same (warm) buffer
    c = pool.take(n, 0.0)
    assert c is not b                                          # b is held
    d = pool.take(n, 0.0)
    assert d is not b and d is not c and pool.bytes == 2 * n   # per_size reached: a one-off, not kept
    view = c[10:]
    del c
    e = pool.take(n, 0.0)
    assert e is not view.base and pool.bytes == 2 * n          # the view holds its buffer
    small = pool.take(n - 1, 0.0)
    assert small.nbytes == n - 1 and pool.bytes == 2 * n       # small payloads are not pooled
    pool.expire(5.0)
    assert pool.bytes == 0 and not pool.free
    big = PayloadBuffers(budget=n, per_size=4)
    big.take(n, 0.0), big.take(n, 0.0)
    assert big.bytes == n                                      # the byte budget holds whatever per_size says
