"""Exponential back-off as pure arithmetic: how long to wait before the next attempt, and when it is due.

Nothing here sleeps, reads a clock or opens anything: the caller passes ``now`` (any monotonic clock, in
seconds) and a random source when it wants jitter, so every schedule is reproducible in a test.

    >>> b = Backoff(initial=0.1, maximum=1.0)
    >>> [b.delay(n) for n in range(6)]
    [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    >>> retry = RetrySchedule(b)
    >>> retry.failed(now=10.0)           # the first failure: try again 0.1 s later
    10.1
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Callable, Iterator

from edgeflow.errors import ConfigError

__all__ = ["Backoff", "RetrySchedule"]


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Delays that grow by ``factor`` from ``initial`` up to ``maximum`` seconds.

    Args:
        initial: the delay after the first failure (seconds, > 0).
        maximum: the cap (seconds, >= initial).
        factor: growth per failure (>= 1).
        jitter: 0 (none) to 1. With jitter ``j`` a delay ``d`` becomes a uniform draw from
            ``[d * (1 - j), d]``: never above the cap, and peers that failed together spread out instead of
            retrying in step.

    Raises:
        ConfigError: a value out of range.
    """

    initial: float = 0.05
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "factor", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"Backoff: {name}={value!r} is not a finite number")
        if self.initial <= 0:
            raise ConfigError(f"Backoff: initial={self.initial!r} must be > 0")
        if self.maximum < self.initial:
            raise ConfigError(f"Backoff: maximum={self.maximum!r} is below initial={self.initial!r}")
        if self.factor < 1:
            raise ConfigError(f"Backoff: factor={self.factor!r} must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"Backoff: jitter={self.jitter!r} must be between 0 and 1")

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """The wait after failure number ``attempt`` (0 for the first failure).

        ``rand`` is a number in [0, 1) for the jitter (default: ``random.random()`` when jitter is on);
        ``rand=0`` gives the full, un-jittered delay.
        """
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # the exponent is capped so a long outage cannot overflow a float; past it the cap applies anyway
        steps = min(attempt, 1 + math.ceil(math.log(self.maximum / self.initial, self.factor))
                    if self.factor > 1 else 0)
        base = min(self.maximum, self.initial * self.factor ** steps)
        if not self.jitter:
            return base
        u = random.random() if rand is None else rand
        if not 0 <= u < 1:
            raise ValueError(f"rand must be in [0, 1), got {u}")
        return base * (1 - self.jitter * u)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The endless sequence ``delay(0), delay(1), ...``, jittered from ``rng`` (default: ``random``)."""
        draw: Callable[[], float] = (rng or random).random
        attempt = 0
        while True:
            yield self.delay(attempt, draw() if self.jitter else None)
            attempt += 1


class RetrySchedule:
    """Consecutive failures of one resource and the time the next attempt is due.

    ``failed(now)`` records a failure and returns when to try again; ``succeeded()`` starts over;
    ``is_due(now)`` says whether an attempt may be made. Before the first failure an attempt is always due.

    Args:
        backoff: the delays to use.
        rng: a ``random.Random`` for the jitter (default: the ``random`` module).
    """

    def __init__(self, backoff: Backoff | None = None, rng: random.Random | None = None) -> None:
        self.backoff = backoff or Backoff()
        self._rng = rng
        self.failures = 0
        self.due_at: float | None = None

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the time the next attempt is due."""
        rand = (self._rng or random).random() if self.backoff.jitter else None
        self.due_at = now + self.backoff.delay(self.failures, rand)
        self.failures += 1
        return self.due_at

    def succeeded(self) -> None:
        """The resource works again: the next failure waits ``initial`` once more."""
        self.failures = 0
        self.due_at = None

    def is_due(self, now: float) -> bool:
        """True when an attempt may be made at ``now``."""
        return self.due_at is None or now >= self.due_at

    def remaining(self, now: float) -> float:
        """Seconds until the next attempt is due (0 when it is due now)."""
        return 0.0 if self.due_at is None else max(0.0, self.due_at - now)

    def __repr__(self) -> str:
        return f"<RetrySchedule failures={self.failures} due_at={self.due_at}>"
