"""The producer side of a two-process benchmark case: the edgeflow sender and the Session that drives a case.

A Session starts one consumer child (``edgeflow.bench.consumer``) and runs two phases against it:

- latency: paced sends (one every ``pace_s``, and never before the previous frame was acknowledged, so
  nothing queues). The producer stamps ``time.time()`` just before it calls loan/publish/put/send.
- throughput: an unpaced burst (``burst_n`` frames or ``burst_s`` seconds). Rates count frames the consumer
  actually received: REALTIME is latest-wins and drops frames, so compare throughput with DURABLE and the
  baselines, which deliver every frame.

Loan cases write only the payload markers into the slot (producing pixels in place is the application's
cost) unless ``BenchConfig.loan_fill``. ``close()`` joins (or terminates) the child and closes the transport
in ``finally`` paths, so a case leaves nothing behind.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping

import numpy as np

from edgeflow.bench.baselines import PipeReceiver, QueueReceiver, ZmqReceiver
from edgeflow.bench.children import receive_message, run_all_steps, spawn_context, start_child, stop_child
from edgeflow.bench.consumer import EdgeflowReceiver, consumer_main
from edgeflow.bench.peers import Iox2Receiver
from edgeflow.bench.payload import BURST, BURST_LAST, LAT, REPORT, STOP, make_frame, parse_size, write_markers
from edgeflow.bench.results import BenchConfig, BenchError, BenchResult, percentiles, rate
from edgeflow.errors import EdgeFlowError

_MIN_LATENCY_N = 30                  # a time budget never cuts a latency phase below this

RECEIVERS: dict[str, Callable[[dict[str, Any], Any], Any]] = {
    "edgeflow": EdgeflowReceiver, "queue": QueueReceiver, "pipe": PipeReceiver, "zmq": ZmqReceiver,
    "iox2": Iox2Receiver}
"""The consumer's receiver for each sender ``kind``; ``Session(receivers=...)`` adds others."""


class EdgeflowSender:
    """Publishes through ``edgeflow.Publisher``: ``loan`` writes in the slot, ``publish`` copies a frame.

    ``wait`` is how the consumer's Subscriber waits ("adaptive", "sleep" or "spin"; see Subscriber).
    """

    kind, burst_seq = "edgeflow", True

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, *, qos: str, mode: str,
                 app: str, topic: str, wait: str = "adaptive") -> None:
        import edgeflow as ef

        self.every = qos == "DURABLE"
        self.spec = {"app": app, "topic": topic, "qos": qos, "wait": wait}     # wait: the Subscriber's
        self._shape, self._loan, self._fill = shape, mode == "loan", cfg.loan_fill
        self._src = make_frame(shape)
        self._pub = ef.Publisher(topic, app=app, slots=cfg.slots)

    def channel(self) -> None:
        """What the consumer child gets to receive from (None: it connects by itself)."""
        return None

    def send(self, kind: int, idx: int) -> None:
        """Stamp frame ``idx`` of ``kind`` with time.time() and send it."""
        if self._loan:
            stamp = time.time()
            with self._pub.loan(self._shape, "uint8", timestamp=stamp) as buf:
                if self._fill:
                    np.copyto(buf, self._src)
                write_markers(buf, stamp, idx, kind)
        else:
            stamp = time.time()
            write_markers(self._src, stamp, idx, kind)
            self._pub.publish(self._src, timestamp=stamp)

    def send_body(self, idx: int) -> None:
        """Send one burst frame (``idx``: its position in the burst)."""
        self.send(BURST, idx)

    def close(self, *, peer_ok: bool) -> None:
        """Close this end (``peer_ok``: the consumer answered to the end, so queued data drains)."""
        self._pub.close()


def bench_app() -> str:
    """The app name every edgeflow case of this process uses (one topic per case)."""
    return f"bench{os.getpid()}"


class Session:
    """One producer (this process) and one consumer child, for one case at one frame size.

    Use it as a context manager; ``close()`` stops the child (terminating it if it does not answer) and closes
    the transport, in that order, even when a phase failed. ``ring.run_case`` drives a whole case;
    pytest-benchmark drives ``pace`` and ``roundtrip`` itself. ``receivers`` maps sender kinds of other modules to their
    consumer-side classes (see edgeflow.cli._benchnet).
    """

    def __init__(self, case: str, size: str, sender: Any, cfg: BenchConfig,
                 receivers: Mapping[str, Callable[[dict[str, Any], Any], Any]] | None = None) -> None:
        self.case, self.size, self.cfg, self._sender = case, size, cfg, sender
        self._receiver = {**RECEIVERS, **(receivers or {})}[sender.kind]
        self.shape = parse_size(size)
        self.nbytes = int(np.prod(self.shape))
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.samples_us: list[float] = []
        # sent, received, t0 (burst start), t_sent (last send returned), t_last (last frame received)
        self.burst_stats: tuple[int, int, float, float, float] | None = None
        self._lat_idx, self._next, self._last_ack = 0, 0.0, 0.0
        self._proc = self._ctl = self._ack = None
        self._healthy = False

    # -- lifecycle
    def __enter__(self) -> "Session":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        ctx = spawn_context()
        spec = {**self._sender.spec, "every": self._sender.every, "burst_seq": self._sender.burst_seq,
                "nbytes": self.nbytes, "shape": list(self.shape), "timeout_s": self.cfg.timeout_s}
        self._ctl, child_ctl = ctx.Pipe(duplex=False)
        self._ack = ctx.Semaphore(0)
        args = (self._receiver, spec, child_ctl, self._ack, self._sender.channel())
        self._proc = start_child(consumer_main, args, child_ctl, f"edgeflow-bench {self.case} {self.size}")
        getattr(self._sender, "started", lambda: None)()
        self._expect("ready")
        self._healthy = True

    def close(self) -> None:
        """Stop the consumer, join it, close the transport and the pipes; every step runs (idempotent).

        Failed checks the consumer reports at the end land in ``errors``; a cleanup step that fails raises.
        """
        run_all_steps(self._stop_consumer, self._reap, self._close_sender, self._close_ctl)

    def _stop_consumer(self) -> None:
        if self._proc is None or not self._healthy or not self._proc.is_alive():
            return
        try:
            self._sender.send(STOP, 0)
            self._absorb(*self._expect("bye", timeout=5.0))
        except (BenchError, OSError, EdgeFlowError) as exc:
            self.errors.append(f"stopping the consumer: {exc}")
            self._healthy = False

    def _reap(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if not stop_child(proc):
                self._healthy = False
                self.errors.append("the consumer did not exit: terminated")

    def _close_sender(self) -> None:
        if self._sender is not None:
            sender, self._sender = self._sender, None
            sender.close(peer_ok=self._healthy)

    def _close_ctl(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
        self._ctl = self._ack = None          # spawn-context semaphores are unlinked when collected

    # -- talking to the consumer
    def _expect(self, tag: str, timeout: float | None = None) -> Any:
        try:
            return receive_message(self._ctl, self._proc, tag, self.cfg.timeout_s if timeout is None else timeout,
                            f"{self.case} {self.size}")
        except BenchError:
            self._healthy = False
            raise

    def _absorb(self, errors: list[str], notes: list[str]) -> None:
        self.errors.extend(e for e in errors if e not in self.errors)
        self.notes.extend(n for n in notes if n not in self.notes)

    # -- latency
    def pace(self) -> None:
        """Sleep until the next send is due: every ``pace_s``, at least ``pace_s / 2`` after the last ack."""
        now = time.perf_counter()
        due = max(self._next, self._last_ack + self.cfg.pace_s / 2)
        if due > now:
            time.sleep(due - now)
        self._next = max(due, now) + self.cfg.pace_s

    def roundtrip(self) -> None:
        """Send one stamped latency frame and wait until the consumer has checked it."""
        self._sender.send(LAT, self._lat_idx)
        self._lat_idx += 1
        while not self._ack.acquire(timeout=0.5):
            if not self._proc.is_alive() or self._ctl.poll(0):
                self._expect("ack")                     # raises with the consumer's traceback
            if time.perf_counter() - self._next > self.cfg.timeout_s:
                raise BenchError(f"{self.case} {self.size}: frame {self._lat_idx - 1} never arrived")
        self._last_ack = time.perf_counter()

    def collect(self) -> list[float]:
        """Fetch the consumer's latency samples (µs) since the last collect (into ``samples_us``)."""
        self._sender.send(REPORT, 0)
        self.samples_us, errors, notes = self._expect("report")
        self._absorb(errors, notes)
        return self.samples_us

    def warmup(self) -> None:
        """``warmup_n`` paced round trips whose samples are dropped."""
        for _ in range(self.cfg.warmup_n):
            self.pace()
            self.roundtrip()
        self.collect()
        self.samples_us = []

    def latency_phase(self) -> list[float]:
        """``latency_n`` paced samples, fewer when ``latency_budget_s`` runs out; they are also kept."""
        end = time.perf_counter() + self.cfg.latency_budget_s
        for k in range(self.cfg.latency_n):
            if k >= _MIN_LATENCY_N and time.perf_counter() > end:
                break
            self.pace()
            self.roundtrip()
        return self.collect()

    # -- throughput
    def burst(self) -> tuple[int, int, float, float, float]:
        """Send unpaced until ``burst_n`` frames or ``burst_s``; returns ``burst_stats``."""
        send_body = self._sender.send_body
        t0 = time.time()
        deadline, sent = t0 + self.cfg.burst_s, 0
        while sent < self.cfg.burst_n - 1:
            send_body(sent)
            sent += 1
            if time.time() >= deadline:
                break
        self._sender.send(BURST_LAST, sent)
        t_sent = time.time()
        received, t_last, errors = self._expect("burst")
        self._absorb(errors, [])
        self.burst_stats = (sent + 1, received, t0, t_sent, t_last)
        return self.burst_stats

    def result(self, note: str = "") -> BenchResult:
        """Figures of the phases run so far; ``error`` lists every failed check."""
        n, p50, p99, p999 = percentiles(self.samples_us)
        sent = received = 0
        sent_fps = recv_fps = gbps = None
        if self.burst_stats is not None:
            sent, received, t0, t_sent, t_last = self.burst_stats
            sent_fps, recv_fps = rate(sent, t_sent - t0), rate(received, t_last - t0)
            gbps = recv_fps * self.nbytes / 1e9 if recv_fps else None
        notes = "; ".join([note, *self.notes]) if note else "; ".join(self.notes)
        error = "; ".join(self.errors) if self.errors else None
        return BenchResult(self.case, self.size, self.nbytes, n, p50, p99, p999, sent_fps, recv_fps, gbps,
                           sent, received, notes, None, error)


