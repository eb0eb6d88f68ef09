"""The consumer side of a two-process benchmark case: the child that receives and checks every frame.

The consumer computes ``now - stamp`` as soon as it holds the frame or its view (edgeflow: ``Frame.timestamp``,
the view is never copied; baselines: the stamp is in the first 8 bytes of the payload), checks index, kind,
size and frame_id of every frame (a fast wrong answer is an error, not a figure), acknowledges latency frames
on a semaphore and answers the producer's REPORT and STOP frames over its control pipe.

A receiver is a class ``(spec, channel)`` with ``recv(timeout) -> (now, stamp, idx, kind, tail, frame_id,
nbytes)``, ``close()`` and a ``notes`` list (optionally ``final_check() -> errors``); the producer's Session
picks one by its sender's ``kind`` and hands the class to ``consumer_main`` in the child.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from edgeflow.bench.payload import BURST, BURST_LAST, BODY_INDEX, LAT, REPORT, STOP, read_markers


class FrameChecker:
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
        """Record a failed check (the first 8 are kept)."""
        if len(self.errors) < 8:
            self.errors.append(message)

    def frame(self, idx: int, kind: int, tail: int, fid: int | None, nbytes: int) -> None:
        """Check one frame: its size, both markers, and its frame_id against the last one."""
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
        """Keep the latency sample of latency frame ``idx`` (they must come in order)."""
        if idx != self.lat_next:
            self.error(f"latency frame {idx}, expected {self.lat_next}")
        self.lat_next = idx + 1
        self.samples.append((now - stamp) * 1e6)

    def burst(self, idx: int, kind: int, now: float) -> tuple[int, float] | None:
        """Count one burst frame; at BURST_LAST, (frames received, time of the last) and a new burst."""
        self.burst_count += 1
        if self.burst_seq:
            if idx < self.burst_next or (self.every and idx != self.burst_next):
                self.error(f"burst frame {idx}, expected {'' if self.every else '>= '}{self.burst_next}")
            self.burst_next = idx + 1
        elif kind == BURST and idx != BODY_INDEX:
            self.error(f"burst body frame carries index {idx}")
        if kind != BURST_LAST:
            return None
        if self.every and self.burst_count != idx + 1:
            self.error(f"burst: received {self.burst_count} frames of {idx + 1}")
        done = (self.burst_count, now)
        self._new_burst()
        return done

    def take_samples(self) -> list[float]:
        """The latency samples so far, forgetting them."""
        samples, self.samples = self.samples, []
        return samples

    def take_errors(self) -> list[str]:
        """The failed checks so far, forgetting them."""
        errors, self.errors = self.errors, []
        return errors


class EdgeflowReceiver:
    """Receives from ``edgeflow.Subscriber`` and records whether it hands out what its API promises."""
    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        import edgeflow as ef

        self._sub = ef.Subscriber(spec["topic"], app=spec["app"], qos=ef.QoS[spec["qos"]],
                                  wait=spec.get("wait", "adaptive"))
        self.nbytes, self.shape = spec["nbytes"], tuple(spec["shape"])
        self.notes: list[str] = []
        self._inspected = False
        self._count, self._last_fid = 0, 0

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, int | None, int]:
        """The next frame as (now, stamp, index, kind, tail index, frame_id or None, nbytes)."""
        frame = self._sub.recv(timeout=timeout)
        now = time.time()
        data = frame.data
        stamp, idx, kind, tail = read_markers(data, self.nbytes)
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
        """Close the receiving end."""
        self._sub.close()


def consumer_main(receiver: Any, spec: dict[str, Any], ctl: Any, ack: Any, chan: Any) -> None:
    """Child process entry point: receive frames with ``receiver(spec, chan)`` until a STOP frame, reporting
    over ``ctl`` (the receiver class is pickled by reference, so any importable receiver works)."""
    try:
        rx = receiver(spec, chan)
        try:
            ctl.send(("ready", None))
            _consume(rx, FrameChecker(spec), ctl, ack, spec["timeout_s"])
        finally:
            rx.close()
    except BaseException:  # noqa: BLE001 - the parent reports it; the child only has to say what happened
        ctl.send(("error", traceback.format_exc()))
    finally:
        ctl.close()


def _consume(rx: Any, chk: FrameChecker, ctl: Any, ack: Any, timeout: float) -> None:
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


