"""The vector-flow example's flow computation (examples/vector_flow/flow.py), on synthetic images whose motion
is known: a textured image shifted by a whole number of pixels gives vectors of that shift."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.vector_flow import flow  # noqa: E402
from edgeflow.errors import ConfigError  # noqa: E402

H, W = 240, 320


def texture(seed: int = 0) -> np.ndarray:
    """A BGR image with structure at every scale LK looks at: blurred noise, so every window has gradients."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (H + 40, W + 40), dtype=np.uint8)
    gray = cv2.GaussianBlur(noise, (0, 0), 2.0)
    gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def shifted(big: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The (H, W) window of ``big`` moved by (dx, dy): content at x in the first is at x + dx in this one."""
    return big[20 - dy:20 - dy + H, 20 - dx:20 - dx + W].copy()


@pytest.mark.parametrize("dx,dy", [(3, -2), (-4, 0), (0, 5)])
def test_a_shifted_image_gives_vectors_of_the_shift(dx, dy):
    big = texture()
    tracker = flow.FlowTracker(grid_size=16, threshold=1.0)
    assert tracker.step(shifted(big, 0, 0)).count == 0          # the first frame: nothing to compare with
    result = tracker.step(shifted(big, dx, dy))
    grid = flow.grid_points(H, W, 16)
    assert len(grid) == (H // 16) * (W // 16)
    assert result.count >= 0.9 * len(grid)                      # all but a few at the border
    median = np.median(result.vectors, axis=0)
    assert median == pytest.approx([dx, dy], abs=0.1)
    assert np.mean(np.abs(result.vectors - [dx, dy]) < 0.5) > 0.9
    assert result.magnitude_avg == pytest.approx(np.hypot(dx, dy), abs=0.2)
    assert result.magnitude_max >= result.magnitude_avg
    # the points are grid points, each vector starting where the grid has one
    on_grid = {tuple(p) for p in grid.reshape(-1, 2).tolist()}
    assert all(tuple(p) in on_grid for p in result.points.tolist())


def test_the_threshold_filters_vectors():
    big = texture(1)
    first, second = shifted(big, 0, 0), shifted(big, 3, 0)       # every vector is about 3 px long
    counts = {}
    for threshold in (0.5, 2.5, 3.5, 10.0):
        tracker = flow.FlowTracker(grid_size=20, threshold=threshold)
        tracker.step(first)
        result = tracker.step(second)
        counts[threshold] = result.count
        assert (result.magnitudes > threshold).all()
    total = len(flow.grid_points(H, W, 20))
    assert counts[0.5] >= 0.9 * total and counts[2.5] >= 0.9 * total
    assert counts[3.5] <= 0.05 * total and counts[10.0] == 0


def test_a_still_scene_gives_no_vectors_and_a_new_size_starts_over():
    image = texture(2)[:H, :W]
    tracker = flow.FlowTracker()
    tracker.step(image)
    assert tracker.step(image.copy()).count == 0
    bigger = cv2.resize(image, (W * 2, H * 2))
    assert tracker.step(bigger).count == 0                      # no previous frame of this size
    result = tracker.step(np.roll(bigger, 2, axis=1))
    assert result.count > 0 and np.median(result.vectors[:, 0]) == pytest.approx(2, abs=0.1)


def test_gray_and_read_only_frames_work_and_the_frame_is_not_kept_by_reference():
    big = cv2.cvtColor(texture(3), cv2.COLOR_BGR2GRAY)
    a, b = shifted(big, 0, 0), shifted(big, 0, 2)
    tracker = flow.FlowTracker(grid_size=24, threshold=1.0)
    a.setflags(write=False)
    tracker.step(a)
    slot = b.copy()
    slot.setflags(write=False)
    result = tracker.step(slot)
    assert np.median(result.vectors[:, 1]) == pytest.approx(2, abs=0.1)
    slot.setflags(write=True)
    slot[:] = 0                          # a ring slot reused after the hook returned
    again = tracker.step(shifted(big, 0, 4))
    assert np.median(again.vectors[:, 1]) == pytest.approx(2, abs=0.1)   # compared with b, not with zeros


def test_configure_changes_grid_and_threshold_from_the_next_frame():
    big = texture(4)
    tracker = flow.FlowTracker(grid_size=16, threshold=1.0)
    tracker.step(shifted(big, 0, 0))
    assert tracker.step(shifted(big, 3, 0)).count > 200
    tracker.configure(grid_size=40, threshold=1.0)
    coarse = tracker.step(shifted(big, 6, 0))
    assert 0 < coarse.count <= len(flow.grid_points(H, W, 40))
    tracker.configure(grid_size=40, threshold=100.0)
    assert tracker.step(shifted(big, 9, 0)).count == 0


def test_arrows_are_drawn_where_the_vectors_are():
    big = texture(5)
    tracker = flow.FlowTracker(grid_size=32, threshold=1.0)
    tracker.step(shifted(big, 0, 0))
    frame = shifted(big, 4, 0)
    result = tracker.step(frame)
    out = flow.draw_arrows(frame.copy(), result)
    changed = np.any(out != frame, axis=2)
    assert changed.sum() > result.count * 5                     # lines, not dots
    ys, xs = np.nonzero(changed)
    x0, y0 = result.points[0]
    near = (np.abs(xs - x0) <= 14) & (np.abs(ys - y0) <= 3)     # an arrow 3 x 4 px long to the right
    assert near.any()
    before, after = frame[changed].astype(int), out[changed].astype(int)    # anti-aliased: blended to green
    assert (after[:, 1] >= before[:, 1]).all() and (after[:, [0, 2]] <= before[:, [0, 2]]).all()
    none = flow.draw_arrows(frame.copy(), flow.EMPTY)
    assert np.array_equal(none, frame)


@pytest.mark.parametrize("params,message", [
    ({"grid_size": 1}, "param 'grid_size': expected an integer >= 2"),
    ({"grid_size": "16"}, "param 'grid_size'"),
    ({"threshold": -1}, "param 'threshold': expected a number >= 0"),
    ({"threshold": float("nan")}, "param 'threshold'"),
    ({"threshold": True}, "param 'threshold'"),
])
def test_bad_params_are_one_line_naming_the_param(params, message):
    with pytest.raises(flow.ParamsError, match=message):
        flow.parse_params(params)
    with pytest.raises(ConfigError, match=r"node 'w': option 'params': " + message):
        flow.FlowWorker.check_options("w", {"params": params})


def test_params_defaults_and_extra_keys():
    assert flow.parse_params(None) == (16, 1.0)
    assert flow.parse_params({"grid_size": 8.0, "threshold": 2, "name": "street"}) == (8, 2.0)
    flow.FlowWorker.check_options("w", {"params": {"grid_size": 16, "threshold": 1.0, "is_active": True}})
    with pytest.raises(ConfigError, match="option 'params': expected a mapping"):
        flow.FlowWorker.check_options("w", {"params": [16]})
    with pytest.raises(ConfigError, match="option 'arrow_scale'"):
        flow.FlowWorker.check_options("w", {"arrow_scale": 0})


def test_rate_meter():
    meter = flow.RateMeter(window=5)
    assert meter.tick(10.0) == 0.0
    for i in range(1, 10):
        rate = meter.tick(10.0 + i / 15)
    assert rate == pytest.approx(15.0)
