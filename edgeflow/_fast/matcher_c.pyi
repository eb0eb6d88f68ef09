"""The slop matcher, compiled: ``matcher_py.py`` built by Cython with the C types of ``matcher_c.pxd``.

``edgeflow._fast.matcher_py`` is the same source, uncompiled (the reference); both have this interface and
give the same results. Users reach either through :class:`edgeflow.fusion.Matcher`; this module knows
streams by index, stamps as integer nanoseconds and items as opaque objects. The rules of each policy are in
docs/fusion-matcher.md.
"""

from collections.abc import Callable, Sequence
from typing import Any

POLICIES: tuple[str, ...]
"""``("approximate", "optimal", "exact", "latest")``."""

REASONS: tuple[str, ...]
"""Drop reasons, in the order of the counters: ``("replaced", "queue_full", "superseded", "too_old",
"no_partner", "out_of_order", "cleared")``."""

OnDrop = Callable[[int, float, Any, str], object]

class MatcherBase:
    """What every policy shares: stream checks, counters, the drop callback and the emitted sets.

    Not thread-safe. Build one with :func:`make_matcher`: the constructors trust their arguments.
    """

    def push(self, stream: int, timestamp: float, item: Any) -> list[tuple]:
        """Add ``item`` of ``stream`` stamped ``timestamp`` seconds; return the sets it completes.

        The stamp becomes integer nanoseconds once, ``round(timestamp * 1e9)`` (ties to even), and is then
        compared only as an integer. Each set is a tuple of one item per stream, in stream order; sets are
        listed in emission order. Drop callbacks run after the matcher's state is updated.

        Raises:
            ConfigError: ``stream`` is not in ``0 .. n_streams - 1``, or the stamp is not finite or beyond
                ±2**62 ns (±146 years).
            TypeError: ``stream`` is not an integer, or ``timestamp`` not a number.
        """

    def push_ns(self, stream: int, stamp_ns: int, item: Any) -> list[tuple]:
        """Like :meth:`push`, with the stamp as integer nanoseconds (within ±2**62)."""

    def clear(self) -> None:
        """Drop every held item (reason ``"cleared"``) and forget the stream history; counters stay."""

    def queue_sizes(self) -> tuple[int, ...]:
        """The number of items held for each stream, in stream order."""

    def counters(self) -> tuple[int, int, tuple[int, ...]]:
        """``(pushes, sets emitted, drops per reason in REASONS order)`` since construction."""

class ApproximateMatcher(MatcherBase):
    """ROS 1 noetic ``ApproximateTimeSynchronizer`` (Python): each new item looks for partners around it."""

    def __init__(self, n_streams: int, queue_size: int, on_drop: OnDrop | None, slop_ns: int) -> None: ...

class OptimalMatcher(MatcherBase):
    """ROS ``sync_policies::ApproximateTime`` (C++): sets of minimal span, each item once, in time order."""

    def __init__(self, n_streams: int, queue_size: int, on_drop: OnDrop | None, max_interval_ns: int,
                 age_penalty: float, lower_bounds_ns: Sequence[int]) -> None: ...

class ExactMatcher(MatcherBase):
    """ROS ``sync_policies::ExactTime`` (C++): a set is the items of all streams with one stamp."""

    def __init__(self, n_streams: int, queue_size: int, on_drop: OnDrop | None) -> None: ...

class LatestMatcher(MatcherBase):
    """Each item of the pivot stream, at once, with the newest item of every other stream within slop."""

    def __init__(self, n_streams: int, queue_size: int, on_drop: OnDrop | None, slop_ns: int,
                 pivot: int) -> None: ...

def make_matcher(n_streams: int, policy: str = "approximate", *, slop: float | None = None,
                 queue_size: int = 10, max_interval: float | None = None, age_penalty: float | None = None,
                 inter_message_lower_bound: float | Sequence[float] | None = None, pivot: int | None = None,
                 on_drop: OnDrop | None = None) -> MatcherBase:
    """Check the arguments (times in seconds) and build the matcher of one policy.

    Arguments are those of :class:`edgeflow.fusion.Matcher`, without ``implementation``.

    Raises:
        ConfigError: an unknown policy or a bad argument, named in one line.
    """
