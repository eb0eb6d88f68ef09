"""examples/vector_flow: the app as a real process (``python main.py``, ``edgeflow run pipeline.yaml``) on
free ports with a token: a stream created over REST with the seed's body on examples/data/vtest.avi shows
frames with arrows on /ws/frames, its metrics on /metrics by stream_id, new params without a restart, and
Ctrl-C ends it cleanly. Also its Prometheus configuration, its Grafana dashboard, and both as ConfigMaps."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from connectors._servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "vector_flow"
VIDEO = ROOT / "examples" / "data" / "vtest.avi"
APP = "vector-flow"
SHM = Path("/dev/shm")
METRICS = ("vector_flow_magnitude_avg", "vector_flow_magnitude_max", "vector_flow_vector_count",
           "vector_flow_fps", "vector_flow_frames_processed_total")


def green_pixels(image: np.ndarray) -> int:
    """Pixels far greener than they are red or blue: the arrows (vtest.avi has none: a grey street)."""
    pixels = image.astype(np.int16)
    return int(((pixels[:, :, 1] - np.maximum(pixels[:, :, 0], pixels[:, :, 2])) > 60).sum())


def long_video(folder: Path) -> Path:
    """vtest.avi played four times in one file (ffmpeg, stream copy), so the stream outlasts the test's steps
    (the file alone is 12.7 s at 15 fps); vtest.avi itself when ffmpeg is missing."""
    if shutil.which("ffmpeg") is None:
        return VIDEO
    out = folder / "vtest-x4.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "3", "-i", str(VIDEO), "-c", "copy",
                    str(out)], check=True, timeout=60)
    return out


class Gateway:
    """HTTP to the example's gateway with its token."""

    def __init__(self, port: int, token: str) -> None:
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def request(self, method: str, path: str, body: dict | None = None, token: bool = True,
                content_type: str = "application/json") -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def json(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, text = self.request(method, path, body)
        return status, json.loads(text) if text else {}

    def up(self) -> bool:
        try:
            return self.request("GET", "/healthz", token=False)[0] == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, dict[tuple, float]]:
        """/metrics as {name: {sorted label items: value}} (comments left out)."""
        status, text = self.request("GET", "/metrics")
        assert status == 200, text
        out: dict[str, dict[tuple, float]] = {}
        for line in text.splitlines():
            match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
            if match and not line.startswith("#"):
                labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or "")))
                out.setdefault(match[1], {})[labels] = float(match[3])
        return out

    def stream_metric(self, name: str, stream_id: str) -> float | None:
        """The value of ``name`` for the stream's worker, or None while it is not on /metrics."""
        for labels, value in self.metrics().get(name, {}).items():
            if ("stream_id", stream_id) in labels:
                return value
        return None

    async def frames(self, stream_id: str, count: int, timeout: float) -> list[np.ndarray]:
        """``count`` decoded JPEG frames from /ws/frames?stream_id= (its text messages are skipped)."""
        import aiohttp

        url = self.base.replace("http://", "ws://") + f"/ws/frames?stream_id={stream_id}"
        frames: list[np.ndarray] = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, headers={"Authorization": f"Bearer {self.token}"}) as ws:
                deadline = time.monotonic() + timeout
                while len(frames) < count:
                    message = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
                    if message.type == aiohttp.WSMsgType.BINARY:
                        frames.append(cv2.imdecode(np.frombuffer(message.data, np.uint8), cv2.IMREAD_COLOR))
                    elif message.type != aiohttp.WSMsgType.TEXT:
                        raise AssertionError(f"the socket ended: {message}")
        return frames


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def descendants(pid: int) -> set[int]:
    """Pids of every live process below pid (from /proc); multiprocessing's helpers are counted too."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


class Example:
    """The example running as a real process: started, stopped with SIGINT, its output kept."""

    def __init__(self, args: list[str], tmp_path: Path) -> None:
        self.port, self.token = free_port(), secrets.token_hex(12)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "GATEWAY_HTTP_PORT": str(self.port),
               "GATEWAY_TCP_PORT": str(free_port()), "EDGEFLOW_GATEWAY_TOKEN": self.token,
               "EDGEFLOW_STATE_DIR": str(tmp_path / "state")}
        env.pop("EDGEFLOW_DB_URL", None)
        self.out, self.err = open(tmp_path / "stdout", "w+"), open(tmp_path / "stderr", "w+")
        self.proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=self.out, stderr=self.err)
        self.gateway = Gateway(self.port, self.token)

    def started(self) -> Gateway:
        wait_for(lambda: self.gateway.up() or self.proc.poll() is not None, 30, "the gateway's /healthz")
        assert self.proc.poll() is None, self.output()
        return self.gateway

    def output(self) -> str:
        """What the process printed so far: stdout, then stderr."""
        return (Path(self.out.name).read_text() + "\n--- stderr ---\n" + Path(self.err.name).read_text())

    def interrupt(self, timeout: float = 15) -> int:
        nodes = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        wait_for(lambda: not any(_alive(pid) for pid in nodes), 5, "the node processes to exit")
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                _kill(pid)
            self.proc.kill()
            self.proc.wait()
            for name in app_segments():         # killed: nothing swept its rings
                (SHM / name).unlink(missing_ok=True)
        print(self.output())                    # shown by pytest when the test failed
        self.out.close()
        self.err.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def seed_body(url: Path) -> dict:
    """The seed's POST body (its README's curl), the file in place of an RTSP address."""
    return {"name": "street", "rtsp_url": str(url), "grid_size": 16, "threshold": 1.0, "is_active": True}


def app_segments() -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(f"edgeflow.{APP}."))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_streams_over_rest_frames_with_arrows_metrics_and_params_without_a_restart(tmp_path):
    video = long_video(tmp_path)
    example = Example([sys.executable, str(EXAMPLE / "main.py")], tmp_path)
    try:
        gateway = example.started()
        assert gateway.request("POST", "/api/streams", seed_body(video), token=False)[0] == 401
        status, stream = gateway.json("POST", "/api/streams", seed_body(video))
        assert status == 201, stream
        stream_id = stream["id"]
        assert stream["name"] == "street" and stream["params"] == {"grid_size": 16, "threshold": 1.0}

        # frames with arrows: the source frames have no pure green at all
        frames = asyncio.run(gateway.frames(stream_id, 6, timeout=30))
        assert all(frame.shape == (576, 768, 3) for frame in frames)
        assert max(green_pixels(frame) for frame in frames[1:]) > 300, [green_pixels(f) for f in frames]

        # the five metrics, labelled with the stream (and its worker node)
        def figures():
            values = {m: gateway.stream_metric(m, stream_id) for m in METRICS}
            return None not in values.values() and values["vector_flow_fps"] > 0 and values

        values = wait_for(figures, 20, "the stream's metrics on /metrics")
        assert values["vector_flow_frames_processed_total"] > 1 and values["vector_flow_magnitude_max"] >= \
            values["vector_flow_magnitude_avg"] >= 0
        assert gateway.stream_metric("vector_flow_threshold", stream_id) == 1.0
        worker = [dict(labels) for labels in gateway.metrics()["vector_flow_fps"]
                  if ("stream_id", stream_id) in labels][0]["node"]
        assert worker == f"stream-{stream_id}-flow-worker"
        wait_for(lambda: (gateway.stream_metric("vector_flow_vector_count", stream_id) or 0) > 0, 20,
                 "vectors above the threshold in vtest.avi's moving pedestrians")

        # new params reach the running worker: same processes, its threshold and counts change
        before = descendants(example.proc.pid)
        processed = gateway.stream_metric("vector_flow_frames_processed_total", stream_id)
        status, changed = gateway.json("PUT", f"/api/streams/{stream_id}", {"threshold": 1000.0})
        assert status == 200, changed
        assert changed["params"] == {"grid_size": 16, "threshold": 1000.0}
        wait_for(lambda: gateway.stream_metric("vector_flow_threshold", stream_id) == 1000.0, 20,
                 "the worker's threshold gauge to show the new params")
        wait_for(lambda: gateway.stream_metric("vector_flow_vector_count", stream_id) == 0.0, 20,
                 "no vector above a 1000 px threshold")
        assert descendants(example.proc.pid) == before, "a process was restarted or added by the PUT"
        assert gateway.stream_metric("vector_flow_frames_processed_total", stream_id) > processed   # kept
        restarts = gateway.metrics()["edgeflow_node_restarts_total"]
        assert restarts[(("node", worker), ("stream_id", stream_id))] == 0
        after = asyncio.run(gateway.frames(stream_id, 4, timeout=20))
        assert max(green_pixels(frame) for frame in after[1:]) < 20         # no arrow any more
        status, shown = gateway.json("GET", f"/api/streams/{stream_id}")
        assert status == 200 and shown["params"]["threshold"] == 1000.0

        # the dashboard's queries name metrics that are there
        board = json.loads((EXAMPLE / "grafana-dashboard.json").read_text())
        names = {name for panel in board["panels"] for target in panel["targets"]
                 for name in re.findall(r"\b(vector_flow_\w+)\{", target["expr"])}
        assert names == set(METRICS) and names <= set(gateway.metrics())

        assert example.interrupt() == 0, example.output()
    finally:
        example.close()
    assert "Traceback" not in example.output()
    assert not app_segments()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_pipeline_file_runs_the_same_app(tmp_path):
    example = Example([sys.executable, "-m", "edgeflow.cli", "run", str(EXAMPLE / "pipeline.yaml")], tmp_path)
    try:
        gateway = example.started()
        status, stream = gateway.json("POST", "/api/streams", seed_body(long_video(tmp_path)))
        assert status == 201, stream
        frames = asyncio.run(gateway.frames(stream["id"], 4, timeout=30))
        assert max(green_pixels(frame) for frame in frames[1:]) > 300
        assert example.interrupt() == 0, example.output()
    finally:
        example.close()
    assert not app_segments()


def test_the_source_frames_have_no_arrow_green():
    """What the arrows are told apart by: no frame of vtest.avi has a single such pixel."""
    capture = cv2.VideoCapture(str(VIDEO))
    counts = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        counts.append(green_pixels(frame))
    capture.release()
    assert len(counts) == 190 and max(counts) == 0


# -- Prometheus, Grafana, and both as ConfigMaps -------------------------------------------------------------

def test_prometheus_scrapes_the_gateways_metrics_with_the_token_as_a_bearer_credential():
    config = yaml.safe_load((EXAMPLE / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job.get("scheme", "http") == "http"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "gateway-token"}
    assert job["static_configs"][0]["targets"] == ["localhost:8000"]
    assert re.fullmatch(r"\d+s", config["global"]["scrape_interval"])
    promtool = shutil.which("promtool")
    if promtool:                         # when Prometheus is installed, it checks the file itself
        out = subprocess.run([promtool, "check", "config", "--syntax-only", str(EXAMPLE / "prometheus.yml")],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr


def test_the_grafana_dashboard_has_a_panel_per_metric_by_stream():
    board = json.loads((EXAMPLE / "grafana-dashboard.json").read_text())
    assert board["uid"] == "edgeflow-vector-flow" and board["title"]
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["stream_id"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids, covered = set(), set()
    for panel in board["panels"]:
        assert panel["id"] not in ids and panel["type"] in ("timeseries", "stat")
        ids.add(panel["id"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"] and 'stream_id=~"$stream_id"' in target["expr"]
            assert "stream_id" in target["expr"].split("{")[0] or "{{stream_id}}" in target["legendFormat"]
            covered |= set(re.findall(r"\b(vector_flow_\w+)\{", target["expr"]))
    assert covered == set(METRICS)


def test_deploy_writes_the_monitoring_files_into_config_maps(tmp_path):
    from edgeflow.cli import _load
    from edgeflow.deploy import manifests, monitoring, render

    graph = _load.load_app(EXAMPLE / "main.py").graph()
    cfg = manifests.DeployConfig(image="registry.local/vector-flow:sha-1", namespace="cams", password="pw1")
    objects = monitoring.build(graph, cfg, EXAMPLE)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ConfigMap", "vector-flow-prometheus"), ("ConfigMap", "vector-flow-grafana-dashboards")]
    everything = manifests.build(graph, cfg)
    services = {o["metadata"]["name"] for o in everything if o["kind"] == "Service"}
    scrape = yaml.safe_load(objects[0]["data"]["prometheus.yml"])["scrape_configs"][0]
    host = scrape["static_configs"][0]["targets"][0]
    assert host == "vector-flow-gateway.cams.svc:8000" and host.split(".")[0] in services
    assert scrape["static_configs"][0]["labels"] == {"app": "vector-flow"}
    secret = next(o for o in everything if o["kind"] == "Secret")
    assert "gateway-token" in secret["stringData"]
    assert scrape["authorization"] == {"type": "Bearer", "credentials_file":
                                       f"/etc/prometheus/secrets/{secret['metadata']['name']}/gateway-token"}
    given = monitoring.build(graph, manifests.DeployConfig(image="x/y:z", namespace="cams", password="pw1",
                                                           gateway_token="t"), EXAMPLE)
    scrape = yaml.safe_load(given[0]["data"]["prometheus.yml"])["scrape_configs"][0]
    assert scrape["authorization"]["credentials_file"] == \
        "/etc/prometheus/secrets/vector-flow-gateway-token/token"
    dashboards = objects[1]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["metadata"]["labels"]["app.kubernetes.io/instance"] == "vector-flow"   # edgeflow clean
    assert json.loads(dashboards["data"]["grafana-dashboard.json"])["uid"] == "edgeflow-vector-flow"
    written, _ = render.write(everything + objects, tmp_path / "k8s", source="main.py --monitoring")
    assert {p.name for p in written} >= {"02-configmap-vector-flow-prometheus.yaml",
                                          "02-configmap-vector-flow-grafana-dashboards.yaml"}
    assert {o["metadata"]["name"] for o in render.load(tmp_path / "k8s") if o["kind"] == "ConfigMap"} == {
        "vector-flow-config", "vector-flow-prometheus", "vector-flow-grafana-dashboards"}


def test_deploy_monitoring_refuses_what_it_cannot_use(tmp_path):
    from edgeflow import EdgeApp
    from edgeflow.cli import _load
    from edgeflow.deploy import manifests, monitoring
    from edgeflow.errors import ConfigError
    from pipeline import pl_nodes

    graph = _load.load_app(EXAMPLE / "main.py").graph()
    cfg = manifests.DeployConfig(image="x/y:z", namespace="cams", password="pw1")
    with pytest.raises(ConfigError, match=r"has no prometheus.yml and no grafana\*.json dashboard"):
        monitoring.build(graph, cfg, tmp_path)
    (tmp_path / "prometheus.yml").write_text("scrape_configs:\n  - job_name: x\n    metrics_path: /other\n")
    with pytest.raises(ConfigError, match="no scrape job reads /metrics"):
        monitoring.build(graph, cfg, tmp_path)
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    with pytest.raises(ConfigError, match="expected a Prometheus configuration with scrape_configs"):
        monitoring.build(graph, cfg, tmp_path)
    (tmp_path / "prometheus.yml").unlink()
    (tmp_path / "grafana-x.json").write_text('{"title": "no uid", "panels": []}')
    with pytest.raises(ConfigError, match=r"grafana-x.json: expected a Grafana dashboard"):
        monitoring.build(graph, cfg, tmp_path)
    plain = EdgeApp("no-gateway")
    plain.node(pl_nodes.Counter, name="counter")
    plain.node(pl_nodes.Drop, name="drop")
    plain.link("counter").to("drop")
    with pytest.raises(ConfigError, match="the app has no gateway"):
        monitoring.build(plain.graph(), cfg, EXAMPLE)


def test_edgeflow_deploy_monitoring_writes_the_config_maps(tmp_path):
    cli = [sys.executable, "-m", "edgeflow.cli", "deploy"]
    help_text = subprocess.run([*cli, "--help"], capture_output=True, text=True, timeout=60).stdout
    if "--monitoring" not in help_text:
        pytest.skip("edgeflow deploy has no --monitoring option in this checkout (edgeflow/cli/deploy.py)")
    out = subprocess.run([*cli, str(EXAMPLE / "main.py"), "--dry-run", "--no-build", "--monitoring", "--out",
                          str(tmp_path / "k8s")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    from edgeflow.deploy import render
    maps = {o["metadata"]["name"]: o for o in render.load(tmp_path / "k8s") if o["kind"] == "ConfigMap"}
    assert set(maps) == {"vector-flow-config", "vector-flow-prometheus", "vector-flow-grafana-dashboards"}
    scrape = yaml.safe_load(maps["vector-flow-prometheus"]["data"]["prometheus.yml"])["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["vector-flow-gateway.edgeflow.svc:8000"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_rtsp_stream_made_over_rest_is_live_within_2_s_and_comes_back_after_its_server_restarts(tmp_path):
    """The issue's acceptance: a real RTSP server serves the repository's video; a stream created (and so
    activated) over REST shows live frames on /ws/frames within 2 s; SIGKILL the server, the stream is lost;
    start it again on the same port, the stream is live again and frames flow, without a node restart."""
    if shutil.which("ffmpeg") is None:
        if os.environ.get("CI"):
            raise AssertionError("ffmpeg is missing (bash .ci/run installs it)")
        pytest.skip("ffmpeg is not installed: it encodes the RTSP server's stream (Debian: ffmpeg)")
    from sources._rtsp import RtspServer

    server = RtspServer(free_port()).start()
    example = Example([sys.executable, str(EXAMPLE / "main.py")], tmp_path)
    try:
        gateway = example.started()
        started = time.monotonic()
        status, stream = gateway.json("POST", "/api/streams", seed_body(server.url))
        assert status == 201, stream
        frames = asyncio.run(gateway.frames(stream["id"], 1, timeout=10))
        took = time.monotonic() - started
        assert frames[0].shape == (576, 768, 3)
        assert took < 2.0, f"first live frame {took:.2f} s after the POST"

        def source_state():
            return gateway.json("GET", f"/api/streams/{stream['id']}")[1].get("source_state")

        wait_for(lambda: source_state() == "live", 10, "the stream's source to be live")
        before = descendants(example.proc.pid)
        server.kill()
        wait_for(lambda: source_state() == "lost", 20, "the stream's source to be lost")
        server.start()
        wait_for(lambda: source_state() == "live", 30, "the stream's source to be live again")
        assert len(asyncio.run(gateway.frames(stream["id"], 3, timeout=20))) == 3
        assert descendants(example.proc.pid) == before, "the source reconnected in its own process"
        assert example.interrupt() == 0, example.output()
    finally:
        server.stop()
        example.close()
    assert not app_segments()
