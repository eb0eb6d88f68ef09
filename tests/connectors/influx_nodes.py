"""Node classes the InfluxSink tests run in real node processes (importable by a spawned child).

``Telemetry`` sends ``count`` dict messages, frame i stamped ``BASE_US + i * STEP_US`` microseconds (the
capture time the sink must write, exactly), with the stamp also in the message (``stamp_us``) so a test can
compare what InfluxDB stores with what the producer stamped. ``Messages`` sends a fixed list of messages (and
meta) given as an option, one per frame.
"""

from __future__ import annotations

import os

from edgeflow import EndOfStream, Frame, ProducerNode

BASE_US = 1_700_000_000_123_457       # 2023-11-14, with microseconds a float must keep exactly
STEP_US = 1_003                       # 1.003 ms apart: every frame's microseconds differ
ASSETS = ("pump 1", "fan,2", "motor=3")


def stamp_us(i: int) -> int:
    """The capture time of frame ``i`` in integer microseconds."""
    return BASE_US + i * STEP_US


def message(i: int) -> dict:
    """Message ``i``: a tag, an integer, a float (integral ones stay floats), a bool and a text."""
    return {"asset": ASSETS[i % len(ASSETS)], "i": i, "temp": 20.0 + i / 4, "ok": i % 2 == 0,
            "note": f'frame "{i}"', "stamp_us": stamp_us(i)}


class Telemetry(ProducerNode):
    """``count`` messages (see ``message``), stamped ``stamp_us(i)``, with meta ``{"site": site}``;
    ``fps`` None (as fast as the sink takes them) unless given."""

    fps = None
    count = 10
    site = "plant 1"
    gate = ""            # a file: after ``gate_at`` frames, wait until the test creates it
    gate_at = 0

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= self.count:
            raise EndOfStream
        if self.gate and self.i == self.gate_at and not os.path.exists(self.gate):
            self.context.wait(0.01)
            return None
        i, self.i = self.i, self.i + 1
        return Frame(message(i), timestamp=stamp_us(i) / 1e6, meta={"site": self.site})


class Messages(ProducerNode):
    """One frame per item of ``items`` (each ``[message, meta]``), stamped ``stamp_us(index)``."""

    fps = None
    items: list = []

    def setup(self):
        self.i = 0

    def produce(self):
        if self.i >= len(self.items):
            raise EndOfStream
        data, meta = self.items[self.i]
        frame = Frame(data, timestamp=stamp_us(self.i) / 1e6, meta=dict(meta))
        self.i += 1
        return frame
