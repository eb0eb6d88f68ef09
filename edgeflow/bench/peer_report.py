"""The peer comparison of issue 17: edgeflow's ring (each wait mode) against iceoryx2, in rounds, medians.

``run_rounds`` runs the same cases several times in one process, the case order reversed every other round
(a shared machine's load drifts: alternating spreads it over every case), and ``median_results`` folds the
rounds into one result per case and size: the median of each figure over the rounds. Every ratio here
divides two figures of that one run.

Example:
    >>> from edgeflow.bench import peer_report, ring
    >>> from edgeflow.bench.results import BenchConfig
    >>> runs = peer_report.run_rounds(["64"], ring.PEER_RUN, BenchConfig.quick(), rounds=3)
    >>> merged = peer_report.median_results(runs)
    >>> print(peer_report.format_comparison(merged))
    >>> print(peer_report.format_peer_targets(peer_report.check_peer_targets(merged)))
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Callable, Iterable, Sequence

from edgeflow.bench import ring
from edgeflow.bench.payload import SIZES
from edgeflow.bench.peers import PEER_CASES, iceoryx2_missing, iceoryx2_version
from edgeflow.bench.results import BenchConfig, BenchResult
from edgeflow.bench.table import (LARGE, SMALL, TargetCheck, divide, find, format_number, format_times,
                                  format_us, target_check)

IOX_EVENT, IOX_POLL = PEER_CASES["iox2-loan-event"][0], PEER_CASES["iox2-loan-poll"][0]
IOX_COPY_EVENT = PEER_CASES["iox2-copy-event"][0]
_FIGURES = ("p50_us", "p99_us", "p999_us", "sent_fps", "recv_fps", "gbps")
LEGEND = """\
With several rounds (run_ring.py --rounds) each figure is the median over the rounds of one run, the case
order alternating between rounds (the note gives the spread); ratios divide two figures of this run. "vs event" / "vs poll": iceoryx2's p50 divided by this case's (> 1: this case is faster);
"fps vs": this case's recv/s divided by iceoryx2's (> 1: more frames/s). iceoryx2 cases deliver every frame
(no safe overflow, RetryUntilDelivered): compare their throughput with DURABLE, not REALTIME (latest-wins)."""


def run_rounds(sizes: Iterable[str] = SIZES, cases: Iterable[str] = ring.PEER_RUN,
               cfg: BenchConfig | None = None, rounds: int = 3,
               on_result: Callable[[BenchResult], None] | None = None) -> list[list[BenchResult]]:
    """``rounds`` full runs of ``cases`` at ``sizes`` (``ring.run_all``), the case order reversed every other
    round; returns each round's results.

    Raises:
        ConfigError: an unknown case or a malformed size, before anything runs.
    """
    cases, runs = list(cases), []
    for k in range(max(rounds, 1)):
        order = cases if k % 2 == 0 else cases[::-1]
        runs.append(ring.run_all(sizes, order, cfg, on_result=on_result))
    return runs


def peer_status() -> str:
    """One line: which peers this run can measure (with versions), or why a peer's cases are skipped."""
    missing = iceoryx2_missing()
    iox = (f"iceoryx2 {iceoryx2_version()}" if not missing
           else f"{missing}; its cases are skipped (pip install 'edgeflow[bench]')")
    zmq_missing = ring.zmq_missing()
    if zmq_missing:
        zmq = f"{zmq_missing}; its case is skipped"
    else:
        import zmq as zmq_module
        zmq = f"pyzmq {zmq_module.__version__}"
    return f"peers: {iox}; {zmq}"


def median_results(runs: Sequence[Sequence[BenchResult]]) -> list[BenchResult]:
    """One result per (case, size) in first-seen order: each figure the median of the rounds that have it.

    ``n`` and the burst counts are summed over the rounds; errors of any round are kept (a case that failed
    once is marked failed); a case skipped in every round stays skipped.
    """
    groups: dict[tuple[str, str], list[BenchResult]] = {}
    for run in runs:
        for r in run:
            groups.setdefault((r.case, r.size), []).append(r)
    merged = []
    for rs in groups.values():
        ran = [r for r in rs if not r.skipped]
        if not ran:
            merged.append(rs[0])
            continue
        figures = {}
        for name in _FIGURES:
            values = [getattr(r, name) for r in ran if getattr(r, name) is not None]
            figures[name] = statistics.median(values) if values else None
        errors = list(dict.fromkeys(r.error for r in ran if r.error))
        notes = list(dict.fromkeys(r.note for r in ran if r.note))
        note = "; ".join(notes + ([_spread(ran)] if len(ran) > 1 else []))
        merged.append(dataclasses.replace(
            ran[0], n=sum(r.n for r in ran), burst_sent=sum(r.burst_sent for r in ran),
            burst_received=sum(r.burst_received for r in ran), note=note,
            error="; ".join(errors) if errors else None, **figures))
    return merged


def _spread(ran: Sequence[BenchResult]) -> str:
    """"median of 3 rounds (p50 12.1-30.5 us, recv/s 50,000-200,000)": how far the rounds were apart."""
    parts = []
    for name, unit in (("p50_us", " us"), ("recv_fps", "")):
        values = [getattr(r, name) for r in ran if getattr(r, name) is not None]
        if values:
            label = "p50" if name == "p50_us" else "recv/s"
            parts.append(f"{label} {format_number(min(values))}-{format_number(max(values))}{unit}")
    return f"median of {len(ran)} rounds" + (f" ({', '.join(parts)})" if parts else "")


def _fig(results: Sequence[BenchResult], case: str, size: str, name: str) -> float | None:
    r = find(results, case, size)
    return getattr(r, name) if r else None


def comparison_rows(results: Sequence[BenchResult]) -> list[list[str]]:
    """Per size and two-process case: p50, p99, recv/s and the ratios to iceoryx2 (event, busy poll)."""
    sizes = list(dict.fromkeys(r.size for r in results if r.size != "-"))
    rows = []
    for size in sizes:
        ev, poll = (find(results, name, size) for name in (IOX_EVENT, IOX_POLL))
        for r in results:
            if r.size != size or not r.ok or r.p50_us is None or r.case.startswith("floor"):
                continue
            rows.append([r.case, size, format_number(r.p50_us), format_number(r.p99_us),
                         format_number(r.recv_fps),
                         format_times(ev.p50_us if ev else None, r.p50_us),
                         format_times(poll.p50_us if poll else None, r.p50_us),
                         format_times(r.recv_fps, ev.recv_fps if ev else None),
                         format_times(r.recv_fps, poll.recv_fps if poll else None)])
    return rows


def format_comparison(results: Sequence[BenchResult], *, legend: bool = True) -> str:
    """The comparison table (see ``comparison_rows``), then the legend."""
    header = ["case", "size", "p50 us", "p99 us", "recv/s", "p50 vs event", "vs poll", "fps vs event",
              "vs poll"]
    rows = comparison_rows(results)
    if not rows:
        return "peer comparison: no result with figures"
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["edgeflow against iceoryx2, same run"]
    for k, row in enumerate(table):
        cells = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("-" * len(lines[-1]))
    return "\n".join(lines + (["", LEGEND] if legend else []))


def check_peer_targets(results: Sequence[BenchResult]) -> list[TargetCheck]:
    """The targets of issue 17 that compare with iceoryx2, against the figures of this run.

    Latency ratios are edgeflow p50 / iceoryx2 p50 (pass at <= 1); throughput ratios edgeflow recv/s /
    iceoryx2 recv/s (pass at >= 1). The default wait ("adaptive") is held to iceoryx2's busy poll at 64 B and
    ``wait="sleep"`` to its event wake-up (the issue's targets); at 1080p the default to the event wake-up and
    ``wait="spin"`` to the busy poll (each against the peer that waits the same way).
    """
    label = {key: ring.case_label(key) for key in ring.PEER_RUN}
    checks = []

    def p50(case: str, peer: str, size: str, name: str) -> None:
        a, b = _fig(results, case, size, "p50_us"), _fig(results, peer, size, "p50_us")
        checks.append(target_check(name, divide(a, b), 1.0, True, f"{format_us(a)} vs {format_us(b)}"))

    def fps(case: str, peer: str, size: str, name: str) -> None:
        a, b = _fig(results, case, size, "recv_fps"), _fig(results, peer, size, "recv_fps")
        checks.append(target_check(name, divide(a, b), 1.0, False,
                                   f"{format_number(a)}/s vs {format_number(b)}/s"))

    for key in ("durable-loan", "rt-loan"):
        p50(label[key], IOX_POLL, SMALL, f"{label[key]} (adaptive) p50 / {IOX_POLL} p50 at {SMALL}")
        sleep, spin = label[f"{key}-sleep"], label[f"{key}-spin"]
        p50(sleep, IOX_EVENT, SMALL, f"{sleep} p50 / {IOX_EVENT} p50 at {SMALL}")
        p50(label[key], IOX_EVENT, LARGE, f"{label[key]} (adaptive) p50 / {IOX_EVENT} p50 at {LARGE}")
        p50(spin, IOX_POLL, LARGE, f"{spin} p50 / {IOX_POLL} p50 at {LARGE}")
    sizes = list(dict.fromkeys(r.size for r in results if r.size != "-"))
    for size in sizes:
        dl, spin = label["durable-loan"], label["durable-loan-spin"]
        fps(dl, IOX_EVENT, size, f"{dl} (adaptive) frames/s / {IOX_EVENT} at {size}")
        fps(spin, IOX_POLL, size, f"{spin} frames/s / {IOX_POLL} at {size}")
    dp = label["durable-publish"]
    fps(dp, IOX_COPY_EVENT, LARGE, f"{dp} frames/s / {IOX_COPY_EVENT} at {LARGE} (copy path)")
    return checks


def format_peer_targets(checks: Sequence[TargetCheck]) -> str:
    """One line per target: PASS, MISS or n/a, the measured ratio, the bound and the figures behind it."""
    lines = ["targets (issue 17, against iceoryx2), measured in this run:"]
    for c in checks:
        verdict = "n/a " if c.passed is None else "PASS" if c.passed else "MISS"
        ratio = "-" if c.ratio is None else f"{c.ratio:.2f}x"
        lines.append(f"  {verdict}  {c.name}: {ratio} ({c.limit}); {c.detail}")
    return "\n".join(lines)
