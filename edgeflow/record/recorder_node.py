"""RecorderNode: a sink that records every frame of its inputs to MCAP (edgeflow.record.writer).

    rec = app.node(RecorderNode, name="rec", path="out/run.mcap", compression="lz4", rotate_mb=512)
    app.link(camera).to(rec, qos="BALANCED")      # BALANCED: a slow disk never holds the camera back
    app.link(detector).to(rec)                    # a sink's default, DURABLE: every frame, may back-pressure

Each input is one channel, named after the ring topic the frame came from (``detector.r0`` for a replica)
when the runtime says it (``context.current_topic``), else after the input's label. A disk that fills up stops
the recording with one error line; the node goes on taking frames (counted as drops) so the pipeline is not
held back.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from edgeflow.errors import ConfigError
from edgeflow.nodes.base import SinkNode

__all__ = ["RecorderNode"]

_OPTIONS = {"path", "compression", "chunk_bytes", "chunk_seconds", "rotate_mb", "rotate_s", "jpeg",
            "jpeg_quality", "ros2", "color", "progress_s"}


class RecorderNode(SinkNode):
    """Records its inputs to MCAP files.

    Options:
        path (required): the file; ``{replica}`` is replaced by the replica number (several replicas need it).
        compression: "lz4" (default), "zstd" or "none".
        rotate_mb, rotate_s: start the next file (``run-0001.mcap``, ...) at this size (MB) or capture span (s).
        chunk_bytes, chunk_seconds: chunk size and span (what a crash may lose: at most ``chunk_seconds``).
        jpeg, jpeg_quality: uint8 mono/BGR images as JPEG (foxglove.CompressedImage; lossy).
        ros2: ROS 2 CDR messages (profile "ros2").
        color: "bgr" (default) or "rgb": the channel order of uint8 colour images.
        progress_s: seconds between progress lines in the log (0: none; default 10).
    """

    compression: str = "lz4"
    chunk_bytes: int = 4 << 20
    chunk_seconds: float = 1.0
    rotate_mb: float | None = None
    rotate_s: float | None = None
    jpeg: bool = False
    jpeg_quality: int = 90
    ros2: bool = False
    color: str = "bgr"
    progress_s: float = 10.0
    on_error: ClassVar[str] = "skip"

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Reject unknown options, a missing ``path`` and bad values before the run starts."""
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ConfigError(f"node '{name}': option '{unknown[0]}' is not a RecorderNode option "
                              f"({', '.join(sorted(_OPTIONS))})")
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"node '{name}': option 'path': the MCAP file to write (e.g. 'out/run.mcap')")
        from edgeflow.record.writer import COMPRESSIONS
        if options.get("compression", "lz4") not in COMPRESSIONS:
            raise ConfigError(f"node '{name}': option 'compression': one of {', '.join(COMPRESSIONS)}")
        for key in ("rotate_mb", "rotate_s", "chunk_bytes", "chunk_seconds"):
            value = options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value <= 0):
                raise ConfigError(f"node '{name}': option '{key}': a number > 0, got {value!r}")
        if options.get("color", "bgr") not in ("bgr", "rgb"):
            raise ConfigError(f"node '{name}': option 'color': 'bgr' or 'rgb'")

    def setup(self) -> None:
        """Open the first file."""
        from edgeflow.config import settings
        from edgeflow.record.writer import McapRecorder, keep_freed_memory
        keep_freed_memory()              # this node's process: chunk buffers reused, not re-faulted per frame
        path = str(self.config["path"]).replace("{replica}", str(self.replica))
        app = (getattr(self.context, "app", "") if self.context is not None else "") or settings.EDGEFLOW_APP
        self.recorder = McapRecorder(
            path, app=app, compression=self.compression, chunk_bytes=self.chunk_bytes,
            chunk_seconds=self.chunk_seconds,
            rotate_bytes=None if self.rotate_mb is None else int(self.rotate_mb * 1e6),
            rotate_seconds=self.rotate_s, jpeg=self.jpeg, jpeg_quality=self.jpeg_quality, ros2=self.ros2,
            color=self.color)
        self._reported_error = False
        self._next_progress = time.monotonic() + (self.progress_s or 0)

    def consume(self, data: Any) -> None:
        """Record the frame being consumed under its ring topic."""
        frame = self.context.current_frame
        label = frame.topic or "input"
        ring = getattr(self.context, "current_topic", None) or label
        self.recorder.write(ring, frame, node=label.split(".")[0])
        self._check()

    def idle(self) -> None:
        """Write a chunk that has waited ``chunk_seconds`` (a quiet input still reaches the disk)."""
        self.recorder.flush_due()
        self._check()

    def _check(self) -> None:
        rec = self.recorder
        if rec.error is not None and not self._reported_error:
            self._reported_error = True
            self.count("recorder_errors_total")
        if self.progress_s and time.monotonic() >= self._next_progress:
            self._next_progress = time.monotonic() + self.progress_s
            s = rec.stats()
            self.gauge("recorder_frames", s["frames"])
            self.gauge("recorder_bytes", s["bytes"])
            self.gauge("recorder_drops", s["drops"])
            self.log.info("recorded %d frames, %.1f MB, %.1f MB/s, %d dropped", s["frames"], s["bytes"] / 1e6,
                          s["mb_per_s"], s["drops"])

    def teardown(self) -> None:
        """Write the summary and close the file."""
        rec = getattr(self, "recorder", None)
        if rec is not None:
            rec.close()
            s = rec.stats()
            self.log.info("recording closed: %d frames, %.1f MB in %s%s", s["frames"], s["bytes"] / 1e6,
                          ", ".join(s["files"]), f" ({s['error']})" if s["error"] else "")
