"""Node classes the file and video sink tests run in real node processes (importable by the spawned children).

``Telemetry`` sends dict messages; ``varied_message`` is the payload of its ``varied`` mode, also called by
the tests to know what each row must hold. ``StallingCsvSink`` / ``StallingJsonlSink`` are the real sinks with
a fault point: on the ``at``-th write of a process they write part of it (``stalls``: "after": all of it,
"torn": up to the middle of a line, "rows": two whole rows), note ``mode pid`` in ``marks`` and wait to be
SIGKILLed. ``FullDiskCsvSink`` writes under a file size limit (EFBIG, as a full disk).
``Images`` sends a planned sequence of BGR images, one non-image frame, then gray images, at exact capture
times; ``StallingVideoSink`` waits to be SIGKILLed mid-segment.
"""

from __future__ import annotations

import os
import time

import numpy as np

from edgeflow import Frame, ProducerNode
from edgeflow.connectors import CsvSink, JsonlSink, VideoSink

T0 = 1_800_000_000.0          # 2027-01-15T08:00:00Z: capture times of the planned frames start here


def append(path: str | None, text: str) -> None:
    """One line appended with one write() (a SIGKILL loses no line written)."""
    if path:
        with open(path, "a") as file:
            file.write(text + "\n")


def read_lines(path) -> list[str]:
    """The complete lines of ``path`` so far ([] while it does not exist)."""
    try:
        with open(path) as file:
            return file.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def varied_message(seq: int) -> dict:
    """A message with every kind of value a row holds; fields come and go with ``seq``."""
    message = {
        "seq": seq,
        "value": seq / 7,                               # floats that need all 17 digits
        "tiny": 5e-324 * seq,
        "big": 2 ** 62 + seq,
        "text": f'a, "quoted"\nline {seq} é✓',
        "ok": seq % 2 == 0,
        "none": None,
        "vector": np.array([seq, -seq, 3], dtype=np.int16),
        "raw": bytes([0, 255, seq]),
        "pos": {"x": seq * 0.5, "y": -seq},
        "timestamp": f"not the capture time {seq}",    # a payload field named like a frame column
    }
    if seq % 2 == 0:
        del message["tiny"]                             # missing in some rows
    if seq % 3 == 0:
        message["rare"] = [seq, {"deep": True}]         # not in the first row: CSV's extra column
    return message


class Telemetry(ProducerNode):
    """``count`` frames of dict messages ``{"seq", "value", "name"}`` (seq from 1; ``varied``: varied_message;
    ``array``: with a small numpy array too); ``rows`` > 1 sends a list of that many messages per frame;
    ``step`` (seconds) stamps frame i at exactly ``t0 + i * step`` (otherwise the capture time is now); meta
    ``{"site": "north"}``."""

    fps = None
    count = 10
    rows = 1
    step = None
    t0 = T0
    varied = False
    array = False

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= self.count:
            return self.END
        seq = self.i + 1
        if self.varied:
            message = varied_message(seq)
        else:
            message = {"seq": seq, "value": seq * 0.1, "name": f"s{seq}"}
        if self.array:
            message["spectrum"] = np.arange(4, dtype=np.float32) * seq
        data = message if self.rows == 1 else [dict(message, part=k) for k in range(self.rows)]
        timestamp = None if self.step is None else self.t0 + self.i * self.step
        self.i += 1
        return Frame(data, timestamp=timestamp, meta={"site": "north"})


class _Stall:
    """The fault point (see the module docstring)."""

    marks = None
    stalls = ()
    at = 5
    pidfile = None

    def setup(self):
        super().setup()
        self._writes = 0
        append(self.pidfile, str(os.getpid()))

    def _emit(self, blob: bytes) -> None:
        self._writes += 1
        done = read_lines(self.marks)
        if self._writes == self.at and len(done) < len(self.stalls):
            mode = self.stalls[len(done)]
            if mode == "after":
                cut = len(blob)
            elif mode == "torn":
                cut = len(blob) // 2
                while blob[cut - 1:cut] == b"\n" or blob[cut:cut + 1] == b"\n":
                    cut += 1
            else:
                cut = blob.index(b"\n", blob.index(b"\n") + 1) + 1
            super()._emit(blob[:cut])
            append(self.marks, f"{mode} {os.getpid()}")
            time.sleep(30)                      # the test SIGKILLs this process here
        super()._emit(blob)


class StallingCsvSink(_Stall, CsvSink):
    """CsvSink with the fault point."""

    OPTIONS = CsvSink.OPTIONS + ("marks", "stalls", "at", "pidfile")


class StallingJsonlSink(_Stall, JsonlSink):
    """JsonlSink with the fault point."""

    OPTIONS = JsonlSink.OPTIONS + ("marks", "stalls", "at", "pidfile")


def planned_image(i: int, noise: bool = False) -> np.ndarray:
    """Image i of ``Images``: 12 BGR 160x120 images, then gray 96x64 ones; flat colours that tell them apart
    (``noise``: random pixels instead, which JPEG cannot make small)."""
    shape = (120, 160, 3) if i < 12 else (64, 96)
    if noise:
        return np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8)
    if i < 12:
        image = np.empty(shape, np.uint8)
        image[:] = (20 * i, 255 - 20 * i, 128)
        return image
    return np.full(shape, 30 + 25 * (i - 12), np.uint8)


class Images(ProducerNode):
    """Images 0..17 of ``planned_image`` (``noise``) stamped ``T0 + i * 0.125`` (exact binary fractions), with
    a dict message (not an image) sent between image 11 and 12."""

    fps = None
    noise = False

    def setup(self):
        self.plan = [(planned_image(i, self.noise), T0 + i * 0.125) for i in range(12)]
        self.plan.append(({"not": "an image"}, T0 + 1.45))
        self.plan += [(planned_image(i, self.noise), T0 + i * 0.125) for i in range(12, 18)]

    def produce(self):
        if not self.plan:
            return self.END
        data, timestamp = self.plan.pop(0)
        return Frame(data, timestamp=timestamp)


class StallingVideoSink(VideoSink):
    """VideoSink that, in its first process only (``marks`` still empty), notes ``pid`` in ``marks`` after
    writing ``at`` images and waits to be SIGKILLed."""

    OPTIONS = VideoSink.OPTIONS + ("marks", "at")
    marks = None
    at = 6

    def setup(self):
        super().setup()
        self._images = 0

    def consume(self, data):
        super().consume(data)
        self._images += 1
        if self._images == self.at and not read_lines(self.marks):
            append(self.marks, str(os.getpid()))
            time.sleep(30)                      # the test SIGKILLs this process here


class FullDiskCsvSink(CsvSink):
    """CsvSink in a process whose files may not grow past ``limit`` bytes (RLIMIT_FSIZE: a write beyond it
    fails with EFBIG, as on a full disk); after ``failures`` failed writes the limit goes (space freed)."""

    OPTIONS = CsvSink.OPTIONS + ("limit", "failures")
    limit = 1000
    failures = 2

    def setup(self):
        import resource
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # EFBIG instead of a signal
        self._hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, self._hard))
        self._failed = 0
        super().setup()

    def _write_failed(self, out, exc):
        self._failed += 1
        if self._failed == self.failures:
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (self._hard, self._hard))
        super()._write_failed(out, exc)
