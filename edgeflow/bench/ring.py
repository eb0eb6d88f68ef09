"""The ring benchmark of `edgeflow bench` and benchmarks/run_ring.py: every case at every size, one run.

Cases: edgeflow's shared-memory ring (REALTIME / DURABLE, loan / publish; the subscriber's default wait, and
``wait="sleep"`` / ``"spin"`` in WAIT_CASES), the plain-Python baselines (``edgeflow.bench.baselines``), the
peers (iceoryx2, ``edgeflow.bench.peers``) and the floors measured in the same run (``edgeflow.bench.floors``).
A run leaves nothing behind: ``run_all`` reports segments of its app (``bench<pid>``), of its iceoryx2 cases or
children still there afterwards.

Example:
    >>> from edgeflow.bench import ring
    >>> from edgeflow.bench.results import BenchConfig
    >>> results = ring.run_all(sizes=["64"], cases=["mp-queue", "memcpy"], cfg=BenchConfig.quick())
"""

from __future__ import annotations

import glob
import itertools
import os
from typing import Callable, Iterable

import numpy as np

from edgeflow.bench.baselines import PipeSender, QueueSender, ZmqSender
from edgeflow.bench.children import live_children, spawn_context
from edgeflow.bench.floors import FLOOR_CASES, bench_memcpy, bench_sem_pingpong
from edgeflow.bench.payload import SIZES, parse_size
from edgeflow.bench.peers import PEER_CASES, Iox2Sender, iceoryx2_missing, leftover_iox2_files
from edgeflow.bench.producer import EdgeflowSender, Session, bench_app
from edgeflow.bench.results import BenchConfig, BenchResult
from edgeflow.errors import ConfigError

_COUNTER = itertools.count()

EDGEFLOW_CASES = {
    "rt-loan": ("edgeflow REALTIME loan", "REALTIME", "loan"),
    "rt-publish": ("edgeflow REALTIME publish", "REALTIME", "publish"),
    "durable-loan": ("edgeflow DURABLE loan", "DURABLE", "loan"),
    "durable-publish": ("edgeflow DURABLE publish", "DURABLE", "publish"),
}
WAIT_MODES = ("sleep", "spin")          # beside the Subscriber's default, "adaptive" (EDGEFLOW_CASES')
WAIT_CASES = {f"{key}-{wait}": (f"{label} wait={wait}", qos, mode, wait)
              for key, (label, qos, mode) in EDGEFLOW_CASES.items() for wait in WAIT_MODES}
"""``rt-loan-sleep``, ``durable-publish-spin``, ...: an edgeflow case, its subscriber waiting with ``wait=``."""
BASELINE_CASES = {"mp-queue": "mp.Queue", "mp-pipe": "mp.Pipe bytes", "zmq": "pyzmq ipc copy=False"}
CASE_IDS = (*EDGEFLOW_CASES, *BASELINE_CASES, *FLOOR_CASES)
"""The default run (``run_all``'s and benchmarks/run_ring.py's)."""
ALL_CASE_IDS = (*EDGEFLOW_CASES, *WAIT_CASES, *BASELINE_CASES, *PEER_CASES, *FLOOR_CASES)
"""Every case ``run_all`` and ``run_case`` accept."""
PEER_RUN = ("durable-loan", "durable-loan-sleep", "durable-loan-spin", "rt-loan", "rt-loan-sleep",
            "rt-loan-spin", "durable-publish", "rt-publish", "iox2-loan-event", "iox2-loan-poll",
            "iox2-copy-event", "zmq")
"""The cases of the peer comparison (``edgeflow bench --peers``, ``run_ring.py --peers``)."""


def case_label(case_id: str) -> str:
    """The table label of a two-process case id.

    Raises:
        ConfigError: not a two-process case.
    """
    for table in (EDGEFLOW_CASES, WAIT_CASES, PEER_CASES):
        if case_id in table:
            return table[case_id][0]
    if case_id in BASELINE_CASES:
        return BASELINE_CASES[case_id]
    raise ConfigError(f"unknown two-process case {case_id!r}: expected one of "
                      f"{', '.join([*EDGEFLOW_CASES, *WAIT_CASES, *BASELINE_CASES, *PEER_CASES])}")


def case_missing(case_id: str) -> str | None:
    """Why a two-process case cannot run here (its transport is not installed), or None."""
    if case_id in EDGEFLOW_CASES or case_id in WAIT_CASES:
        return edgeflow_missing()
    if case_id == "zmq":
        return zmq_missing()
    if case_id in PEER_CASES:
        return iceoryx2_missing()
    return None


def edgeflow_missing() -> str | None:
    """Why the edgeflow cases cannot run (the ring is not importable), or None."""
    try:
        import edgeflow as ef

        ef.Publisher, ef.Subscriber, ef.QoS  # noqa: B018 - the names the cases use
    except (ImportError, AttributeError) as exc:
        return f"edgeflow.Publisher not available ({exc})"
    return None


def zmq_missing() -> str | None:
    """Why the pyzmq baseline cannot run, or None."""
    try:
        import zmq  # noqa: F401
    except ImportError:
        return "pyzmq not installed"
    return None


def open_session(case_id: str, size: str, cfg: BenchConfig) -> Session:
    """A not yet started Session for a two-process case (enter it to start the consumer).

    Raises:
        ConfigError: unknown case id or size.
        ImportError: edgeflow's ring, pyzmq or iceoryx2 is missing (``case_missing()`` says so).
    """
    shape, k = parse_size(size), next(_COUNTER)
    if case_id in EDGEFLOW_CASES or case_id in WAIT_CASES:
        label, qos, mode, wait = WAIT_CASES.get(case_id) or (*EDGEFLOW_CASES[case_id], "adaptive")
        sender = EdgeflowSender(shape, cfg, qos=qos, mode=mode, app=bench_app(), topic=f"{case_id}-{k}",
                                wait=wait)
    elif case_id in PEER_CASES:
        label, mode, wake = PEER_CASES[case_id]
        sender = Iox2Sender(shape, cfg, mode=mode, wake=wake)
    elif case_id == "mp-queue":
        label, sender = BASELINE_CASES[case_id], QueueSender(shape, cfg, spawn_context())
    elif case_id == "mp-pipe":
        label, sender = BASELINE_CASES[case_id], PipeSender(shape, cfg, spawn_context())
    elif case_id == "zmq":
        label, sender = BASELINE_CASES[case_id], ZmqSender(shape, cfg, f"{os.getpid()}-{k}")
    else:
        case_label(case_id)                   # raises the ConfigError naming every case
    return Session(label, size, sender, cfg)


def run_case(case_id: str, size: str, cfg: BenchConfig) -> BenchResult:
    """Run one two-process case: start the consumer, warm up, measure latency, then throughput.

    Returns a BenchResult whose ``error`` lists any failed content check; a skipped case (edgeflow ring,
    pyzmq or iceoryx2 missing) has ``skipped`` set.

    Raises:
        BenchError: the consumer died, failed or timed out.
    """
    missing = case_missing(case_id)
    if missing:
        return BenchResult(case_label(case_id), size, int(np.prod(parse_size(size))), skipped=missing)
    with open_session(case_id, size, cfg) as session:
        session.warmup()
        session.latency_phase()
        session.burst()
    note = "writes markers only" if _is_loan(case_id) and not cfg.loan_fill else ""
    return session.result(note)


def _is_loan(case_id: str) -> bool:
    if case_id in PEER_CASES:
        return PEER_CASES[case_id][1] == "loan"
    edgeflow = EDGEFLOW_CASES.get(case_id) or WAIT_CASES.get(case_id)
    return edgeflow is not None and edgeflow[2] == "loan"


def leftover_segments(app: str | None = None) -> list[str]:
    """Shared-memory segments of ``app`` (default: this process's bench app) still in /dev/shm."""
    app = bench_app() if app is None else app
    semaphores = glob.glob(f"/dev/shm/sem.edgeflow-{os.getpid()}.*")      # the semaphore floor's
    return sorted(glob.glob(f"/dev/shm/edgeflow.{app}.*") + semaphores + leftover_iox2_files())


def _guard(label: str, size: str, nbytes: int, fn: Callable[[], list[BenchResult]]) -> list[BenchResult]:
    """Run one case; a failure becomes a result with ``error`` so the rest of the table still runs."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - reported in the table; the other cases still run
        return [BenchResult(label, size, nbytes, error=f"{type(exc).__name__}: {exc}")]


def run_all(sizes: Iterable[str] = SIZES, cases: Iterable[str] = CASE_IDS, cfg: BenchConfig | None = None,
            on_result: Callable[[BenchResult], None] | None = None) -> list[BenchResult]:
    """Run the selected cases at every size (the semaphore floor once) and return their results in order.

    ``on_result`` is called with each result as soon as it exists (progress output). A case that fails is
    reported through ``BenchResult.error`` and the run goes on. After the run, leftover segments of this
    process's bench app or leftover children are reported as an extra result with an error.

    Raises:
        ConfigError: an unknown case id or a malformed size, before anything runs.
    """
    cfg = BenchConfig() if cfg is None else cfg
    sizes, cases = list(sizes), list(cases)
    unknown = [c for c in cases if c not in ALL_CASE_IDS]
    if unknown:
        raise ConfigError(f"unknown case {unknown[0]!r}: expected one of {', '.join(ALL_CASE_IDS)}")
    shapes = {size: parse_size(size) for size in sizes}
    results: list[BenchResult] = []

    def emit(batch: list[BenchResult]) -> None:
        for result in batch:
            results.append(result)
            if on_result is not None:
                on_result(result)

    if "sem" in cases:
        emit(_guard(FLOOR_CASES["sem"][0], "-", 0, lambda: bench_sem_pingpong(cfg)))
    for size in sizes:
        nbytes = int(np.prod(shapes[size]))
        for case in cases:
            if case == "memcpy":
                emit(_guard(FLOOR_CASES["memcpy"][0], size, nbytes, lambda: bench_memcpy(size, cfg)))
            elif case != "sem":
                emit(_guard(case_label(case), size, nbytes, lambda: [run_case(case, size, cfg)]))
    emit(_leftovers())
    return results


def _leftovers() -> list[BenchResult]:
    """An error result naming segments or children a run left behind (removing the segments, loudly)."""
    segments, children = leftover_segments(), live_children()
    if not segments and not children:
        return []
    for path in segments:
        os.unlink(path)
    what = [f"segment {p} (removed)" for p in segments] + [f"child {pid} {cmd!r}" for pid, cmd in children]
    return [BenchResult("cleanup", "-", 0, error="left after the run: " + ", ".join(what))]
