"""The slop matcher (edgeflow.fusion.Matcher): one suite for both implementations, compiled and plain Python.

Hand-written cases for each policy follow the rules in docs/fusion-matcher.md (which restate the ROS
behaviour); the ROS projects' own test cases are in test_matcher_ros.py. The property tests at the end
check that the two implementations agree, item for item, on random arrival sequences.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import weakref

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgeflow._fast.matcher_c as matcher_c
import edgeflow._fast.matcher_py as matcher_py
from edgeflow import fusion
from edgeflow.errors import ConfigError
from edgeflow.fusion import DROP_REASONS, Matcher, MatcherStatistics

MS = 1_000_000  # nanoseconds


@pytest.fixture(params=["compiled", "python"])
def make(request):
    """Build a Matcher of the parametrized implementation; keyword arguments as Matcher's."""
    def make(n_streams, policy="approximate", **options):
        options.setdefault("implementation", request.param)
        return Matcher(n_streams, policy, **options)
    return make


class Drops(list):
    """An on_drop callback that records (reason, stream, item)."""

    def __call__(self, stream, timestamp, item, reason):
        self.append((reason, stream, item))


def feed(m, events):
    """Push (stream, seconds, item) events; return every set emitted, in order."""
    out = []
    for stream, timestamp, item in events:
        out += m.push(stream, timestamp, item)
    return out


# ---------------------------------------------------------------------------------------------------------
# The public API
# ---------------------------------------------------------------------------------------------------------

def test_push_returns_one_tuple_per_set_in_stream_order(make):
    m = make(3, slop=0.05)
    assert m.push(2, 12.010, "imu") == []
    assert m.push(0, 12.000, "camera") == []
    assert m.push(1, 12.003, "lidar") == [("camera", "lidar", "imu")]


def test_statistics_is_a_frozen_snapshot(make):
    m = make(2, slop=0.05, queue_size=1)
    feed(m, [(0, 1.0, "a"), (0, 2.0, "b"), (1, 2.01, "x"), (1, 5.0, "y")])
    stats = m.statistics()
    assert isinstance(stats, MatcherStatistics)
    assert (stats.pushes, stats.sets, stats.queue_full, stats.queued) == (4, 1, 1, (0, 1))
    assert stats.drops == {**dict.fromkeys(DROP_REASONS, 0), "queue_full": 1}
    assert stats.dropped == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.sets = 0
    m.push(0, 5.0, "c")
    assert stats.sets == 1 and m.statistics().sets == 2


def test_drop_reasons_and_policies_match_the_core():
    assert DROP_REASONS == matcher_py.REASONS == matcher_c.REASONS
    assert fusion.POLICIES == matcher_py.POLICIES == matcher_c.POLICIES
    assert [f.name for f in dataclasses.fields(MatcherStatistics)][3:] == list(DROP_REASONS)


def test_on_drop_gets_stream_seconds_item_and_reason(make):
    calls = []
    m = make(2, slop=0.05, queue_size=1, on_drop=lambda *args: calls.append(args))
    m.push(0, 1.25, "a")
    m.push(0, 2.5, "b")
    assert calls == [(0, 1.25, "a", "queue_full")]


def test_on_drop_runs_after_the_state_is_updated(make):
    seen = []
    m = make(2, slop=0.05, queue_size=1,
             on_drop=lambda *args: seen.append((m.queue_sizes(), m.statistics().queue_full)))
    m.push(0, 1.0, "a")
    m.push(0, 2.0, "b")
    assert seen == [((1, 0), 1)]


def test_on_drop_may_push_again(make):
    def on_drop(stream, timestamp, item, reason):
        if item == "a":
            results.append(m.push(1, 2.0, "x"))
    results = []
    m = make(2, slop=0.05, queue_size=1, on_drop=on_drop)
    m.push(0, 1.0, "a")
    assert m.push(0, 2.0, "b") == []
    assert results == [[("b", "x")]]


def test_on_drop_error_propagates_and_the_matcher_stays_usable(make):
    def on_drop(*args):
        raise RuntimeError("user bug")
    m = make(2, slop=0.05, queue_size=1, on_drop=on_drop)
    m.push(0, 1.0, "a")
    with pytest.raises(RuntimeError, match="user bug"):
        m.push(0, 2.0, "b")
    assert m.statistics().queue_full == 1
    assert m.push(1, 2.0, "x") == [("b", "x")]


def test_clear_drops_everything_held_and_keeps_counters(make):
    drops = Drops()
    m = make(3, slop=0.05, on_drop=drops)
    feed(m, [(0, 1.0, "a"), (1, 1.01, "b"), (1, 3.0, "c")])
    m.clear()
    assert sorted(drops) == [("cleared", 0, "a"), ("cleared", 1, "b"), ("cleared", 1, "c")]
    assert m.queue_sizes() == (0, 0, 0)
    assert m.statistics().pushes == 3 and m.statistics().cleared == 3
    assert m.push(2, 1.0, "z") == []  # nothing of before is left to match with


class Item:
    """A weak-referenceable item: items may be zero-copy frames that pin shared memory while referenced."""


@pytest.mark.parametrize("policy, options", [("approximate", {"slop": 0.05}), ("optimal", {}),
                                             ("exact", {}), ("latest", {"slop": 0.05})])
def test_matcher_keeps_no_reference_to_items_it_let_go(make, policy, options):
    m = make(2, policy, queue_size=3, **options)
    items = [Item() for _ in range(40)]
    refs = [weakref.ref(item) for item in items]
    out = []
    for k, item in enumerate(items):  # per stamp: two items of stream 0, then one of stream 1
        out += m.push(0 if k % 3 < 2 else 1, 1.0 + (k // 3) * 0.01, item)
    assert out and m.statistics().dropped  # some were emitted, some dropped, some are held
    held = sum(m.queue_sizes())
    del items, out, item
    gc.collect()
    assert sum(ref() is not None for ref in refs) <= held
    m.clear()
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_timestamps_are_rounded_once_to_nanoseconds(make):
    m = make(2, "exact")
    m.push(0, 0.1, "a")  # 0.1 * 1e9 rounds to 100_000_000
    assert m.push_ns(1, 100_000_000, "b") == [("a", "b")]
    m.push(0, 1.0000000004, "c")  # rounds down to ...000
    assert m.push_ns(1, 1_000_000_000, "d") == [("c", "d")]
    m.push(0, 2.5e-9, "e")  # ties go to even, as Python's round(): 2
    assert m.push_ns(1, 2, "f") == [("e", "f")]


def test_env_var_selects_the_python_reference(monkeypatch):
    monkeypatch.setenv("EDGEFLOW_PURE_MATCHER", "1")
    assert Matcher(2, "exact").implementation == "python"
    assert Matcher(2, "exact", implementation="compiled").implementation == "compiled"
    monkeypatch.delenv("EDGEFLOW_PURE_MATCHER")
    assert Matcher(2, "exact").implementation == "compiled"
    assert type(Matcher(2, "exact")._core).__module__ == "edgeflow._fast.matcher_c"
    assert type(Matcher(2, "exact", implementation="python")._core).__module__ == "edgeflow._fast.matcher_py"


def test_compiled_request_fails_clearly_when_not_built(monkeypatch):
    monkeypatch.setitem(fusion._MODULES, "compiled", "edgeflow._fast.no_such_matcher")
    with pytest.raises(ImportError, match="compiled matcher .* is not built"):
        Matcher(2, "exact", implementation="compiled")
    assert Matcher(2, "exact").implementation == "python"  # not asked for by name: the reference


# ---------------------------------------------------------------------------------------------------------
# Bad arguments: ConfigError (a ValueError) in one line
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, options, message", [
    ((3,), {"policy": "aproximate", "slop": 0.1}, r"unknown policy 'aproximate' \(did you mean 'approximate'\?\)"),
    ((3,), {"policy": "approximate"}, "policy 'approximate' needs slop="),
    ((3,), {"policy": "latest"}, "policy 'latest' needs slop="),
    ((1,), {"policy": "exact"}, "n_streams=1 out of range: must be 2 or more"),
    ((2.0,), {"policy": "exact"}, "n_streams must be an integer"),
    ((3,), {"slop": -0.01}, "slop=-0.01 must be a finite duration >= 0"),
    ((3,), {"slop": math.nan}, "slop=nan must be a finite duration"),
    ((3,), {"slop": "0.1"}, "slop must be a number of seconds"),
    ((3,), {"policy": "latest", "slop": 0.1, "pivot": 3}, r"pivot=3 out of range: must be 0\.\.2"),
    ((3,), {"policy": "latest", "slop": 0.1, "pivot": -1}, "pivot=-1 out of range"),
    ((3,), {"policy": "optimal", "inter_message_lower_bound": [0.1, 0.1]},
     "inter_message_lower_bound has 2 values for 3 streams"),
    ((3,), {"policy": "optimal", "inter_message_lower_bound": -1}, "inter_message_lower_bound=-1 must be"),
    ((3,), {"policy": "optimal", "max_interval": -1.0}, "max_interval=-1.0 must be"),
    ((3,), {"policy": "optimal", "age_penalty": -0.5}, "age_penalty=-0.5 must be finite and >= 0"),
    ((3,), {"policy": "exact", "queue_size": 0}, "queue_size=0 out of range"),
    ((3,), {"policy": "exact", "on_drop": "print"}, "on_drop must be callable"),
    ((3,), {"policy": "exact", "implementation": "rust"}, "implementation must be 'compiled' or 'python'"),
])
def test_bad_arguments_raise_config_error(make, args, options, message):
    with pytest.raises(ConfigError, match=message) as info:
        make(*args, **options)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@pytest.mark.parametrize("stream", [-1, 3, 2**70])
def test_stream_out_of_range_raises_config_error(make, stream):
    m = make(3, slop=0.1)
    with pytest.raises(ConfigError, match=r"stream .* out of range: streams are 0\.\.2"):
        m.push(stream, 1.0, "x")
    assert m.statistics().pushes == 0


@pytest.mark.parametrize("timestamp", [math.nan, math.inf, -math.inf, 1e10])
def test_unusable_timestamp_raises_config_error(make, timestamp):
    m = make(2, slop=0.1)
    with pytest.raises(ConfigError, match="is not a finite time"):
        m.push(0, timestamp, "x")


def test_non_integer_stream_raises_type_error(make):
    m = make(2, slop=0.1)
    with pytest.raises(TypeError):
        m.push(1.0, 1.0, "x")
    with pytest.raises(TypeError):
        m.push_ns(1, 1.5, "x")


# ---------------------------------------------------------------------------------------------------------
# approximate: ROS 1 noetic ApproximateTimeSynchronizer (Python)
# ---------------------------------------------------------------------------------------------------------

def test_approximate_span_equal_to_slop_does_not_match(make):
    m = make(2, slop=0.05)
    m.push_ns(0, 1000 * MS, "a")
    assert m.push_ns(1, 1050 * MS, "x") == []        # span == slop: ROS requires span < slop
    assert m.push_ns(1, 1050 * MS - 1, "y") == [("a", "y")]


def test_approximate_slop_boundary_in_seconds(make):
    m = make(2, slop=0.05)
    m.push(0, 1.0, "a")
    assert m.push(1, 1.05, "x") == []                 # both round to whole ms: exactly slop apart
    assert m.push(1, 1.0499999, "y") == [("a", "y")]


def test_approximate_zero_slop_never_matches(make):
    m = make(2, slop=0)
    m.push(0, 1.0, "a")
    assert m.push(1, 1.0, "x") == []


def test_approximate_closest_candidate_wins(make):
    m = make(2, slop=0.05)
    feed(m, [(1, 0.97, "far"), (1, 0.99, "near"), (1, 1.03, "mid")])
    assert m.push(0, 1.0, "a") == [("a", "near")]
    assert m.queue_sizes() == (0, 2)


def test_approximate_distance_ties_go_to_queue_order(make):
    m = make(2, slop=0.05)
    feed(m, [(1, 1.02, "later stamp, queued first"), (1, 0.98, "earlier stamp")])
    assert m.push(0, 1.0, "a") == [("a", "later stamp, queued first")]


def test_approximate_repeated_stamp_replaces_item_in_place(make):
    drops = Drops()
    m = make(2, slop=0.05, on_drop=drops)
    feed(m, [(1, 0.98, "old"), (1, 1.02, "other"), (1, 0.98, "new")])
    assert drops == [("replaced", 1, "old")]
    assert m.queue_sizes() == (0, 2)
    # "new" took "old"'s place, first in the queue, so it wins the distance tie (ROS: same dict key)
    assert m.push(0, 1.0, "a") == [("a", "new")]


def test_approximate_tries_combinations_in_product_order_not_by_span(make):
    # Around the new item (t=0): stream 1 ranks +10 ms before -12 ms; stream 2 has -15 ms and +16 ms.
    # ROS takes the first combination in itertools.product order whose span is under slop: (+10, -15)
    # with span 25 ms, although (-12, -15) would span only 15 ms.
    m = make(3, slop=0.03)
    for stream, ms, item in [(1, 10, "+10"), (1, -12, "-12"), (2, -15, "-15"), (2, 16, "+16")]:
        m.push_ns(stream, 1000 * MS + ms * MS, item)
    assert m.push_ns(0, 1000 * MS, "new") == [("new", "+10", "-15")]


def test_approximate_skips_combinations_too_wide(make):
    m = make(3, slop=0.03)
    for stream, ms, item in [(1, 10, "+10"), (1, -12, "-12"), (2, -25, "-25")]:
        m.push_ns(stream, 1000 * MS + ms * MS, item)
    # (+10, -25) spans 35 ms >= slop; the next one, (-12, -25), spans 25 ms
    assert m.push_ns(0, 1000 * MS, "new") == [("new", "-12", "-25")]


def test_approximate_full_queue_evicts_the_oldest_stamp_not_the_oldest_arrival(make):
    drops = Drops()
    m = make(2, slop=0.05, queue_size=2, on_drop=drops)
    feed(m, [(0, 5.0, "five"), (0, 3.0, "three"), (0, 4.0, "four")])
    assert drops == [("queue_full", 0, "three")]
    assert m.push(1, 5.0, "x") == [("five", "x")]
    assert m.push(1, 4.0, "y") == [("four", "y")]


def test_approximate_full_queue_may_evict_the_new_item_itself(make):
    drops = Drops()
    m = make(2, slop=0.05, queue_size=2, on_drop=drops)
    feed(m, [(1, 3.0, "x"), (0, 5.0, "five"), (0, 4.0, "four")])
    assert m.push(0, 3.0, "three") == []              # the oldest stamp: evicted before it is matched
    assert drops == [("queue_full", 0, "three")]
    assert m.queue_sizes() == (2, 1)


def test_approximate_out_of_order_arrivals_match_normally(make):
    m = make(2, slop=0.05)
    feed(m, [(0, 2.0, "late"), (0, 1.0, "early")])
    assert m.push(1, 1.01, "x") == [("early", "x")]
    assert m.push(1, 1.99, "y") == [("late", "y")]


def test_approximate_silent_stream_keeps_queues_bounded(make):
    drops = Drops()
    m = make(3, slop=0.02, queue_size=5, on_drop=drops)
    for k in range(20):                               # stream 2 says nothing
        assert m.push(0, k * 0.1, ("cam", k)) == []
        assert m.push(1, k * 0.1 + 0.005, ("lidar", k)) == []
    assert m.queue_sizes() == (5, 5, 0)
    assert m.statistics().queue_full == 30 and drops[0] == ("queue_full", 0, ("cam", 0))
    assert m.push(2, 1.9 + 0.001, "imu") == [(("cam", 19), ("lidar", 19), "imu")]


# ---------------------------------------------------------------------------------------------------------
# optimal: ROS ApproximateTime policy (C++); the ROS test cases are in test_matcher_ros.py
# ---------------------------------------------------------------------------------------------------------

def test_optimal_waits_until_a_set_is_provably_best(make):
    m = make(2, "optimal")
    assert m.push(0, 0.0, "a") == []
    assert m.push(1, 1.0, "A") == []
    # a later item of stream 0 closer to A could still come; (a, A) is proven only once b is past A
    assert m.push(0, 3.0, "b") == [("a", "A")]


def test_optimal_max_interval_refuses_wider_sets(make):
    drops = Drops()
    m = make(2, "optimal", max_interval=1.0, on_drop=drops)
    feed(m, [(0, 0.0, "a"), (1, 1.5, "A")])
    assert drops == [("no_partner", 0, "a")]          # 1.5 s apart: never emitted
    assert m.push(0, 2.5, "b") == []                  # 1.0 s apart: allowed, but a later A could be closer
    assert m.push(1, 4.0, "B") == [("b", "A")]


def test_optimal_max_interval_unlimited_by_default(make):
    m = make(2, "optimal")
    assert feed(m, [(0, 0.0, "a"), (1, 1000.0, "A"), (0, 2000.0, "b")]) == [("a", "A")]


def test_optimal_out_of_order_item_is_dropped(make):
    drops = Drops()
    m = make(2, "optimal", on_drop=drops)
    feed(m, [(0, 2.0, "a"), (0, 1.0, "older")])
    assert drops == [("out_of_order", 0, "older")]
    assert m.queue_sizes() == (1, 0)


def test_optimal_equal_stamps_on_one_stream_are_two_items(make):
    m = make(2, "optimal")
    assert feed(m, [(0, 1.0, "a1"), (0, 1.0, "a2"), (1, 1.0, "x"), (1, 1.0, "y")]) == [("a1", "x"), ("a2", "y")]


def test_optimal_items_passed_over_are_superseded(make):
    drops = Drops()
    m = make(2, "optimal", on_drop=drops)
    # ImperfectMatch: x is passed over when (c, B) turns out better than (b, B)
    out = feed(m, [(0, 0, "a"), (1, 1, "A"), (0, 2, "x"), (0, 3, "b"), (1, 5, "B"), (0, 6, "c"), (1, 7, "C")])
    assert out == [("a", "A"), ("c", "B")]
    assert drops == [("superseded", 0, "x"), ("superseded", 0, "b")]


def test_optimal_equal_oldest_fronts_are_walked_from_the_lowest_stream(make):
    # ROS's getCandidateBoundary(): the oldest front is the first stream holding the minimum. Here streams
    # 1 and 2 both start at 0: stream 1's item is set aside first, stream 1 is then empty, and nothing can
    # be proven until stream 1 speaks again. (Taking stream 2 first would emit a set at the last push.)
    m = make(3, "optimal")
    assert feed(m, [(2, 0.0, "c0"), (1, 0.0, "b0"), (0, 1.0, "a1"), (2, 3.0, "c3")]) == []
    assert m.queue_sizes() == (1, 1, 2)


def test_optimal_equal_newest_fronts_make_the_highest_stream_the_pivot(make):
    # ROS's getCandidateBoundary(): the newest front is the last stream holding the maximum. Both fronts
    # are at 4 s, so stream 1 would be the pivot; it has just dropped b2 (queue full), so ROS distrusts it
    # and discards a4 instead of emitting (a4, b4).
    drops = Drops()
    m = make(2, "optimal", queue_size=1, on_drop=drops)
    assert feed(m, [(1, 2.0, "b2"), (1, 4.0, "b4"), (0, 4.0, "a4")]) == []
    assert drops == [("queue_full", 1, "b2"), ("no_partner", 0, "a4")]


def test_optimal_age_penalty_prefers_earlier_sets(make):
    # A (10 s) pairs with "early" (span 1 s) or "late" (span 0.9 s, but ending 0.9 s later). ROS's test:
    # the later set is better if 0.9 * (1 + age_penalty) < 1.
    events = [(1, 10.0, "A"), (0, 9.0, "early"), (0, 10.9, "late")]
    assert feed(make(2, "optimal", age_penalty=0), events) == [("late", "A")]
    assert feed(make(2, "optimal"), events) == [("late", "A")]                 # default 0.1: 0.99 < 1
    assert feed(make(2, "optimal", age_penalty=0.2), events) == [("early", "A")]   # 1.08 >= 1


# ---------------------------------------------------------------------------------------------------------
# exact: ROS ExactTime policy (C++)
# ---------------------------------------------------------------------------------------------------------

def test_exact_matches_equal_stamps_only(make):
    m = make(2, "exact")
    m.push_ns(0, 1000, "a")
    assert m.push_ns(1, 1001, "x") == []
    assert m.push_ns(1, 1000, "y") == [("a", "y")]


def test_exact_repeated_stamp_replaces_item(make):
    drops = Drops()
    m = make(2, "exact", on_drop=drops)
    feed(m, [(0, 1.0, "a"), (0, 1.0, "b")])
    assert drops == [("replaced", 0, "a")]
    assert m.push(1, 1.0, "x") == [("b", "x")]


def test_exact_emitting_a_set_drops_older_pending_stamps(make):
    drops = Drops()
    m = make(2, "exact", on_drop=drops)
    feed(m, [(0, 1.0, "a1"), (0, 2.0, "a2"), (0, 3.0, "a3")])
    assert m.push(1, 2.0, "x2") == [("a2", "x2")]
    assert drops == [("superseded", 0, "a1")]
    assert m.queue_sizes() == (1, 0)


def test_exact_late_item_for_an_old_stamp_still_completes_its_set(make):
    # ROS accepts it: rows older than the last set are only cleared when the next set is emitted
    m = make(2, "exact")
    feed(m, [(0, 2.0, "a2"), (1, 2.0, "x2"), (0, 1.0, "a1")])
    assert m.push(1, 1.0, "x1") == [("a1", "x1")]


def test_exact_queue_size_counts_pending_stamps(make):
    drops = Drops()
    m = make(3, "exact", queue_size=2, on_drop=drops)
    feed(m, [(0, 1.0, "a1"), (1, 1.0, "b1"), (0, 2.0, "a2"), (0, 3.0, "a3")])
    assert drops == [("queue_full", 0, "a1"), ("queue_full", 1, "b1")]
    assert m.queue_sizes() == (2, 0, 0)


# ---------------------------------------------------------------------------------------------------------
# latest: the pivot's item with the freshest partners within slop
# ---------------------------------------------------------------------------------------------------------

def test_latest_pairs_pivot_with_newest_partner_within_slop(make):
    m = make(3, "latest", slop=0.05)
    feed(m, [(1, 0.96, "lidar old"), (1, 0.99, "lidar new"), (2, 1.02, "imu ahead"), (2, 1.06, "imu far")])
    assert m.push(0, 1.0, "cam") == [("cam", "lidar new", "imu ahead")]


def test_latest_partner_exactly_slop_away_is_not_within_slop(make):
    m = make(2, "latest", slop=0.05)
    m.push_ns(1, 1050 * MS, "x")
    assert m.push_ns(0, 1000 * MS, "cam") == []           # 50 ms == slop: not within slop
    m = make(2, "latest", slop=0.05)
    m.push_ns(1, 1050 * MS - 1, "y")
    assert m.push_ns(0, 1000 * MS, "cam") == [("cam", "y")]


def test_latest_reuses_a_partner_until_a_newer_one_comes(make):
    drops = Drops()
    m = make(2, "latest", slop=0.1, on_drop=drops)
    m.push(1, 1.00, "lidar")
    assert m.push(0, 1.00, "cam1") == [("cam1", "lidar")]
    assert m.push(0, 1.03, "cam2") == [("cam2", "lidar")]
    m.push(1, 1.05, "lidar2")
    assert m.push(0, 1.06, "cam3") == [("cam3", "lidar2")]
    assert drops == []                                # a partner used once is never reported


def test_latest_without_partner_drops_pivot_item(make):
    drops = Drops()
    m = make(3, "latest", slop=0.05, on_drop=drops)
    m.push(1, 1.0, "lidar")
    assert m.push(0, 1.0, "cam") == []
    assert drops == [("no_partner", 0, "cam")]
    assert m.queue_sizes() == (0, 1, 0)


def test_latest_older_unused_items_are_superseded_or_too_old(make):
    drops = Drops()
    m = make(2, "latest", slop=0.05, on_drop=drops)
    feed(m, [(1, 0.90, "stale"), (1, 0.98, "skipped"), (1, 0.99, "used")])
    assert m.push(0, 1.0, "cam") == [("cam", "used")]
    assert drops == [("too_old", 1, "stale"), ("superseded", 1, "skipped")]
    m.push(1, 0.95, "late")                            # 1.0 - 0.95 >= slop: can never match again
    assert drops[-1] == ("too_old", 1, "late")


def test_latest_pivot_must_move_forward(make):
    drops = Drops()
    m = make(2, "latest", slop=0.05, on_drop=drops)
    m.push(1, 1.0, "x")
    assert m.push(0, 1.0, "cam1") == [("cam1", "x")]
    assert m.push(0, 1.0, "same stamp") == []
    assert m.push(0, 0.99, "older") == []
    assert drops == [("out_of_order", 0, "same stamp"), ("out_of_order", 0, "older")]


def test_latest_pivot_can_be_any_stream(make):
    m = make(3, "latest", slop=0.05, pivot=2)
    assert m.push(0, 1.0, "a") == [] and m.push(1, 1.0, "b") == []
    assert m.push(2, 1.01, "trigger") == [("a", "b", "trigger")]


def test_latest_silent_pivot_keeps_partner_queues_bounded(make):
    drops = Drops()
    m = make(2, "latest", slop=0.05, queue_size=3, on_drop=drops)
    for k in range(5):
        m.push(1, k * 0.01, k)
    assert m.queue_sizes() == (0, 3)
    assert drops == [("queue_full", 1, 0), ("queue_full", 1, 1)]


def test_latest_repeated_partner_stamp_replaces_item(make):
    drops = Drops()
    m = make(2, "latest", slop=0.05, on_drop=drops)
    feed(m, [(1, 1.0, "a"), (1, 1.0, "b")])
    assert drops == [("replaced", 1, "a")]
    assert m.push(0, 1.0, "cam") == [("cam", "b")]


# ---------------------------------------------------------------------------------------------------------
# Properties on random arrivals: the two implementations agree; items are conserved
# ---------------------------------------------------------------------------------------------------------

def trace(implementation, n_streams, policy, options, events, use_seconds):
    """Everything observable from one run: sets per push, drops, final counters and queue sizes."""
    drops = []
    m = Matcher(n_streams, policy, implementation=implementation,
                on_drop=lambda *args: drops.append(args), **options)
    pushed = []
    for i, (stream, stamp) in enumerate(events):
        if use_seconds:
            pushed.append(m.push(stream, stamp / 1000, i))
        else:
            pushed.append(m.push_ns(stream, stamp * MS, i))
    return pushed, drops, m.statistics()


POLICY_OPTIONS = {
    "approximate": st.fixed_dictionaries({"slop": st.integers(0, 15).map(lambda ms: ms / 1000),
                                          "queue_size": st.integers(1, 6)}),
    "optimal": st.fixed_dictionaries({"queue_size": st.integers(1, 6)}, optional={
        "max_interval": st.integers(0, 20).map(lambda ms: ms / 1000),
        "age_penalty": st.sampled_from([0, 0.1, 0.5, 2.0]),
        "inter_message_lower_bound": st.integers(0, 5).map(lambda ms: ms / 1000)}),
    "exact": st.fixed_dictionaries({"queue_size": st.integers(1, 6)}),
    "latest": st.fixed_dictionaries({"slop": st.integers(0, 15).map(lambda ms: ms / 1000),
                                     "queue_size": st.integers(1, 6)}),
}

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw, policy):
    n_streams = draw(st.integers(2, 4))
    options = draw(POLICY_OPTIONS[policy])
    if policy == "latest":
        options["pivot"] = draw(st.integers(0, n_streams - 1))
    # stamps in ms: mostly rising with jitter, so sets form, plus repeats and arrivals out of order
    steps = draw(st.lists(st.tuples(st.integers(0, n_streams - 1), st.integers(-4, 6)), max_size=60))
    now, events = 1000, []
    for stream, step in steps:
        now += max(step, 0)
        events.append((stream, now + min(step, 0)))
    return n_streams, options, events


@pytest.mark.parametrize("policy", fusion.POLICIES)
@PROPERTY_SETTINGS
@given(data=st.data(), use_seconds=st.booleans())
def test_compiled_and_python_agree_on_random_arrivals(policy, data, use_seconds):
    n_streams, options, events = data.draw(scenarios(policy))
    compiled = trace("compiled", n_streams, policy, options, events, use_seconds)
    python = trace("python", n_streams, policy, options, events, use_seconds)
    assert compiled == python


@pytest.mark.parametrize("policy", fusion.POLICIES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_every_item_is_emitted_dropped_or_held(policy, data):
    n_streams, options, events = data.draw(scenarios(policy))
    pushed, drops, stats = trace("python", n_streams, policy, options, events, use_seconds=False)
    sets = [s for out in pushed for s in out]
    dropped = [item for _, _, item, _ in drops]
    used = [item for s in sets for item in s]
    for s in sets:   # one item per stream, each item from its own stream
        assert [events[item][0] for item in s] == list(range(n_streams))
    assert len(dropped) == len(set(dropped)) and not set(dropped) & set(used)
    if policy != "latest":  # latest may reuse a partner in several sets
        assert len(used) == len(set(used))
        assert len(used) + len(dropped) + sum(stats.queued) == len(events)
    assert stats.sets == len(sets) and stats.dropped == len(drops) and stats.pushes == len(events)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_optimal_sets_come_in_time_order_within_max_interval(data):
    n_streams, options, events = data.draw(scenarios("optimal"))
    pushed, _, _ = trace("python", n_streams, "optimal", options, events, use_seconds=False)
    sets = [[events[item][1] for item in s] for out in pushed for s in out]
    limit = options.get("max_interval", math.inf) * 1000
    for earlier, later in zip(sets, sets[1:]):
        assert all(a <= b for a, b in zip(earlier, later))
    assert all(max(s) - min(s) <= limit + 1e-9 for s in sets)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_approximate_and_latest_sets_respect_slop(data):
    n_streams, options, events = data.draw(scenarios("approximate"))
    pushed, _, _ = trace("python", n_streams, "approximate", options, events, use_seconds=False)
    for out in pushed:
        assert len(out) <= 1
        for s in out:
            stamps = [events[item][1] for item in s]
            assert max(stamps) - min(stamps) < options["slop"] * 1000
    n_streams, options, events = data.draw(scenarios("latest"))
    pushed, _, _ = trace("python", n_streams, "latest", options, events, use_seconds=False)
    for out in pushed:
        for s in out:
            pivot_stamp = events[s[options["pivot"]]][1]
            assert all(abs(events[item][1] - pivot_stamp) < options["slop"] * 1000 for item in s)
