"""Workloads for `edgeflow bench`: one-way latency and throughput between two processes.

Every two-process case starts one consumer child (multiprocessing "spawn" context: a CLI reuses this, and
fork would copy its threads and sockets), then runs two phases against it:

- latency: paced sends (one every ``pace_s``, and never before the previous frame was acknowledged, so
  nothing queues). The producer stamps ``time.time()`` just before it calls loan/publish/put/send; the
  consumer computes ``now - stamp`` as soon as it holds the frame or its view (edgeflow: ``Frame.timestamp``,
  the view is never copied; baselines: the stamp is in the first 8 bytes of the payload).
- throughput: an unpaced burst (``burst_n`` frames or ``burst_s`` seconds). Rates count frames the consumer
  actually received: REALTIME is latest-wins and drops frames, so compare throughput with DURABLE and the
  baselines, which deliver every frame.

Payload layout, every case: ``<d Q Q>`` stamp, index, kind at offset 0 and the index again in the last 8
bytes, so a torn or truncated frame shows up as a mismatch. The consumer checks index, kind, size and
frame_id of every frame it gets: a fast wrong answer is an error, not a figure. Loan cases write only these
markers into the slot (producing pixels in place is the application's cost) unless ``BenchConfig.loan_fill``.

Floors measured in the same run: a posix_ipc semaphore ping-pong (half round trip, paced the same way, plus
the one-way figure of the same wake-ups) and one in-process ``np.copyto`` of the frame (warm: back to back
into a pre-faulted buffer; paced: one copy per ``pace_s`` like the sends; cold: into a fresh mapping).

A run leaves nothing behind: every child is joined (or terminated) and every transport closed in ``finally``
paths, and ``run_all`` reports segments of its app (``bench<pid>``) or children still there afterwards.

Example:
    >>> from edgeflow.runtime import bench
    >>> results = bench.run_all(sizes=["64"], cases=["mp-queue", "memcpy"], cfg=bench.BenchConfig.quick())
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import mmap
import multiprocessing
import os
import struct
import tempfile
import time
import traceback
from typing import Any, Callable, Iterable

import numpy as np

from edgeflow.errors import ConfigError, EdgeFlowError

SIZES = ("64", "640x480x3", "1920x1080x3")

_HEAD = struct.Struct("<dQQ")        # stamp (time.time()), index, kind
_TAIL = struct.Struct("<Q")          # index again, in the last 8 bytes
MIN_BYTES = _HEAD.size + _TAIL.size
LAT, BURST, BURST_LAST, REPORT, STOP = range(5)
_BODY_IDX = 2**64 - 1                # index of a baseline's constant burst body frame
_MIN_LATENCY_N = 30                  # a time budget never cuts a latency phase below this


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


def parse_size(label: str) -> tuple[int, ...]:
    """Array shape for a size label: ``"64"`` is 64 bytes, ``"640x480x3"`` is width x height x channels.

    Raises:
        ConfigError: the label is malformed or smaller than the payload markers (32 bytes).
    """
    try:
        dims = [int(part) for part in label.lower().split("x")]
    except ValueError:
        raise ConfigError(f"frame size {label!r}: expected BYTES or WIDTHxHEIGHT[xCHANNELS]") from None
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise ConfigError(f"frame size {label!r}: expected BYTES or WIDTHxHEIGHT[xCHANNELS]")
    shape = tuple(dims) if len(dims) == 1 else (dims[1], dims[0], *dims[2:])
    if int(np.prod(shape)) < MIN_BYTES:
        raise ConfigError(f"frame size {label!r}: at least {MIN_BYTES} bytes (stamp and index markers)")
    return shape


# ----------------------------------------------------------------------------------------------- statistics

def _percentiles(samples_us: Iterable[float]) -> tuple[int, float | None, float | None, float | None]:
    values = np.asarray(list(samples_us), dtype=np.float64)
    if values.size == 0:
        return 0, None, None, None
    p50, p99, p999 = np.percentile(values, [50.0, 99.0, 99.9])
    return int(values.size), float(p50), float(p99), float(p999)


def _rate(count: int, seconds: float) -> float | None:
    return count / seconds if count > 0 and seconds > 0 else None


# --------------------------------------------------------------------------------------------- the consumer

def _write_markers(buf: Any, stamp: float, idx: int, kind: int) -> None:
    _HEAD.pack_into(buf, 0, stamp, idx, kind)
    _TAIL.pack_into(buf, buf.nbytes - _TAIL.size, idx)


def make_frame(shape: tuple[int, ...], idx: int = 0, kind: int = LAT) -> np.ndarray:
    """A pre-faulted uint8 frame of ``shape`` with a non-zero pattern and the markers of frame ``idx``."""
    arr = (np.arange(int(np.prod(shape)), dtype=np.uint32) % 251).astype(np.uint8).reshape(shape)
    _write_markers(arr, 0.0, idx, kind)
    return arr


def _read(data: Any, nbytes: int) -> tuple[float, int, int, int]:
    stamp, idx, kind = _HEAD.unpack_from(data, 0)
    (tail,) = _TAIL.unpack_from(data, nbytes - _TAIL.size)
    return stamp, idx, kind, tail


class _Checker:
    """Consumer-side bookkeeping: latency samples, burst counts and every content check."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.every, self.burst_seq, self.nbytes = spec["every"], spec["burst_seq"], spec["nbytes"]
        self.samples: list[float] = []
        self.errors: list[str] = []
        self.lat_next = 0
        self.last_fid: int | None = None
        self._new_burst()

    def _new_burst(self) -> None:
        self.burst_count, self.burst_next = 0, 0

    def error(self, message: str) -> None:
        if len(self.errors) < 8:
            self.errors.append(message)

    def frame(self, idx: int, kind: int, tail: int, fid: int | None, nbytes: int) -> None:
        if nbytes != self.nbytes:
            self.error(f"frame of {nbytes} bytes, expected {self.nbytes}")
        if tail != idx:
            self.error(f"torn frame: index {idx} at the start, {tail} at the end (kind {kind})")
        if fid is not None:
            if self.last_fid is not None and fid <= self.last_fid:
                self.error(f"frame_id {fid} after {self.last_fid}: repeated or went back")
            elif self.last_fid is not None and self.every and fid != self.last_fid + 1:
                self.error(f"frame_id {fid} after {self.last_fid}: DURABLE skipped {fid - self.last_fid - 1}")
            self.last_fid = fid

    def latency(self, now: float, stamp: float, idx: int) -> None:
        if idx != self.lat_next:
            self.error(f"latency frame {idx}, expected {self.lat_next}")
        self.lat_next = idx + 1
        self.samples.append((now - stamp) * 1e6)

    def burst(self, idx: int, kind: int, now: float) -> tuple[int, float] | None:
        self.burst_count += 1
        if self.burst_seq:
            if idx < self.burst_next or (self.every and idx != self.burst_next):
                self.error(f"burst frame {idx}, expected {'' if self.every else '>= '}{self.burst_next}")
            self.burst_next = idx + 1
        elif kind == BURST and idx != _BODY_IDX:
            self.error(f"burst body frame carries index {idx}")
        if kind != BURST_LAST:
            return None
        if self.every and self.burst_count != idx + 1:
            self.error(f"burst: received {self.burst_count} frames of {idx + 1}")
        done = (self.burst_count, now)
        self._new_burst()
        return done

    def take_samples(self) -> list[float]:
        samples, self.samples = self.samples, []
        return samples

    def take_errors(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors


class _EdgeflowReceiver:
    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        import edgeflow as ef

        self._sub = ef.Subscriber(spec["topic"], app=spec["app"], qos=ef.QoS[spec["qos"]])
        self.nbytes, self.shape = spec["nbytes"], tuple(spec["shape"])
        self.notes: list[str] = []
        self._inspected = False
        self._count, self._last_fid = 0, 0

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, int | None, int]:
        frame = self._sub.recv(timeout=timeout)
        now = time.time()
        data = frame.data
        stamp, idx, kind, tail = _read(data, self.nbytes)
        if not self._inspected:
            self._inspect(data, stamp, frame.timestamp)
        nbytes = data.nbytes if isinstance(data, np.ndarray) else len(data)
        out = (now, frame.timestamp, idx, kind, tail, frame.frame_id, nbytes)
        frame.release()
        self._count, self._last_fid = self._count + 1, frame.frame_id
        return out

    def final_check(self) -> list[str]:
        """The subscriber's own counts must match what it delivered: taken == got, taken + drops == sent."""
        stats = self._sub.statistics()
        if stats.received == self._count and stats.received + stats.drops == self._last_fid:
            return []
        return [f"statistics() says {stats.received} received and {stats.drops} dropped; the consumer got "
                f"{self._count} frames, the last with frame_id {self._last_fid}"]

    def _inspect(self, data: Any, stamp: float, timestamp: float) -> None:
        """Record once whether the ring hands out what its API promises (a read-only zero-copy view)."""
        self._inspected = True
        if not isinstance(data, np.ndarray):
            self.notes.append(f"Frame.data is {type(data).__name__}, not an ndarray")
            return
        if data.flags.writeable:
            self.notes.append("Frame.data is writable")
        if data.base is None and self.nbytes > 4096:
            self.notes.append("Frame.data owns its memory: copied, not a view of the slot")
        if data.shape != self.shape or data.dtype != np.uint8:
            self.notes.append(f"Frame.data is {data.dtype}{list(data.shape)}, "
                              f"published uint8{list(self.shape)}")
        if abs(stamp - timestamp) > 1e-6:
            self.notes.append(f"Frame.timestamp differs from the producer's stamp by "
                              f"{(timestamp - stamp) * 1e6:.1f} us")

    def close(self) -> None:
        self._sub.close()


class _QueueReceiver:
    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        self._q, self.notes = chan, []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        arr = self._q.get(timeout=timeout)
        now = time.time()
        stamp, idx, kind, tail = _read(arr, arr.nbytes)
        return now, stamp, idx, kind, tail, None, arr.nbytes

    def close(self) -> None:
        self._q.close()


class _PipeReceiver:
    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        self._conn, self.notes = chan, []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"mp.Pipe: nothing received in {timeout}s")
        data = self._conn.recv_bytes()
        now = time.time()
        stamp, idx, kind, tail = _read(data, len(data))
        return now, stamp, idx, kind, tail, None, len(data)

    def close(self) -> None:
        self._conn.close()


class _ZmqReceiver:
    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        import zmq

        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, spec["hwm"])
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(spec["endpoint"])
        self._timeout_ms, self.notes = None, []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        if self._timeout_ms != int(timeout * 1000):
            self._timeout_ms = int(timeout * 1000)
            self._sock.rcvtimeo = self._timeout_ms
        msg = self._sock.recv(copy=False)
        now = time.time()
        view = msg.buffer
        stamp, idx, kind, tail = _read(view, view.nbytes)
        return now, stamp, idx, kind, tail, None, view.nbytes

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


_RECEIVERS: dict[str, Callable[[dict[str, Any], Any], Any]] = {
    "edgeflow": _EdgeflowReceiver, "queue": _QueueReceiver, "pipe": _PipeReceiver, "zmq": _ZmqReceiver}


def _consumer_main(kind: str, spec: dict[str, Any], ctl: Any, ack: Any, chan: Any) -> None:
    """Child process entry point: receive frames until a STOP frame, reporting over ``ctl``."""
    try:
        rx = _RECEIVERS[kind](spec, chan)
        try:
            ctl.send(("ready", None))
            _consume(rx, _Checker(spec), ctl, ack, spec["timeout_s"])
        finally:
            rx.close()
    except BaseException:  # noqa: BLE001 - the parent reports it; the child only has to say what happened
        ctl.send(("error", traceback.format_exc()))
    finally:
        ctl.close()


def _consume(rx: Any, chk: _Checker, ctl: Any, ack: Any, timeout: float) -> None:
    while True:
        now, stamp, idx, kind, tail, fid, nbytes = rx.recv(timeout)
        chk.frame(idx, kind, tail, fid, nbytes)
        if kind == LAT:
            chk.latency(now, stamp, idx)
            ack.release()
        elif kind in (BURST, BURST_LAST):
            done = chk.burst(idx, kind, now)
            if done is not None:
                ctl.send(("burst", (*done, chk.take_errors())))
        elif kind == REPORT:
            ctl.send(("report", (chk.take_samples(), chk.take_errors(), list(rx.notes))))
        elif kind == STOP:
            final = getattr(rx, "final_check", list)()
            ctl.send(("bye", (chk.take_errors() + final, list(rx.notes))))
            return
        else:
            chk.error(f"frame of unknown kind {kind}")


# --------------------------------------------------------------------------------------- the producer side

class _EdgeflowSender:
    """Publishes through ``edgeflow.Publisher``: ``loan`` writes in the slot, ``publish`` copies a frame."""

    kind, burst_seq = "edgeflow", True

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, *, qos: str, mode: str,
                 app: str, topic: str) -> None:
        import edgeflow as ef

        self.every = qos == "DURABLE"
        self.spec = {"app": app, "topic": topic, "qos": qos}
        self._shape, self._loan, self._fill = shape, mode == "loan", cfg.loan_fill
        self._src = make_frame(shape)
        self._pub = ef.Publisher(topic, app=app, slots=cfg.slots)

    def channel(self) -> None:
        return None

    def send(self, kind: int, idx: int) -> None:
        if self._loan:
            stamp = time.time()
            with self._pub.loan(self._shape, "uint8", timestamp=stamp) as buf:
                if self._fill:
                    np.copyto(buf, self._src)
                _write_markers(buf, stamp, idx, kind)
        else:
            stamp = time.time()
            _write_markers(self._src, stamp, idx, kind)
            self._pub.publish(self._src, timestamp=stamp)

    def send_body(self, idx: int) -> None:
        self.send(BURST, idx)

    def close(self, *, peer_ok: bool) -> None:
        self._pub.close()


class _BaselineSender:
    """Common part of the baselines: a mutable frame for stamped sends and a constant burst body.

    ``put``/``send`` of pyzmq (copy=False) and of multiprocessing.Queue (feeder thread) read the buffer after
    they return, so a frame in flight is never rewritten: stamped frames are rewritten only after the consumer
    acknowledged or answered the previous one, and burst bodies are a second buffer that never changes.
    """

    every, burst_seq = True, False

    def __init__(self, shape: tuple[int, ...]) -> None:
        self._buf = make_frame(shape)
        self._body = make_frame(shape, idx=_BODY_IDX, kind=BURST)
        self.spec: dict[str, Any] = {}

    def _push(self, buf: np.ndarray) -> None:
        raise NotImplementedError

    def send(self, kind: int, idx: int) -> None:
        stamp = time.time()
        _write_markers(self._buf, stamp, idx, kind)
        self._push(self._buf)

    def send_body(self, idx: int) -> None:
        self._push(self._body)


class _QueueSender(_BaselineSender):
    kind = "queue"

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, ctx: Any) -> None:
        super().__init__(shape)
        self._q, self._timeout = ctx.Queue(maxsize=cfg.slots), cfg.timeout_s

    def channel(self) -> Any:
        return self._q

    def _push(self, buf: np.ndarray) -> None:
        self._q.put(buf, timeout=self._timeout)

    def close(self, *, peer_ok: bool) -> None:
        if not peer_ok:
            self._q.cancel_join_thread()      # nobody drains the pipe: the feeder thread would block at exit
        self._q.close()
        self._q.join_thread()


class _PipeSender(_BaselineSender):
    kind = "pipe"

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, ctx: Any) -> None:
        # send_bytes slices a memoryview by its first dimension: keep the frame one-dimensional.
        super().__init__((int(np.prod(shape)),))
        self._rx, self._tx = ctx.Pipe(duplex=False)

    def channel(self) -> Any:
        return self._rx

    def started(self) -> None:
        self._rx.close()                      # the child has its own copy; EOF reaches it if we die

    def _push(self, buf: np.ndarray) -> None:
        self._tx.send_bytes(buf)

    def close(self, *, peer_ok: bool) -> None:
        self._rx.close()
        self._tx.close()


class _ZmqSender(_BaselineSender):
    kind = "zmq"

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, tag: str) -> None:
        import zmq

        super().__init__(shape)
        self._path = os.path.join(tempfile.gettempdir(), f"edgeflow-bench-{tag}.ipc")
        self.spec = {"endpoint": f"ipc://{self._path}", "hwm": cfg.slots}
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, cfg.slots)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.sndtimeo = int(cfg.timeout_s * 1000)
        self._sock.bind(self.spec["endpoint"])

    def channel(self) -> None:
        return None

    def _push(self, buf: np.ndarray) -> None:
        self._sock.send(buf, copy=False)

    def close(self, *, peer_ok: bool) -> None:
        self._sock.close(linger=0)
        self._ctx.term()
        if os.path.exists(self._path):        # libzmq unlinks it on close; this covers a failed bind
            os.unlink(self._path)


# ------------------------------------------------------------------------------------------------ a session

_COUNTER = itertools.count()


def _ctx() -> Any:
    return multiprocessing.get_context("spawn")


def _start_child(target: Callable[..., None], args: tuple, child_ctl: Any, name: str) -> Any:
    """Start a daemon child (spawn context); our copy of its end of the control pipe is closed either way."""
    proc = _ctx().Process(target=target, args=args, name=name, daemon=True)
    try:
        proc.start()
    finally:
        child_ctl.close()
    return proc


def _stop_child(proc: Any, timeout: float = 5.0) -> bool:
    """Join a started child, terminating (then killing) it if it does not exit; True if it exited itself."""
    proc.join(timeout)
    exited = proc.exitcode is not None
    if not exited:
        proc.terminate()
        proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    proc.close()
    return exited


def _receive(ctl: Any, proc: Any, tag: str, timeout: float, who: str) -> Any:
    """The payload of the child's next message, which must be ``tag``; else BenchError (with traceback)."""
    deadline = time.monotonic() + timeout
    while not ctl.poll(0.05):
        if not proc.is_alive() and not ctl.poll(0):
            raise BenchError(f"{who}: the child exited (code {proc.exitcode}) before sending {tag!r}")
        if time.monotonic() > deadline:
            raise BenchError(f"{who}: no {tag!r} from the child within {timeout:g} s")
    try:
        what, payload = ctl.recv()
    except (EOFError, OSError) as exc:
        raise BenchError(f"{who}: the child exited (code {proc.exitcode}) before sending {tag!r}") from exc
    if what == "error":
        raise BenchError(f"{who}: the child failed:\n{payload}")
    if what != tag:
        raise BenchError(f"{who}: the child sent {what!r}, expected {tag!r}")
    return payload


def _run_all_steps(*steps: Callable[[], None]) -> None:
    """Cleanup: run every step even if one fails, then raise the first failure."""
    failure: BaseException | None = None
    for step in steps:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the remaining steps ran
            failure = failure or exc
    if failure is not None:
        raise failure


def bench_app() -> str:
    """The app name every edgeflow case of this process uses (one topic per case)."""
    return f"bench{os.getpid()}"


class Session:
    """One producer (this process) and one consumer child, for one case at one frame size.

    Use it as a context manager; ``close()`` stops the child (terminating it if it does not answer) and closes
    the transport, in that order, even when a phase failed. ``run_case`` drives a whole case; pytest-benchmark
    drives ``pace`` and ``roundtrip`` itself.
    """

    def __init__(self, case: str, size: str, sender: Any, cfg: BenchConfig) -> None:
        self.case, self.size, self.cfg, self._sender = case, size, cfg, sender
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
        ctx = _ctx()
        spec = {**self._sender.spec, "every": self._sender.every, "burst_seq": self._sender.burst_seq,
                "nbytes": self.nbytes, "shape": list(self.shape), "timeout_s": self.cfg.timeout_s}
        self._ctl, child_ctl = ctx.Pipe(duplex=False)
        self._ack = ctx.Semaphore(0)
        args = (self._sender.kind, spec, child_ctl, self._ack, self._sender.channel())
        self._proc = _start_child(_consumer_main, args, child_ctl, f"edgeflow-bench {self.case} {self.size}")
        getattr(self._sender, "started", lambda: None)()
        self._expect("ready")
        self._healthy = True

    def close(self) -> None:
        """Stop the consumer, join it, close the transport and the pipes; every step runs (idempotent).

        Failed checks the consumer reports at the end land in ``errors``; a cleanup step that fails raises.
        """
        _run_all_steps(self._stop_consumer, self._reap, self._close_sender, self._close_ctl)

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
            if not _stop_child(proc):
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
            return _receive(self._ctl, self._proc, tag, self.cfg.timeout_s if timeout is None else timeout,
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
        n, p50, p99, p999 = _percentiles(self.samples_us)
        sent = received = 0
        sent_fps = recv_fps = gbps = None
        if self.burst_stats is not None:
            sent, received, t0, t_sent, t_last = self.burst_stats
            sent_fps, recv_fps = _rate(sent, t_sent - t0), _rate(received, t_last - t0)
            gbps = recv_fps * self.nbytes / 1e9 if recv_fps else None
        notes = "; ".join([note, *self.notes]) if note else "; ".join(self.notes)
        error = "; ".join(self.errors) if self.errors else None
        return BenchResult(self.case, self.size, self.nbytes, n, p50, p99, p999, sent_fps, recv_fps, gbps,
                           sent, received, notes, None, error)


# ---------------------------------------------------------------------------------------------------- cases

EDGEFLOW_CASES = {
    "rt-loan": ("edgeflow REALTIME loan", "REALTIME", "loan"),
    "rt-publish": ("edgeflow REALTIME publish", "REALTIME", "publish"),
    "durable-loan": ("edgeflow DURABLE loan", "DURABLE", "loan"),
    "durable-publish": ("edgeflow DURABLE publish", "DURABLE", "publish"),
}
BASELINE_CASES = {"mp-queue": "mp.Queue", "mp-pipe": "mp.Pipe bytes", "zmq": "pyzmq ipc copy=False"}
FLOOR_CASES = {"sem": ("floor sem half-RTT", "floor sem one-way"),
               "memcpy": ("floor memcpy warm", "floor memcpy paced", "floor memcpy cold")}
CASE_IDS = (*EDGEFLOW_CASES, *BASELINE_CASES, *FLOOR_CASES)


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
        ImportError: edgeflow's ring or pyzmq is missing (``edgeflow_missing()`` / ``zmq_missing()`` say so).
    """
    shape, k = parse_size(size), next(_COUNTER)
    if case_id in EDGEFLOW_CASES:
        label, qos, mode = EDGEFLOW_CASES[case_id]
        sender = _EdgeflowSender(shape, cfg, qos=qos, mode=mode, app=bench_app(), topic=f"{case_id}-{k}")
    elif case_id == "mp-queue":
        label, sender = BASELINE_CASES[case_id], _QueueSender(shape, cfg, _ctx())
    elif case_id == "mp-pipe":
        label, sender = BASELINE_CASES[case_id], _PipeSender(shape, cfg, _ctx())
    elif case_id == "zmq":
        label, sender = BASELINE_CASES[case_id], _ZmqSender(shape, cfg, f"{os.getpid()}-{k}")
    else:
        raise ConfigError(f"unknown two-process case {case_id!r}: expected one of "
                          f"{', '.join([*EDGEFLOW_CASES, *BASELINE_CASES])}")
    return Session(label, size, sender, cfg)


def run_case(case_id: str, size: str, cfg: BenchConfig) -> BenchResult:
    """Run one two-process case: start the consumer, warm up, measure latency, then throughput.

    Returns a BenchResult whose ``error`` lists any failed content check; a skipped case (edgeflow ring or
    pyzmq missing) has ``skipped`` set.

    Raises:
        BenchError: the consumer died, failed or timed out.
    """
    missing = edgeflow_missing() if case_id in EDGEFLOW_CASES else zmq_missing() if case_id == "zmq" else None
    if missing:
        label = EDGEFLOW_CASES[case_id][0] if case_id in EDGEFLOW_CASES else BASELINE_CASES[case_id]
        return BenchResult(label, size, int(np.prod(parse_size(size))), skipped=missing)
    with open_session(case_id, size, cfg) as session:
        session.warmup()
        session.latency_phase()
        session.burst()
    note = "writes markers only" if case_id.endswith("loan") and not cfg.loan_fill else ""
    return session.result(note)


# --------------------------------------------------------------------------------------------------- floors

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
        base = f"/edgeflow-bench.{os.getpid()}.{next(_COUNTER)}"
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
            ctx = _ctx()
            self._stamp = ctx.RawArray("d", 1)
            self._ctl, child_ctl = ctx.Pipe(duplex=False)
            args = (*self._names, self._stamp, child_ctl, self.total, self.cfg.timeout_s)
            self._proc = _start_child(_sem_child, args, child_ctl, "edgeflow-bench sem")
            self._expect("ready")
            self._unlink()                    # both sides have them open: nothing left in /dev/shm from here
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _expect(self, tag: str) -> Any:
        return _receive(self._ctl, self._proc, tag, self.cfg.timeout_s, "semaphore floor")

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
        _run_all_steps(self._reap, self._close_sems, self._unlink, self._close_ctl)

    def _reap(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            _stop_child(proc)

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
    return [BenchResult(labels[0], "-", 0, *_percentiles(half), note="paced, (pong - ping) / 2"),
            BenchResult(labels[1], "-", 0, *_percentiles(one_way), note="paced, time.time() stamp")]


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
        n, p50, p99, p999 = _percentiles(samples)
        out.append(BenchResult(label, size, src.nbytes, n, p50, p99, p999,
                               gbps=src.nbytes / (p50 * 1e3) if p50 else None, note=note))
    return out


# ------------------------------------------------------------------------------------------------ a full run

def leftover_segments(app: str | None = None) -> list[str]:
    """Shared-memory segments of ``app`` (default: this process's bench app) still in /dev/shm."""
    app = bench_app() if app is None else app
    semaphores = glob.glob(f"/dev/shm/sem.edgeflow-bench.{os.getpid()}.*")      # the semaphore floor's
    return sorted(glob.glob(f"/dev/shm/edgeflow.{app}.*") + semaphores)


def live_children() -> list[tuple[int, str]]:
    """Child processes of this process, without multiprocessing's resource tracker (it lives until exit)."""
    me, found = os.getpid(), []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != me:
                continue
            pid = int(stat.split("/")[2])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue                          # exited while we looked
        if "resource_tracker" not in cmdline:
            found.append((pid, cmdline))
    return found


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
    unknown = [c for c in cases if c not in CASE_IDS]
    if unknown:
        raise ConfigError(f"unknown case {unknown[0]!r}: expected one of {', '.join(CASE_IDS)}")
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
                label = EDGEFLOW_CASES[case][0] if case in EDGEFLOW_CASES else BASELINE_CASES[case]
                emit(_guard(label, size, nbytes, lambda: [run_case(case, size, cfg)]))
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
