"""Presenting `edgeflow bench` results: the plain-text table, ratios to the baselines, target checks, JSON.

Only figures from one run are ever compared: every ratio here divides two results of the same list.

Example:
    >>> from edgeflow.bench import ring, table
    >>> from edgeflow.bench.results import BenchConfig
    >>> results = ring.run_all(cfg=BenchConfig.quick())
    >>> print(table.format_table(results))
    >>> print(table.format_targets(table.check_targets(results)))
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from typing import Any, Iterable, Sequence

from edgeflow.bench.floors import FLOOR_CASES
from edgeflow.bench.results import BenchConfig, BenchResult
from edgeflow.bench.ring import BASELINE_CASES, EDGEFLOW_CASES

SMALL, MEDIUM, LARGE = "64", "640x480x3", "1920x1080x3"
ZMQ, QUEUE, PIPE = BASELINE_CASES["zmq"], BASELINE_CASES["mp-queue"], BASELINE_CASES["mp-pipe"]
SEM_HALF, SEM_ONE_WAY = FLOOR_CASES["sem"]
MEMCPY_WARM, MEMCPY_PACED, MEMCPY_COLD = FLOOR_CASES["memcpy"]
LEGEND = """\
latency: one-way, producer's time.time() just before loan/publish/put/send -> consumer holding the frame
  (edgeflow: Frame.timestamp read from the view, no copy); sends paced, each after the previous was received.
throughput: unpaced burst; recv/s and GB/s count frames the consumer received. REALTIME is latest-wins and
  drops by design (sent/s > recv/s): compare throughput with DURABLE and the baselines (they deliver every
  frame).
loan cases write only the stamp and index markers into the slot; the consumer of every case reads the markers
  (first and last 8 bytes), not every byte. Floors run in the same run: memcpy is in-process.
percentiles are of n samples: with a few hundred, p99.9 is about the largest one."""


def find(results: Iterable[BenchResult], case: str, size: str) -> BenchResult | None:
    """The first result of ``case`` at ``size`` that has figures, or None."""
    for r in results:
        if r.case == case and r.size == size and r.ok:
            return r
    return None


# ------------------------------------------------------------------------------------------------- the table

def format_number(value: float | None, unit: str = "") -> str:
    """A figure for the tables: 2 decimals below 10, 1 below 1000, then thousands separators; '-' for None."""
    if value is None:
        return "-"
    if unit == "gb":
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _row(r: BenchResult) -> list[str]:
    head = [r.case, r.size, f"{r.nbytes:,}" if r.nbytes else "-"]
    if r.skipped:
        return head + ["", "", "", "", "", "", "", f"skipped: {r.skipped}"]
    if r.error and r.n == 0 and r.recv_fps is None:
        return head + ["", "", "", "", "", "", "", "ERROR (below)"]
    figures = [str(r.n), format_number(r.p50_us), format_number(r.p99_us), format_number(r.p999_us), format_number(r.sent_fps), format_number(r.recv_fps),
               format_number(r.gbps, "gb")]
    return head + figures + [("ERROR (below); " if r.error else "") + r.note]


def format_table(results: Sequence[BenchResult], *, legend: bool = True) -> str:
    """All results as an aligned plain-text table, then the errors in full and (optionally) the legend."""
    header = ["case", "size", "bytes", "n", "p50 us", "p99 us", "p99.9 us", "sent/s", "recv/s", "GB/s",
              "note"]
    rows = [header] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    right = {2, 3, 4, 5, 6, 7, 8, 9}
    lines = []
    for k, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    for r in results:
        if r.error:
            lines.append(f"ERROR {r.case} {r.size}: {r.error}")
    if legend:
        lines += ["", LEGEND]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- ratios to baselines

def format_times(a: float | None, b: float | None) -> str:
    """``a / b`` as "3.5x", or '-' when either is missing or zero."""
    return f"{a / b:.1f}x" if a and b else "-"


def ratio_rows(results: Sequence[BenchResult]) -> list[list[str]]:
    """Per edgeflow case and size: how many times lower its p50 is, and how many times higher its recv/s."""
    sizes = list(dict.fromkeys(r.size for r in results if r.size != "-"))
    rows = []
    for size in sizes:
        for case, _, _ in EDGEFLOW_CASES.values():
            ef = find(results, case, size)
            if ef is None:
                continue
            base = {name: find(results, name, size) for name in (ZMQ, QUEUE, PIPE)}
            if not any(base.values()):
                continue
            rows.append([case, size]
                        + [format_times(b.p50_us if b else None, ef.p50_us) for b in base.values()]
                        + [format_times(ef.recv_fps, b.recv_fps if b else None) for b in base.values()])
    return rows


def format_ratios(results: Sequence[BenchResult]) -> str:
    """The ratio table (baseline p50 / edgeflow p50, edgeflow recv/s / baseline recv/s) and a headline."""
    rows = ratio_rows(results)
    if not rows:
        return "ratios: no edgeflow result with a baseline at the same size"
    header = ["edgeflow case", "size", "p50 vs zmq", "vs Queue", "vs Pipe", "recv/s vs zmq", "vs Queue",
              "vs Pipe"]
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["ratios to the baselines, same run (latency: times lower; throughput: times higher)"]
    for k, row in enumerate(table):
        cells = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("-" * len(lines[-1]))
    lines += [""] + headlines(results)
    return "\n".join(lines)


def headlines(results: Sequence[BenchResult]) -> list[str]:
    """Sentences for the README: "edgeflow REALTIME loan p50 is 35x lower than pyzmq ... at 1920x1080x3"."""
    out = []
    for case in (EDGEFLOW_CASES["rt-loan"][0], EDGEFLOW_CASES["durable-publish"][0]):
        ef = find(results, case, LARGE)
        for name in (ZMQ, QUEUE):
            b = find(results, name, LARGE)
            if ef and b and ef.p50_us and b.p50_us:
                out.append(f"{case} p50 is {b.p50_us / ef.p50_us:.0f}x lower than {name} at {LARGE} "
                           f"({ef.p50_us:,.0f} us vs {b.p50_us:,.0f} us)")
    ef, b = find(results, EDGEFLOW_CASES["durable-loan"][0], MEDIUM), find(results, ZMQ, MEDIUM)
    if ef and b and ef.recv_fps and b.recv_fps:
        out.append(f"{ef.case} delivers {ef.recv_fps / b.recv_fps:.0f}x the frames/s of {ZMQ} at {MEDIUM} "
                   f"({ef.recv_fps:,.0f} vs {b.recv_fps:,.0f})")
    return out


# ---------------------------------------------------------------------------------------------- the targets

@dataclasses.dataclass(frozen=True)
class TargetCheck:
    """One target of issue 3: ``passed`` is None when a figure it needs is missing (n/a)."""

    name: str
    passed: bool | None
    ratio: float | None
    limit: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return dataclasses.asdict(self)


def target_check(name: str, ratio: float | None, limit: float, at_most: bool, detail: str) -> TargetCheck:
    """A TargetCheck: passed when ``ratio`` is at most (``at_most``) or at least ``limit``; n/a without a ratio."""
    bound = f"{'<=' if at_most else '>='} {limit:g}x"
    if ratio is None:
        return TargetCheck(name, None, None, bound, detail or "a figure is missing")
    passed = ratio <= limit if at_most else ratio >= limit
    return TargetCheck(name, passed, ratio, bound, detail)


def _p50(results: Sequence[BenchResult], case: str, size: str) -> float | None:
    r = find(results, case, size)
    return r.p50_us if r else None


def divide(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when a figure is missing (or b is zero)."""
    return a / b if a is not None and b else None


def format_us(value: float | None) -> str:
    """Microseconds as "12.3 us", '-' for None."""
    return "-" if value is None else f"{value:,.1f} us"


def check_targets(results: Sequence[BenchResult]) -> list[TargetCheck]:
    """Every target of issue 3 against the figures of this run, per QoS and per produce mode."""
    return (_flat_targets(results) + _floor_targets(results) + _baseline_targets(results)
            + _publish_targets(results) + _throughput_targets(results))


def _flat_targets(results: Sequence[BenchResult]) -> list[TargetCheck]:
    checks = []
    for key in ("rt-loan", "durable-loan"):
        case = EDGEFLOW_CASES[key][0]
        big, small = _p50(results, case, LARGE), _p50(results, case, SMALL)
        checks.append(target_check(f"{case}: p50 at {LARGE} / p50 at {SMALL}", divide(big, small), 1.5, True,
                             f"{format_us(big)} vs {format_us(small)}"))
    return checks


def _floor_targets(results: Sequence[BenchResult]) -> list[TargetCheck]:
    floor, one_way = _p50(results, SEM_HALF, "-"), _p50(results, SEM_ONE_WAY, "-")
    checks = []
    for case, _, _ in EDGEFLOW_CASES.values():
        p50 = _p50(results, case, SMALL)
        checks.append(target_check(f"{case}: p50 at {SMALL} / semaphore half round trip", divide(p50, floor), 2.0,
                             True, f"{format_us(p50)} vs {format_us(floor)} (one-way wake-up {format_us(one_way)})"))
    return checks


def _baseline_targets(results: Sequence[BenchResult]) -> list[TargetCheck]:
    checks = []
    for key in ("rt-loan", "durable-loan"):
        case = EDGEFLOW_CASES[key][0]
        ef = _p50(results, case, LARGE)
        for name in (ZMQ, QUEUE):
            base = _p50(results, name, LARGE)
            checks.append(target_check(f"{case}: {name} p50 / loan p50 at {LARGE}", divide(base, ef), 20.0, False,
                                 f"{format_us(base)} vs {format_us(ef)}"))
    return checks


def _publish_targets(results: Sequence[BenchResult]) -> list[TargetCheck]:
    """publish() against one warm memcpy (the target); the paced and cold copies are given for context."""
    copies = {name: _p50(results, name, LARGE) for name in (MEMCPY_WARM, MEMCPY_PACED, MEMCPY_COLD)}
    checks = []
    for key in ("rt-publish", "durable-publish"):
        case = EDGEFLOW_CASES[key][0]
        big, small = _p50(results, case, LARGE), _p50(results, case, SMALL)
        budgets = {n: c + small if c is not None and small is not None else None for n, c in copies.items()}
        detail = f"{format_us(big)} vs memcpy {format_us(copies[MEMCPY_WARM])} + {format_us(small)}"
        for name, label in ((MEMCPY_PACED, "paced"), (MEMCPY_COLD, "cold")):
            if (ratio := divide(big, budgets[name])) is not None:
                detail += f"; against a {label} memcpy ({format_us(copies[name])}): {ratio:.2f}x"
        checks.append(target_check(f"{case}: p50 at {LARGE} / (memcpy + p50 at {SMALL})",
                             divide(big, budgets[MEMCPY_WARM]), 1.3, True, detail))
    return checks


def _throughput_targets(results: Sequence[BenchResult]) -> list[TargetCheck]:
    zmq = find(results, ZMQ, MEDIUM)
    zmq_fps = zmq.recv_fps if zmq else None
    checks = []
    for key, limit in (("durable-loan", 10.0), ("durable-publish", 3.0)):
        ef = find(results, EDGEFLOW_CASES[key][0], MEDIUM)
        fps = ef.recv_fps if ef else None
        rt = find(results, EDGEFLOW_CASES[key.replace("durable", "rt")][0], MEDIUM)
        extra = f"; REALTIME received {format_number(rt.recv_fps)}/s of {format_number(rt.sent_fps)}/s sent" if rt else ""
        checks.append(target_check(f"{EDGEFLOW_CASES[key][0]}: frames/s / {ZMQ} frames/s at {MEDIUM}",
                             divide(fps, zmq_fps), limit, False, f"{format_number(fps)}/s vs {format_number(zmq_fps)}/s{extra}"))
    return checks


def format_targets(checks: Sequence[TargetCheck]) -> str:
    """One line per target: PASS, MISS or n/a, the measured ratio, the bound and the figures behind it."""
    lines = ["targets (issue 3), measured in this run:"]
    for c in checks:
        verdict = "n/a " if c.passed is None else "PASS" if c.passed else "MISS"
        ratio = "-" if c.ratio is None else f"{c.ratio:.2f}x"
        lines.append(f"  {verdict}  {c.name}: {ratio} ({c.limit}); {c.detail}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ JSON

def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import numpy

    return {"python": sys.version.split()[0], "numpy": numpy.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "machine": platform.machine()}


def describe_run(cfg: BenchConfig, run: dict[str, Any] | None = None) -> str:
    """One line on what the figures were measured on and how (the machine is shared: the load matters)."""
    m = machine()
    line = (f"edgeflow ring benchmark: {m['cpus']} CPUs, Python {m['python']}, numpy {m['numpy']}; "
            f"pace {cfg.pace_s * 1e3:g} ms, up to {cfg.latency_n} latency samples, burst {cfg.burst_s:g} s")
    if run:
        line += (f"; {run['seconds']:g} s, load average {run['load_before']:.1f} before / "
                 f"{run['load_after']:.1f} after")
    return line


def to_json(results: Sequence[BenchResult], checks: Sequence[TargetCheck], cfg: BenchConfig,
            run: dict[str, Any] | None = None) -> str:
    """Results, target checks, configuration, machine and run (duration, load) as one JSON document."""
    return json.dumps({"machine": machine(), "config": dataclasses.asdict(cfg), "run": run or {},
                       "results": [r.to_dict() for r in results],
                       "targets": [c.to_dict() for c in checks]}, indent=2)
