"""examples/flight_recorder: main.py records a live run to MCAP; replay.py runs the detector on the recorded
camera frames; edgeflow lineage traces a recorded detection back to its camera frame. Real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeflow.record import open_recording

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flight_recorder"


def run(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def test_record_replay_and_trace_a_detection(tmp_path):
    run([str(EXAMPLE / "main.py"), "--duration", "3"], tmp_path)
    recording = open_recording(tmp_path / "out" / "flight.mcap")
    assert recording.app == "flight-recorder"
    assert {"camera", "detector.r0", "detector.r1", "lidar"} <= set(recording.topics)
    frames = list(recording.frames(topics=["camera", "detector.r0"]))
    cameras = {f.frame_id: f for topic, f in frames if topic == "camera"}
    detections = [f for topic, f in frames if topic == "detector.r0"]
    assert len(cameras) >= 10 and detections      # 3 s at 30 fps, start-up and a loaded machine aside
    assert cameras[min(cameras)].data.shape == (480, 640, 3)
    # a detection names the camera frame it came from, and that frame is in the file
    traced = [d for d in detections if d.meta["edgeflow.parents"][0][1] in cameras]
    assert traced and all(d.meta["edgeflow.parents"][0][0] == "camera" for d in traced)

    replayed = run([str(EXAMPLE / "replay.py")], tmp_path)
    assert "detection 1:" in replayed.stdout and "from recorded frame ['camera'," in replayed.stdout

    frame = traced[0]
    out = run(["-m", "edgeflow.cli", "lineage", "out/flight.mcap", "--topic", "detector.r0", "--frame",
               str(frame.frame_id), "--format", "json"], tmp_path)
    tree = json.loads(out.stdout)
    text = json.dumps(tree)
    assert f'"frame_id": {frame.meta["edgeflow.parents"][0][1]}' in text and '"camera"' in text
