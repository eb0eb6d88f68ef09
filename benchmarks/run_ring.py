"""Ring benchmark: edgeflow's shared-memory ring next to mp.Queue, mp.Pipe, pyzmq and this machine's floors.

    python benchmarks/run_ring.py [--quick] [--json] [--sizes 64,640x480x3,1920x1080x3] [--cases rt-loan,zmq]
    python benchmarks/run_ring.py --peers [--rounds 3] [--pace-ms 0]   against iceoryx2 (issue 17)

Prints the table, the ratios to the baselines and the target checks of issue 3 (PASS / MISS with the
measured ratio). ``--peers`` runs the peer comparison instead (``ring.PEER_RUN``: edgeflow's loan and publish
with each subscriber wait mode, iceoryx2's loan with event wake-up and busy poll and its send_copy, pyzmq; the
iceoryx2 cases are skipped, saying so, when it is not installed) and adds the comparison table and the targets
of issue 17. ``--rounds N`` runs the cases N times, the order reversed every other round, and reports the
median of each figure. ``--pace-ms 0`` sends each latency frame as soon as the previous one was received
(back to back: the consumer is still hot) instead of every 2 ms (the consumer has gone to sleep).

Progress goes to stderr. Exits 1 when a case failed (a wrong frame, a dead consumer, a
leftover segment or child), 2 on a bad flag; a missed target is a figure, not a failure. The workloads live in
edgeflow/bench/ (edgeflow.bench.ring), which `edgeflow bench` reuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout not pip-installed; spawned children inherit it

from edgeflow.errors import ConfigError  # noqa: E402
from edgeflow.bench import peer_report, peers, ring, table  # noqa: E402
from edgeflow.bench.payload import SIZES  # noqa: E402
from edgeflow.bench.results import BenchConfig, BenchResult  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few samples: checks that every case works")
    p.add_argument("--json", action="store_true", help="print results and target checks as JSON")
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: BYTES or WxH[xC]")
    p.add_argument("--cases", help=f"comma-separated, of {', '.join(ring.ALL_CASE_IDS)} (default: "
                   f"{', '.join(ring.CASE_IDS)}; with --peers {', '.join(ring.PEER_RUN)})")
    p.add_argument("--peers", action="store_true", help="the peer comparison (iceoryx2, pyzmq; issue 17)")
    p.add_argument("--rounds", type=int, default=1, help="run every case this many times; report medians")
    p.add_argument("--pace-ms", type=float, help="interval between latency sends (default 2)")
    p.add_argument("-n", "--latency-n", type=int, help="paced latency samples per case")
    p.add_argument("--loan-fill", action="store_true", help="loan cases copy a whole frame into the slot")
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> BenchConfig:
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    changes = {"loan_fill": args.loan_fill}
    if args.pace_ms is not None:
        changes["pace_s"] = args.pace_ms / 1000
    if args.latency_n is not None:
        changes["latency_n"] = args.latency_n
    return dataclasses.replace(cfg, **changes)


def progress(result: BenchResult) -> None:
    state = f"skipped ({result.skipped})" if result.skipped else "ERROR" if result.error else (
        f"p50 {result.p50_us:,.1f} us" if result.p50_us is not None else "")
    print(f"  {result.case} {result.size}: {state}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = config(args)
        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        default = ring.PEER_RUN if args.peers else ring.CASE_IDS
        cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else list(default)
        if args.rounds < 1:
            raise ConfigError(f"--rounds {args.rounds}: at least 1")
        started, load_before = time.monotonic(), os.getloadavg()[0]
        runs = peer_report.run_rounds(sizes, cases, cfg, args.rounds, on_result=progress)
        results = peer_report.median_results(runs) if len(runs) > 1 else runs[0]
    except ConfigError as exc:
        print(f"run_ring: {exc}", file=sys.stderr)
        return 2
    run = {"seconds": round(time.monotonic() - started, 1), "load_before": load_before,
           "load_after": os.getloadavg()[0]}
    with_peers = any(c in peers.PEER_CASES for c in cases)
    checks = peer_report.check_peer_targets(results) if with_peers else table.check_targets(results)
    if args.json:
        print(table.to_json(results, checks, cfg, run={**run, "rounds": args.rounds}))
    else:
        print(table.describe_run(cfg, run) + (f"; median of {args.rounds} rounds" if args.rounds > 1 else ""))
        if with_peers:
            print(peer_report.peer_status())
        print()
        print(table.format_table(results))
        print()
        if with_peers:
            print(peer_report.format_comparison(results))
            print()
            print(peer_report.format_peer_targets(checks))
        else:
            print(table.format_ratios(results))
            print()
            print(table.format_targets(checks))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
