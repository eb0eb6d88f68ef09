"""Quality of service of a link: what a consumer gets when it is slower than its producer."""

from __future__ import annotations

import enum


class QoS(enum.Enum):
    """How frames reach a consumer.

    REALTIME: latest-wins. The consumer gets the newest frame it has not seen; frames it was too slow for are
        skipped and counted as drops. Never a frame twice, never an older one, never slows the producer.
    DURABLE: every frame, in order, exactly once in normal operation (at least once across a crash). A consumer a
        whole ring behind makes the producer wait (back-pressure, bounded by a timeout) instead of losing data.
    BALANCED: every frame while the consumer is fewer than ``max_lag`` frames behind, then it skips to the newest.
    """

    REALTIME = "realtime"
    DURABLE = "durable"
    BALANCED = "balanced"

    @classmethod
    def parse(cls, value: "QoS | str") -> "QoS":
        """Return the QoS for a QoS or its name (case-insensitive); ValueError names the bad value."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(q.name for q in cls)
            raise ValueError(f"unknown QoS {value!r}: expected one of {names}") from None
