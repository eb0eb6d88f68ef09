"""A frame as rows, the one shape every table-like sink writes (CSV, JSONL, PostgreSQL, InfluxDB).

A row is ``frame_id``, ``topic``, ``timestamp`` (capture time, seconds since the epoch), then the payload's
fields and the frame's meta. A dict message is one row; a list of dict messages is one row each (``index``
tells them apart); any other payload (an array, bytes, a number) is one row with a ``data`` field. Nested
dicts are flattened with dots (``{"pos": {"x": 1}}`` -> ``pos.x``), small arrays become lists, meta fields are
prefixed ``meta.`` (EdgeFlow's own meta, ``edgeflow.*``, is left out), and a payload field named like a frame
column (``timestamp``, ``frame_id``, ``topic``; ``index`` in a list) becomes ``data.<name>``.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

FRAME_COLUMNS = ("frame_id", "topic", "timestamp")
MAX_INLINE_ARRAY = 4096          # elements: a bigger array in a row is refused (use VideoSink / a recorder)


def payload_items(data: Any) -> list[dict[str, Any]]:
    """The payload as a list of field dicts (see the module docstring), not flattened."""
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return data
    return [{"data": data}]


def flatten(fields: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested dicts flattened with dots; values made JSON-able (arrays -> lists, bytes -> base64 text).

    Raises:
        ValueError: an array of more than MAX_INLINE_ARRAY elements.
    """
    out = {} if out is None else out
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flatten(value, f"{name}.", out)
        else:
            out[name] = plain(value, name)
    return out


def plain(value: Any, name: str = "value") -> Any:
    """A JSON-able Python value for ``value`` (numpy scalars and small arrays, bytes as base64)."""
    if isinstance(value, np.ndarray):
        if value.size > MAX_INLINE_ARRAY:
            raise ValueError(f"field {name!r}: an array of {value.size} elements is too big for a row "
                             f"(at most {MAX_INLINE_ARRAY})")
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list):
        return [plain(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, name) for k, v in value.items()}
    return value


def user_meta(meta: dict | None) -> dict[str, Any]:
    """The frame's meta without EdgeFlow's own keys (``edgeflow.*``: origin, trace)."""
    if not meta:
        return {}
    return {k: v for k, v in meta.items() if not str(k).startswith("edgeflow.")}


def frame_rows(frame: Any, data: Any, *, with_meta: bool = True) -> list[dict[str, Any]]:
    """Flat rows for one frame: ``frame_id``, ``topic``, ``timestamp``, (``index`` for a list of messages),
    then the payload's fields and ``meta.*``."""
    items = payload_items(data)
    meta = flatten(user_meta(frame.meta), "meta.") if with_meta else {}
    taken = FRAME_COLUMNS + (("index",) if len(items) > 1 else ())
    rows = []
    for index, item in enumerate(items):
        row = {"frame_id": frame.frame_id, "topic": frame.topic, "timestamp": frame.timestamp}
        if len(items) > 1:
            row["index"] = index
        for key, value in flatten(item).items():
            # a message's own "timestamp" (common in telemetry) must not replace the frame's column
            row[f"data.{key}" if key in taken else key] = value
        row.update(meta)
        rows.append(row)
    return rows


def is_number(value: Any) -> bool:
    """True for an int or float that is finite (booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
