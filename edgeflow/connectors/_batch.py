"""Batches for sinks that acknowledge only what is safe: frames stay held in their ring until the batch is
committed, so a sink killed mid-batch gets them again (and its idempotent write makes that exactly-once).

A batch closes when it has ``max_rows`` rows, holds as many frames as the runtime lets one replica hold
(``context.hold_limit``, from the class's ``max_held_frames``), or is ``max_seconds`` old. The sink calls
``add()`` from ``consume()``, ``ready()`` from ``consume()`` and ``idle()``, and ``take()`` /
``acknowledge()`` around its write.
"""

from __future__ import annotations

import time
from typing import Any


class Batch:
    """Rows waiting to be written, and the held frames they came from."""

    def __init__(self, node: Any, max_rows: int, max_seconds: float) -> None:
        self._node = node
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.rows: list = []
        self.held: list = []
        self.started = 0.0

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: list) -> None:
        """Add one frame's rows and hold the frame (when running in a runtime that lets this node hold)."""
        if not self.rows and not self.held:
            self.started = time.monotonic()
        self.rows.extend(rows)
        context = getattr(self._node, "context", None)
        if context is not None and getattr(context, "hold_limit", 0) and context.current_frame is not None:
            self.held.append(context.hold())

    def ready(self) -> bool:
        """True when the batch must be written now: full (rows or held frames), or old enough."""
        if not self.rows and not self.held:
            return False
        context = getattr(self._node, "context", None)
        limit = getattr(context, "hold_limit", 0) if context is not None else 0
        if len(self.rows) >= self.max_rows or (limit and len(self.held) >= limit) or not limit:
            return True
        return time.monotonic() - self.started >= self.max_seconds

    def take(self) -> tuple[list, list]:
        """(rows, held frames) of the batch, which starts empty again."""
        rows, held = self.rows, self.held
        self.rows, self.held = [], []
        return rows, held

    @staticmethod
    def acknowledge(held: list) -> None:
        """The batch is safe (committed): release its frames to their rings."""
        for frame in held:
            frame.release()
