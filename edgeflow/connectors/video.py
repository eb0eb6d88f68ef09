"""VideoSink: image frames to MP4 or AVI segments with OpenCV's VideoWriter.

    app.node(VideoSink, name="rec", path="out/cam-{start}.mp4", fps=30, segment_s=60)

- Frames: HxWx3 uint8 (BGR) or HxW (HxWx1) uint8 gray (written as BGR: OpenCV's MJPEG writer garbles
  gray). Anything else is counted (``bad_frames``) and skipped, with one log line for the first.
- Codec: by the path's suffix, ``.mp4`` -> ``mp4v`` (MPEG-4 part 2), ``.avi`` -> ``MJPG`` (OpenCV's own
  MJPEG writer), or the ``fourcc`` option for another container / codec OpenCV's FFmpeg has. MPEG-4 wants
  even sizes: FFmpeg drops an odd last row or column.
- Segments: a new file when a frame was captured ``segment_s`` or more after the segment's first frame
  (capture times, not the wall clock; None: no time limit), when the frame size changes, and at every
  (re)start. Names from the template (see ``_rotate``): ``{start}`` is the segment's first capture time to the
  second; a path with no placeholder gets ``-{n}``; a name already taken gets ``-2``, ``-3`` ...
- Frames are written in arrival order and play at ``fps`` (none are repeated or dropped to follow capture
  times).
- A kill: an MP4 segment open at that moment is unreadable (the index is written at close); an AVI (MJPG) one
  stays readable but for its last 32 KB at most (OpenCV's MJPEG writer writes out 32 KB at a time). The frame
  being written is handed out again and starts the next segment.
- Events in the statistics: ``frames``, ``segments``, ``bad_frames``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from edgeflow.connectors._base import count, opt_number, opt_str, option_error, unknown_options
from edgeflow.connectors._rotate import Template, check_template
from edgeflow.errors import NodeError
from edgeflow.nodes.base import SinkNode

SUFFIX_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


def as_image(data: Any) -> np.ndarray | None:
    """``data`` as an HxWx3 or HxW uint8 array OpenCV can encode (a view when it can be), or None."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size == 0:
        return None
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim != 2 and not (data.ndim == 3 and data.shape[2] == 3):
        return None
    return np.ascontiguousarray(data)


class VideoSink(SinkNode):
    """Writes image frames to video files, one segment per ``segment_s`` of capture time (see
    edgeflow.connectors.video).

    Options: ``path`` (template, e.g. ``out/cam-{start}.mp4``), ``fps`` (playback rate, default 30),
    ``segment_s`` (default 60; None: no time limit), ``fourcc`` (default by suffix: mp4v / MJPG).

    Guarantee: every image frame it receives is written to one segment and every segment is closed readable
    when the node ends, while a segment open when the process is killed is unreadable as an MP4 (its index is
    written at close) and loses at most its last 32 KB as an AVI / MJPG, so prefer .avi where kills matter.
    """

    OPTIONS: ClassVar[tuple] = ("path", "segment_s", "fourcc")
    path: Any = None
    fps: float = 30.0
    segment_s: float | None = 60.0
    fourcc: str | None = None

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Every option, at registration (``fps`` is the runtime's: a number > 0)."""
        unknown_options(name, options, cls.OPTIONS)
        if options.get("path") is None:
            raise option_error(name, "path", "required (a file path, e.g. 'out/cam-{start}.mp4')")
        check_template(name, "path", options["path"])
        opt_number(name, options, "segment_s", low=0.001)
        fourcc = opt_str(name, options, "fourcc")
        if fourcc is not None and (len(fourcc) != 4 or not fourcc.isascii() or not fourcc.isprintable()):
            raise option_error(name, "fourcc", f"expected four characters (e.g. 'mp4v', 'MJPG'), got "
                                               f"{fourcc!r}")
        suffix = os.path.splitext(str(options["path"]))[1].lower()
        if fourcc is None and suffix not in SUFFIX_FOURCC:
            raise option_error(name, "path", f"no codec for {suffix or 'a name without suffix'!r}: use "
                                             f"{' or '.join(SUFFIX_FOURCC)}, or give fourcc")

    def setup(self) -> None:
        """Nothing is opened before the first image (its size is the segment's)."""
        replicas = int(getattr(self, "replicas", 1) or 1)
        if replicas > 1 and "{replica}" not in str(self.path):
            raise option_error(self.name, "path", f"{replicas} replicas would write one file: put "
                                                  "{replica} in the file name")
        self._template = Template(self.path, rotating=True, replica=self.replica)
        self._code = self.fourcc or SUFFIX_FOURCC[os.path.splitext(str(self.path))[1].lower()]
        self._writer: Any = None
        self._segment: Path | None = None
        self._size: tuple[int, int] | None = None
        self._start = 0.0
        self._bad_logged = False

    def consume(self, data: Any) -> None:
        """Write one image (a new segment first when due)."""
        image = as_image(data)
        frame = self.current_frame
        if image is None:
            count(self, "bad_frames")
            if not self._bad_logged:
                self._bad_logged = True
                self.log.warning("node '%s': frame %s is not an image (%s): skipped; such frames are "
                                 "counted as bad_frames (logged once)", self.name, frame.frame_id,
                                 _describe(data))
            return
        size = (image.shape[1], image.shape[0])
        timestamp = frame.timestamp
        if (self._writer is None or size != self._size
                or (self.segment_s and timestamp >= self._start + self.segment_s)):
            self._close()
            self._open(timestamp, size)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        self._writer.write(image)
        count(self, "frames")

    def teardown(self) -> None:
        """Close the open segment (an MP4 is readable only once closed)."""
        self._close()

    def _open(self, timestamp: float, size: tuple[int, int]) -> None:
        path = self._template.next_path(timestamp)
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        # OpenCV's own MJPEG writer writes each frame out as it comes: an AVI cut by a kill stays readable
        api = cv2.CAP_OPENCV_MJPEG if self._code == "MJPG" and path.suffix.lower() == ".avi" else cv2.CAP_ANY
        code = cv2.VideoWriter_fourcc(*self._code)
        writer = cv2.VideoWriter(str(path), api, code, float(self.fps), size, True)
        if not writer.isOpened():
            writer.release()
            if not existed and path.exists() and path.stat().st_size == 0:
                path.unlink()                    # no empty file per failed attempt
            raise NodeError(f"node '{self.name}': cannot open a video writer for '{path}' (fourcc "
                            f"'{self._code}', {size[0]}x{size[1]} at {float(self.fps):g} fps): check the "
                            "folder and that OpenCV's FFmpeg has that codec", node=self.name)
        self._writer, self._segment, self._size, self._start = writer, path, size, timestamp
        count(self, "segments")
        self.log.info("node '%s': recording %s (%dx%d)", self.name, path, *size)

    def _close(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            self._writer = None
            writer.release()


def _describe(data: Any) -> str:
    if isinstance(data, np.ndarray):
        return f"an array of shape {data.shape} and dtype {data.dtype}"
    return f"a {type(data).__name__}"
