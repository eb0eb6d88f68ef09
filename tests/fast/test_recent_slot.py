"""A big ring hands out the most recently freed slot first (its pages stay in the CPU cache); a small ring stays
oldest-first (it keeps its last frames, for ring.peek); neither changes what DURABLE and REALTIME readers get."""

from __future__ import annotations

import numpy as np

import edgeflow as ef
from edgeflow.transport import shm

BIG = (1080, 1920, 3)          # 8 slots of 6.2 MB: more than MRU_RING_BYTES (16 MiB)
SMALL = (64, 64, 3)


def slots_used(app: str, shape: tuple, frames: int = 24) -> tuple[set[int], list[int]]:
    """Slot addresses a DURABLE reader that keeps up saw, and the ids it got, in order."""
    addresses, ids = set(), []
    with ef.Publisher("cam", app=app, slots=8) as pub, shm.Subscriber("cam", app=app, qos="durable") as sub:
        for i in range(frames):
            pub.publish(np.full(shape, i % 251, np.uint8))
            with sub.recv(timeout=5) as frame:
                assert frame.data[0, 0, 0] == i % 251 and frame.data[-1, -1, -1] == i % 251
                addresses.add(frame.data.__array_interface__["data"][0])
                ids.append(frame.frame_id)
    return addresses, ids


def test_a_big_ring_cycles_through_two_slots_when_its_reader_keeps_up(app):
    addresses, ids = slots_used(app, BIG)
    assert ids == list(range(1, 25))
    assert len(addresses) == 2, f"{len(addresses)} slots used"


def test_a_small_ring_stays_oldest_first(app):
    addresses, ids = slots_used(app, SMALL)
    assert ids == list(range(1, 25))
    assert len(addresses) == 8


def test_a_lagging_durable_reader_still_gets_every_frame_and_a_late_realtime_one_the_newest(app):
    with ef.Publisher("cam", app=app, slots=8) as pub, \
            shm.Subscriber("cam", app=app, qos="durable", max_held=8) as slow, \
            shm.Subscriber("cam", app=app) as live:
        held = []
        for i in range(6):                      # the DURABLE reader holds 3 frames while 6 are published
            pub.publish(np.full(BIG, i, np.uint8))
            if i < 3:
                held.append(slow.recv(timeout=5))
        newest = live.recv(timeout=5)           # REALTIME, not read during the burst: the newest frame
        assert newest.frame_id == 6 and newest.data[0, 0, 0] == 5
        newest.release()
        assert [f.frame_id for f in held] == [1, 2, 3]
        assert [int(f.data[0, 0, 0]) for f in held] == [0, 1, 2]      # held slots were never reused
        for f in held:
            f.release()
        rest = [slow.recv(timeout=5) for _ in range(3)]
        assert [(f.frame_id, int(f.data[5, 5, 0])) for f in rest] == [(4, 3), (5, 4), (6, 5)]
        for f in rest:
            f.release()
