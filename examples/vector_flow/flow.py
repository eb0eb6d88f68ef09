"""Lucas-Kanade optical flow on a grid, and the stream worker that draws it.

The computation is plain OpenCV (``FlowTracker``, ``compute_flow``, ``draw_arrows``: nothing of EdgeFlow), so
the benchmark runs the very same code as a plain loop; ``FlowWorker`` is the EdgeFlow node around it:

    tracker = FlowTracker(grid_size=16, threshold=1.0)
    for frame in frames:                       # BGR (H, W, 3) or gray (H, W) uint8 arrays
        result = tracker.step(frame)           # vectors of the grid points that moved more than threshold px
        out = frame.copy()
        draw_arrows(out, result)

Each step tracks the points of a regular grid (``grid_size`` px apart, the first at ``grid_size // 2``) from
the previous gray frame to this one with ``cv2.calcOpticalFlowPyrLK``; a vector is kept when LK found the
point and its length is above ``threshold`` px. The first frame (and a frame whose size differs from the
last) has no previous frame: it gives no vectors.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from typing import Any, Mapping

import cv2
import numpy as np

from edgeflow import ConsumerNode
from edgeflow.errors import ConfigError

DEFAULT_GRID_SIZE = 16
DEFAULT_THRESHOLD = 1.0
ARROW_COLOR = (0, 255, 0)             # BGR green
# LK's usual settings (OpenCV's lk_track sample): 15x15 windows, 3 pyramid levels (0-2), 10 iterations
LK_PARAMS = {"winSize": (15, 15), "maxLevel": 2,
             "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)}


class ParamsError(ValueError):
    """A stream's params that the worker cannot use (one line naming the param)."""


def parse_params(params: Mapping[str, Any] | None) -> tuple[int, float]:
    """``(grid_size, threshold)`` from a stream's params, defaults for the missing ones.

    Other keys are ignored: a stream's params may carry what other workers read.

    Raises:
        ParamsError: grid_size not an integer >= 2, or threshold not a finite number >= 0.
    """
    params = dict(params or {})
    grid = params.get("grid_size", DEFAULT_GRID_SIZE)
    threshold = params.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(grid, float) and grid.is_integer():
        grid = int(grid)                      # JSON clients may send 16.0
    if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
        raise ParamsError(f"param 'grid_size': expected an integer >= 2 (pixels between grid points), "
                          f"got {grid!r}")
    if (not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold)
            or threshold < 0):
        raise ParamsError(f"param 'threshold': expected a number >= 0 (pixels), got {threshold!r}")
    return grid, float(threshold)


@dataclasses.dataclass(frozen=True)
class FlowResult:
    """The vectors of one frame: ``points`` (N, 2) float32 start points (x, y), ``vectors`` (N, 2) their
    displacement (dx, dy) in px, ``magnitudes`` (N,) their lengths; only vectors above the threshold."""

    points: np.ndarray
    vectors: np.ndarray
    magnitudes: np.ndarray

    @property
    def count(self) -> int:
        """How many vectors are above the threshold."""
        return int(self.magnitudes.size)

    @property
    def magnitude_avg(self) -> float:
        """Their mean length in px (0 when there are none)."""
        return float(self.magnitudes.mean()) if self.magnitudes.size else 0.0

    @property
    def magnitude_max(self) -> float:
        """The longest one's length in px (0 when there are none)."""
        return float(self.magnitudes.max()) if self.magnitudes.size else 0.0


EMPTY = FlowResult(np.empty((0, 2), np.float32), np.empty((0, 2), np.float32), np.empty(0, np.float32))


def grid_points(height: int, width: int, grid_size: int) -> np.ndarray:
    """The grid's points as calcOpticalFlowPyrLK takes them: (N, 1, 2) float32, x then y."""
    ys, xs = np.mgrid[grid_size // 2:height:grid_size, grid_size // 2:width:grid_size]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32).reshape(-1, 1, 2)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A gray uint8 image of a BGR (H, W, 3), BGRA (H, W, 4) or gray (H, W) frame."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    raise ValueError(f"expected an image (H, W), (H, W, 3) or (H, W, 4), got shape {frame.shape}")


def compute_flow(prev_gray: np.ndarray, gray: np.ndarray, points: np.ndarray, threshold: float) -> FlowResult:
    """LK flow of ``points`` from ``prev_gray`` to ``gray``; the vectors LK found that are longer than
    ``threshold`` px."""
    moved, status, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, points, None, **LK_PARAMS)
    start = points.reshape(-1, 2)
    delta = (moved.reshape(-1, 2) - start) if moved is not None else np.zeros_like(start)
    lengths = np.hypot(delta[:, 0], delta[:, 1])
    keep = (status.ravel() == 1) & (lengths > threshold) if status is not None else lengths > threshold
    return FlowResult(start[keep], delta[keep], lengths[keep].astype(np.float32))


class FlowTracker:
    """The flow of a sequence of frames: keeps the previous gray frame and the grid of its size.

    Args:
        grid_size: pixels between grid points. threshold: the shortest vector kept, in px (exclusive).
    """

    def __init__(self, grid_size: int = DEFAULT_GRID_SIZE, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.grid_size, self.threshold = parse_params({"grid_size": grid_size, "threshold": threshold})
        self._prev: np.ndarray | None = None
        self._points: np.ndarray | None = None

    def configure(self, grid_size: int, threshold: float) -> None:
        """New settings from the next frame on; the previous frame is kept (a new grid is just new points)."""
        self.grid_size, self.threshold = parse_params({"grid_size": grid_size, "threshold": threshold})
        self._points = None

    def step(self, frame: np.ndarray) -> FlowResult:
        """The vectors from the previous frame to ``frame`` (none for the first, or after a size change)."""
        gray = to_gray(frame)
        if gray.base is not None or gray is frame:
            gray = gray.copy()          # a view of the frame: its ring slot is reused once the hook returns
        prev, self._prev = self._prev, gray
        if prev is None or prev.shape != gray.shape:
            self._points = None
            return EMPTY
        if self._points is None:
            self._points = grid_points(gray.shape[0], gray.shape[1], self.grid_size)
        if not len(self._points):
            return EMPTY
        return compute_flow(prev, gray, self._points, self.threshold)


def draw_arrows(image: np.ndarray, result: FlowResult, scale: float = 3.0, color: tuple = ARROW_COLOR,
                thickness: int = 1) -> np.ndarray:
    """Draw each vector as an arrow from its point, ``scale`` times its length (a 1 px vector is otherwise
    invisible), into ``image`` (BGR, in place); returns ``image``."""
    if not result.count:
        return image
    ends = result.points + result.vectors * scale
    starts = np.rint(result.points).astype(int).tolist()
    for (x0, y0), (x1, y1) in zip(starts, np.rint(ends).astype(int).tolist()):
        cv2.arrowedLine(image, (x0, y0), (x1, y1), color, thickness, cv2.LINE_AA, tipLength=0.3)
    return image


class RateMeter:
    """Frames per second over the last ``window`` frames (their arrival times)."""

    def __init__(self, window: int = 30) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float | None = None) -> float:
        """Note a frame; the rate over the window (0 until there are two frames)."""
        self._times.append(time.monotonic() if now is None else now)
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


# -- the EdgeFlow node ---------------------------------------------------------------------------------------

class FlowWorker(ConsumerNode):
    """A stream's worker: LK flow on a grid over the previous and this frame, the vectors above the
    threshold drawn as arrows on the frame, in the node's output ring.

    Options: ``params`` (the stream's: ``grid_size``, default 16; ``threshold``, default 1.0; new ones
    arrive through ``on_params`` without a restart) and ``arrow_scale`` (arrow length per px of flow).

    Metrics (per stream, labelled with its ``stream_id``): ``vector_flow_magnitude_avg`` and
    ``vector_flow_magnitude_max`` (px, over the drawn vectors), ``vector_flow_vector_count``,
    ``vector_flow_fps``, ``vector_flow_frames_processed_total``, and the settings in use
    (``vector_flow_grid_size``, ``vector_flow_threshold``).
    """

    params: dict = {}
    arrow_scale: float = 3.0

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """The stream's params must be usable (refused before any process starts)."""
        params = options.get("params")
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(f"node {name!r}: option 'params': expected a mapping, got "
                              f"{type(params).__name__}")
        try:
            parse_params(params)
        except ParamsError as exc:
            raise ConfigError(f"node {name!r}: option 'params': {exc}") from None
        scale = options.get("arrow_scale", cls.arrow_scale)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ConfigError(f"node {name!r}: option 'arrow_scale': expected a number > 0, got {scale!r}")

    def setup(self) -> None:
        """One OpenCV thread (one core per worker process); the tracker from the stream's params."""
        cv2.setNumThreads(1)
        self.tracker = FlowTracker(*parse_params(self.params))
        self.rate = RateMeter()
        self._settings_metrics()

    def on_params(self, params: dict) -> None:
        """New params from the next frame on, in this same process (no restart).

        Raises:
            ConfigError: params the worker cannot use (the old ones stay).
        """
        try:
            grid, threshold = parse_params(params)
        except ParamsError as exc:
            raise ConfigError(f"node {self.name!r}: {exc}") from None
        self.params = dict(params)
        self.tracker.configure(grid, threshold)
        self._settings_metrics()

    def process(self, frame: np.ndarray) -> Any:
        """The frame with its arrows (written once into the output ring), its figures in the meta."""
        result = self.tracker.step(frame)
        out = self.output(frame.shape, frame.dtype)      # the input is a read-only view: draw on a copy
        np.copyto(out, frame)
        draw_arrows(out, result, self.arrow_scale)
        self.gauge("vector_flow_magnitude_avg", result.magnitude_avg)
        self.gauge("vector_flow_magnitude_max", result.magnitude_max)
        self.gauge("vector_flow_vector_count", result.count)
        self.gauge("vector_flow_fps", self.rate.tick())
        self.count("vector_flow_frames_processed_total", 1)
        return out, {"vectors": result.count, "magnitude_avg": round(result.magnitude_avg, 3),
                     "magnitude_max": round(result.magnitude_max, 3)}

    def _settings_metrics(self) -> None:
        self.gauge("vector_flow_grid_size", self.tracker.grid_size)
        self.gauge("vector_flow_threshold", self.tracker.threshold)
