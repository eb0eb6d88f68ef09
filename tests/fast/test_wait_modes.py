"""How a Subscriber waits (``wait="adaptive"|"sleep"|"spin"``): every mode receives, an idle adaptive or
sleeping subscriber costs (almost) no CPU, a spinning one keeps a core busy, and a bad mode is one line."""

from __future__ import annotations

import threading
import time

import pytest

import edgeflow as ef
from edgeflow.errors import ConfigError, ReceiveTimeout
from edgeflow.transport import shm


def thread_cpu_of(fn) -> float:
    """CPU seconds ``fn`` used on its own thread (time.thread_time inside it)."""
    out = {}

    def run():
        t0 = time.thread_time()
        fn()
        out["cpu"] = time.thread_time() - t0
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    return out["cpu"]


@pytest.mark.parametrize("mode", ["adaptive", "sleep", "spin"])
def test_every_mode_receives_what_is_published(app, mode):
    with ef.Publisher("w", app=app) as pub, shm.Subscriber("w", app=app, qos="durable", wait=mode) as sub:
        assert sub._reader.spin_s == shm.WAIT_SPIN_S[mode]
        got = []

        def consume():
            for _ in range(50):
                with sub.recv(timeout=5) as frame:
                    got.append(bytes(frame.data))
        reader = threading.Thread(target=consume)
        reader.start()
        for i in range(50):
            pub.publish(i.to_bytes(4, "little"))
            if i % 10 == 0:
                time.sleep(0.002)        # some frames come while the reader sleeps, some while it spins
        reader.join(10)
        assert got == [i.to_bytes(4, "little") for i in range(50)]


@pytest.mark.parametrize("mode,low,high", [("adaptive", 0.0, 0.1), ("sleep", 0.0, 0.1), ("spin", 0.4, 10.0)])
def test_an_idle_subscriber_costs_cpu_only_when_it_spins(app, mode, low, high):
    with ef.Publisher("idle", app=app), shm.Subscriber("idle", app=app, wait=mode) as sub:
        def wait_a_second():
            with pytest.raises(ReceiveTimeout):
                sub.recv(timeout=1.0)
        cpu = thread_cpu_of(wait_a_second)
    assert low <= cpu <= high, f"{mode}: {cpu:.3f} s of CPU while idle for 1 s"


def test_wait_any_spins_for_the_subscriber_that_asks_and_still_sleeps_when_none_does(app):
    with ef.Publisher("a", app=app), ef.Publisher("b", app=app), \
            shm.Subscriber("a", app=app, wait="sleep") as a, shm.Subscriber("b", app=app, wait="sleep") as b:
        cpu = thread_cpu_of(lambda: shm.wait_any([a, b], 0.5))
        assert cpu < 0.1
        b._reader.spin_s = -1.0                  # one spinning subscriber: the wait spins for all
        cpu = thread_cpu_of(lambda: shm.wait_any([a, b], 0.5))
        assert cpu > 0.2


def test_an_unknown_wait_mode_is_one_line(app):
    with ef.Publisher("m", app=app):
        with pytest.raises(ConfigError, match=r"m: wait='busy': one of 'adaptive', 'sleep', 'spin'"):
            shm.Subscriber("m", app=app, wait="busy")
