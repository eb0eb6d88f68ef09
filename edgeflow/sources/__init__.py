"""Sources: producer nodes that bring video into a pipeline.

    from edgeflow.sources import VideoSource
    app.node(VideoSource, name="camera", url="rtsp://user:pw@10.0.0.5:554/stream1")
    app.node(VideoSource, name="clip", url="examples/data/vtest.avi", loop=True)

Like the connectors (edgeflow.connectors), each is an ordinary node class: options checked at registration in
one line naming the node and the option, its source's state in the node's statistics, ``/metrics`` and
``/readyz``. See docs/sources.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "VideoSource": "edgeflow.sources.video",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    # imported on first use: a pipeline without video does not import OpenCV
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeflow.sources' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
