"""The machine's floors, measured in the same run as the cases they bound.

- wake-up: a posix_ipc semaphore ping-pong with a child (half round trip, paced like the latency sends, plus
  the one-way figure of the same wake-ups);
- copy: one in-process ``np.copyto`` of the frame (warm: back to back into a pre-faulted buffer; paced: one
  copy per ``pace_s`` like the sends; cold: into a fresh mapping).
"""

from __future__ import annotations

import itertools
import mmap
import os
import time
import traceback
from typing import Any, Callable

import numpy as np

from edgeflow.bench.children import receive_message, run_all_steps, spawn_context, start_child, stop_child
from edgeflow.bench.payload import make_frame, parse_size
from edgeflow.bench.results import BenchConfig, BenchError, BenchResult, percentiles

FLOOR_CASES = {"sem": ("floor sem half-RTT", "floor sem one-way"),
               "memcpy": ("floor memcpy warm", "floor memcpy paced", "floor memcpy cold")}
_COUNTER = itertools.count()


def _sem_child(ping_name: str, pong_name: str, stamp: Any, ctl: Any, total: int, timeout: float) -> None:
    """Child of the semaphore floor: wake on ping, note the one-way delay, answer with pong."""
    import posix_ipc

    try:
        ping, pong = posix_ipc.Semaphore(ping_name), posix_ipc.Semaphore(pong_name)
        samples = []
        try:
            ctl.send(("ready", None))
            for _ in range(total):
                ping.acquire(timeout)
                samples.append((time.time() - stamp[0]) * 1e6)
                pong.release()
        finally:
            ping.close()
            pong.close()
        ctl.send(("samples", samples))
    except BaseException:  # noqa: BLE001 - reported by the parent
        ctl.send(("error", traceback.format_exc()))
    finally:
        ctl.close()


class SemPingPong:
    """The wake-up floor: two posix_ipc semaphores between this process and a child, paced like a frame.

    ``roundtrip()`` releases ping and waits for pong; half of it is the half round trip. The child also
    records ``time.time() - stamp`` on each wake-up: the one-way figure, measured like a frame's latency.
    """

    def __init__(self, cfg: BenchConfig, total: int) -> None:
        self.cfg, self.total = cfg, total
        base = f"/edgeflow-{os.getpid()}.{next(_COUNTER)}"
        self._names = (f"{base}.ping", f"{base}.pong")
        self.half_rtt_us: list[float] = []
        self._proc = self._ctl = None
        self._sems: list[Any] = []
        self._next = 0.0

    def __enter__(self) -> "SemPingPong":
        import posix_ipc

        try:
            for name in self._names:
                self._sems.append(posix_ipc.Semaphore(name, posix_ipc.O_CREX, initial_value=0))
            ctx = spawn_context()
            self._stamp = ctx.RawArray("d", 1)
            self._ctl, child_ctl = ctx.Pipe(duplex=False)
            args = (*self._names, self._stamp, child_ctl, self.total, self.cfg.timeout_s)
            self._proc = start_child(_sem_child, args, child_ctl, "edgeflow-bench sem")
            self._expect("ready")
            self._unlink()                    # both sides have them open: nothing left in /dev/shm from here
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _expect(self, tag: str) -> Any:
        return receive_message(self._ctl, self._proc, tag, self.cfg.timeout_s, "semaphore floor")

    def pace(self) -> None:
        """Sleep until the next ping is due (every ``pace_s``)."""
        now = time.perf_counter()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next, now) + self.cfg.pace_s

    def roundtrip(self) -> None:
        """Ping, wait for pong; keeps half the round trip in ``half_rtt_us``."""
        ping, pong = self._sems
        self._stamp[0] = time.time()
        t0 = time.perf_counter()
        ping.release()
        pong.acquire(self.cfg.timeout_s)
        self.half_rtt_us.append((time.perf_counter() - t0) * 5e5)

    def one_way_us(self) -> list[float]:
        """After ``total`` round trips: the child's one-way samples (µs)."""
        return self._expect("samples")

    def _unlink(self) -> None:
        import posix_ipc

        for name in self._names:
            try:
                posix_ipc.unlink_semaphore(name)
            except posix_ipc.ExistentialError:
                pass

    def close(self) -> None:
        """Join (or terminate) the child, close and unlink the semaphores, close the pipe (idempotent)."""
        run_all_steps(self._reap, self._close_sems, self._unlink, self._close_ctl)

    def _reap(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            stop_child(proc)

    def _close_sems(self) -> None:
        sems, self._sems = self._sems, []
        for sem in sems:
            sem.close()

    def _close_ctl(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None


def bench_sem_pingpong(cfg: BenchConfig) -> list[BenchResult]:
    """The paced semaphore ping-pong floor: results for the half round trip and the one-way wake-up."""
    warm, n = cfg.warmup_n, cfg.latency_n
    with SemPingPong(cfg, warm + n) as floor:
        for _ in range(warm + n):
            floor.pace()
            floor.roundtrip()
        one_way = floor.one_way_us()[warm:]
    half = floor.half_rtt_us[warm:]
    labels = FLOOR_CASES["sem"]
    return [BenchResult(labels[0], "-", 0, *percentiles(half), note="paced, (pong - ping) / 2"),
            BenchResult(labels[1], "-", 0, *percentiles(one_way), note="paced, time.time() stamp")]


def _time_copies(src: np.ndarray, dst_for: Callable[[int], np.ndarray], n: int,
                 pace_s: float = 0.0) -> list[float]:
    samples = []
    for i in range(n):
        dst = dst_for(i)
        if pace_s:
            time.sleep(pace_s)
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        samples.append((time.perf_counter_ns() - t0) / 1e3)
        if not (dst.flat[-1] == src.flat[-1] and dst.flat[0] == src.flat[0]):
            raise BenchError("memcpy floor: the copy differs from its source")
    return samples


def _cold_copies(src: np.ndarray, n: int) -> list[float]:
    """Copies into a fresh anonymous mapping each time: every page faults on first touch, as in a new buffer.

    np.empty would not do: glibc raises its mmap threshold after the first free, so later buffers come from
    pages the heap already touched.
    """
    samples = []
    for _ in range(n):
        mm = mmap.mmap(-1, src.nbytes)
        try:
            dst = np.frombuffer(mm, np.uint8).reshape(src.shape)
            samples += _time_copies(src, lambda _: dst, 1)
            del dst
        finally:
            mm.close()
    return samples


def bench_memcpy(size: str, cfg: BenchConfig) -> list[BenchResult]:
    """One in-process ``np.copyto`` of the frame: warm, paced and cold.

    warm: back to back into one pre-faulted buffer. paced: one copy every ``pace_s``, like the latency sends,
    into ``cfg.slots`` pre-faulted buffers in turn, like a publish into the ring (a copy after a sleep is
    slower: caches and the idle core have gone cold). cold: into a fresh mapping, page faults included.
    ``gbps`` is the copy bandwidth at the median; rates per frame are left out.
    """
    src = make_frame(parse_size(size))
    dsts = [np.empty_like(src) for _ in range(max(cfg.slots, 1))]
    for dst in dsts:
        dst.fill(1)                           # pre-fault: np.zeros would leave untouched pages behind
    warm = _time_copies(src, lambda _: dsts[0], cfg.memcpy_n + 10)[10:]
    paced = _time_copies(src, lambda i: dsts[i % len(dsts)], cfg.memcpy_n // 2 + 5, cfg.pace_s)[5:]
    del dsts
    cold = _cold_copies(src, min(cfg.memcpy_n, 40))
    out = []
    notes = ("back to back, pre-faulted buffer, in process",
             f"one every {cfg.pace_s * 1e3:g} ms into {max(cfg.slots, 1)} pre-faulted buffers, in process",
             "fresh mapping, in process")
    for label, samples, note in zip(FLOOR_CASES["memcpy"], (warm, paced, cold), notes):
        n, p50, p99, p999 = percentiles(samples)
        out.append(BenchResult(label, size, src.nbytes, n, p50, p99, p999,
                               gbps=src.nbytes / (p50 * 1e3) if p50 else None, note=note))
    return out


