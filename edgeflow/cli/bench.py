"""``edgeflow bench``: one-way latency and throughput of every transport on this machine, next to plain-Python
baselines and the machine's floor, all measured in the same run; then which transport to use for what.

    edgeflow bench                                   the default matrix (under a minute on 2 cores)
    edgeflow bench --quick --json                    small counts, JSON on stdout (for tests and scripts)
    edgeflow bench --sizes 640x480x3 --cases shm-rt,mp-queue
    edgeflow bench --redis redis://host:6379/0       Redis cases against that server
    edgeflow bench --peers                           edgeflow's ring against iceoryx2 and pyzmq (issue 17)

Cases (``--cases``):

    shm-rt, shm-durable             EdgeFlow shared memory, REALTIME / DURABLE, ``publish()`` (one copy in)
    shm-rt-loan, shm-durable-loan   the same with ``loan()``: the frame is written in the slot, zero-copy
    redis, dual-redis, tcp          EdgeFlow's network transports (skipped until they exist)
    mp-queue, pickle-pipe, redis-py plain Python: multiprocessing.Queue, a pickled array over a Pipe,
                                    raw bytes through a Redis list with redis-py
    mp-pipe, zmq                    more baselines: bytes over a Pipe, pyzmq (not in the defaults)
    memcpy, sem                     the floor: one copy of the frame in process; a cross-process wake-up
    shm-*-sleep, shm-*-spin         a shared-memory case whose Subscriber waits with wait="sleep" / "spin"
                                    (the others use the default, "adaptive")
    iox2-loan-event, iox2-loan-poll iceoryx2 (pip install iceoryx2): loan, written in place, consumer woken
                                    by an iceoryx2 event / busy-polling
    iox2-copy-event, iox2-copy-poll iceoryx2's send_copy (one copy in), the same two ways

``--peers`` runs the peer comparison (the loan and publish cases in each wait mode, iceoryx2, pyzmq, the memcpy
floor; with ``--cases`` as well, their union), then a table of ratios to iceoryx2 and the targets of issue 17.
A peer that is not installed is skipped, and the run says so.

Redis cases use ``--redis URL`` (``--data-redis`` for dual Redis's data instance, else the same server), or
throw-away ``redis-server`` processes on free loopback ports when one is installed, or are skipped with the
reason. Nothing is ever flushed: the baseline uses one list key of its own and deletes it.

The workloads are edgeflow.bench's (the consumer checks every frame) and edgeflow.cli._benchnet's; the table
is edgeflow.bench.table's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import textwrap
import time
from typing import Any, Callable

import click

DEFAULT_SIZES = ("64", "640x480x3", "1920x1080x3")
SHM_CASES = {"shm-rt": "rt-publish", "shm-durable": "durable-publish", "shm-rt-loan": "rt-loan",
             "shm-durable-loan": "durable-loan"}
BENCH_BASELINES = ("mp-queue", "mp-pipe", "zmq")
NET_CASES = ("redis", "dual-redis", "tcp", "pickle-pipe", "redis-py")
FLOORS = ("memcpy", "sem")
WAIT_CASES = {f"{cli}-{wait}": f"{ring}-{wait}"
              for cli, ring in SHM_CASES.items() for wait in ("sleep", "spin")}
IOX2_CASES = ("iox2-loan-event", "iox2-loan-poll", "iox2-copy-event", "iox2-copy-poll")
ALL_CASES = (*SHM_CASES, "redis", "dual-redis", "tcp", "mp-queue", "pickle-pipe", "redis-py", "mp-pipe",
             "zmq", *FLOORS, *WAIT_CASES, *IOX2_CASES)
PEER_CASES = ("shm-durable-loan", "shm-durable-loan-sleep", "shm-durable-loan-spin", "shm-rt-loan",
              "shm-rt-loan-sleep", "shm-rt-loan-spin", "shm-durable", "shm-rt", "iox2-loan-event",
              "iox2-loan-poll", "iox2-copy-event", "zmq", "memcpy")
"""``--peers``: the cases of the comparison with iceoryx2 (edgeflow.bench.ring.PEER_RUN, the memcpy floor)."""
DEFAULT_CASES = ("shm-rt", "shm-rt-loan", "shm-durable", "redis", "dual-redis", "tcp", "mp-queue",
                 "pickle-pipe", "redis-py", "memcpy", "sem")


def default_config() -> Any:
    """Counts for the default run: about 1.5 s per case and size, the whole matrix under a minute."""
    from edgeflow.bench.results import BenchConfig
    return BenchConfig(latency_n=200, warmup_n=20, latency_budget_s=1.0, burst_s=0.2, memcpy_n=100)


def _split(value: str, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise click.BadParameter(f"give at least one {what}")
    if allowed is not None:
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise click.BadParameter(f"unknown case {unknown[0]!r}; expected some of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


# -- running -------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Job:
    label: str
    size: str
    run: Callable[[], list[Any]]


def _jobs(cases: list[str], sizes: list[str], cfg: Any, redis: dict[str, str] | None) -> list[_Job]:
    from edgeflow.bench import floors, ring
    from edgeflow.cli import _benchnet

    jobs = []
    if "sem" in cases:
        jobs.append(_Job("floor: wake-up", "-", lambda: floors.bench_sem_pingpong(cfg)))
    for size in sizes:
        for case in cases:
            if case == "memcpy":
                jobs.append(_Job("floor: memcpy", size, lambda s=size: floors.bench_memcpy(s, cfg)))
            elif case in SHM_CASES or case in BENCH_BASELINES or case in WAIT_CASES or case in IOX2_CASES:
                name = SHM_CASES.get(case) or WAIT_CASES.get(case) or case
                jobs.append(_Job(ring.case_label(name), size,
                                 lambda n=name, s=size: [ring.run_case(n, s, cfg)]))
            elif case in NET_CASES:
                jobs.append(_Job(_benchnet.LABELS[case], size,
                                 lambda c=case, s=size: [_benchnet.run_case(c, s, cfg, redis)]))
    return jobs


def _nbytes(size: str) -> int:
    from math import prod

    from edgeflow.bench.payload import parse_size
    return prod(parse_size(size))


def _guarded(job: _Job) -> list[Any]:
    """A job's results; one that raises becomes an error result, and the rest of the table still runs."""
    from edgeflow.bench.results import BenchResult
    try:
        return job.run()
    except Exception as exc:  # noqa: BLE001 - shown in the table (ERROR line), the exit code becomes 1
        nbytes = 0 if job.size == "-" else _nbytes(job.size)
        return [BenchResult(job.label, job.size, nbytes, error=f"{type(exc).__name__}: {exc}")]


@contextlib.contextmanager
def _redis(cases: list[str], url: str | None, data_url: str | None):
    """Yields ({"url", "data_url"} or None, a sentence saying where Redis came from or why there is none)."""
    from edgeflow.cli import _benchnet

    wanted = [c for c in cases if c in _benchnet.NEEDS_REDIS]
    if not wanted:
        yield None, ""
        return
    if url:
        data = data_url or url
        note = "" if data_url else "; dual Redis uses it for control and data"
        yield {"url": url, "data_url": data}, f"Redis: {_benchnet.describe_url(url)} (--redis){note}"
        return
    need_data = "dual-redis" in wanted and _benchnet.transport_missing("dual-redis") is None
    with contextlib.ExitStack() as stack:
        try:
            control = stack.enter_context(_benchnet.RedisServer())
            data = stack.enter_context(_benchnet.RedisServer()) if need_data else control
        except RuntimeError as exc:
            yield None, f"Redis: none ({exc}; give --redis URL)"
            return
        where = control.url + (f" and {data.url}" if data is not control else "")
        yield ({"url": control.url, "data_url": data.url},
               f"Redis: throw-away redis-server {control.version()} at {where}")


@contextlib.contextmanager
def _quiet_transports():
    """Transports log a warning when the bench's consumer closes first (a TCP sender sees its server go, at
    the end of every case): expected here, so only errors are shown while the bench runs."""
    import logging
    logger = logging.getLogger("edgeflow.transport")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_bench(cases: list[str], sizes: list[str], cfg: Any, redis_url: str | None, data_url: str | None,
              progress: bool = True) -> dict[str, Any]:
    """Run every job with a progress bar on stderr; returns the JSON-able report (results as BenchResults
    under ``"_results"`` too, for the table)."""
    from edgeflow.bench import ring, table
    from edgeflow.bench.children import live_children
    from edgeflow.bench.payload import parse_size

    for size in sizes:
        parse_size(size)                              # ConfigError (exit 2) before anything starts
    started = time.monotonic()
    results: list[Any] = []
    with _redis(cases, redis_url, data_url) as (redis, redis_note), _quiet_transports():
        jobs = _jobs(cases, sizes, cfg, redis)
        with click.progressbar(jobs, label="edgeflow bench", file=sys.stderr, show_pos=True,
                               item_show_func=lambda j: f"{j.label} {j.size}" if j else "") as bar:
            for job in bar:
                results += _guarded(job)
    leftovers = [f"segment {p}" for p in ring.leftover_segments()]
    leftovers += [f"child {pid} {cmd}" for pid, cmd in live_children()]
    report = {"machine": table.machine(), "config": dataclasses.asdict(cfg), "sizes": sizes,
              "cases": cases, "redis": redis_note, "seconds": round(time.monotonic() - started, 1),
              "results": [r.to_dict() for r in results], "leftovers": leftovers}
    report["recommendation"] = recommend(results, sizes)
    report["_results"] = results
    return report


# -- what to use for what ------------------------------------------------------------------------------------

def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f} us"
    return f"{value:,.0f} us" if value < 1000 else f"{value / 1000:,.1f} ms"


def _frame(size: str) -> str:
    return f"{size}-byte" if "x" not in size else size


def recommend(results: list[Any], sizes: list[str]) -> str:
    """A short paragraph, from this run's figures, on which transport to use for what."""
    from edgeflow.bench.floors import FLOOR_CASES
    from edgeflow.bench.ring import EDGEFLOW_CASES
    from edgeflow.bench.table import find
    from edgeflow.cli import _benchnet

    big = max(sizes, key=_nbytes)
    label = {k: EDGEFLOW_CASES[v][0] for k, v in SHM_CASES.items()}
    rt, du = find(results, label["shm-rt"], big), find(results, label["shm-durable"], big)
    rt_loan = find(results, label["shm-rt-loan"], big)
    queue, pickle = find(results, "mp.Queue", big), find(results, _benchnet.LABELS["pickle-pipe"], big)
    out = []
    shm = rt_loan or rt or du
    if shm is not None:
        text = f"Same host: shared memory, which EdgeFlow picks by itself: p50 {_us(shm.p50_us)} at {big}"
        if shm is rt_loan and (rt or du):
            text += (f" written in place (loan, or `self.output(...)` in a node; "
                     f"{_us((rt or du).p50_us)} with publish(), which copies the frame in)")
        named = ((queue, "multiprocessing.Queue"), (pickle, "a pickled array over a pipe"))
        bases = [(b, n) for b, n in named if b is not None and b.p50_us]
        if bases:
            text += " against " + " and ".join(f"{_us(b.p50_us)} for {n}" for b, n in bases)
            text += f" ({bases[0][0].p50_us / shm.p50_us:.0f}x lower than {bases[0][1]})"
        out.append(text + ". Use REALTIME for live video, displays and control loops (the newest frame, "
                   "never a slowed producer) and DURABLE for loggers, sinks and anything that must see every "
                   "frame (back-pressure instead of loss).")
    out.append(_network_sentence(results, big))
    floor = find(results, FLOOR_CASES["sem"][1], "-")
    copy = find(results, FLOOR_CASES["memcpy"][0], big)
    if floor is not None or copy is not None:
        parts = [f"a cross-process wake-up takes {_us(floor.p50_us)}" if floor else "",
                 f"one copy of a {_frame(big)} frame {_us(copy.p50_us)}" if copy else ""]
        out.append("The floor here: " + " and ".join(p for p in parts if p) + ".")
    return "\n".join(textwrap.fill(p, 110) for p in out if p)


def _network_sentence(results: list[Any], big: str) -> str:
    from edgeflow.bench.table import find
    from edgeflow.cli import _benchnet

    def fig(case: str) -> Any:
        return find(results, _benchnet.LABELS[case], big)

    def why(case: str) -> str:
        r = next((r for r in results if r.case == _benchnet.LABELS[case] and r.skipped), None)
        return f"not measured ({r.skipped})" if r else "not measured"

    redis, dual, tcp, plain = fig("redis"), fig("dual-redis"), fig("tcp"), fig("redis-py")
    text = "Between hosts (measured here over loopback, so add your network): "
    text += (f"Redis (p50 {_us(redis.p50_us)} at {big}) for ordinary nodes" if redis
             else f"Redis for ordinary nodes, {why('redis')}")
    text += (f"; dual Redis (p50 {_us(dual.p50_us)}) for large frames and many consumers, since payloads "
             "stay off the control streams" if dual
             else f"; dual Redis for large frames, {why('dual-redis')}")
    text += (f"; direct TCP to the gateway (p50 {_us(tcp.p50_us)}), with no broker hop" if tcp
             else f"; direct TCP to the gateway, {why('tcp')}")
    if plain:
        text += f". Plain redis-py moves a {_frame(big)} frame in {_us(plain.p50_us)} (p50) on this machine"
    return text + "."


# -- the command ---------------------------------------------------------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--sizes", default=",".join(DEFAULT_SIZES), show_default=True, metavar="LIST",
              help="Frame sizes: BYTES or WIDTHxHEIGHT[xCHANNELS], comma-separated.")
@click.option("--cases", metavar="LIST", help=f"Cases, comma-separated, from: {', '.join(ALL_CASES)}.  "
              f"[default: {','.join(DEFAULT_CASES)}; with --peers: {','.join(PEER_CASES)}]")
@click.option("--peers", is_flag=True, help="Compare with iceoryx2 and pyzmq (when installed: pip install "
              "'edgeflow[bench]'): loan/publish in each wait mode, ratios, the targets of issue 17.")
@click.option("--redis", "redis_url", metavar="URL", help="Redis for the Redis cases (default: a throw-away "
              "redis-server on a free loopback port).")
@click.option("--data-redis", "data_url", metavar="URL", help="The data instance for dual Redis (default: "
              "the --redis server).")
@click.option("--quick", is_flag=True, help="Small counts: checks that every case works, in ~20 s.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (the progress bar stays on "
              "stderr).")
@click.pass_context
def bench(ctx: click.Context, sizes: str, cases: str | None, redis_url: str | None, data_url: str | None,
          quick: bool, as_json: bool, peers: bool) -> None:
    """Measure one-way latency (p50/p99/p99.9) and throughput of each transport on this machine.

    Next to them, in the same run: plain-Python baselines (multiprocessing.Queue, pickle over a pipe,
    plain redis-py) and the machine's floor (one memcpy of the frame, a cross-process wake-up). Ends with
    which transport to use for what. Exit code 1 when a case failed its checks.
    """
    from edgeflow.bench import table
    from edgeflow.bench.results import BenchConfig

    case_list = _split(cases, "case", ALL_CASES) if cases else [] if peers else list(DEFAULT_CASES)
    if peers:
        case_list = list(dict.fromkeys([*case_list, *PEER_CASES]))
    size_list = _split(sizes, "size")
    cfg = BenchConfig.quick() if quick else default_config()
    report = run_bench(case_list, size_list, cfg, redis_url, data_url)
    results = report.pop("_results")
    if peers:
        from edgeflow.bench import peer_report
        checks = peer_report.check_peer_targets(results)
        report["peers"] = {"status": peer_report.peer_status(), "targets": [c.to_dict() for c in checks]}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(table.describe_run(cfg) + f"; {report['seconds']:g} s")
        if report["redis"]:
            click.echo(report["redis"])
        click.echo("")
        click.echo(table.format_table(results))
        click.echo("")
        click.echo(report["recommendation"])
        if peers:
            click.echo("")
            click.echo(report["peers"]["status"])
            click.echo(peer_report.format_comparison(results))
            click.echo("")
            click.echo(peer_report.format_peer_targets(checks))
        for item in report["leftovers"]:
            click.echo(f"left after the run: {item}", err=True)
    if any(r.error for r in results) or report["leftovers"]:
        ctx.exit(1)
