"""Pushes per second through the slop matcher: compiled (matcher_c) against the plain-Python reference.

Two workloads of sensor-like arrivals, each matched with the ``approximate`` policy:

- 3 streams: camera 30 Hz, lidar 10 Hz, IMU 200 Hz, slop 20 ms; stamps jitter and arrivals carry a random
  latency, so some arrive out of order.
- 8 streams: four cameras 30 Hz, two lidars 10 Hz, IMU 200 Hz, GNSS 20 Hz, slop 30 ms, same jitter and
  latency.

Each benchmark checks its answer: the compiled matcher must emit exactly the sets the reference emits on the
same arrivals, every set must span less than slop, and most lidar scans must find a set (a fast wrong
answer fails). Compare figures from one machine and one run only.

    pytest benchmarks/bench_matcher.py --benchmark-only      # pytest-benchmark table
    python benchmarks/bench_matcher.py                       # plain table with the compiled/pure ratio
"""

from __future__ import annotations

import functools
import os
import pathlib
import random
import sys
import time

import pytest

if __name__ == "__main__":  # run as a script: use the checkout this file is in, installed or not
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from edgeflow.fusion import Matcher  # noqa: E402

EPOCH = 1_700_000_000.0  # stamps near today's Unix time, as real sensor stamps are
WORKLOADS = {
    "3 streams": {"rates_hz": (30, 10, 200), "slop": 0.02, "lidar": 1},
    "8 streams": {"rates_hz": (30, 30, 30, 30, 10, 10, 200, 20), "slop": 0.03, "lidar": 4},
}
N_EVENTS = 10_000 if os.environ.get("EDGEFLOW_BENCH_FAST") == "1" else 100_000
QUEUE_SIZE = 10


@functools.lru_cache(maxsize=None)
def arrivals(workload: str, n_events: int = N_EVENTS, seed: int = 7) -> tuple:
    """(stream, stamp seconds, item) in arrival order.

    Each sensor is periodic from a common trigger plus its own 0-8 ms offset; stamps jitter by ±1 ms and
    arrivals by a 0-3 ms latency, so some arrive out of order.
    """
    rates = WORKLOADS[workload]["rates_hz"]
    rnd = random.Random(seed)
    duration = n_events / sum(rates) + 1.0
    timed = []
    for stream, hz in enumerate(rates):
        phase = rnd.uniform(0, 0.008)
        for k in range(int(duration * hz)):
            stamp = EPOCH + phase + k / hz + rnd.uniform(-0.001, 0.001)
            timed.append((stamp + rnd.uniform(0, 0.003), stream, stamp))
    timed.sort()
    return tuple((stream, stamp, i) for i, (_, stream, stamp) in enumerate(timed[:n_events]))


def run(implementation: str, workload: str, events: tuple) -> list[tuple]:
    """Push every event through a fresh matcher; return the sets in emission order."""
    m = Matcher(len(WORKLOADS[workload]["rates_hz"]), "approximate", slop=WORKLOADS[workload]["slop"],
                queue_size=QUEUE_SIZE, implementation=implementation)
    push = m.push
    sets: list[tuple] = []
    for stream, stamp, item in events:
        found = push(stream, stamp, item)
        if found:
            sets += found
    return sets


@functools.lru_cache(maxsize=None)
def reference_sets(workload: str, n_events: int = N_EVENTS) -> list[tuple]:
    return run("python", workload, arrivals(workload, n_events))


def check(workload: str, sets: list[tuple], n_events: int = N_EVENTS) -> None:
    """Fail unless the sets are the reference's, each spans < slop, and most lidar scans were matched."""
    events = arrivals(workload, n_events)
    slop_ns = round(WORKLOADS[workload]["slop"] * 1e9)
    lidar = WORKLOADS[workload]["lidar"]
    for s in sets:
        stamps = [round(events[item][1] * 1e9) for item in s]
        assert [events[item][0] for item in s] == list(range(len(s))), "a set mixes up its streams"
        assert max(stamps) - min(stamps) < slop_ns, f"a set spans {max(stamps) - min(stamps)} ns >= slop"
    scans = sum(1 for stream, _, _ in events if stream == lidar)
    assert len(sets) >= 0.8 * scans, f"only {len(sets)} sets for {scans} lidar scans"
    assert sets == reference_sets(workload, n_events), "the sets differ from the plain-Python reference"


@pytest.mark.parametrize("implementation", ["compiled", "python"])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_push_rate(benchmark, workload, implementation):
    events = arrivals(workload)
    benchmark.group = f"matcher, {workload}"
    benchmark.extra_info["pushes"] = len(events)
    rounds = 10 if implementation == "compiled" else 3
    sets = benchmark.pedantic(run, args=(implementation, workload, events), rounds=rounds, iterations=1)
    if not benchmark.disabled:                 # disabled (fast mode): the body ran once, untimed
        benchmark.extra_info["pushes_per_s"] = round(len(events) / benchmark.stats.stats.min)
    check(workload, sets)


def best_rate(implementation: str, workload: str, events: tuple, repeat: int) -> tuple[float, list[tuple]]:
    """Pushes per second of the fastest of ``repeat`` runs, and the sets of the last."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        sets = run(implementation, workload, events)
        best = min(best, time.perf_counter() - started)
    return len(events) / best, sets


def main() -> int:
    print(f"approximate policy, queue_size={QUEUE_SIZE}, {N_EVENTS:,} pushes per run, best of several runs")
    print(f"{'workload':<11} {'compiled pushes/s':>18} {'pure pushes/s':>14} {'compiled/pure':>14}")
    for workload in WORKLOADS:
        events = arrivals(workload)
        compiled, compiled_sets = best_rate("compiled", workload, events, repeat=10)
        pure, _ = best_rate("python", workload, events, repeat=3)
        check(workload, compiled_sets)
        print(f"{workload:<11} {compiled:>18,.0f} {pure:>14,.0f} {compiled / pure:>13.1f}x"
              f"   ({len(compiled_sets):,} sets, checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
