"""Time matching for sensor fusion: turn items from several streams into complete, time-aligned sets.

:class:`Matcher` is fed ``(stream index, timestamp, item)`` and returns complete sets, one item per stream,
in emission order. It follows the ROS message_filters synchronizers so that code ported from ROS behaves
the same (the exact rules, and the ROS sources they follow, are in docs/fusion-matcher.md):

=============  ==============================================================  ===========================
policy         what it emits                                                   parameters it reads
=============  ==============================================================  ===========================
approximate    ROS ApproximateTimeSynchronizer (Python): each new item, with   slop (required), queue_size
               the closest items of the other streams, span < slop
optimal        ROS ApproximateTime policy (C++): sets of minimal span, each    queue_size, max_interval,
               item used once, in time order                                   age_penalty,
                                                                               inter_message_lower_bound
exact          ROS ExactTime policy / TimeSynchronizer: equal stamps only      queue_size
latest         each item of the pivot stream with the newest item of every    slop (required), pivot,
               other stream within slop (freshest data for control loops)     queue_size
=============  ==============================================================  ===========================

Parameters a policy does not read are still checked, then ignored. The matcher is not thread-safe: feed
it from one thread (a node's loop does).

The compiled matcher (``edgeflow._fast.matcher_c``) is used by default. The plain-Python reference
(``edgeflow._fast.matcher_py``, the same source uncompiled) is used with ``implementation="python"``, or when
the environment variable ``EDGEFLOW_PURE_MATCHER=1`` is set and no implementation is named, or when the
compiled one is not built and none was asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgeflow.config import settings
from edgeflow.errors import ConfigError

__all__ = ["Matcher", "MatcherStatistics", "DROP_REASONS", "POLICIES"]

POLICIES = ("approximate", "optimal", "exact", "latest")

#: Why an item left without being part of a set (the ``reason`` given to ``on_drop``).
DROP_REASONS = ("replaced", "queue_full", "superseded", "too_old", "no_partner", "out_of_order", "cleared")

_MODULES = {"compiled": "edgeflow._fast.matcher_c", "python": "edgeflow._fast.matcher_py"}


@dataclass(frozen=True)
class MatcherStatistics:
    """A snapshot of a matcher's counters (since it was made; ``clear()`` keeps them).

    Attributes:
        pushes: items pushed, whatever became of them (a push that raised ConfigError is not counted).
        sets: complete sets emitted.
        queued: items held now, per stream.
        replaced, queue_full, superseded, too_old, no_partner, out_of_order, cleared: items dropped for
            each reason (see ``DROP_REASONS`` and docs/fusion-matcher.md).
    """

    pushes: int
    sets: int
    queued: tuple[int, ...]
    replaced: int
    queue_full: int
    superseded: int
    too_old: int
    no_partner: int
    out_of_order: int
    cleared: int

    @property
    def drops(self) -> dict[str, int]:
        """Drops by reason, every reason listed."""
        return {reason: getattr(self, reason) for reason in DROP_REASONS}

    @property
    def dropped(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.drops.values())


class Matcher:
    """Match items of ``n_streams`` streams into complete sets by timestamp.

    Args:
        n_streams: number of input streams (2 or more); streams are 0 .. n_streams - 1.
        policy: ``"approximate"`` (default), ``"optimal"``, ``"exact"`` or ``"latest"``.
        slop: seconds; required by approximate and latest. A set (approximate) or a partner's distance to
            the pivot item (latest) must be strictly less than slop.
        queue_size: items kept per stream while waiting (exact: pending timestamps); 1 to 65536, default 10.
        max_interval: optimal only: seconds; a set wider than this is never emitted. Default: unlimited.
        age_penalty: optimal only: ROS's preference for sets that can be emitted sooner; default 0.1.
        inter_message_lower_bound: optimal only: the least gap, in seconds, between two items of a stream,
            one number for all streams or a sequence with one per stream (default 0). It lets the matcher
            prove a set optimal before the next items arrive.
        pivot: latest only: the stream whose items trigger a set; default 0.
        on_drop: called as ``on_drop(stream, timestamp, item, reason)`` for every item that leaves without
            being in a set, after the push or clear that dropped it has finished updating the matcher.
            ``timestamp`` is in seconds; ``reason`` is one of ``DROP_REASONS``. An exception it raises
            propagates out of ``push``: the matcher stays consistent, but the sets of that push and its
            remaining drop notifications are lost.
        implementation: ``"compiled"`` or ``"python"``; default: compiled, or python when the environment
            variable ``EDGEFLOW_PURE_MATCHER=1`` is set or the compiled matcher is not built.

    Raises:
        ConfigError: an unknown policy or a bad argument, named in one line.
        ImportError: ``implementation="compiled"`` was asked for and the compiled matcher is not built.

    Example::

        m = Matcher(n_streams=3, policy="approximate", slop=0.05, queue_size=10)
        m.push(0, 12.000, frame)          # -> []
        m.push(1, 12.003, scan)           # -> []
        m.push(2, 12.010, imu)            # -> [(frame, scan, imu)]
        m.statistics().sets               # -> 1
    """

    def __init__(self, n_streams: int, policy: str = "approximate", *, slop: float | None = None,
                 queue_size: int = 10, max_interval: float | None = None, age_penalty: float | None = None,
                 inter_message_lower_bound: float | Sequence[float] | None = None, pivot: int | None = None,
                 on_drop: Callable[[int, float, Any, str], object] | None = None,
                 implementation: str | None = None) -> None:
        self.implementation, core = _load_core(implementation)
        self._core = core.make_matcher(
            n_streams, policy, slop=slop, queue_size=queue_size, max_interval=max_interval,
            age_penalty=age_penalty, inter_message_lower_bound=inter_message_lower_bound, pivot=pivot,
            on_drop=on_drop)
        self.n_streams = n_streams
        self.policy = policy
        # Bind the core's methods on the instance: a push then costs one call, not two (the target is
        # a million pushes per second). The methods below document them and are used only via the class.
        self.push = self._core.push
        self.push_ns = self._core.push_ns

    def push(self, stream: int, timestamp: float, item: Any) -> list[tuple]:
        """Add ``item`` of ``stream`` stamped ``timestamp`` seconds; return the sets it completes.

        The stamp is converted once to integer nanoseconds, ``round(timestamp * 1e9)``, and compared only
        as an integer. Each set is a tuple with one item per stream, in stream order; sets are listed in
        emission order; the list is usually empty.

        Raises:
            ConfigError: ``stream`` is out of range, or ``timestamp`` is not a finite time.
            TypeError: ``stream`` is not an integer, or ``timestamp`` not a number.
        """
        return self._core.push(stream, timestamp, item)

    def push_ns(self, stream: int, stamp_ns: int, item: Any) -> list[tuple]:
        """Like :meth:`push`, with the stamp as integer nanoseconds (within ±2**62)."""
        return self._core.push_ns(stream, stamp_ns, item)

    def clear(self) -> None:
        """Drop every held item (reason ``"cleared"``) and forget each stream's history.

        Use it after a jump back in time. Counters are kept.
        """
        self._core.clear()

    def queue_sizes(self) -> tuple[int, ...]:
        """The number of items held now for each stream, in stream order."""
        return self._core.queue_sizes()

    def statistics(self) -> MatcherStatistics:
        """A frozen snapshot of the counters: pushes, sets emitted, drops by reason, items held per stream."""
        pushes, sets, drops = self._core.counters()
        return MatcherStatistics(pushes, sets, self._core.queue_sizes(), *drops)

    def __repr__(self) -> str:
        return f"<Matcher {self.policy} n_streams={self.n_streams} ({self.implementation})>"


def _load_core(requested: str | None) -> tuple[str, Any]:
    """The implementation to use and its module: the one asked for, else the environment's, else compiled."""
    if requested is not None and requested not in _MODULES:
        raise ConfigError(f"Matcher: implementation must be 'compiled' or 'python', not {requested!r}")
    if requested is None and settings.EDGEFLOW_PURE_MATCHER:
        requested = "python"
    if requested == "python":
        return requested, importlib.import_module(_MODULES["python"])
    try:
        return "compiled", importlib.import_module(_MODULES["compiled"])
    except ImportError as exc:
        if requested == "compiled":
            raise ImportError("EdgeFlow's compiled matcher (edgeflow._fast.matcher_c) is not built: run "
                              "`pip install -e .` in the source checkout, or pass implementation='python'"
                              ) from exc
    # Not built and not asked for by name: the reference gives the same results, only slower.
    return "python", importlib.import_module(_MODULES["python"])
