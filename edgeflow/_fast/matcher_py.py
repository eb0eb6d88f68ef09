"""The slop matcher: complete sets of one item per stream, chosen by timestamp.

This file is written once and used twice. Imported as it is, it is the plain-Python reference
(``edgeflow._fast.matcher_py``). Compiled by Cython together with ``matcher_c.pxd``, which only adds C
types, it is ``edgeflow._fast.matcher_c``. Both pass one test suite and must agree item for item, so
every rule below is written with plain integers and comparisons that mean the same in C and in Python.

The matcher knows streams by index, stamps as integer nanoseconds and items as opaque objects; it knows
nothing of nodes, topics or frames. Users reach it through ``edgeflow.fusion.Matcher``; the rules of each
policy, and the ROS sources they follow, are written down in docs/fusion-matcher.md.

    approximate  ROS 1 noetic message_filters.ApproximateTimeSynchronizer (Python): search around each new item
    optimal      ROS message_filters::sync_policies::ApproximateTime (C++): sets of minimal span, in time order
    exact        ROS message_filters::sync_policies::ExactTime (C++): equal stamps only
    latest       EdgeFlow's own: each pivot item with the newest item of every other stream within slop
"""

from array import array
from difflib import get_close_matches
from numbers import Integral, Real
from operator import index as _index

try:
    import cython

    COMPILED = cython.compiled
except ImportError:  # the reference also runs where Cython is not installed
    COMPILED = False

from edgeflow.errors import ConfigError

POLICIES = ("approximate", "optimal", "exact", "latest")

# Why an item left the matcher without being part of a set. The order is the order of the counters.
REASONS = ("replaced", "queue_full", "superseded", "too_old", "no_partner", "out_of_order", "cleared")
REPLACED = 0
QUEUE_FULL = 1
SUPERSEDED = 2
TOO_OLD = 3
NO_PARTNER = 4
OUT_OF_ORDER = 5
CLEARED = 6

# Stamps and durations stay within ±2**62 ns (±146 years), so that the difference or the sum of any two of
# them fits in a signed 64-bit integer and C arithmetic never wraps where Python's would not.
_LIMIT_NS = 4611686018427387904
_LIMIT_NS_FLOAT = 4611686018427387904.0
_NO_STAMP = -_LIMIT_NS  # "no stamp yet": below every valid stamp
_NO_LIMIT = 9223372036854775807  # max_interval when unlimited: no difference of valid stamps exceeds it
_MAX_QUEUE_SIZE = 65536  # queues are scanned linearly; a larger one is a mistake, not a use case


def _timestamp_ns(timestamp):
    """Seconds to integer nanoseconds, ``round(t * 1e9)`` with ties to even, as ROS stamps are made."""
    scaled = float(timestamp) * 1e9
    if not -_LIMIT_NS_FLOAT < scaled < _LIMIT_NS_FLOAT:  # also rejects NaN
        raise ConfigError(f"Matcher: timestamp {timestamp!r} is not a finite time within ±146 years (seconds)")
    if COMPILED:
        return llrint(scaled)  # noqa: F821 - cimported by matcher_c.pxd; C's twin of round() (ties to even)
    return round(scaled)


def _stamp_ns(stamp_ns):
    """Check an integer nanosecond stamp given by the caller."""
    stamp = _index(stamp_ns)
    if not -_LIMIT_NS < stamp < _LIMIT_NS:
        raise ConfigError(f"Matcher: stamp_ns {stamp_ns!r} is outside ±2**62 ns")
    return stamp


class MatcherBase:
    """What every policy shares: stream checks, counters, the drop callback and the list of emitted sets.

    A subclass implements ``_add`` (one accepted item), ``_held`` (items queued on one stream) and
    ``_discard_all`` (for ``clear``). Use :func:`make_matcher` to build one: the constructors trust their
    arguments.
    """

    def __init__(self, n_streams, queue_size, on_drop):
        self._n = n_streams
        self._cap = queue_size
        self._on_drop = on_drop
        self._pending = []
        self._out = []
        self._pushes = 0
        self._sets = 0
        self._drops = array("q", [0]) * len(REASONS)

    def push(self, stream, timestamp, item):
        """Add ``item`` of ``stream`` stamped ``timestamp`` (seconds); return the sets it completes."""
        return self._run(self._stream_index(stream), _timestamp_ns(timestamp), item)

    def push_ns(self, stream, stamp_ns, item):
        """Like :meth:`push`, with the stamp already in integer nanoseconds."""
        return self._run(self._stream_index(stream), _stamp_ns(stamp_ns), item)

    def clear(self):
        """Drop every queued item (reason ``cleared``) and forget the stream history; counters stay."""
        self._discard_all()
        if self._pending:
            self._flush_drops()

    def queue_sizes(self):
        """The number of items held for each stream, in stream order."""
        return tuple([self._held(s) for s in range(self._n)])

    def counters(self):
        """``(pushes, sets emitted, drops per reason in REASONS order)`` since construction."""
        return self._pushes, self._sets, tuple([self._drops[r] for r in range(len(REASONS))])

    def _stream_index(self, stream):
        if COMPILED:
            try:
                s = stream  # a C integer: TypeError for anything but an integer, as operator.index gives
            except OverflowError:
                s = -1
        else:
            s = _index(stream)
        if not 0 <= s < self._n:
            raise ConfigError(f"Matcher: stream {stream!r} out of range: streams are 0..{self._n - 1}")
        return s

    def _run(self, s, t, item):
        self._pushes += 1
        out = self._out = []
        self._add(s, t, item)
        self._out = None
        # Callbacks run only now, when the state is whole again: one may even push from inside it.
        if self._pending:
            self._flush_drops()
        return out

    def _emit(self, items):
        self._out.append(items)
        self._sets += 1

    def _drop(self, s, t, item, reason):
        self._drops[reason] += 1
        if self._on_drop is not None:
            self._pending.append((s, t, item, reason))

    def _flush_drops(self):
        pending = self._pending
        self._pending = []
        for s, t, item, reason in pending:
            self._on_drop(s, t / 1e9, item, REASONS[reason])

    def _add(self, s, t, item):
        raise NotImplementedError

    def _held(self, s):
        raise NotImplementedError

    def _discard_all(self):
        raise NotImplementedError


class ApproximateMatcher(MatcherBase):
    """ROS 1 noetic ``ApproximateTimeSynchronizer`` (Python): each new item looks for partners around itself.

    Each stream keeps up to ``queue_size`` items in arrival order, one per stamp. A new item with a stamp the
    stream already holds takes the old item's place and position. When a stream holds more, the item with
    the oldest stamp goes, even if it is the new one. Then, for every other stream, the items within ``slop``
    of the new stamp (a distance equal to slop included) are ranked by distance, ties in queue order; the
    combinations are tried in ``itertools.product`` order (first stream slowest) and the first whose span
    (newest minus oldest stamp, the new item included) is strictly less than ``slop`` is emitted. At most one
    set per push. Nothing expires by age: old items leave only through ``queue_full``.
    """

    def __init__(self, n_streams, queue_size, on_drop, slop_ns):
        MatcherBase.__init__(self, n_streams, queue_size, on_drop)
        self._slop = slop_ns
        self._w = queue_size + 1  # one spare slot: the new item is stored before the oldest is evicted
        size = n_streams * self._w
        self._len = array("q", [0]) * n_streams
        self._stamps = array("q", [0]) * size
        self._items = [None] * size
        self._cand = array("q", [0]) * size  # per stream: positions of the candidates, closest first
        self._dist = array("q", [0]) * size  # their distances to the new stamp
        self._ncand = array("q", [0]) * n_streams
        self._pick = array("q", [0]) * n_streams  # per search depth: the candidate being tried
        self._lo = array("q", [0]) * n_streams  # per search depth: the oldest stamp chosen so far
        self._hi = array("q", [0]) * n_streams  # per search depth: the newest stamp chosen so far

    def _add(self, s, t, item):
        pos = self._store(s, t, item)
        if pos >= 0 and self._search(s, t):
            self._emit_found(s, pos)

    def _store(self, s, t, item):
        """Queue the item; return its position, or -1 when the queue evicted it at once."""
        base = s * self._w
        n = self._len[s]
        for j in range(n):
            if self._stamps[base + j] == t:  # ROS assigns queue[stamp] = item: same key, same place
                self._drop(s, t, self._items[base + j], REPLACED)
                self._items[base + j] = item
                return j
        self._stamps[base + n] = t
        self._items[base + n] = item
        self._len[s] = n + 1
        if n < self._cap:
            return n
        oldest = 0
        for j in range(1, n + 1):
            if self._stamps[base + j] < self._stamps[base + oldest]:
                oldest = j
        stamp = self._stamps[base + oldest]
        self._drop(s, stamp, self._take(s, oldest), QUEUE_FULL)
        return -1 if oldest == n else n - 1

    def _take(self, s, j):
        """Remove and return the item at position j of stream s, keeping the others in order."""
        base = s * self._w
        item = self._items[base + j]
        last = self._len[s] - 1
        for k in range(j, last):
            self._stamps[base + k] = self._stamps[base + k + 1]
            self._items[base + k] = self._items[base + k + 1]
        self._items[base + last] = None
        self._len[s] = last
        return item

    def _rank(self, o, t):
        """Rank stream o's items within slop of t, closest first, ties in queue order; return how many."""
        base = o * self._w
        count = 0
        for j in range(self._len[o]):
            d = self._stamps[base + j] - t
            if d < 0:
                d = -d
            if d > self._slop:
                continue
            k = count  # insertion sort, stable like ROS's sorted()
            while k > 0 and self._dist[base + k - 1] > d:
                self._dist[base + k] = self._dist[base + k - 1]
                self._cand[base + k] = self._cand[base + k - 1]
                k -= 1
            self._dist[base + k] = d
            self._cand[base + k] = j
            count += 1
        self._ncand[o] = count
        return count

    def _search(self, s, t):
        """Find ROS's first combination in product order whose span is under slop; leave it in _pick.

        Depth d is the d-th stream other than s. A prefix whose span already reaches slop cannot be
        completed (a span only grows), so it is skipped whole: the first full match found is the one
        ROS's exhaustive product finds.
        """
        depth = self._n - 1
        for d in range(depth):
            if self._rank(d + (d >= s), t) == 0:
                return False
        d = 0
        self._pick[0] = 0
        while d >= 0:
            o = d + (d >= s)
            k = self._pick[d]
            if k == self._ncand[o]:  # this depth is exhausted: advance the one above
                d -= 1
                if d >= 0:
                    self._pick[d] += 1
                continue
            stamp = self._stamps[o * self._w + self._cand[o * self._w + k]]
            lo = min(stamp, self._lo[d - 1] if d > 0 else t)
            hi = max(stamp, self._hi[d - 1] if d > 0 else t)
            if hi - lo >= self._slop:  # ROS requires max - min < slop
                self._pick[d] = k + 1
                continue
            self._lo[d] = lo
            self._hi[d] = hi
            if d == depth - 1:
                return True
            d += 1
            self._pick[d] = 0
        return False

    def _emit_found(self, s, pos):
        items = []
        for o in range(self._n):
            if o == s:
                items.append(self._take(o, pos))
            else:
                d = o - (o > s)
                items.append(self._take(o, self._cand[o * self._w + self._pick[d]]))
        self._emit(tuple(items))

    def _held(self, s):
        return self._len[s]

    def _discard_all(self):
        for s in range(self._n):
            base = s * self._w
            for j in range(self._len[s]):
                self._drop(s, self._stamps[base + j], self._items[base + j], CLEARED)
                self._items[base + j] = None
            self._len[s] = 0


class OptimalMatcher(MatcherBase):
    """ROS ``sync_policies::ApproximateTime`` (C++): sets of minimal span, each item used once, in time order.

    Each stream is a queue in arrival order; its first ``hidden`` items are the ones ROS moves to ``past``
    while it searches. The state machine is ROS's: a candidate set made of the queue fronts, a pivot (the
    stream whose front ended the first candidate), and the proof that no later set can be better, using
    ``age_penalty`` and the optional ``inter_message_lower_bound`` of each stream. An item stamped earlier
    than one its stream already gave is dropped as ``out_of_order``: the algorithm needs each stream in order.
    """

    def __init__(self, n_streams, queue_size, on_drop, max_interval_ns, age_penalty, lower_bounds_ns):
        MatcherBase.__init__(self, n_streams, queue_size, on_drop)
        self._w = queue_size + 1  # a queue may hold queue_size + 1 items until the overflow check
        size = n_streams * self._w
        self._max_interval = max_interval_ns
        self._factor = 1.0 + age_penalty
        self._bound = array("q", lower_bounds_ns)
        self._head = array("q", [0]) * n_streams  # ring buffers: slot of the oldest item
        self._len = array("q", [0]) * n_streams  # items held, hidden ones included
        self._hidden = array("q", [0]) * n_streams  # ROS's past_: the first items, set aside while searching
        self._stamps = array("q", [0]) * size
        self._items = [None] * size
        self._dropped = array("q", [0]) * n_streams  # ROS's has_dropped_messages_
        self._last = array("q", [_NO_STAMP]) * n_streams  # newest stamp accepted per stream
        self._moves = array("q", [0]) * n_streams  # items hidden by the current virtual search
        self._pivot = -1
        self._pivot_time = 0
        self._cand_start = 0
        self._cand_end = 0

    def _add(self, s, t, item):
        if t < self._last[s]:
            self._drop(s, t, item, OUT_OF_ORDER)
            return
        self._last[s] = t
        slot = s * self._w + (self._head[s] + self._len[s]) % self._w
        self._stamps[slot] = t
        self._items[slot] = item
        self._len[s] += 1
        if self._len[s] - self._hidden[s] == 1 and self._all_fronts():
            self._process()
        if self._len[s] > self._cap:
            self._overflow(s)

    def _overflow(self, s):
        """ROS: cancel the search, drop the stream's oldest item, and distrust it as a pivot for a while."""
        for o in range(self._n):
            self._hidden[o] = 0
        self._drop_head(s, QUEUE_FULL)
        self._dropped[s] = 1
        if self._pivot >= 0:
            self._pivot = -1
            self._process()

    def _slot(self, s, k):
        return s * self._w + (self._head[s] + k) % self._w

    def _front(self, s):
        return self._stamps[self._slot(s, self._hidden[s])]

    def _all_fronts(self):
        """True when every stream has an item that is not hidden."""
        for o in range(self._n):
            if self._hidden[o] == self._len[o]:
                return False
        return True

    def _drop_head(self, s, reason):
        slot = self._slot(s, 0)
        self._drop(s, self._stamps[slot], self._items[slot], reason)
        self._items[slot] = None
        self._head[s] = (self._head[s] + 1) % self._w
        self._len[s] -= 1

    def _not_better(self, start, end):
        """ROS's test: a set over [start, end] is no better than the candidate, age penalty included."""
        return float(end - self._cand_end) * self._factor >= float(start - self._cand_start)

    def _process(self):
        """ROS's process(): walk the fronts while every stream has one, emitting sets it proves optimal."""
        while self._all_fronts():
            start = 0  # the first stream with the oldest front, and the last one with the newest
            end = 0
            for o in range(1, self._n):
                if self._front(o) < self._front(start):
                    start = o
                if self._front(o) >= self._front(end):
                    end = o
            start_t = self._front(start)
            end_t = self._front(end)
            for o in range(self._n):
                if o != end:
                    self._dropped[o] = 0  # no dropped item could have been better than these
            if self._pivot < 0:
                if not self._open_candidate(start, end, start_t, end_t):
                    continue
            elif not self._not_better(start_t, end_t):
                self._make_candidate(start_t, end_t)
            self._hidden[start] += 1
            self._conclude(start, end_t)

    def _open_candidate(self, start, end, start_t, end_t):
        """With no candidate, take the fronts as one, unless the set is too wide or the pivot is unsafe."""
        if end_t - start_t > self._max_interval or self._dropped[end]:
            self._drop_head(start, NO_PARTNER)  # nothing is hidden here, so the front is the head
            return False
        self._make_candidate(start_t, end_t)
        self._pivot = end
        self._pivot_time = end_t
        return True

    def _make_candidate(self, start_t, end_t):
        """The fronts become the candidate; the hidden items before them can no longer be in any set."""
        for o in range(self._n):
            while self._hidden[o] > 0:
                self._drop_head(o, SUPERSEDED)
                self._hidden[o] -= 1
        self._cand_start = start_t
        self._cand_end = end_t

    def _conclude(self, start, end_t):
        """Publish the candidate if it is proven optimal, else keep searching on the next front."""
        if start == self._pivot:  # every candidate for this pivot has been tried
            self._publish()
        elif self._not_better(self._pivot_time, end_t):  # every later set holds [pivot, end]: wider
            self._publish()
        elif not self._all_fronts():
            self._virtual_search()

    def _publish(self):
        """Emit the candidate (the head of every stream) and give the hidden items back to their queues."""
        items = []
        for o in range(self._n):
            slot = self._slot(o, 0)
            items.append(self._items[slot])
            self._items[slot] = None
            self._head[o] = (self._head[o] + 1) % self._w
            self._len[o] -= 1
            self._hidden[o] = 0
        self._pivot = -1
        self._emit(tuple(items))

    def _virtual_time(self, o):
        """The earliest stamp stream o's next item can have: its front, or its last stamp + its bound."""
        if self._hidden[o] < self._len[o]:
            return self._front(o)
        bound = self._stamps[self._slot(o, self._len[o] - 1)] + self._bound[o]
        return bound if bound > self._pivot_time else self._pivot_time

    def _virtual_search(self):
        """ROS: assume empty queues get their earliest possible next items, and try to prove optimality."""
        for o in range(self._n):
            self._moves[o] = 0
        while True:
            start = 0
            start_t = self._virtual_time(0)
            end_t = start_t
            for o in range(1, self._n):
                vt = self._virtual_time(o)
                if vt < start_t:
                    start = o
                    start_t = vt
                if vt >= end_t:
                    end_t = vt
            if self._not_better(self._pivot_time, end_t):
                self._publish()  # proven: later sets would be wider
                return
            if not self._not_better(start_t, end_t):
                for o in range(self._n):  # an optimistic future set could be better: wait for data
                    self._hidden[o] -= self._moves[o]
                return
            self._hidden[start] += 1
            self._moves[start] += 1

    def _held(self, s):
        return self._len[s]

    def _discard_all(self):
        for s in range(self._n):
            while self._len[s] > 0:
                self._drop_head(s, CLEARED)
            self._head[s] = 0
            self._hidden[s] = 0
            self._dropped[s] = 0
            self._last[s] = _NO_STAMP
        self._pivot = -1


class ExactMatcher(MatcherBase):
    """ROS ``sync_policies::ExactTime`` (C++): a set is the items of all streams with one stamp.

    Pending stamps form a table of rows, one item slot per stream. A second item for a filled slot replaces
    the first. When a row fills it is emitted, and every pending row with an older or equal stamp is dropped
    (``superseded``). When more than ``queue_size`` stamps are pending, the oldest rows go (``queue_full``).
    Like ROS, a late item for an old stamp is still accepted and may complete its row.
    """

    def __init__(self, n_streams, queue_size, on_drop):
        MatcherBase.__init__(self, n_streams, queue_size, on_drop)
        rows = queue_size + 1  # a new row is added before the table is trimmed
        self._rows = 0
        self._row_stamp = array("q", [0]) * rows
        self._row_fill = array("q", [0]) * rows
        self._present = array("q", [0]) * (rows * n_streams)
        self._items = [None] * (rows * n_streams)

    def _add(self, s, t, item):
        r = self._find_row(t)
        k = r * self._n + s
        if self._present[k]:
            self._drop(s, t, self._items[k], REPLACED)
        else:
            self._present[k] = 1
            self._row_fill[r] += 1
        self._items[k] = item
        if self._row_fill[r] == self._n:
            self._emit_row(r)
            self._drop_rows_until(t)
        while self._rows > self._cap:
            self._drop_row(self._oldest_row(), QUEUE_FULL)

    def _find_row(self, t):
        """The row for stamp t, created empty if there is none."""
        for r in range(self._rows):
            if self._row_stamp[r] == t:
                return r
        r = self._rows
        self._rows += 1
        self._row_stamp[r] = t
        self._row_fill[r] = 0
        return r

    def _oldest_row(self):
        oldest = -1
        for r in range(self._rows):
            if oldest < 0 or self._row_stamp[r] < self._row_stamp[oldest]:
                oldest = r
        return oldest

    def _emit_row(self, r):
        base = r * self._n
        self._emit(tuple(self._items[base:base + self._n]))
        self._remove_row(r)

    def _drop_rows_until(self, t):
        """ROS's clearOldTuples(): rows stamped at or before an emitted set can never be completed in time."""
        while True:
            r = self._oldest_row()
            if r < 0 or self._row_stamp[r] > t:
                return
            self._drop_row(r, SUPERSEDED)

    def _drop_row(self, r, reason):
        base = r * self._n
        for s in range(self._n):
            if self._present[base + s]:
                self._drop(s, self._row_stamp[r], self._items[base + s], reason)
        self._remove_row(r)

    def _remove_row(self, r):
        """Delete row r by moving the last row into its place (rows have no order; lookups go by stamp)."""
        last = self._rows - 1
        base = r * self._n
        lbase = last * self._n
        for s in range(self._n):
            self._items[base + s] = self._items[lbase + s]
            self._present[base + s] = self._present[lbase + s]
            self._items[lbase + s] = None
            self._present[lbase + s] = 0
        self._row_stamp[r] = self._row_stamp[last]
        self._row_fill[r] = self._row_fill[last]
        self._rows = last

    def _held(self, s):
        count = 0
        for r in range(self._rows):
            count += self._present[r * self._n + s]
        return count

    def _discard_all(self):
        while self._rows > 0:
            self._drop_row(self._oldest_row(), CLEARED)


class LatestMatcher(MatcherBase):
    """EdgeFlow's ``latest`` policy: each pivot item is paired at once with the freshest partners.

    Items of the other streams are kept sorted by stamp, at most ``queue_size`` per stream. When a pivot
    item arrives, each other stream offers its newest item strictly within ``slop`` of the pivot stamp; if
    one has none, the pivot item is dropped (``no_partner``). Partner items may serve several sets; older
    items of a stream than the one used can never be chosen again and leave as ``superseded``, and items
    ``slop`` or more older than the newest pivot leave as ``too_old``. An item is reported as dropped only
    if it never was part of a set. Pivot stamps must increase: an older or equal one is ``out_of_order``.
    """

    def __init__(self, n_streams, queue_size, on_drop, slop_ns, pivot):
        MatcherBase.__init__(self, n_streams, queue_size, on_drop)
        self._slop = slop_ns
        self._pivot = pivot
        self._last_pivot = _NO_STAMP
        self._w = queue_size + 1  # a new item is stored before the oldest is evicted
        size = n_streams * self._w
        self._len = array("q", [0]) * n_streams
        self._stamps = array("q", [0]) * size
        self._items = [None] * size
        self._used = array("q", [0]) * size  # already part of a set: leaving is then no drop
        self._pick = array("q", [0]) * n_streams

    def _add(self, s, t, item):
        if s == self._pivot:
            self._add_pivot(t, item)
        elif self._last_pivot != _NO_STAMP and t <= self._last_pivot - self._slop:
            self._drop(s, t, item, TOO_OLD)  # pivot stamps only grow: it can never be within slop again
        else:
            self._insert(s, t, item)
            if self._len[s] > self._cap:
                self._discard_front(s, 1, QUEUE_FULL)

    def _insert(self, s, t, item):
        """Insert in stamp order; an equal stamp replaces the item held for it."""
        base = s * self._w
        j = self._len[s]
        while j > 0 and self._stamps[base + j - 1] > t:
            j -= 1
        if j > 0 and self._stamps[base + j - 1] == t:
            if not self._used[base + j - 1]:
                self._drop(s, t, self._items[base + j - 1], REPLACED)
            self._items[base + j - 1] = item
            self._used[base + j - 1] = 0
            return
        for k in range(self._len[s], j, -1):
            self._stamps[base + k] = self._stamps[base + k - 1]
            self._items[base + k] = self._items[base + k - 1]
            self._used[base + k] = self._used[base + k - 1]
        self._stamps[base + j] = t
        self._items[base + j] = item
        self._used[base + j] = 0
        self._len[s] += 1

    def _add_pivot(self, t, item):
        if self._last_pivot != _NO_STAMP and t <= self._last_pivot:
            self._drop(self._pivot, t, item, OUT_OF_ORDER)
            return
        self._last_pivot = t
        for o in range(self._n):
            if o != self._pivot:
                self._discard_front(o, self._count_until(o, t - self._slop), TOO_OLD)
        for o in range(self._n):
            if o != self._pivot and not self._choose(o, t):
                self._drop(self._pivot, t, item, NO_PARTNER)
                return
        items = []
        for o in range(self._n):
            if o == self._pivot:
                items.append(item)
            else:
                base = o * self._w
                items.append(self._items[base + self._pick[o]])
                self._used[base + self._pick[o]] = 1
                self._discard_front(o, self._pick[o], SUPERSEDED)
        self._emit(tuple(items))

    def _count_until(self, o, limit):
        """How many of stream o's items are stamped at or before limit."""
        base = o * self._w
        count = 0
        while count < self._len[o] and self._stamps[base + count] <= limit:
            count += 1
        return count

    def _choose(self, o, t):
        """Pick stream o's newest item strictly within slop of t (older ones were discarded just before)."""
        base = o * self._w
        j = self._len[o] - 1
        while j >= 0 and self._stamps[base + j] >= t + self._slop:
            j -= 1
        self._pick[o] = j
        return j >= 0

    def _discard_front(self, o, count, reason):
        """Remove the count oldest items of stream o; those never used in a set are dropped with reason."""
        if count <= 0:
            return
        base = o * self._w
        for j in range(count):
            if not self._used[base + j]:
                self._drop(o, self._stamps[base + j], self._items[base + j], reason)
        n = self._len[o]
        for j in range(count, n):
            self._stamps[base + j - count] = self._stamps[base + j]
            self._items[base + j - count] = self._items[base + j]
            self._used[base + j - count] = self._used[base + j]
        for j in range(n - count, n):
            self._items[base + j] = None
        self._len[o] = n - count

    def _held(self, s):
        return self._len[s]

    def _discard_all(self):
        for o in range(self._n):
            self._discard_front(o, self._len[o], CLEARED)
        self._last_pivot = _NO_STAMP


def make_matcher(n_streams, policy="approximate", *, slop=None, queue_size=10, max_interval=None,
                 age_penalty=None, inter_message_lower_bound=None, pivot=None, on_drop=None):
    """Check the arguments (times in seconds) and build the matcher of one policy.

    Raises:
        ConfigError: an unknown policy or a bad argument, named in one line.
    """
    n = _count_arg("n_streams", n_streams, 2, None)
    if policy not in POLICIES:
        hint = get_close_matches(str(policy), POLICIES, n=1)
        also = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"Matcher: unknown policy {policy!r}{also}; choose one of {', '.join(POLICIES)}")
    cap = _count_arg("queue_size", queue_size, 1, _MAX_QUEUE_SIZE)
    if on_drop is not None and not callable(on_drop):
        raise ConfigError(f"Matcher: on_drop must be callable(stream, timestamp, item, reason), not {on_drop!r}")
    if slop is None and policy in ("approximate", "latest"):
        raise ConfigError(f"Matcher: policy {policy!r} needs slop= (seconds, e.g. slop=0.05)")
    slop_ns = _duration_ns("slop", slop) if slop is not None else 0
    interval_ns = _duration_ns("max_interval", max_interval) if max_interval is not None else _NO_LIMIT
    penalty = _penalty_arg(age_penalty)
    bounds_ns = _bounds_arg(inter_message_lower_bound, n)
    pivot_index = _count_arg("pivot", pivot, 0, n - 1) if pivot is not None else 0
    if policy == "approximate":
        return ApproximateMatcher(n, cap, on_drop, slop_ns)
    if policy == "optimal":
        return OptimalMatcher(n, cap, on_drop, interval_ns, penalty, bounds_ns)
    if policy == "exact":
        return ExactMatcher(n, cap, on_drop)
    return LatestMatcher(n, cap, on_drop, slop_ns, pivot_index)


def _count_arg(name, value, lowest, highest):
    """An integer argument within [lowest, highest] (highest None: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"Matcher: {name} must be an integer, not {value!r}")
    value = int(value)
    if value < lowest or (highest is not None and value > highest):
        upper = f"..{highest}" if highest is not None else " or more"
        raise ConfigError(f"Matcher: {name}={value} out of range: must be {lowest}{upper}")
    return value


def _duration_ns(name, seconds):
    """A non-negative duration in seconds, as integer nanoseconds (rounded like stamps)."""
    if isinstance(seconds, bool) or not isinstance(seconds, Real):
        raise ConfigError(f"Matcher: {name} must be a number of seconds, not {seconds!r}")
    if not 0 <= seconds * 1e9 < _LIMIT_NS_FLOAT:  # also rejects NaN
        raise ConfigError(f"Matcher: {name}={seconds!r} must be a finite duration >= 0 (seconds)")
    return round(seconds * 1e9)


def _penalty_arg(age_penalty):
    if age_penalty is None:
        return 0.1  # ROS's default
    if isinstance(age_penalty, bool) or not isinstance(age_penalty, Real):
        raise ConfigError(f"Matcher: age_penalty must be a number, not {age_penalty!r}")
    if not 0 <= age_penalty < float("inf"):  # ROS asserts >= 0; also rejects NaN
        raise ConfigError(f"Matcher: age_penalty={age_penalty!r} must be finite and >= 0")
    return float(age_penalty)


def _bounds_arg(bound, n):
    """inter_message_lower_bound: one number for all streams, or one per stream, as ROS sets it."""
    if bound is None:
        return [0] * n
    if isinstance(bound, (list, tuple)):
        if len(bound) != n:
            raise ConfigError(f"Matcher: inter_message_lower_bound has {len(bound)} values for {n} streams")
        return [_duration_ns(f"inter_message_lower_bound[{i}]", b) for i, b in enumerate(bound)]
    return [_duration_ns("inter_message_lower_bound", bound)] * n
