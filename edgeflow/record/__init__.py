"""Flight recorder: frames of ring topics to MCAP files and back (see docs/recording.md).

- ``McapRecorder`` (edgeflow.record.writer): write frames; chunked, compressed, rotating, crash-safe.
- ``open_recording`` (edgeflow.record.reader): read them back as exact Frames, in capture-time order.
- ``recover`` (edgeflow.record.repair): give a file whose recorder was killed its summary back.
- ``RecorderNode`` (edgeflow.record.recorder_node): a sink that records its inputs.

Imports are lazy: ``import edgeflow.record`` loads neither mcap nor the compressors.
"""

from __future__ import annotations

from typing import Any

__all__ = ["McapRecorder", "open_recording", "Recording", "recover", "RecorderNode"]

_WHERE = {"McapRecorder": "writer", "open_recording": "reader", "Recording": "reader", "recover": "repair",
          "RecorderNode": "recorder_node"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeflow.record' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"edgeflow.record.{module}"), name)
