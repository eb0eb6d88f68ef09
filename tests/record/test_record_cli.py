"""``edgeflow record`` against a running app (a real child process), stopped by --frames and by SIGTERM/SIGINT,
and ``edgeflow record --recover``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from edgeflow.frame import Frame
from edgeflow.record import McapRecorder, open_recording

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent("""
    import os
    import numpy as np
    from edgeflow import ConsumerNode, EdgeApp, ProducerNode, SinkNode

    app = EdgeApp(os.environ["REC_APP"])

    @app.node(name="camera", fps=100)
    class Cam(ProducerNode):
        def setup(self):
            self.n = 0
        def produce(self):
            self.n += 1
            return np.full((48, 64, 3), self.n % 256, np.uint8)

    @app.node(name="detector", replicas=2)
    class Det(ConsumerNode):
        def process(self, data):
            return {"n": int(data[0, 0, 0]), "pts": np.arange(4, dtype=np.float32)}

    @app.node(name="log")
    class Log(SinkNode):
        def consume(self, data):
            pass

    app.link("camera").to("detector", qos="DURABLE")
    app.link("detector").to("log")
    if __name__ == "__main__":
        app.run()
""")


def env(app: str) -> dict:
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "REC_APP": app}


class RunningApp:
    """The app as a child process (``python main.py``), stopped with SIGINT at the end."""

    def __init__(self, folder: Path, app: str) -> None:
        self.main = folder / "main.py"
        self.main.write_text(APP)
        self.proc = subprocess.Popen([sys.executable, str(self.main), "--duration", "60"], env=env(app),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.proc.stderr.close()


def record(*args: str, app: str, timeout: float = 60) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "edgeflow.cli", "record", *args], env=env(app),
                         capture_output=True, text=True, timeout=timeout)
    print(f"$ edgeflow record {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


@pytest.mark.slow
def test_records_n_frames_of_a_running_app_and_exits_0(tmp_path, app):
    running = RunningApp(tmp_path, app)
    try:
        out = record(str(running.main), "--topics", "camera,detector", "-o", str(tmp_path / "run.mcap"),
                     "--frames", "120", "--compression", "zstd", app=app)
    finally:
        running.stop()
    assert out.returncode == 0
    assert "recorded 120 frames" in out.stderr.splitlines()[-1]
    rec = open_recording(tmp_path / "run.mcap")
    assert rec.app == app and rec.truncated == []
    assert rec.topics == ["camera", "detector.r0", "detector.r1"]
    assert rec.nodes == {"camera": "camera", "detector.r0": "detector", "detector.r1": "detector"}
    frames = list(rec.frames())
    assert len(frames) == 120
    cams = {f.frame_id: f for t, f in frames if t == "camera"}
    assert cams and all((f.data == f.frame_id % 256).all() for f in cams.values())
    ids = sorted(cams)
    assert ids == list(range(ids[0], ids[0] + len(ids)))       # no camera frame skipped while recording
    for topic, f in frames:
        if topic != "camera":
            (ptopic, pid), = f.meta["edgeflow.parents"]
            assert ptopic == "camera" and f.data["n"] == pid % 256
            assert [hop[0] for hop in f.meta["edgeflow.trace"]] == ["camera", "detector"]
    with open(tmp_path / "run.mcap", "rb") as f:
        assert make_reader(f).get_summary().statistics.message_count == 120


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_the_recording_cleanly(tmp_path, app, sig):
    running = RunningApp(tmp_path, app)
    path = tmp_path / "run.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "edgeflow.cli", "record", str(running.main), "--topics",
                             "camera", "-o", str(path), "--progress", "0.05"], env=env(app),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:                           # wait until frames are being recorded
            if line.startswith("recording: ") and not line.startswith("recording: 0 frames"):
                break
        proc.send_signal(sig)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        running.stop()
    assert proc.returncode == 0, rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("recorded ") and str(path) in last
    n = int(last.split()[1])
    rec = open_recording(path)
    assert rec.truncated == [] and n > 0 and len(list(rec.frames())) == n


@pytest.mark.slow
def test_recover_cli_gives_a_torn_file_its_summary(tmp_path, app):
    path = tmp_path / "run.mcap"
    rec = McapRecorder(path, app="demo", chunk_bytes=1000)
    for i in range(20):
        rec.write("camera", Frame(np.full((20, 20), i, np.uint8), frame_id=i + 1, timestamp=1e9 + i))
    rec.close()
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    last = summary.chunk_indexes[-1]
    with open(path, "r+b") as f:                           # the file as a kill mid-chunk leaves it
        f.truncate(last.chunk_start_offset + last.chunk_length // 2)
    torn = open_recording(path)
    assert torn.truncated == [path]
    kept = [f.frame_id for _, f in torn.frames()]
    assert kept == list(range(1, len(kept) + 1)) and 0 < len(kept) < 20
    out = record("--recover", str(path), app=app)
    assert out.returncode == 0 and f"recovered {len(kept)} messages" in out.stdout
    with open(path, "rb") as f:
        assert make_reader(f).get_summary().statistics.message_count == len(kept)
    out = record("--recover", str(path), app=app)
    assert out.returncode == 0 and "already complete" in out.stdout


@pytest.mark.slow
def test_errors_are_one_line_with_exit_code_2(tmp_path, app):
    main = tmp_path / "main.py"
    main.write_text(APP)
    out = record(str(main), "--topics", "nope", app=app)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "--topics nope: no such node" in out.stderr and "camera" in out.stderr
    out = record(str(main), "--topics", "log", app=app)
    assert out.returncode == 2 and "is a sink" in out.stderr
    out = record(str(main), "--topics", "camera", "--wait", "0.2", app=app)    # the app is not running
    assert out.returncode == 2 and "is not running on this host" in out.stderr
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"edgeflow.{app}.")]
