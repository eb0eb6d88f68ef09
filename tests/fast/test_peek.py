"""Peeking at a frame still in its ring (ring.peek, shm.peek_meta): the lineage API reads the meta of upstream
frames this way, without joining a subscriber group.

A frame still in a slot is found with its timestamp and meta, one the writer overwrote is None, peeking changes
nothing for the ring's subscribers, and a writer in another process publishing as fast as it can never makes a
peek return another frame's meta (the seqlock check).
"""

from __future__ import annotations

import json
import mmap
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeflow._fast import ring
from edgeflow.errors import ConfigError
from edgeflow.transport import shm

ROOT = Path(__file__).resolve().parents[2]
SLOTS = 8


def meta_of(i: int) -> dict:
    """Frame i's meta: its number and a pad whose length changes with i (a torn copy would not parse or
    would not match)."""
    return {"i": i, "pad": "y" * (i * 37 % 700)}


def test_a_frame_still_in_the_ring_is_found_with_its_timestamp_and_meta(app):
    with shm.Publisher("camera", app=app, slots=SLOTS) as pub:
        ids = [pub.publish(np.full(16, i, np.uint8), timestamp=1000.0 + i / 8, meta=meta_of(i))
               for i in range(1, 4)]
        assert ids == [1, 2, 3]
        for i in ids:
            assert shm.peek_meta(app, "camera", i) == (1000.0 + i / 8, meta_of(i))
        assert shm.peek_meta(app, "camera", 4) is None                 # not published yet
        assert shm.peek_meta(app, "nothere", 1) is None                # no such ring
        pub.publish(b"raw")                                            # a frame without meta: {}
        assert shm.peek_meta(app, "camera", 4)[1] == {}
        for bad in (0, -1, True, 1.0, "1", 1 << 64):
            with pytest.raises(ConfigError, match="frame id"):
                shm.peek_meta(app, "camera", bad)
        with pytest.raises(ConfigError, match="topic"):
            shm.peek_meta(app, "../camera", 1)
    assert shm.peek_meta(app, "camera", 3) is None                     # closed: the ring is gone


def test_an_overwritten_frame_is_none_and_a_pinned_one_outlives_its_index_entry(app):
    with shm.Publisher("camera", app=app, slots=SLOTS) as pub, \
            shm.Subscriber("camera", app=app, qos="REALTIME") as sub:
        for i in range(1, 4):
            pub.publish(np.full(4, i, np.uint8), timestamp=float(i), meta=meta_of(i))
        held = sub.recv(timeout=5)                                     # frame 3, pinned while we hold it
        assert held.frame_id == 3
        for i in range(4, 41):
            pub.publish(np.full(4, i, np.uint8), timestamp=float(i), meta=meta_of(i))
        # a ring of 8 slots, one pinned: the 7 newest frames and the pinned one are there, nothing else
        found = {i for i in range(1, 42) if shm.peek_meta(app, "camera", i) is not None}
        assert found == {3} | set(range(34, 41)), sorted(found)
        assert shm.peek_meta(app, "camera", 3) == (3.0, meta_of(3))
        held.release()
        for i in range(41, 49):
            pub.publish(np.full(4, i, np.uint8), timestamp=float(i), meta=meta_of(i))
        assert shm.peek_meta(app, "camera", 3) is None                 # released, then reused
        assert shm.peek_meta(app, "camera", 48) == (48.0, meta_of(48))


def test_frames_of_an_older_generation_are_found_while_it_exists(app):
    with shm.Publisher("camera", app=app, slots=SLOTS) as pub, \
            shm.Subscriber("camera", app=app, qos="REALTIME") as sub:
        pub.publish(np.zeros(8, np.uint8), timestamp=1.0, meta=meta_of(1))
        pub.publish(np.zeros(8, np.uint8), timestamp=2.0, meta=meta_of(2))
        held = sub.recv(timeout=5)                        # pins generation 1, which therefore stays
        pub.publish(np.zeros(1 << 20, np.uint8), timestamp=3.0, meta=meta_of(3))   # outgrows: generation 2
        assert pub.statistics().generation == 2
        assert [shm.peek_meta(app, "camera", i) for i in (1, 2, 3)] == [(float(i), meta_of(i)) for i in (1, 2, 3)]
        held.release()


def test_peeking_changes_nothing_for_the_subscribers(app):
    name = shm.ring_name(app, "camera")
    with shm.Publisher("camera", app=app, slots=SLOTS) as pub, \
            shm.Subscriber("camera", app=app, qos="DURABLE", group="detector") as sub:
        for i in range(1, 6):
            pub.publish(np.full(4, i, np.uint8), meta=meta_of(i))
        before = pub._writer_or_raise().statistics()
        for _ in range(3):
            for i in range(1, 7):
                ring.peek(name, i)
        after = pub._writer_or_raise().statistics()
        assert after == before                             # no reader, group, cursor or pin changed
        assert [sub.recv(timeout=5).frame_id for _ in range(5)] == [1, 2, 3, 4, 5]   # every frame, in order


# -- a writer in another process, as fast as it goes -----------------------------------------------------------
WRITER = """
import sys, time
import numpy as np
from edgeflow.transport import shm
app, seconds = sys.argv[1], float(sys.argv[2])
def meta_of(i):
    return {"i": i, "pad": "y" * (i * 37 % 700)}
with shm.Publisher("hammer", app=app, slots=SLOTS) as pub:
    data = np.zeros(64, np.uint8)
    i = 1
    assert pub.publish(data, timestamp=float(i), meta=meta_of(i)) == i
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        i += 1
        assert pub.publish(data, timestamp=float(i), meta=meta_of(i)) == i
print("done", i, flush=True)
""".replace("SLOTS", str(SLOTS))


def last_seq(name: str) -> int:
    """The ring's newest seq, read straight from its control segment (ef_ctl line 1), without attaching."""
    with open(f"/dev/shm/{name}.ctl", "rb") as f, mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ) as m:
        return struct.unpack_from("<Q", m, 64)[0]


@pytest.mark.slow
def test_a_concurrent_writer_never_makes_a_peek_return_another_frames_meta(app):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, app, "1.5"], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        name = shm.ring_name(app, "hammer")
        rng = random.Random(16)
        found = gone = 0
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            newest = last_seq(name)
            # mostly the oldest frames in the ring: the ones the writer is about to reuse under our copy
            for i in {newest - rng.randint(SLOTS - 3, SLOTS + 1) for _ in range(4)} | {newest}:
                got = ring.peek(name, i) if i > 0 else None
                if got is None:
                    gone += 1
                    continue
                timestamp, blob = got
                assert timestamp == float(i) and json.loads(blob) == meta_of(i), (i, timestamp, blob[:80])
                found += 1
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    published = int(out.split()[-1])
    assert published > 1000 and found > 500, (published, found, gone)
    print(f"hammer: {published} frames published, {found} peeks found and exact, {gone} gone")
