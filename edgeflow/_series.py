"""One latency series for the whole code base: node statistics (runtime/metrics.py) and the gateway's own topics
(gateway/hub.py) both use ``Series``.

A Series keeps two views of the same durations (seconds):

- a reservoir of the newest RESERVOIR samples, for exact recent percentiles (the dashboard, ``--stats``);
- cumulative-able bucket counts over fixed bounds (BUCKETS), with the count and sum of every sample: what
  Prometheus histograms need. Buckets add up across replicas and hosts (``merge_histograms``), so
  ``histogram_quantile`` over ``sum by (le)`` gives quantiles of a whole replicated node; reservoir percentiles
  cannot be merged that way.

``add`` is on every frame's path: one deque append, one bisect over a short tuple, one list increment.
"""

from __future__ import annotations

import bisect
import collections
import math

RESERVOIR = 2048            # newest samples kept per series for percentiles

# Upper bounds (seconds) of the histogram buckets, +Inf implied: 50 µs (a zero-copy hop) to 30 s (a stalled
# pipeline), roughly 2.5x apart so that histogram_quantile stays within a bucket's width of the truth.
BUCKETS: tuple[float, ...] = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                              0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Series:
    """Durations in seconds: the newest RESERVOIR samples, bucket counts over BUCKETS, count and sum."""

    __slots__ = ("samples", "count", "total", "buckets")

    def __init__(self) -> None:
        self.samples: collections.deque = collections.deque(maxlen=RESERVOIR)
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)      # per bucket (not cumulative); the last one is +Inf

    def add(self, seconds: float) -> None:
        """Record one duration."""
        self.samples.append(seconds)
        self.count += 1
        self.total += seconds
        # bisect_left: a sample equal to a bound belongs to that bound's bucket (Prometheus: le is <=)
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def quantile(self, q: float) -> float | None:
        """The q-quantile (seconds) of the newest samples, or None when there are none."""
        if not self.samples:
            return None
        return _pick(sorted(self.samples), q)

    def percentiles(self) -> dict:
        """{"p50", "p99", "mean", "count"} in milliseconds (None when empty), as node statistics report."""
        if not self.samples:
            return {"p50": None, "p99": None, "mean": None, "count": 0}
        ordered = sorted(self.samples)
        return {"p50": 1e3 * _pick(ordered, 0.50), "p99": 1e3 * _pick(ordered, 0.99),
                "mean": 1e3 * self.total / self.count, "count": self.count}

    def histogram(self) -> dict:
        """A JSON-able histogram: {"counts": per-bucket counts (the last is +Inf), "sum", "count"} in seconds;
        the bounds are BUCKETS (not repeated in every snapshot)."""
        return {"counts": list(self.buckets), "sum": self.total, "count": self.count}


def empty_histogram() -> dict:
    """The histogram of a series without samples."""
    return {"counts": [0] * (len(BUCKETS) + 1), "sum": 0.0, "count": 0}


def merge_histograms(parts) -> dict:
    """One histogram from several (replicas, hosts): counts, sums and totals add up."""
    out = empty_histogram()
    for part in parts:
        if not part:
            continue
        counts = part.get("counts") or ()
        if len(counts) != len(out["counts"]):      # another EdgeFlow version's buckets: cannot be added
            continue
        out["counts"] = [a + b for a, b in zip(out["counts"], counts)]
        out["sum"] += part.get("sum") or 0.0
        out["count"] += part.get("count") or 0
    return out


def cumulative_buckets(histogram: dict | None) -> list[tuple[str, int]]:
    """Prometheus (le, cumulative count) pairs of a histogram, "+Inf" last."""
    counts = (histogram or {}).get("counts") or [0] * (len(BUCKETS) + 1)
    out, running = [], 0
    for bound, n in zip((*map(_le, BUCKETS), "+Inf"), counts):
        running += n
        out.append((bound, running))
    return out


def _le(bound: float) -> str:
    return repr(float(bound))


def _pick(ordered: list, q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
