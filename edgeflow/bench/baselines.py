"""Plain-Python baselines of the two-process cases, both sides: multiprocessing.Queue, a Pipe, pyzmq.

Each sender implements the contract Session drives (``kind``, ``every``, ``burst_seq``, ``spec``, ``channel()``,
``send()``, ``send_body()``, ``close(peer_ok=)``); each receiver the one of ``edgeflow.bench.consumer``.
Their frames carry the stamp in the payload (``edgeflow.bench.payload``), as the edgeflow cases' do.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

from edgeflow.bench.payload import BURST, BODY_INDEX, make_frame, read_markers, write_markers
from edgeflow.bench.results import BenchConfig


class BaselineSender:
    """Common part of the baselines: a mutable frame for stamped sends and a constant burst body.

    ``put``/``send`` of pyzmq (copy=False) and of multiprocessing.Queue (feeder thread) read the buffer after
    they return, so a frame in flight is never rewritten: stamped frames are rewritten only after the consumer
    acknowledged or answered the previous one, and burst bodies are a second buffer that never changes.
    """

    every, burst_seq = True, False

    def __init__(self, shape: tuple[int, ...]) -> None:
        self._buf = make_frame(shape)
        self._body = make_frame(shape, idx=BODY_INDEX, kind=BURST)
        self.spec: dict[str, Any] = {}

    def _push(self, buf: np.ndarray) -> None:
        raise NotImplementedError

    def send(self, kind: int, idx: int) -> None:
        """Stamp frame ``idx`` of ``kind`` with time.time() and send it."""
        stamp = time.time()
        write_markers(self._buf, stamp, idx, kind)
        self._push(self._buf)

    def send_body(self, idx: int) -> None:
        """Send one burst frame (``idx``: its position in the burst)."""
        self._push(self._body)


class QueueSender(BaselineSender):
    """multiprocessing.Queue ``put`` of the array (pickled by the feeder thread)."""

    kind = "queue"

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, ctx: Any) -> None:
        super().__init__(shape)
        self._q, self._timeout = ctx.Queue(maxsize=cfg.slots), cfg.timeout_s

    def channel(self) -> Any:
        """What the consumer child gets to receive from (None: it connects by itself)."""
        return self._q

    def _push(self, buf: np.ndarray) -> None:
        self._q.put(buf, timeout=self._timeout)

    def close(self, *, peer_ok: bool) -> None:
        """Close this end (``peer_ok``: the consumer answered to the end, so queued data drains)."""
        if not peer_ok:
            self._q.cancel_join_thread()      # nobody drains the pipe: the feeder thread would block at exit
        self._q.close()
        self._q.join_thread()


class PipeSender(BaselineSender):
    """``Connection.send_bytes`` of the frame over a multiprocessing Pipe."""

    kind = "pipe"

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, ctx: Any) -> None:
        # send_bytes slices a memoryview by its first dimension: keep the frame one-dimensional.
        super().__init__((int(np.prod(shape)),))
        self._rx, self._tx = ctx.Pipe(duplex=False)

    def channel(self) -> Any:
        """What the consumer child gets to receive from (None: it connects by itself)."""
        return self._rx

    def started(self) -> None:
        """The child started: close this process's copy of its end."""
        self._rx.close()                      # the child has its own copy; EOF reaches it if we die

    def _push(self, buf: np.ndarray) -> None:
        self._tx.send_bytes(buf)

    def close(self, *, peer_ok: bool) -> None:
        """Close this end (``peer_ok``: the consumer answered to the end, so queued data drains)."""
        self._rx.close()
        self._tx.close()


class ZmqSender(BaselineSender):
    """pyzmq PUSH over ipc://, ``copy=False``."""

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
        """What the consumer child gets to receive from (None: it connects by itself)."""
        return None

    def _push(self, buf: np.ndarray) -> None:
        self._sock.send(buf, copy=False)

    def close(self, *, peer_ok: bool) -> None:
        """Close this end (``peer_ok``: the consumer answered to the end, so queued data drains)."""
        self._sock.close(linger=0)
        self._ctx.term()
        if os.path.exists(self._path):        # libzmq unlinks it on close; this covers a failed bind
            os.unlink(self._path)


class QueueReceiver:
    """multiprocessing.Queue ``get``."""

    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        self._q, self.notes = chan, []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        """The next frame as (now, stamp, index, kind, tail index, frame_id or None, nbytes)."""
        arr = self._q.get(timeout=timeout)
        now = time.time()
        stamp, idx, kind, tail = read_markers(arr, arr.nbytes)
        return now, stamp, idx, kind, tail, None, arr.nbytes

    def close(self) -> None:
        """Close the receiving end."""
        self._q.close()


class PipeReceiver:
    """``Connection.recv_bytes`` after a poll (the timeout)."""

    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        self._conn, self.notes = chan, []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        """The next frame as (now, stamp, index, kind, tail index, frame_id or None, nbytes)."""
        if not self._conn.poll(timeout):
            raise TimeoutError(f"mp.Pipe: nothing received in {timeout}s")
        data = self._conn.recv_bytes()
        now = time.time()
        stamp, idx, kind, tail = read_markers(data, len(data))
        return now, stamp, idx, kind, tail, None, len(data)

    def close(self) -> None:
        """Close the receiving end."""
        self._conn.close()


class ZmqReceiver:
    """pyzmq PULL, ``copy=False``: the frame is read from the message buffer."""

    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        import zmq

        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, spec["hwm"])
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(spec["endpoint"])
        self._timeout_ms, self.notes = None, []

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        """The next frame as (now, stamp, index, kind, tail index, frame_id or None, nbytes)."""
        if self._timeout_ms != int(timeout * 1000):
            self._timeout_ms = int(timeout * 1000)
            self._sock.rcvtimeo = self._timeout_ms
        msg = self._sock.recv(copy=False)
        now = time.time()
        view = msg.buffer
        stamp, idx, kind, tail = read_markers(view, view.nbytes)
        return now, stamp, idx, kind, tail, None, view.nbytes

    def close(self) -> None:
        """Close the receiving end."""
        self._sock.close(linger=0)
        self._ctx.term()


