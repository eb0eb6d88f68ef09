"""The matcher against ROS message_filters: its own tests, and models of its algorithms.

- ``optimal`` must give what ROS's C++ tests assert for sync_policies::ApproximateTime
  (test/test_approximate_time_policy.cpp in ros/ros_comm noetic and ros2/message_filters: the same cases).
- ``exact`` must give what test/test_exact_time_policy.cpp asserts for sync_policies::ExactTime.
- ``approximate`` must pass ROS's Python test (test/test_approxsync.py), and agree on random arrivals with
  a small model of ROS 1 noetic's ApproximateTimeSynchronizer.add(); ``exact`` likewise with a model of
  ExactTime::add(). The models restate the ROS algorithms over integer stamps, as plainly as possible, so a
  reader can check them against the ROS sources line by line.

Every case runs on both implementations (compiled and plain Python).
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeflow.fusion import Matcher

S = 1_000_000_000  # one second in nanoseconds, ROS's ``s`` in the C++ tests


@pytest.fixture(params=["compiled", "python"])
def implementation(request):
    return request.param


def stamps_of(sets):
    """The C++ tests label each message by its stamp: compare sets as tuples of stamps."""
    return [tuple(item for item in s) for s in sets]


def run_ros_case(implementation, n_streams, queue_size, inputs, **options):
    """Feed (stamp in seconds, topic) pairs as the C++ test does; items are their own stamps."""
    m = Matcher(n_streams, "optimal", queue_size=queue_size, implementation=implementation, **options)
    out = []
    for stamp, topic in inputs:
        out += m.push(topic, stamp, stamp)
    return stamps_of(out)


# ---------------------------------------------------------------------------------------------------------
# test_approximate_time_policy.cpp: inputs (time, topic) and the asserted output pairs/quads, same names.
# ---------------------------------------------------------------------------------------------------------

ROS_CPP_CASES = {
    # Input A: a..b..c / Input B: A..B..C
    "ExactMatch": (2, 10, {}, [(0, 0), (0, 1), (3, 0), (3, 1), (6, 0), (6, 1)],
                   [(0, 0), (3, 3), (6, 6)]),
    # the last pair is not emitted: a later B could still make a better set with c
    "PerfectMatch": (2, 10, {}, [(0, 0), (1, 1), (3, 0), (4, 1), (6, 0), (7, 1)],
                     [(0, 1), (3, 4)]),
    "ImperfectMatch": (2, 10, {}, [(0, 0), (1, 1), (2, 0), (3, 0), (5, 1), (6, 0), (7, 1)],
                       [(0, 1), (6, 5)]),
    "Acceleration": (2, 10, {}, [(0, 0), (7, 1), (12, 0), (15, 1), (17, 0), (18, 1)],
                     [(12, 7), (17, 18)]),
    "DroppedMessages/queue1": (2, 1, {}, [(0, 0), (1, 1), (3, 1), (4, 0), (7, 1), (8, 0), (10, 0), (11, 1),
                                          (13, 0), (14, 1)],
                               [(4, 3), (10, 11)]),
    "DroppedMessages/queue2": (2, 2, {}, [(0, 0), (1, 1), (3, 1), (4, 0), (7, 1), (8, 0), (10, 0), (11, 1),
                                          (13, 0), (14, 1)],
                               [(0, 1), (4, 3), (8, 7), (10, 11)]),
    "LongQueue": (2, 5, {}, [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0), (3, 1),
                             (9, 0), (10, 0), (11, 0), (12, 0), (10, 1), (13, 0)],
                  [(10, 10)]),
    "DoublePublish": (2, 10, {}, [(0, 0), (1, 1), (3, 1), (3, 0)],
                      [(0, 1), (3, 3)]),
    "FourTopics": (4, 10, {}, [(0, 0), (1, 1), (2, 2), (3, 3), (5, 0), (5, 3), (6, 1), (6, 2), (8, 0), (9, 1),
                               (10, 2), (11, 3), (10, 0), (13, 0), (14, 1)],
                   [(0, 1, 2, 3), (5, 6, 6, 5), (10, 9, 10, 11)]),
    "EarlyPublish": (4, 10, {}, [(0, 0), (1, 1), (2, 2), (3, 3), (7, 0)],
                     [(0, 1, 2, 3)]),
    "RateBound/1.5": (2, 10, {"inter_message_lower_bound": [1.5, 0]},
                      [(0, 0), (1, 1), (3, 0), (4, 1), (6, 0), (7, 1)],
                      [(0, 1), (3, 4)]),
    # with a bound of 2 s on A, C can be proven the best partner of c before anything else arrives
    "RateBound/2": (2, 10, {"inter_message_lower_bound": [2, 0]},
                    [(0, 0), (1, 1), (3, 0), (4, 1), (6, 0), (7, 1)],
                    [(0, 1), (3, 4), (6, 7)]),
    "RateBoundAll/none": (2, 10, {}, [(0, 0), (1, 1), (3, 0), (4, 1), (6, 0), (7, 1)],
                          [(0, 1), (3, 4)]),
    "RateBoundAll/2": (2, 10, {"inter_message_lower_bound": 2},
                       [(0, 0), (1, 1), (3, 0), (4, 1), (6, 0), (7, 1)],
                       [(0, 1), (3, 4), (6, 7)]),
}


@pytest.mark.parametrize("case", list(ROS_CPP_CASES))
def test_optimal_reproduces_ros_cpp_approximate_time_tests(implementation, case):
    n_streams, queue_size, options, inputs, expected = ROS_CPP_CASES[case]
    assert run_ros_case(implementation, n_streams, queue_size, inputs, **options) == expected


def test_optimal_double_publish_emits_both_sets_from_one_push(implementation):
    # DoublePublish: the push of b completes (a, A) and (b, B) at once, in time order.
    m = Matcher(2, "optimal", queue_size=10, implementation=implementation)
    for stamp, topic in [(0, 0), (1, 1), (3, 1)]:
        assert m.push(topic, stamp, stamp) == []
    assert m.push(0, 3, 3) == [(0, 1), (3, 3)]


def test_optimal_reports_what_ros_drops_silently(implementation):
    drops = []
    m = Matcher(2, "optimal", queue_size=1, implementation=implementation,
                on_drop=lambda stream, t, item, reason: drops.append((reason, stream, item)))
    for stamp, topic in [(0, 0), (1, 1), (3, 1)]:
        m.push(topic, stamp, stamp)
    # Queue size 1: B(3) pushes A(1) out, as ROS's add() pops the front of the offending topic. Then B's
    # topic has dropped a message, so ROS will not take it as pivot: a(0) is discarded, never emitted.
    assert drops == [("queue_full", 1, 1), ("no_partner", 0, 0)]


# ---------------------------------------------------------------------------------------------------------
# test_exact_time_policy.cpp
# ---------------------------------------------------------------------------------------------------------

def test_exact_multiple_times(implementation):
    # ExactTime.multipleTimes: Sync3 with queue size 2
    m = Matcher(3, "exact", queue_size=2, implementation=implementation)
    assert m.push(0, 0.0, "m0") == []
    assert m.push(1, 0.1, "m1") == []
    assert m.push(0, 0.1, "m1") == []
    assert m.push(2, 0.1, "m1") == [("m1", "m1", "m1")]


def test_exact_queue_size(implementation):
    # ExactTime.queueSize: queue size 1 keeps one pending stamp, the newest
    m = Matcher(3, "exact", queue_size=1, implementation=implementation)
    for stream, stamp in [(0, 0.0), (1, 0.0), (1, 0.1), (1, 0.0), (2, 0.0)]:
        assert m.push(stream, stamp, stamp) == []
    stats = m.statistics()
    assert stats.sets == 0 and stats.queued == (0, 1, 0)


def test_exact_drop_callback(implementation):
    # ExactTime.dropCallback: Sync2 with queue size 1; a second stamp drops the first
    drops = []
    m = Matcher(2, "exact", queue_size=1, implementation=implementation,
                on_drop=lambda *args: drops.append(args))
    m.push(0, 0.0, "first")
    assert drops == []
    m.push(0, 0.1, "second")
    assert drops == [(0, 0.0, "first", "queue_full")]


# ---------------------------------------------------------------------------------------------------------
# test_approxsync.py (Python ApproximateTimeSynchronizer)
# ---------------------------------------------------------------------------------------------------------

def test_approximate_pairs_combine_with_queue_size_1(implementation):
    m = Matcher(2, "approximate", slop=0.1, queue_size=1, implementation=implementation)
    for t in range(10):
        assert m.push(0, t, ("a", t)) == []
        assert m.push(1, t, ("b", t)) == [(("a", t), ("b", t))]


@pytest.mark.parametrize("n", range(1, 10))
def test_approximate_recombines_scrambled_sequences(implementation, n):
    rnd = random.Random(n)
    m = Matcher(2, "approximate", slop=0.1, queue_size=n, implementation=implementation)
    seq0 = [(t, rnd.random()) for t in range(n)]
    seq1 = [(t, rnd.random()) for t in range(n)]
    for t, item in rnd.sample(seq0, n):
        assert m.push(0, t, item) == []
    out = []
    for t, item in rnd.sample(seq1, n):
        out += m.push(1, t, item)
    assert set(out) == {(a[1], b[1]) for a, b in zip(seq0, seq1)}


# ---------------------------------------------------------------------------------------------------------
# Models of the ROS algorithms, and random arrivals
# ---------------------------------------------------------------------------------------------------------

class RosApproximateModel:
    """ROS 1 noetic ApproximateTimeSynchronizer.add() over integer stamps (message_filters/__init__.py)."""

    def __init__(self, n_streams, queue_size, slop_ns):
        self.queues = [{} for _ in range(n_streams)]
        self.queue_size, self.slop = queue_size, slop_ns
        self.drops = []

    def add(self, stream, stamp, item):
        queue = self.queues[stream]
        if stamp in queue:
            self.drops.append((stream, stamp, queue[stamp], "replaced"))
        queue[stamp] = item                      # my_queue[stamp] = msg
        while len(queue) > self.queue_size:      # del my_queue[min(my_queue)]
            oldest = min(queue)
            self.drops.append((stream, oldest, queue.pop(oldest), "queue_full"))
        near_by_stream = []
        for other, q in enumerate(self.queues):  # every queue but the new item's
            if other == stream:
                continue
            near = [(abs(s - stamp), s) for s in q if abs(s - stamp) <= self.slop]
            if not near:
                return []
            near_by_stream.append([s for _, s in sorted(near, key=lambda pair: pair[0])])
        for combo in itertools.product(*near_by_stream):
            chosen = list(combo)
            chosen.insert(stream, stamp)
            if max(chosen) - min(chosen) < self.slop and all(s in q for q, s in zip(self.queues, chosen)):
                return [tuple(q.pop(s) for q, s in zip(self.queues, chosen))]   # first match only
        return []


class RosExactModel:
    """ROS sync_policies::ExactTime::add() over integer stamps (exact_time.h); drops reported per item."""

    def __init__(self, n_streams, queue_size):
        self.n, self.queue_size = n_streams, queue_size
        self.tuples = {}  # stamp -> {stream: item}, ROS's std::map<Time, Tuple>
        self.drops = []

    def add(self, stream, stamp, item):
        row = self.tuples.setdefault(stamp, {})
        if stream in row:
            self.drops.append((stream, stamp, row[stream], "replaced"))
        row[stream] = item
        out = []
        if len(row) == self.n:                   # checkTuple(): full -> signal, then clearOldTuples()
            out.append(tuple(row[s] for s in range(self.n)))
            del self.tuples[stamp]
            for old in sorted(s for s in self.tuples if s <= stamp):
                self._drop_row(old, "superseded")
        while len(self.tuples) > self.queue_size:
            self._drop_row(min(self.tuples), "queue_full")
        return out

    def _drop_row(self, stamp, reason):
        row = self.tuples.pop(stamp)
        self.drops += [(s, stamp, row[s], reason) for s in sorted(row)]


def arrivals(n_streams, max_size=50):
    """Random arrivals: (stream, stamp in ms) with many duplicates, ties and out-of-order stamps."""
    return st.lists(st.tuples(st.integers(0, n_streams - 1), st.integers(0, 60)), max_size=max_size)


MODEL_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@MODEL_SETTINGS
@given(data=st.data(), n_streams=st.integers(2, 4), queue_size=st.integers(1, 5),
       slop_ms=st.integers(0, 12))
def test_approximate_agrees_with_ros_model(data, n_streams, queue_size, slop_ms):
    events = data.draw(arrivals(n_streams))
    for implementation in ("compiled", "python"):
        drops = []
        m = Matcher(n_streams, "approximate", slop=slop_ms / 1000, queue_size=queue_size,
                    implementation=implementation, on_drop=lambda *args: drops.append(args))
        model = RosApproximateModel(n_streams, queue_size, slop_ms * 1_000_000)
        for i, (stream, ms) in enumerate(events):
            assert m.push_ns(stream, ms * 1_000_000, i) == model.add(stream, ms * 1_000_000, i)
        assert [(s, round(t * 1e9), item, r) for s, t, item, r in drops] == model.drops
        assert m.queue_sizes() == tuple(len(q) for q in model.queues)


@MODEL_SETTINGS
@given(data=st.data(), n_streams=st.integers(2, 4), queue_size=st.integers(1, 5))
def test_exact_agrees_with_ros_model(data, n_streams, queue_size):
    events = data.draw(arrivals(n_streams))
    for implementation in ("compiled", "python"):
        drops = []
        m = Matcher(n_streams, "exact", queue_size=queue_size, implementation=implementation,
                    on_drop=lambda *args: drops.append(args))
        model = RosExactModel(n_streams, queue_size)
        for i, (stream, ms) in enumerate(events):
            assert m.push_ns(stream, ms * 1_000_000, i) == model.add(stream, ms * 1_000_000, i)
        assert [(s, round(t * 1e9), item, r) for s, t, item, r in drops] == model.drops
