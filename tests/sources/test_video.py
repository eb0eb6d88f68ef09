"""VideoSource (issue 15): a file's frames bit-exact against OpenCV reading it directly, paced at its own
rate, looped; frames decoded in place into a real shared-memory ring; a real RTSP server (ffmpeg encoding, see
_rtsp.py) going live, SIGKILLed (lost) and restarted (live again); an HTTP stream from ffmpeg's own server; an
unreachable source at the start retried without a crash; a missing file refused in one line (exit 2); the
gateway's /readyz and /metrics following the source; bad options refused at registration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeflow import EdgeApp
from edgeflow.errors import ConfigError
from edgeflow.runtime.loop import NodeContext
from edgeflow.runtime.metrics import NodeMetrics
from edgeflow.runtime.outputs import Output
from edgeflow.sources import VideoSource
from edgeflow.transport import shm

from . import nodes
from ._rtsp import FFMPEG, VIDEO, RtspServer
from .nodes import Recorder, digest, records

ROOT = Path(__file__).resolve().parents[2]
VTEST = str(VIDEO.relative_to(ROOT))          # as a user gives it, from the project folder (the tests' cwd)
FRAMES, FPS, SIZE = 190, 10.0, (768, 576)     # examples/data/README.md


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)             # polling another process's statistics (no event to await)


def direct_frames(path: str = VTEST, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Every frame of the file as OpenCV's FFmpeg backend decodes it, without EdgeFlow."""
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, image = capture.read()
        if not ok:
            capture.release()
            return out
        out.append(image if size is None else cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def recording_app(app: str, path: Path, **source) -> EdgeApp:
    ef = EdgeApp(app)
    ef.node(VideoSource, name="cam", **source)
    ef.node(Recorder, name="rec", path=str(path))
    ef.link("cam").to("rec")
    return ef


def source_state(running) -> dict:
    return (running.statistics()["nodes"]["cam"].get("extra") or {}).get("source") or {}


def in_state(running, state: str) -> dict | None:
    """The source's statistics when it is in ``state``, else None."""
    source = source_state(running)
    return source if source.get("state") == state else None


@pytest.fixture(scope="module")
def direct():
    return direct_frames()


@pytest.fixture
def ffmpeg():
    if not os.access(FFMPEG, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{FFMPEG} is not installed (.ci/run installs ffmpeg)")
        pytest.skip(f"{FFMPEG} is not installed (Debian: apt-get install ffmpeg)")
    return FFMPEG


@pytest.fixture
def rtsp(ffmpeg):
    server = RtspServer(free_port())
    yield server
    server.stop()


# -- files ---------------------------------------------------------------------------------------------------

def test_a_file_sends_every_frame_bit_exact_in_order_then_ends(app, tmp_path, direct):
    out = tmp_path / "frames.jsonl"
    with recording_app(app, out, url=VTEST, fps=None).start() as running:
        assert running.wait(60) == 0, "the file's end ends the stream and the run"
        stats = running.statistics()["nodes"]
    got = records(out)
    assert len(direct) == FRAMES and len(got) == FRAMES
    assert [r["digest"] for r in got] == [digest(image) for image in direct]
    assert [r["meta"]["frame_index"] for r in got] == list(range(FRAMES))
    assert got[0]["meta"] == {"source_url": VTEST, "frame_index": 0, "source_fps": FPS}
    assert stats["cam"]["restarts"] == 0
    source = stats["cam"]["extra"]["source"]
    assert (source["state"], source["size"], source["fps"], source["url"]) == \
        ("ended", list(SIZE), FPS, VTEST)
    assert stats["cam"]["extra"]["connections"][VTEST]["state"] == "down"


@pytest.mark.slow
def test_a_file_plays_at_its_own_rate_unless_fps_is_given(app, tmp_path):
    for fps, name in ((None, "own"), (20, "given")):
        out = tmp_path / f"{name}.jsonl"
        options = {} if fps is None else {"fps": fps}
        with recording_app(f"{app}{name}", out, url=VTEST, **options).start(frames=12) as running:
            assert running.wait(30) == 0
        stamps = [r["t"] for r in records(out)]
        assert len(stamps) == 12
        period = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        want = 1 / (fps or FPS)
        assert 0.8 * want < period < 1.5 * want, f"{name}: {period:.4f} s between frames, expected {want:.4f}"


def test_loop_starts_the_file_over_at_its_end(app, tmp_path, direct):
    out = tmp_path / "loop.jsonl"
    with recording_app(app, out, url=VTEST, fps=None, loop=True).start(frames=FRAMES + 30) as running:
        assert running.wait(60) == 0
        events = running.statistics()["nodes"]["cam"]["extra"]["events"]
    got = records(out)
    assert len(got) == FRAMES + 30, "past the file's end"
    assert [(r["meta"]["source_loop"], r["meta"]["frame_index"]) for r in got] == \
        [(0, i) for i in range(FRAMES)] + [(1, i) for i in range(30)]
    assert [r["digest"] for r in got[FRAMES:]] == [digest(image) for image in direct[:30]], \
        "the second pass is the same frames again"
    assert events["loops"] == 1


def test_frames_are_decoded_in_place_into_the_ring_and_resized_into_it(app, direct):
    """OpenCV's retrieve(image=loan) fills the ring's own slot: the frame returned is the loaned array (same
    data pointer), which the runtime then commits without a copy; the subscriber reads the same pixels."""
    pub = shm.Publisher("cam", app=app, slots=4)
    sub = shm.Subscriber("cam", app=app)
    output = Output("cam", pub)

    class Loans(NodeContext):
        def output(self, shape, dtype):
            self.loans.append(super().output(shape, dtype))
            return self.loans[-1]

    try:
        for options, want in (({}, direct), ({"width": 384}, None)):
            node = VideoSource(name="cam", url=VTEST, **options)
            node.context = context = Loans(output, NodeMetrics("cam"))
            context.loans = []
            node.setup()
            if want is None:
                want = direct_frames(size=(384, 288))
            for i in range(3):
                frame = node.produce()
                loan = context.loans[-1]
                assert frame.data is loan and frame.data.ctypes.data == loan.ctypes.data
                assert output.send(frame, None, time.time()) is not None
                with sub.recv(timeout=2) as received:
                    assert np.array_equal(received.data, want[i])
                    assert received.meta["frame_index"] == i
            node.teardown()
        # a source whose frames are not the size it announced: that frame goes by copy, the next in place
        node = VideoSource(name="cam", url=VTEST)
        node.context = context = Loans(output, NodeMetrics("cam"))
        context.loans = []
        node.setup()
        node._shape = ((288, 384, 3), np.dtype(np.uint8))
        frame = node.produce()
        assert frame.data is not context.loans[-1] and frame.data.shape == (576, 768, 3)
        assert output.send(frame, None, time.time()) is not None
        with sub.recv(timeout=2) as received:
            assert np.array_equal(received.data, direct[0])
        frame = node.produce()
        assert frame.data is context.loans[-1]
        assert node.context.metrics.extra["events"]["size_changes"] == 1
        output.send(frame, None, time.time())
        node.teardown()
    finally:
        sub.close()
        output.close()


# -- bad options and a missing file --------------------------------------------------------------------------

@pytest.mark.parametrize("options, option, words", [
    ({"url": "no/such/video.avi"}, "url", "no such file 'no/such/video.avi'"),
    ({}, "url", "required"),
    ({"url": "examples"}, "url", "is a folder"),
    ({"url": "rtps://u:hunter2@127.0.0.1/x"}, "url", "unknown URL scheme rtps://"),
    ({"url": -1}, "url", "camera index is 0 or more"),
    ({"url": True}, "url", "expected a file path"),
    ({"url": "rtsp://127.0.0.1/x", "loop": True}, "loop", "only a file can loop"),
    ({"url": VTEST, "lopp": True}, "lopp", "did you mean 'loop'"),
    ({"url": VTEST, "width": 0}, "width", "out of range"),
    ({"url": VTEST, "reconnect_min": 2, "reconnect_max": 1}, "reconnect_max", "below reconnect_min"),
    ({"url": VTEST, "rtsp_transport": "tcp"}, "rtsp_transport", "only for an rtsp://"),
    ({"url": "rtsp://127.0.0.1/x", "rtsp_transport": "tpc"}, "rtsp_transport", "did you mean 'tcp'"),
])
def test_bad_options_are_refused_at_registration_in_one_line(app, options, option, words):
    with pytest.raises(ConfigError) as info:
        EdgeApp(app).node(VideoSource, name="cam", **options)
    text = str(info.value)
    assert text.startswith(f"node 'cam': option '{option}': ") and words in text, text
    assert "\n" not in text and "hunter2" not in text


def test_a_missing_file_exits_2_with_one_line_naming_node_and_option(tmp_path):
    main = tmp_path / "main.py"
    main.write_text("from edgeflow import EdgeApp\nfrom edgeflow.sources import VideoSource\n"
                    "app = EdgeApp('missing')\napp.node(VideoSource, name='cam', url='gone.avi')\n"
                    "if __name__ == '__main__':\n    app.run()\n")
    out = subprocess.run([sys.executable, "-m", "edgeflow", "run", str(main)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "node 'cam': option 'url': no such file 'gone.avi'" in lines[0], out.stderr


def test_a_file_gone_before_the_node_starts_stops_the_run_with_exit_2(app, tmp_path):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(VIDEO.read_bytes())
    ef = recording_app(app, tmp_path / "out.jsonl", url=str(clip))
    clip.unlink()                        # registered while it was there; gone when the node process checks
    with ef.start() as running:
        assert running.wait(30) == 2
        stats = running.statistics()["nodes"]["cam"]
    assert stats["restarts"] == 0, "a configuration error is not retried by restarts"
    assert "option 'url': no such file" in stats["extra"]["config_error"]


# -- live sources --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_an_rtsp_stream_goes_live_and_its_frames_arrive(app, tmp_path, rtsp):
    rtsp.start()
    url = rtsp.url.replace("rtsp://", "rtsp://viewer:hunter2@")        # the server takes any credentials
    shown = rtsp.url.replace("rtsp://", "rtsp://viewer:***@")
    out = tmp_path / "rtsp.jsonl"
    with recording_app(app, out, url=url).start() as running:
        wait_for(lambda: len(records(out)) >= 15, 30, "15 frames from the RTSP server")
        source = wait_for(lambda: in_state(running, "live"), 10,
                          "the state live in the statistics (sent about once a second)")
        running.stop()
    got = records(out)
    assert source["state"] == "live" and source["url"] == shown and source["size"] == list(SIZE)
    assert source["fps"] == rtsp.fps
    assert all(r["shape"] == [SIZE[1], SIZE[0], 3] for r in got)
    assert [r["meta"]["frame_index"] for r in got] == list(range(len(got)))
    assert got[0]["meta"]["source_url"] == shown and got[0]["meta"]["source_fps"] == rtsp.fps
    assert "hunter2" not in out.read_text()
    stamps = [r["t"] for r in got[-8:]]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "capture timestamps increase"
    assert abs(time.time() - stamps[-1]) < 30


@pytest.mark.slow
def test_a_killed_rtsp_server_is_lost_then_live_again_when_it_comes_back(app, tmp_path, rtsp):
    rtsp.start()
    out = tmp_path / "fault.jsonl"
    ef = recording_app(app, out, url=rtsp.url, reconnect_min=0.2, reconnect_max=0.5)
    with ef.start() as running:
        wait_for(lambda: source_state(running).get("state") == "live" and len(records(out)) >= 3, 30, "live")
        rtsp.kill()
        lost = wait_for(lambda: in_state(running, "lost"), 15, "the source lost")
        before = len(records(out))
        rtsp.start()
        live = wait_for(lambda: in_state(running, "live"), 30, "live again")
        wait_for(lambda: len(records(out)) >= before + 5, 15, "frames after the reconnect")
        stats = running.statistics()["nodes"]["cam"]
        running.stop()
        assert running.wait(10) == 0
    assert lost["error"] and lost["reconnects"] == 0
    assert live["reconnects"] == 1 and live["error"] is None
    assert stats["restarts"] == 0, "reconnected inside the node, not by crashing"
    assert stats["extra"]["events"]["lost"] == 1 and stats["extra"]["events"]["reconnects"] == 1
    assert stats["extra"]["connections"][rtsp.url]["state"] == "up"


def test_an_unreachable_source_at_the_start_is_one_log_line_and_connecting(app, tmp_path, capfd):
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/x"
    ef = recording_app(app, tmp_path / "none.jsonl", url=url, reconnect_min=0.05, reconnect_max=0.1)
    with ef.start() as running:
        source = wait_for(lambda: (lambda s: s if s.get("error") else None)(source_state(running)), 20,
                          "the failed attempt in the statistics")
        # attempts go by (0.05-0.1 s apart) for a second, with no second line and no restart
        wait_for(lambda: time.time() - source["since"] > 1.0, 10, "a second")
        stats = running.statistics()["nodes"]["cam"]
        assert running.wait(0) is None, "still running"
        running.stop()
        code = running.wait(10)
    assert code == 0
    assert source["state"] == "connecting" and f"connection refused by 127.0.0.1:{port}" in source["error"]
    assert stats["restarts"] == 0 and stats["extra"]["connections"][url]["state"] == "connecting"
    lines = [line for line in capfd.readouterr().err.splitlines() if "cannot open" in line]
    assert len(lines) == 1, lines
    assert f"node 'cam': cannot open {url}: connection refused by 127.0.0.1:{port}; retrying" in lines[0]


def test_a_camera_that_is_not_there_is_connecting_not_a_crash(app, tmp_path):
    index = next(i for i in range(40, 64) if not os.path.exists(f"/dev/video{i}"))
    ef = recording_app(app, tmp_path / "none.jsonl", url=index, reconnect_min=0.05, reconnect_max=0.1)
    with ef.start() as running:
        source = wait_for(lambda: (lambda s: s if s.get("error") else None)(source_state(running)), 20,
                          "the failed attempt")
        running.stop()
        assert running.wait(10) == 0
    assert source["state"] == "connecting" and source["url"] == f"camera {index}"
    assert "no such camera" in source["error"]


@pytest.mark.slow
def test_an_http_stream_with_fps_takes_at_most_that_many_frames(app, tmp_path, ffmpeg):
    """ffmpeg's own HTTP server (one client) sends MPEG-TS at 10 fps; fps=4 takes about every other frame and
    skips the rest (counted), without falling behind."""
    port = free_port()
    server = subprocess.Popen([ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                               "-stream_loop", "-1", "-i", str(VIDEO), "-c:v", "copy", "-f", "mpegts",
                               "-listen", "1", f"http://127.0.0.1:{port}/x.ts"])
    out = tmp_path / "http.jsonl"
    try:
        ef = recording_app(app, out, url=f"http://127.0.0.1:{port}/x.ts", fps=4, reconnect_min=0.05,
                           reconnect_max=0.2)
        with ef.start() as running:
            wait_for(lambda: len(records(out)) >= 2, 20, "the first frames")
            first = len(records(out))
            got = wait_for(lambda: (lambda r: r[first - 1:] if len(r) >= first + 8 else None)(records(out)),
                           20, "eight frames more")
            stats = running.statistics()["nodes"]["cam"]
            running.stop()
    finally:
        server.kill()
        server.wait()
    rate = (len(got) - 1) / (got[-1]["t"] - got[0]["t"])
    assert 3.0 <= rate <= 5.5, f"{rate:.2f} frames/s with fps=4 from a 10 fps stream"
    assert stats["extra"]["events"]["skipped"] >= len(got)
    assert stats["extra"]["source"]["state"] == "live" and stats["extra"]["source"]["fps"] == FPS


@pytest.mark.slow
def test_readyz_and_metrics_of_a_gateway_follow_the_source(app, rtsp):
    port = free_port()
    ef = EdgeApp(app)
    ef.node(VideoSource, name="cam", url=rtsp.url, reconnect_min=0.2, reconnect_max=0.5)
    ef.node(nodes.Pass, name="worker")
    ef.node(nodes.WebGateway, name="gateway", port=port)
    ef.link("cam").to("worker").to("gateway")

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return None, ""

    up = f'edgeflow_connector_up{{node="cam",target="{rtsp.url}"}}'
    with ef.start() as running:
        refused = f"node 'cam': {rtsp.url} connecting (connection refused"
        wait_for(lambda: (lambda r: r[0] == 503 and refused in r[1])(get("/readyz")), 30,
                 "/readyz 503 while the server is not there")
        rtsp.start()
        wait_for(lambda: get("/readyz")[0] == 200, 30, "/readyz 200 once live")
        assert f"{up} 1.0" in get("/metrics")[1]
        rtsp.kill()
        down = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get("/readyz")), 15,
                        "/readyz 503 once lost")
        assert f"node 'cam': {rtsp.url} down" in down[1]
        assert f"{up} 0.0" in get("/metrics")[1]
        running.stop()
        assert running.wait(10) == 0


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def _status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_a_streams_lost_camera_does_not_make_the_platform_unready(app, rtsp):
    """One camera of a fleet away must not take the gateway (and its stream API) out of service: the stream's
    own state says it, /readyz does not."""
    port = free_port()
    ef = EdgeApp(app)
    ef.node(nodes.WebGateway, name="gateway", port=port)
    ef.streams(source=VideoSource, to="gateway", source_options={"reconnect_min": 0.2, "reconnect_max": 0.5})
    with ef.start() as running:
        running.streams.activate("far", rtsp.url, {})          # the server is not started: connecting
        wait_for(lambda: running.streams.list()["far"]["source_state"] == "connecting", 30, "connecting")
        down = 'edgeflow_connector_up{node="stream-far-source"'
        wait_for(lambda: down in _get(port, "/metrics"), 30, "the gateway to know the stream's source is away")
        assert _status(port) == 200 and running.streams.list()["far"]["source_state"] == "connecting"
        running.stop()
        assert running.wait(10) == 0


# -- the configuration layer, stream templates, the example ---------------------------------------------

def test_a_pipeline_file_names_it_class_video_source(app, tmp_path, direct):
    import edgeflow
    from edgeflow.pipeline.errors import PipelineError

    out = tmp_path / "yaml.jsonl"
    text = f"""app: {app}
nodes:
  cam:
    class: VideoSource
    fps: null
    options: {{url: {VIDEO}}}
  rec: {{class: "sources.nodes:Recorder", options: {{path: "{out}"}}}}
links: [cam -> rec]
"""
    (tmp_path / "pipeline.yaml").write_text(text)
    with edgeflow.load(tmp_path / "pipeline.yaml").start(frames=20) as running:
        assert running.wait(30) == 0
    assert [r["digest"] for r in records(out)] == [digest(image) for image in direct[:20]]
    (tmp_path / "bad.yaml").write_text(text.replace(str(VIDEO), "gone.avi"))
    with pytest.raises(PipelineError) as info:
        edgeflow.load(tmp_path / "bad.yaml")
    [problem] = info.value.problems
    assert "bad.yaml:6:15: nodes.cam.options.url: no such file 'gone.avi'" in problem, "at the url's place"


@pytest.mark.slow
def test_a_stream_template_runs_a_video_source_per_stream(app, tmp_path, direct):
    out = tmp_path / "streams.jsonl"
    ef = EdgeApp(app)
    ef.node(nodes.TopicRecorder, name="gateway", path=str(out))
    ef.streams(source=VideoSource, workers=[nodes.Pass], to="gateway", source_options={"fps": 50},
               qos="durable")
    with ef.start() as running:
        with pytest.raises(ConfigError, match="option 'url': no such file 'gone.avi'"):
            running.streams.activate("bad", "gone.avi", {})
        info = running.streams.activate("clip", VTEST, {})
        assert info["nodes"] == ["stream-clip-source", "stream-clip-pass"]
        wait_for(lambda: len(records(out)) >= 10, 20, "the stream's frames at the gateway")
        state = wait_for(lambda: running.streams.list()["clip"]["source_state"], 10, "the source's state")
        running.streams.deactivate("clip")
        assert running.wait(timeout=0.2) is None, "the gateway runs on"
    got = records(out)
    assert state == "live" and {r["topic"] for r in got} == {"stream-clip-pass"}
    assert [r["meta"]["frame_index"] for r in got] == list(range(len(got)))
    assert [r["digest"] for r in got] == [digest(image) for image in direct[:len(got)]]
    assert got[0]["meta"]["source_url"] == VTEST


@pytest.mark.slow
def test_the_example_runs_the_sample_video_through_motion_to_the_gateway(tmp_path):
    main = ROOT / "examples" / "video_source" / "main.py"
    out = subprocess.run([sys.executable, str(main), "--frames", "12", "--port", str(free_port())], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("frame ") and line.endswith(" moving regions") for line in
               out.stdout.splitlines()), out.stdout
    summary = {line.split()[0]: line.split()[1:3] for line in (out.stdout + out.stderr).splitlines()
               if line.startswith(("  camera ", "  motion "))}
    assert summary["camera"][1] == "12", out.stderr
    assert summary["motion"][0] == summary["motion"][1] != "0", "a live view may skip the first frames"


# -- never held up ----------------------------------------------------------------------------------------------

def test_an_open_that_hangs_does_not_hold_up_stopping(app, tmp_path):
    """A server that accepts connections and never answers: FFmpeg's open would wait its whole open_timeout
    (here 30 s); the node waits for it in a thread and stops at once when asked."""
    import socket
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)                   # the kernel completes the handshakes; nobody ever reads or answers
        url = f"rtsp://127.0.0.1:{mute.getsockname()[1]}/x"
        ef = recording_app(app, tmp_path / "none.jsonl", url=url, open_timeout=30)
        with ef.start() as running:
            wait_for(lambda: running.statistics()["nodes"]["cam"].get("extra", {}).get("source"), 20,
                     "the node running, its open under way")
            started = time.monotonic()
            running.stop()
            took = time.monotonic() - started
            stats = running.statistics()["nodes"]["cam"]
    assert took < 2.0, f"stopping took {took:.1f} s"
    assert stats["states"] == ["stopped"] and stats["extra"]["source"]["state"] == "connecting"


@pytest.mark.slow
def test_a_stream_that_goes_silent_is_lost_after_read_timeout_and_comes_back(app, tmp_path, rtsp):
    """SIGSTOP the server (a network cut: no FIN, no data): no frame within read_timeout is a loss; SIGCONT and
    the source reopens it."""
    import signal
    rtsp.start()
    out = tmp_path / "silent.jsonl"
    ef = recording_app(app, out, url=rtsp.url, read_timeout=1.0, open_timeout=2.0, reconnect_min=0.2,
                       reconnect_max=0.5)
    with ef.start() as running:
        wait_for(lambda: in_state(running, "live") and records(out), 30, "live")
        os.killpg(rtsp.proc.pid, signal.SIGSTOP)
        try:
            lost = wait_for(lambda: in_state(running, "lost"), 10, "lost by the read timeout")
        finally:
            os.killpg(rtsp.proc.pid, signal.SIGCONT)
        before = len(records(out))
        wait_for(lambda: in_state(running, "live"), 30, "live again")
        wait_for(lambda: len(records(out)) > before + 3, 15, "frames again")
        running.stop()
    assert lost["error"] == "no frame within 1 s"


def test_a_looping_file_removed_while_it_plays_ends_the_stream_in_one_line(app, tmp_path, capfd):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(VIDEO.read_bytes())
    out = tmp_path / "gone.jsonl"
    with recording_app(app, out, url=str(clip), fps=None, loop=True).start() as running:
        wait_for(lambda: records(out), 20, "the first frames")
        clip.unlink()                    # the open file plays to its end; the next pass cannot open it
        assert running.wait(30) == 0, "the stream ended, nothing failed"
        source = running.statistics()["nodes"]["cam"]["extra"]["source"]
    assert len(records(out)) == FRAMES, "the pass under way played to its end"
    assert source["state"] == "ended" and "no such file" in source["error"]
    lines = [line for line in capfd.readouterr().err.splitlines() if "the stream ends" in line]
    assert len(lines) == 1 and f"node 'cam': option 'url': no such file '{clip}'" in lines[0], lines
