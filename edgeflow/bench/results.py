"""What a benchmark is told to measure (BenchConfig), what it reports (BenchResult), and how it fails."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

from edgeflow.errors import EdgeFlowError


class BenchError(EdgeFlowError):
    """A benchmark case failed: the consumer died, timed out, or received a wrong frame."""


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """How much to measure. ``BenchConfig.quick()`` is the small variant for tests.

    Attributes:
        latency_n: paced latency samples per case (fewer if ``latency_budget_s`` runs out first).
        warmup_n: paced sends before measuring, discarded.
        pace_s: interval between latency sends, in seconds.
        latency_budget_s: a slow case stops sampling after this long (at least 30 samples).
        burst_n, burst_s: the throughput burst stops after this many frames or seconds.
        memcpy_n: copies timed by the memcpy floor (the cold variant does at most 40).
        slots: ring slots; also the Queue maxsize and the pyzmq high-water marks.
        timeout_s: longest wait for the consumer (start, ack, reply) before the case fails.
        loan_fill: loan cases copy a whole prepared frame into the slot instead of writing markers only.
    """

    latency_n: int = 400
    warmup_n: int = 40
    pace_s: float = 0.002
    latency_budget_s: float = 2.5
    burst_n: int = 100_000
    burst_s: float = 0.3
    memcpy_n: int = 200
    slots: int = 8
    timeout_s: float = 20.0
    loan_fill: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> "BenchConfig":
        """About 10 s for the whole matrix: enough to check that every case works, not figures to quote."""
        values = dict(latency_n=60, warmup_n=10, latency_budget_s=0.6, burst_n=2000, burst_s=0.1, memcpy_n=30)
        return cls(**{**values, **overrides})


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """One case at one frame size. Latencies in microseconds; rates are None where they mean nothing.

    ``recv_fps`` and ``gbps`` count frames the consumer received; ``sent_fps`` counts frames the producer sent
    (they differ only for REALTIME, which drops). ``skipped`` or ``error`` say why figures are missing.
    """

    case: str
    size: str
    nbytes: int
    n: int = 0
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    sent_fps: float | None = None
    recv_fps: float | None = None
    gbps: float | None = None
    burst_sent: int = 0
    burst_received: int = 0
    note: str = ""
    skipped: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the case ran and every check passed."""
        return self.skipped is None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return dataclasses.asdict(self)


def percentiles(samples_us: Iterable[float]) -> tuple[int, float | None, float | None, float | None]:
    """(n, p50, p99, p99.9) of the samples; the percentiles are None when there are none."""
    values = np.asarray(list(samples_us), dtype=np.float64)
    if values.size == 0:
        return 0, None, None, None
    p50, p99, p999 = np.percentile(values, [50.0, 99.0, 99.9])
    return int(values.size), float(p50), float(p99), float(p999)


def rate(count: int, seconds: float) -> float | None:
    """``count / seconds``, or None when either is not positive (a rate that means nothing)."""
    return count / seconds if count > 0 and seconds > 0 else None


