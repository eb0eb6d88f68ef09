"""Runtime benchmark: the node framework beside the raw Publisher/Subscriber, and `python main.py` startup.

    python benchmarks/run_runtime.py [--quick] [--json] [--realtime-only] [-n 400] [--fps 300]

Prints the latency table (raw ring cases and node cases of the same run, 1920x1080x3), the CPU table (per
frame and hop, 640x480x3), the startup table, and the target checks of issue 4 (PASS / MISS with the measured
ratio). Progress goes to stderr. Exits 1 when a case failed (a wrong frame, a dead node, a leftover segment or
process), 2 on a bad flag; a missed target is a figure, not a failure. The workloads live in
edgeflow/bench/runtime.py (nodes: edgeflow/bench/nodes.py); the raw cases are edgeflow/bench/ring.py's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
from typing import Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout that is not pip-installed; spawned children inherit

from edgeflow.errors import ConfigError  # noqa: E402
from edgeflow.bench import nodes, runtime, startup, table  # noqa: E402
from edgeflow.bench.ring import EDGEFLOW_CASES  # noqa: E402
from edgeflow.bench.runtime import CpuResult, RuntimeRun  # noqa: E402
from edgeflow.bench.startup import StartupResult  # noqa: E402
from edgeflow.bench.table import TargetCheck  # noqa: E402

LEGEND = """\
latency: one-way, capture time -> the consumer holding the frame, 1920x1080x3. A raw case and its node case
  take turns in rounds of frames at the same pace, so both see the same load. Raw cases (bench/ring.py): the
  producer stamps time.time() just before loan/publish, the consumer reads Frame.timestamp after recv. Node
  cases: the runtime stamps Frame.timestamp (the loan's time for self.output(), the publish time for a
  returned array); the consumer node computes time.time() - self.current_frame.timestamp on entry to
  process(). The note splits the node median at the producer's trace "sent" time (meta edgeflow.trace).
CPU: time.process_time() of each process every window of frames, median window, summed and divided by the
  hops; trivial hooks, DURABLE links, unpaced. sleeps = voluntary context switches per frame (futex waits):
  each sleep and wake-up costs CPU of its own, so stages that wait on each other pay more per frame.
startup: from just before Popen to the last node's first frame (it writes time.time() to a file)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few samples: checks that every case works")
    p.add_argument("--json", action="store_true", help="print results and target checks as JSON")
    p.add_argument("--realtime-only", action="store_true", help="skip the DURABLE latency cases")
    p.add_argument("-n", "--latency-n", type=int, help="measured latency frames per case")
    p.add_argument("--fps", type=float, help="latency pace, frames per second (default 300)")
    p.add_argument("--cpu-frames", type=int, help="frames of each CPU run")
    p.add_argument("--startup-runs", type=int, help="python main.py runs")
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> runtime.RuntimeConfig:
    cfg = runtime.RuntimeConfig.quick() if args.quick else runtime.RuntimeConfig()
    changes = {key: value for key, value in (("latency_n", args.latency_n), ("fps", args.fps),
                                             ("cpu_frames", args.cpu_frames),
                                             ("startup_runs", args.startup_runs)) if value is not None}
    for key, value in changes.items():
        if value <= 0:
            raise ConfigError(f"--{key.replace('_', '-')} {value:g}: must be positive")
    if args.realtime_only:
        changes["durable"] = False
    return dataclasses.replace(cfg, **changes)


# ------------------------------------------------------------------------------------------------ tables

def _aligned(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return lines


def latency_ratios(run: RuntimeRun) -> list[str]:
    """One line per node case: its p50 and p99 as multiples of the raw case it is measured against."""
    lines = []
    for qos, modes in runtime.RAW_FOR_MODE.items():
        for mode, case_id in modes.items():
            node = table.find(run.latency, runtime.node_case(qos, mode), nodes.LATENCY_SIZE)
            raw = table.find(run.latency, EDGEFLOW_CASES[case_id][0], nodes.LATENCY_SIZE)
            if node and raw:
                lines.append(f"  {node.case} / {raw.case}: p50 {table.format_times(node.p50_us, raw.p50_us)}, "
                             f"p99 {table.format_times(node.p99_us, raw.p99_us)}")
    return lines


def format_cpu(results: Sequence[CpuResult]) -> str:
    """The CPU table: µs and sleeps per frame of each process, their sum per frame and hop, ratio to raw."""
    raw = next((r for r in results if r.case == runtime.RAW_CPU_CASES[1] and r.ok), None)
    rows = [["case", "size", "hops", "frames", "us/frame/hop", "vs raw", "each round",
             "per process: CPU us/frame (sleeps/frame)"]]
    for r in results:
        if not r.per_process_us:
            rows.append([r.case, r.size, str(r.hops), "", "", "", "", "ERROR (below)"])
            continue
        parts = ", ".join(f"{who} {us:.1f} ({r.sleeps.get(who, float('nan')):.2f})"
                          for who, us in r.per_process_us.items())
        rows.append([r.case, r.size, str(r.hops), f"{len(r.runs_us)}x{r.frames}",
                     table.format_number(r.per_frame_hop_us),
                     table.format_times(r.per_frame_hop_us, raw.per_frame_hop_us if raw else None),
                     " ".join(f"{us:.1f}" for us in r.runs_us), parts])
    lines = _aligned(rows, {2, 3, 4, 5, 6})
    lines += [f"ERROR {r.case}: {r.error}" for r in results if r.error]
    return "\n".join(lines)


def format_startup(results: Sequence[StartupResult]) -> str:
    """The startup table: median, fastest and slowest run in seconds."""
    rows = [["case", "runs", "median s", "min s", "max s", "note"]]
    for r in results:
        if not r.runs_s:
            rows.append([r.case, "0", "", "", "", "ERROR (below)"])
            continue
        rows.append([r.case, str(len(r.runs_s)), f"{r.median_s:.2f}", f"{min(r.runs_s):.2f}",
                     f"{max(r.runs_s):.2f}", r.note])
    lines = _aligned(rows, {1, 2, 3, 4})
    lines += [f"ERROR {r.case}: {r.error}" for r in results if r.error]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ targets

def _latency_targets(run: RuntimeRun) -> list[TargetCheck]:
    checks = []
    for qos, modes in runtime.RAW_FOR_MODE.items():
        for mode, case_id in modes.items():
            node_case, raw_case = runtime.node_case(qos, mode), EDGEFLOW_CASES[case_id][0]
            node = table.find(run.latency, node_case, nodes.LATENCY_SIZE)
            raw = table.find(run.latency, raw_case, nodes.LATENCY_SIZE)
            if node is None and raw is None and qos == "DURABLE":
                continue                                   # --realtime-only
            p50, base = (node.p50_us if node else None), (raw.p50_us if raw else None)
            checks.append(table.target_check(f"{node_case} p50 / {raw_case} p50 at {nodes.LATENCY_SIZE}",
                                            table.divide(p50, base), 2.0, True,
                                            f"{table.format_us(p50)} vs {table.format_us(base)}"))
    return checks


def _cpu_target(run: RuntimeRun) -> TargetCheck:
    found = {r.case: r.per_frame_hop_us for r in run.cpu if r.ok}
    node = found.get(runtime.NODE_CPU_CASE)
    raw1, raw2 = (found.get(runtime.RAW_CPU_CASES[k]) for k in (1, 2))
    added = node - raw2 if node is not None and raw2 is not None else None
    detail = (f"{table.format_us(node)} per frame and hop; raw Publisher->Subscriber {table.format_us(raw1)} "
              f"({table.format_times(node, raw1)}); raw 3-process chain {table.format_us(raw2)} "
              f"({table.format_times(node, raw2)}: the nodes add {table.format_us(added)})")
    return table.target_check(f"node CPU per frame and hop at {nodes.CPU_SIZE} / 50 us budget",
                             table.divide(node, 50.0), 1.0, True, detail)


def _startup_target(run: RuntimeRun) -> TargetCheck:
    found = {r.case: r for r in run.startup if r.ok}
    start, floor = found.get(startup.STARTUP_CASE), found.get(startup.IMPORT_CASE)
    median = start.median_s if start else None
    detail = "a figure is missing"
    if start:
        detail = (f"{median:.2f} s, median of {len(start.runs_s)} ({min(start.runs_s):.2f}-"
                  f"{max(start.runs_s):.2f} s)")
        if floor:
            detail += f"; {median / floor.median_s:.1f}x the import floor ({floor.median_s:.2f} s)"
    return table.target_check("python main.py to the first frame at the last node / 2 s budget",
                             table.divide(median, 2.0), 1.0, True, detail)


def check_targets(run: RuntimeRun) -> list[TargetCheck]:
    """Every target of issue 4 against the figures of this run."""
    return _latency_targets(run) + [_cpu_target(run), _startup_target(run)]


def format_targets(checks: Sequence[TargetCheck]) -> str:
    """edgeflow.bench.table's PASS / MISS lines under this benchmark's own heading (its first line names issue 3)."""
    return "\n".join(["targets (issue 4), measured in this run:",
                      *table.format_targets(checks).splitlines()[1:]])


# ------------------------------------------------------------------------------------------------ main

def describe(cfg: runtime.RuntimeConfig, run: RuntimeRun, load: tuple[float, float]) -> str:
    m = table.machine()
    return (f"edgeflow runtime benchmark: {m['cpus']} CPUs, Python {m['python']}, numpy {m['numpy']}; "
            f"{cfg.latency_n} latency frames per case at {cfg.fps:g}/s, {cfg.cpu_frames} CPU frames; "
            f"{run.seconds:.1f} s, load average {load[0]:.1f} before / {load[1]:.1f} after")


def to_json(cfg: runtime.RuntimeConfig, run: RuntimeRun, checks: Sequence[TargetCheck],
            load: tuple[float, float]) -> str:
    about = {"seconds": round(run.seconds, 1), "load_before": load[0], "load_after": load[1]}
    return json.dumps({"machine": table.machine(), "config": dataclasses.asdict(cfg), "run": about,
                       "results": dataclasses.asdict(run), "targets": [c.to_dict() for c in checks]},
                      indent=2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = config(args)
    except ConfigError as exc:
        print(f"run_runtime: {exc}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    run = runtime.run_all(cfg, on_progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    load = (load_before, os.getloadavg()[0])
    checks = check_targets(run)
    if args.json:
        print(to_json(cfg, run, checks, load))
    else:
        print(describe(cfg, run, load), "", table.format_table(run.latency, legend=False), "",
              "node case / raw case, same run:", *latency_ratios(run), "", format_cpu(run.cpu), "",
              format_startup(run.startup), "", LEGEND, "", format_targets(checks), sep="\n")
        if run.cleanup_error:
            print(f"\nERROR {run.cleanup_error}")
    return 1 if run.errors() else 0


if __name__ == "__main__":
    sys.exit(main())
