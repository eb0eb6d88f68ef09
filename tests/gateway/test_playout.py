"""Issue 11: the play-out (jitter) buffer, WebInterface(buffer_delay=..., queue_size=...).

Frames captured at an even cadence but arriving in bursts are shown evenly paced and buffer_delay late (the
show times the hub reports through on_show; the tolerances are sanity bounds, not tight wall-clock checks);
buffer_delay=0 shows the newest at once; queue_size bounds what is held; late frames and clock jumps.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from edgeflow.errors import ConfigError
from edgeflow.frame import Frame
from edgeflow.gateway.app import make_app
from edgeflow.gateway.hub import Hub
from edgeflow.gateway.routes import HUB
from edgeflow.nodes.gateway import WebInterface

from .helpers import StaticRuntime, client_for, run_async

PERIOD = 1 / 30
TOLERANCE = 0.025           # seconds: a loaded CI machine's timer jitter, far below the bursts' 0.2 s


def image(n: int) -> np.ndarray:
    img = np.full((24, 32, 3), n % 256, np.uint8)
    img.flags.writeable = False
    return img


def bursts(hub: Hub, count: int, burst: int, t0: float, arrivals: dict) -> threading.Thread:
    """A node thread publishing ``count`` frames captured every PERIOD from ``t0``, ``burst`` at a time: each
    burst leaves when its last frame was captured (a link that delivers in clumps)."""
    def run():
        for start in range(0, count, burst):
            last = min(count, start + burst) - 1
            time.sleep(max(0.0, t0 + last * PERIOD - time.time()))
            for n in range(start, last + 1):
                arrivals[n] = time.perf_counter()
                hub.publish(Frame(image(n), frame_id=n, timestamp=t0 + n * PERIOD, topic="cam"))
    thread = threading.Thread(target=run, name="test-node-thread")
    thread.start()
    return thread


@run_async
async def test_bursty_frames_are_shown_evenly_paced_and_buffer_delay_late():
    delay, count = 0.3, 36
    shows: dict = {}
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_show(topic, entry):
        shows[entry.frame_id] = entry.handed
        if len(shows) == count:
            loop.call_soon_threadsafe(done.set)

    hub = Hub(buffer_delay=delay, queue_size=100, on_show=on_show)
    hub.attach(loop)
    arrivals: dict = {}
    t0 = time.time() + 0.05
    thread = bursts(hub, count, 6, t0, arrivals)           # six frames every 0.2 s
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await asyncio.to_thread(thread.join)
        hub.close()
    assert sorted(shows) == list(range(count))             # every frame shown, in order
    assert [n for n in sorted(shows, key=shows.get)] == list(range(count))
    first = shows[0]
    # anchored on the first frame: shown buffer_delay after it arrived ...
    assert abs(first - arrivals[0] - delay) < TOLERANCE
    # ... and every later one at its capture offset from it, although they arrived six at a time
    offsets = [shows[n] - first - n * PERIOD for n in range(count)]
    assert max(abs(o) for o in offsets) < TOLERANCE, offsets
    gaps = [shows[n + 1] - shows[n] for n in range(count - 1)]
    assert min(gaps) > PERIOD - TOLERANCE                   # not in bursts: 0.2 s clumps would show ~0 gaps
    topic = hub.topic("cam")
    assert hub.buffer_state(topic) == {"delay_s": delay, "queue_size": 100, "depth": 0, "late": 0,
                                       "late_drops": 0, "overflow_drops": 0, "reanchors": 0}


def test_without_buffer_delay_the_newest_is_shown_at_once():
    shown = []
    hub = Hub(on_show=lambda topic, entry: shown.append(entry.frame_id))
    now = time.time()
    for n in range(5):                                      # a burst, no event loop needed
        hub.publish(Frame(image(n), frame_id=n, timestamp=now - 1 + n * PERIOD, topic="cam"))
    topic = hub.topic("cam")
    assert shown == [0, 1, 2, 3, 4] and topic.latest.frame_id == 4
    assert hub.buffer_state(topic)["depth"] == 0


def test_the_buffer_holds_copies_and_at_most_queue_size_frames():
    hub = Hub(buffer_delay=5.0, queue_size=4)              # no loop: nothing is shown, frames are only held
    now = time.time()
    source = np.zeros((24, 32, 3), np.uint8)
    for n in range(10):
        source[:] = n
        hub.publish(Frame(source, frame_id=n, timestamp=now + n * PERIOD, topic="cam"))
    topic = hub.topic("cam")
    state = hub.buffer_state(topic)
    assert state["depth"] == 4 and state["overflow_drops"] == 6
    held = sorted((h.frame_id, int(h.data[0, 0, 0])) for _, _, h in topic.held)
    assert held == [(6, 6), (7, 7), (8, 8), (9, 9)]        # the newest four, each its own copy
    assert topic.latest is None
    assert hub.release_due(topic, time.perf_counter() + 10) == 4 and topic.latest.frame_id == 9


def test_late_frames_are_shown_at_once_or_dropped_when_a_newer_one_was_shown():
    hub = Hub(buffer_delay=0.05)
    topic = hub.topic("cam", create=True)
    t0 = time.time()
    hub.publish(Frame(image(0), frame_id=0, timestamp=t0, topic="cam"))
    hub.publish(Frame(image(2), frame_id=2, timestamp=t0 + 0.02, topic="cam"))
    assert hub.release_due(topic, time.perf_counter() + 1.0) == 2 and topic.latest.frame_id == 2
    time.sleep(0.1)          # not a synchronisation: lateness needs time to pass beyond the slots below
    # frame 1 arrives after its slot and after frame 2 was shown: it would go back in time, so it is dropped
    hub.publish(Frame(image(1), frame_id=1, timestamp=t0 + 0.01, topic="cam"))
    assert hub.release_due(topic) == 0 and topic.latest.frame_id == 2
    # frame 3 is late too but newer than anything shown: shown at once
    hub.publish(Frame(image(3), frame_id=3, timestamp=t0 + 0.03, topic="cam"))
    assert hub.release_due(topic) == 1 and topic.latest.frame_id == 3
    state = hub.buffer_state(topic)
    assert state["late"] == 2 and state["late_drops"] == 1 and state["reanchors"] == 0


def test_a_capture_clock_jump_anchors_again():
    hub = Hub(buffer_delay=0.2)
    topic = hub.topic("cam", create=True)
    t0 = time.time()
    hub.publish(Frame(image(0), frame_id=0, timestamp=t0, topic="cam"))
    assert hub.release_due(topic, time.perf_counter() + 1) == 1
    # the producer's clock stepped an hour ahead, then an hour back: neither is held for an hour nor dropped
    hub.publish(Frame(image(1), frame_id=1, timestamp=t0 + 3600, topic="cam"))
    assert topic.held[0][0] - time.perf_counter() < 0.2 + 0.05
    assert hub.release_due(topic, time.perf_counter() + 1) == 1
    hub.publish(Frame(image(2), frame_id=2, timestamp=t0 + PERIOD, topic="cam"))
    assert hub.release_due(topic, time.perf_counter() + 1) == 1 and topic.latest.frame_id == 2
    assert hub.buffer_state(topic)["reanchors"] == 2


@run_async
async def test_the_web_interface_settings_reach_the_api_and_dict_messages_are_buffered_too():
    web = WebInterface(port=0, buffer_delay=0.05, queue_size=7)
    built = make_app(web, StaticRuntime())[HUB]
    assert (built.buffer_delay, built.queue_size) == (0.05, 7)
    shown = asyncio.Event()
    hub = Hub(buffer_delay=0.05, queue_size=7, on_show=lambda topic, entry: shown.set())
    async with client_for(interface=web, hub=hub) as (client, hub):
        message = {"ranges": np.arange(4, dtype=np.float32), "scan": 3}
        hub.publish(Frame(message, frame_id=1, topic="lidar"))
        status = await (await client.get("/api/status")).json()
        assert status["buffer_delay_s"] == 0.05 and status["queue_size"] == 7
        await asyncio.wait_for(shown.wait(), 5)            # on the loop: the timer showed it
        body = await (await client.get("/api/topics")).json()
        (lidar,) = [t for t in body["topics"] if t["name"] == "lidar"]
        assert lidar["kind"] == "data" and lidar["buffer"]["depth"] == 0
        assert lidar["value"] == {"ranges": {"dtype": "float32", "shape": [4]}, "scan": 3}


@pytest.mark.parametrize("options, message", [
    ({"buffer_delay": -1}, "buffer_delay=-1"), ({"buffer_delay": "0.5"}, "buffer_delay='0.5'"),
    ({"queue_size": 0}, "queue_size=0"), ({"queue_size": 2.5}, "queue_size=2.5")])
def test_bad_play_out_settings_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        make_app(WebInterface(port=0, **options), StaticRuntime())
