"""The numeric fields of a topic's dict messages, kept for a short while: what ``/api/topics/{topic}`` returns
as ``history`` and the dashboard's live plot draws.

Each dict message that reaches the gateway adds one point: its numbers (ints and floats, numpy scalars too,
nested mappings flattened with dots: ``pos.x``) and its flags (booleans, e.g. ``anomaly_flag``). Texts,
arrays and lists are left out. A topic keeps its last ``HISTORY`` points; a point costs a few small objects,
so the history is bounded in memory (``HISTORY`` x ``MAX_FIELDS`` values per topic at most).

Threads: ``add`` runs where the hub shows a frame (the gateway node's thread, or the event loop with a
play-out buffer); ``columns`` on the event loop. A lock guards the deque between them.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Any

import numpy as np

HISTORY = 300        # points kept per topic
MAX_FIELDS = 32      # numbers and flags taken from one message; the rest of a wide message is left out
MAX_DEPTH = 3        # nesting levels of a message looked into (``a.b.c``)


def numeric_fields(message: dict) -> tuple[dict[str, float | None], dict[str, bool]]:
    """(numbers, flags) of a dict message: ``{name: number}`` (NaN and infinities as None) and
    ``{name: bool}``, nested mappings flattened with dots, at most MAX_FIELDS in all."""
    numbers: dict[str, float | None] = {}
    flags: dict[str, bool] = {}
    _collect(message, "", 1, numbers, flags)
    return numbers, flags


def _collect(message: dict, prefix: str, depth: int, numbers: dict, flags: dict) -> None:
    for key, value in message.items():
        if len(numbers) + len(flags) >= MAX_FIELDS:
            return
        name = prefix + key if type(key) is str else f"{prefix}{key}"
        kind = type(value)
        if kind is float:                                  # the common cases first: this runs per message
            numbers[name] = value if math.isfinite(value) else None
        elif kind is bool or isinstance(value, np.bool_):
            flags[name] = bool(value)
        elif kind is int or isinstance(value, np.integer):
            numbers[name] = int(value)
        elif isinstance(value, (float, np.floating)):
            number = float(value)
            numbers[name] = number if math.isfinite(number) else None
        elif isinstance(value, dict) and depth < MAX_DEPTH:
            _collect(value, f"{name}.", depth + 1, numbers, flags)


class FieldHistory:
    """The last ``size`` points of one topic's dict messages: (number, frame id, capture time, numbers,
    flags). ``number`` counts the topic's points from 1, so a reader asking ``since`` a number it saw gets
    exactly the points after it (and can tell when some were pushed out before it asked)."""

    def __init__(self, size: int = HISTORY) -> None:
        self.size = size
        self._points: collections.deque = collections.deque(maxlen=size)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, frame_id: int, timestamp: float, message: dict) -> None:
        """One dict message shown on the topic (any thread)."""
        numbers, flags = numeric_fields(message)
        with self._lock:
            self._count += 1
            self._points.append((self._count, frame_id, timestamp, numbers, flags))

    def columns(self, since: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The points numbered after ``since`` (the newest ``limit`` of them) as columns:

            {"size": 300, "last_seq": 1042, "seq": [...], "frame_id": [...], "timestamp": [...],
             "fields": {"raw_value": [...], ...}, "flags": {"anomaly_flag": [...], ...}}

        ``fields`` and ``flags`` name every field of these points in the order first seen; a point without a
        field has None there. ``last_seq`` is the newest point's number (0: none yet), also when no point is
        newer than ``since``."""
        with self._lock:
            last = self._count
            points = [p for p in self._points if p[0] > since] if since < last else []
        if limit is not None:
            points = points[-limit:] if limit > 0 else []
        fields: dict[str, list] = {}
        flags: dict[str, list] = {}
        for i, (_, _, _, numbers, marks) in enumerate(points):
            for table, values in ((fields, numbers), (flags, marks)):
                for name, value in values.items():
                    column = table.get(name)
                    if column is None:
                        column = table[name] = [None] * len(points)
                    column[i] = value
        return {"size": self.size, "last_seq": last, "seq": [p[0] for p in points],
                "frame_id": [p[1] for p in points], "timestamp": [p[2] for p in points],
                "fields": fields, "flags": flags}
