"""VideoSink (issue 13): segments by capture time and by frame size, read back with OpenCV's VideoCapture and
with FFmpeg's ffprobe (a tool no one here wrote); a non-image frame counted and skipped; a writer that cannot
open named in one line; an AVI cut by a SIGKILL still readable; bad options refused at registration. Test
images are made in code."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess

import cv2
import numpy as np
import pytest

from edgeflow import EdgeApp
from edgeflow.connectors import VideoSink
from edgeflow.errors import ConfigError

from . import file_nodes
from ._servers import find_exe, read_lines, wait_for
from .file_nodes import T0, planned_image


def stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(T0 + seconds, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def decoded(path) -> list[np.ndarray]:
    """Every frame of a video file, decoded by OpenCV."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return frames
            frames.append(image)
    finally:
        capture.release()


def probe(ffprobe: str, path) -> dict:
    """ffprobe's view of the video stream: codec_name, width, height, nb_read_frames (decoded, counted)."""
    out = subprocess.run([ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"ffprobe cannot read {path}: {out.stderr}"
    [stream] = json.loads(out.stdout)["streams"]
    return {**stream, "nb_read_frames": int(stream["nb_read_frames"])}


def check_segment(ffprobe: str, path, images: list[int], codec: str, compare: bool = True) -> None:
    """The segment holds exactly ``images`` (planned_image numbers), in order (``compare``), at their size."""
    first = planned_image(images[0])
    height, width = first.shape[:2]
    assert probe(ffprobe, path) == {"codec_name": codec, "width": width, "height": height,
                                    "nb_read_frames": len(images)}, path.name
    frames = decoded(path)
    assert len(frames) == len(images) and all(f.shape == (height, width, 3) for f in frames), path.name
    for i, got in zip(images, frames if compare else []):
        want = planned_image(i)
        want = cv2.cvtColor(want, cv2.COLOR_GRAY2BGR) if want.ndim == 2 else want
        assert np.abs(got.astype(int) - want).mean() < 4, f"{path.name}: frame {i} is not image {i}"


def test_segments_read_back_with_opencv_and_ffprobe(app, tmp_path):
    """12 BGR 160x120 images 0.125 s apart, a dict message, 6 gray 96x64 ones: MP4 segments of 0.5 s (names to
    the second, so taken ones get -2), AVI segments by size only; a writer that cannot open is an error naming
    the node and the file, every frame."""
    ffprobe = find_exe("ffprobe")
    ef = EdgeApp(app)
    ef.node(file_nodes.Images, name="cam")
    ef.node(VideoSink, name="mp4", path=str(tmp_path / "mp4" / "cam-{start}.mp4"), fps=8, segment_s=0.5)
    ef.node(VideoSink, name="avi", path=str(tmp_path / "cam.avi"), segment_s=None)
    ef.node(VideoSink, name="bad", path=str(tmp_path / "bad.mkv"), fourcc="ZZZZ")
    for sink in ("mp4", "avi", "bad"):
        ef.link("cam").to(sink)
    with ef.start() as running:
        code = running.wait(60)
        stats = running.statistics()["nodes"]
    assert code is not None
    assert not stats["mp4"]["errors"] and not stats["avi"]["errors"]

    mp4 = {f"cam-{stamp(0)}.mp4": [0, 1, 2, 3], f"cam-{stamp(0)}-2.mp4": [4, 5, 6, 7],
           f"cam-{stamp(1)}.mp4": [8, 9, 10, 11],
           f"cam-{stamp(1)}-2.mp4": [12, 13, 14, 15],           # the size changed
           f"cam-{stamp(2)}.mp4": [16, 17]}
    assert sorted(p.name for p in (tmp_path / "mp4").iterdir()) == sorted(mp4)
    for name, images in mp4.items():
        check_segment(ffprobe, tmp_path / "mp4" / name, images, "mpeg4")
    assert sorted(p.name for p in tmp_path.glob("cam*.avi")) == ["cam-1.avi", "cam-2.avi"]
    check_segment(ffprobe, tmp_path / "cam-1.avi", list(range(12)), "mjpeg")
    check_segment(ffprobe, tmp_path / "cam-2.avi", list(range(12, 18)), "mjpeg")

    assert stats["mp4"]["extra"]["events"] == {"frames": 18, "segments": 5, "bad_frames": 1}
    assert stats["avi"]["extra"]["events"] == {"frames": 18, "segments": 2, "bad_frames": 1}
    assert stats["bad"]["errors"] == 18 and stats["bad"]["extra"]["events"] == {"bad_frames": 1}
    assert f"node 'bad': cannot open a video writer for '{tmp_path / 'bad-1.mkv'}' (fourcc 'ZZZZ', 96x64 " \
           "at 30 fps)" in stats["bad"]["last_error"]
    assert not list(tmp_path.glob("bad*")), "a failed writer leaves no empty file"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_an_avi_segment_cut_by_a_kill_stays_readable(app, tmp_path):
    """The sink is SIGKILLed with 6 noise images (23 KB each as JPEG) written to its AVI segment: the segment
    stays readable but for its last 32 KB at most (the claim of the guarantee: OpenCV's MJPEG writer writes
    out 32 KB at a time); the restarted sink starts a new segment with the image it was consuming."""
    ffprobe = find_exe("ffprobe")
    marks = tmp_path / "marks"
    ef = EdgeApp(app)
    ef.node(file_nodes.Images, name="cam", noise=True)
    ef.node(file_nodes.StallingVideoSink, name="avi", path=str(tmp_path / "cam.avi"), segment_s=None,
            marks=str(marks), at=6)
    ef.link("cam").to("avi")
    with ef.start() as running:
        pid = wait_for(lambda: read_lines(marks), 30, "the sink to stall")[0]
        os.kill(int(pid), signal.SIGKILL)
        code = running.wait(40)
        stats = running.statistics()["nodes"]
    assert code is not None and stats["avi"]["restarts"] == 1
    killed = probe(ffprobe, tmp_path / "cam-1.avi")
    assert killed["codec_name"] == "mjpeg" and killed["nb_read_frames"] >= 4, killed      # 6 minus <= 32 KB
    assert len(decoded(tmp_path / "cam-1.avi")) == killed["nb_read_frames"]
    check_segment(ffprobe, tmp_path / "cam-2.avi", list(range(5, 12)), "mjpeg", compare=False)  # 5 again
    check_segment(ffprobe, tmp_path / "cam-3.avi", list(range(12, 18)), "mjpeg", compare=False)


@pytest.mark.parametrize("options, message", [
    ({}, "node 'x': option 'path': required"),
    ({"path": "c.mkv"}, "node 'x': option 'path': no codec for '.mkv': use .mp4 or .avi, or give fourcc"),
    ({"path": "c"}, "node 'x': option 'path': no codec for 'a name without suffix'"),
    ({"path": "c.mp4", "fourcc": "h264x"}, "node 'x': option 'fourcc': expected four characters"),
    ({"path": "c.mp4", "fourcc": 4}, "node 'x': option 'fourcc': expected a non-empty string"),
    ({"path": "c.mp4", "segment_s": 0}, "node 'x': option 'segment_s': 0 is out of range"),
    ({"path": "c.mp4", "segmnt_s": 5}, "option 'segmnt_s': unknown option (did you mean 'segment_s'?)"),
    ({"path": "c-{date}.mp4"}, "node 'x': option 'path': 'c-{date}.mp4': unknown placeholder {date}"),
    ({"path": "c.mp4", "fps": 0}, "node 'x': fps must be > 0"),
])
def test_bad_video_options_fail_at_registration(app, options, message):
    ef = EdgeApp(app)
    with pytest.raises(ConfigError) as info:
        ef.node(VideoSink, name="x", **options)
    assert message in str(info.value) and "\n" not in str(info.value)
