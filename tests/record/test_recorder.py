"""Crash safety, recovery, disk full and RecorderNode in a running pipeline: real processes, real SIGKILL, a real
full filesystem (a small tmpfs in a private mount namespace)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mcap.reader import NonSeekingReader, make_reader

from edgeflow.record import open_recording, recover

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_765_000_000.0

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from edgeflow.frame import Frame
    from edgeflow.record import McapRecorder
    rec = McapRecorder(sys.argv[1], app="crash", chunk_bytes=50_000, compression=sys.argv[2])
    i = 0
    while True:                                   # until killed
        i += 1
        rec.write("camera", Frame(np.full((60, 80, 3), i % 256, np.uint8), frame_id=i, timestamp={t0} + i / 100,
                                  meta={{"i": i}}))
        rec.write("det", Frame({{"i": i, "v": np.arange(3.0) * i}}, frame_id=i, timestamp={t0} + i / 100 + 1e-3))
        if rec.stats()["chunks"] >= 3 and i % 7 == 0:
            print(i, flush=True)                  # at least 2 complete chunks are in the file by now
""").format(t0=T0)


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}


def killed_recording(tmp_path: Path, compression: str) -> Path:
    """A file whose recorder process was SIGKILLed while writing frames in a loop."""
    path = tmp_path / f"killed-{compression}.mcap"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), compression], stdout=subprocess.PIPE,
                            env=env(), text=True)
    try:
        assert int(proc.stdout.readline()) > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return path


def check_prefix(frames: list) -> int:
    """Frames of a killed recording: for each topic ids 1..n without a gap, exact payloads; returns n total."""
    ids: dict[str, list[int]] = {}
    for topic, frame in frames:
        ids.setdefault(topic, []).append(frame.frame_id)
        i = frame.frame_id
        assert frame.timestamp == T0 + i / 100 + (1e-3 if topic == "det" else 0)
        if topic == "camera":
            assert frame.meta == {"i": i} and frame.data.shape == (60, 80, 3) and (frame.data == i % 256).all()
        else:
            assert frame.data["i"] == i and frame.data["v"].tolist() == [0.0, i, 2.0 * i]
    for topic, got in ids.items():
        assert got == list(range(1, len(got) + 1)), topic
    return len(frames)


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_sigkilled_recorder_leaves_a_readable_file_and_recover_restores_the_summary(tmp_path, compression):
    path = killed_recording(tmp_path, compression)
    rec = open_recording(path)                           # our reader: no summary, read up to the last chunk
    assert rec.truncated == [path] and rec.app == "crash" and rec.topics == ["camera", "det"]
    ours = check_prefix(list(rec.frames()))
    with open(path, "rb") as f:                          # mcap's own non-seeking reader, to the torn end
        theirs = []
        with pytest.raises(Exception):
            for _s, channel, message in NonSeekingReader(f).iter_messages(log_time_order=False):
                theirs.append((channel.topic, message.sequence))
    assert len(theirs) == ours
    result = recover(path)
    assert result.status == "recovered" and result.messages == ours and result.chunks >= 2
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary.statistics.message_count == ours == sum(summary.statistics.channel_message_counts.values())
        assert len(summary.chunk_indexes) == result.chunks
        assert sum(1 for _ in reader.iter_messages()) == ours
    again = open_recording(path)
    assert again.truncated == [] and check_prefix(list(again.frames())) == ours
    assert recover(path).status == "complete"


@pytest.mark.slow
def test_a_write_torn_anywhere_in_the_last_chunk_loses_only_that_chunk(tmp_path):
    full = killed_recording(tmp_path, "lz4")
    recover(full)
    with open(full, "rb") as f:
        summary = make_reader(f).get_summary()
    total = summary.statistics.message_count
    last = summary.chunk_indexes[-1]
    end = last.chunk_start_offset + last.chunk_length
    counts = {}
    for cut in (last.chunk_start_offset, last.chunk_start_offset + 5, last.chunk_start_offset + last.chunk_length // 2,
                end - 1, end, end + 3):
        torn = tmp_path / f"torn-{cut}.mcap"
        with open(full, "rb") as src, open(torn, "wb") as dst:
            dst.write(src.read(cut))                     # a write cut short at `cut`
        counts[cut] = n = check_prefix(list(open_recording(torn).frames()))
        result = recover(torn)
        assert result.status == "recovered" and result.messages == n
        with open(torn, "rb") as f:
            assert sum(1 for _ in make_reader(f).iter_messages()) == n
    before = counts[last.chunk_start_offset]
    assert 0 < before < total
    assert [counts[c] for c in sorted(counts)] == [before] * 4 + [total] * 2   # torn chunk gone; whole: kept


def _can_mount_tmpfs() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs (a real full disk)"
    if shutil.which("unshare") is None:
        return "needs unshare(1) for a private mount namespace"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return None if probe.returncode == 0 else f"cannot mount tmpfs here: {probe.stderr.decode().strip()}"


PIPELINE = textwrap.dedent("""
    import sys
    import numpy as np
    from edgeflow import EdgeApp, ProducerNode, SinkNode
    from edgeflow.record import RecorderNode, open_recording

    app = EdgeApp(sys.argv[1])
    out, counted = sys.argv[2], sys.argv[3]

    @app.node(name="camera", fps=None)
    class Cam(ProducerNode):
        def setup(self):
            self.n = 0
        def produce(self):
            self.n += 1
            if self.n > 120:
                return ProducerNode.END
            return np.random.default_rng(self.n).integers(0, 256, (100, 120, 3), dtype=np.uint8)

    @app.node(name="counter")
    class Counter(SinkNode):
        def setup(self):
            self.n = 0
        def consume(self, data):
            self.n += 1
        def teardown(self):
            open(counted, "w").write(str(self.n))

    app.node(RecorderNode, name="rec", path=out + "/run.mcap", chunk_bytes=40_000)
    app.link("camera").to("counter")
    app.link("camera").to("rec")
    if __name__ == "__main__":
        app.run()
        rec = open_recording(out + "/run.mcap")
        ids = [f.frame_id for _, f in rec.frames()]
        print("RECORDED", len(ids), ids == list(range(1, len(ids) + 1)), flush=True)
""")


@pytest.mark.slow
def test_disk_full_stops_the_recording_with_one_error_and_the_pipeline_goes_on(tmp_path, app):
    why = _can_mount_tmpfs()
    if why:
        pytest.skip(why)
    main = tmp_path / "main.py"
    main.write_text(PIPELINE)
    mnt = tmp_path / "small"
    mnt.mkdir()
    counted = tmp_path / "counted.txt"
    # 1 MB of tmpfs: the recorder fills it after a few dozen 36 kB frames, in a mount only this child sees
    script = f'mount -t tmpfs -o size=1m tmpfs "{mnt}" && exec "{sys.executable}" "{main}" {app} "{mnt}" "{counted}"'
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env(),
                         timeout=60)
    print(out.stdout, out.stderr)
    assert out.returncode == 0
    assert counted.read_text() == "120"                  # the rest of the pipeline had every frame
    errors = [line for line in out.stderr.splitlines() if "disk full" in line]
    assert errors and "recording stopped" in errors[0] and "run.mcap" in errors[0]
    assert "Traceback" not in out.stderr
    recorded = [line.split() for line in out.stdout.splitlines() if line.startswith("RECORDED")]
    assert recorded and 0 < int(recorded[0][1]) < 120 and recorded[0][2] == "True"


NODE_APP = textwrap.dedent("""
    import sys
    import numpy as np
    from edgeflow import ConsumerNode, EdgeApp, ProducerNode
    from edgeflow.record import RecorderNode

    app = EdgeApp(sys.argv[1])

    @app.node(name="camera", fps=None)
    class Cam(ProducerNode):
        def setup(self):
            self.n = 0
        def produce(self):
            self.n += 1
            if self.n > 40:
                return ProducerNode.END
            return np.full((30, 40, 3), self.n, np.uint8)

    @app.node(name="detector", replicas=2)
    class Det(ConsumerNode):
        def process(self, data):
            return {"mean": float(data.mean()), "n": int(data[0, 0, 0])}

    app.node(RecorderNode, name="rec", path=sys.argv[2], compression="zstd")
    app.link("camera").to("detector", qos="DURABLE")
    app.link("camera").to("rec")
    app.link("detector").to("rec")
    if __name__ == "__main__":
        app.run()
""")


@pytest.mark.slow
def test_recorder_node_records_its_inputs_with_trace_and_parents(tmp_path, app):
    main = tmp_path / "main.py"
    main.write_text(NODE_APP)
    path = tmp_path / "out" / "run.mcap"
    out = subprocess.run([sys.executable, str(main), app, str(path)], capture_output=True, text=True, env=env(),
                         timeout=60)
    assert out.returncode == 0, out.stderr
    rec = open_recording(path)
    assert rec.app == app and rec.topics == ["camera", "detector.r0", "detector.r1"] and rec.truncated == []
    assert rec.nodes["detector.r1"] == "detector"
    frames = list(rec.frames())
    cams = {f.frame_id: f for t, f in frames if t == "camera"}
    dets = [f for t, f in frames if t.startswith("detector.r")]
    for replica in ("detector.r0", "detector.r1"):       # frame ids are per replica ring
        ids = [f.frame_id for t, f in frames if t == replica]
        assert ids == list(range(1, len(ids) + 1))
    assert sorted(cams) == list(range(1, 41)) and len(dets) == 40
    for det in dets:                                     # lineage survives: parents name the camera frame
        (ptopic, pid), = det.meta["edgeflow.parents"]
        assert ptopic == "camera" and det.data["n"] == pid and det.timestamp == cams[pid].timestamp
        assert [hop[0] for hop in det.meta["edgeflow.trace"]] == ["camera", "detector"]
    assert all((f.data == i).all() for i, f in cams.items())
    assert json.loads(json.dumps(dets[0].meta)) == dets[0].meta
