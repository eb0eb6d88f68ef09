"""The runtime examples run to the end as ``python examples/<name>/main.py --frames N``; Ctrl-C stops one.

Each run is a subprocess with its cwd in tmp_path (files an example writes land there) and a gateway port of
its own. The examples use fixed app names, not the ``app`` fixture's namespace, so these tests check /dev/shm
for those names themselves.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SHM = Path("/dev/shm")
QUICKSTART_EDGES = ["fake_camera -> gpu_processor: shm (same host), REALTIME",
                    "gpu_processor -> gateway: shm (same host), REALTIME",
                    "fake_camera -> gateway: shm (same host), REALTIME"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def example_env() -> dict[str, str]:
    """The checkout importable (no install needed), a free gateway port, output unbuffered (read live)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "GATEWAY_HTTP_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}


def run_example(name: str, frames: int, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(EXAMPLES / name / "main.py"), "--frames", str(frames)], cwd=cwd,
                         env=example_env(), capture_output=True, text=True, timeout=timeout)
    print(out.stdout, out.stderr, sep="\n")          # shown by pytest when an assertion fails
    return out


def shm_of(app: str) -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(f"edgeflow.{app}."))


def test_quickstart_runs_to_the_end(tmp_path):
    out = run_example("quickstart", 60, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(edge in lines for edge in QUICKSTART_EDGES), out.stdout
    assert not shm_of("test-distributed-system")


def test_folder_style_logs_every_frame(tmp_path):
    frames = 60
    out = run_example("folder_style", frames, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for edge in ["camera -> detector: shm (same host), REALTIME",
                 "detector -> gateway: shm (same host), REALTIME",
                 "camera -> logger: shm (same host), DURABLE"]:
        assert edge in lines, out.stdout
    assert any(line.startswith(f"logger: {frames} frames, none missing") for line in lines), out.stdout
    with (tmp_path / "folder_style_log.csv").open(newline="") as file:    # the default: in the cwd
        rows = list(csv.DictReader(file))
    assert [int(row["frame_id"]) for row in rows] == list(range(1, frames + 1))     # DURABLE: each once
    assert all(float(row["mean"]) > 0 for row in rows)
    assert not shm_of("folder-demo")


def test_people_detector_counts_people_in_every_frame(tmp_path):
    frames = 40
    out = run_example("people_detector", frames, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "video -> detector: shm (same host), DURABLE" in lines, out.stdout
    per_frame = [re.fullmatch(r"frame +(\d+): (\d+) (?:person|people)", line) for line in lines]
    counted = [(int(m[1]), int(m[2])) for m in per_frame if m]
    assert sorted(f for f, _ in counted) == list(range(1, frames + 1)), out.stdout   # each frame once
    assert sum(n > 0 for _, n in counted) >= frames // 2       # vtest.avi: a street with pedestrians
    assert any(line.startswith(f"counter: {frames} frames processed") for line in lines), out.stdout
    assert not shm_of("people-detector")


def descendants(pid: int) -> set[int]:
    """Pids of every live process below pid, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_gone(pids: set[int], timeout: float) -> list[int]:
    """The pids still running (not zombies) after waiting up to timeout seconds for them to exit."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in sorted(pids):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition.__name__}"
        time.sleep(0.05)


def collect(stream, into: queue.Queue) -> threading.Thread:
    """Read a pipe's lines into a queue in a thread, so the child never blocks on a full pipe."""
    thread = threading.Thread(target=lambda: [into.put(line) for line in stream], daemon=True)
    thread.start()
    return thread


def test_ctrl_c_stops_the_quickstart_and_cleans_up(tmp_path):
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "quickstart" / "main.py")], cwd=tmp_path,
                            env=example_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_lines: queue.Queue = queue.Queue()
    err_lines: queue.Queue = queue.Queue()
    readers = [collect(proc.stdout, out_lines), collect(proc.stderr, err_lines)]
    try:
        deadline = time.monotonic() + 20
        while out_lines.get(timeout=max(0.0, deadline - time.monotonic())).rstrip() != QUICKSTART_EDGES[0]:
            pass

        def camera_ring_exists():
            return any(".fake_camera." in name for name in shm_of("test-distributed-system"))

        wait_for(camera_ring_exists, 15)
        time.sleep(0.5)                                  # frames flowing
        nodes = descendants(proc.pid)
        assert len(nodes) >= 4, "expected a process per node replica"     # camera, 2 processors, gateway
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)                  # the main process only (a terminal signals all)
        proc.wait(timeout=5)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    stderr = "".join(err_lines.queue)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not wait_gone(nodes, timeout=2), "node processes outlived the app"
    assert not shm_of("test-distributed-system")


def test_durable_delivery_writes_every_sample_once(tmp_path):
    out = run_example("durable_delivery", 300, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sensor -> smoother: shm (same host), DURABLE" in out.stdout
    with open(tmp_path / "ledger.csv", newline="") as file:
        samples = [int(row[0]) for row in csv.reader(file)]
    assert samples == sorted(set(samples)) and samples[-1] == 300, "in order, once each, the newest kept"
    # the sensor cannot wait (drop_oldest): while the chain starts up it may drop samples, each one counted
    sensor = re.search(r"^\s+sensor\s+0\s+300\s+0\s+0\s+(.*)$", out.stdout, re.M)
    assert sensor, out.stdout
    dropped = int(re.fullmatch(r"backpressure (\d+)", sensor[1])[1]) if sensor[1] != "-" else 0
    assert len(samples) + dropped == 300, (len(samples), sensor[1])
    assert not shm_of("durable-delivery")


def test_telemetry_files_writes_every_message_once(tmp_path):
    out = run_example("telemetry_files", 50, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sensor -> csv: shm (same host), DURABLE" in out.stdout
    with open(tmp_path / "out" / "telemetry.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["seq"]) for row in rows] == list(range(1, 51))
    assert all(len(json.loads(row["vibration"])) == 3 for row in rows)
    [jsonl] = (tmp_path / "out").glob("telemetry-*.jsonl")
    assert [json.loads(line)["seq"] for line in jsonl.read_text().splitlines()] == list(range(1, 51))
    assert not shm_of("telemetry-files")


def test_mqtt_twin_relays_every_reading_to_mqtt_and_csv(tmp_path):
    """The example against a mosquitto of the test's own (MQTT_URL), its simulator publishing 300 readings."""
    from connectors._mosquitto import Broker
    broker = Broker(tmp_path / "broker").start()
    try:
        client = broker.client("twin-watcher")
        estimates = []
        client.on_message = lambda c, u, m: estimates.append((m.topic, json.loads(m.payload)))
        client.subscribe("twins/#", 1)
        client.loop_start()
        env = {**example_env(), "MQTT_URL": broker.url}
        out = subprocess.run([sys.executable, str(EXAMPLES / "mqtt_twin" / "main.py"), "--simulate", "--frames",
                              "300"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
        print(out.stdout, out.stderr, sep="\n")
        deadline = time.monotonic() + 10
        while len(estimates) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)           # the last estimates may still be on their way from the broker
        client.disconnect()
        client.loop_stop()
    finally:
        broker.stop()
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "out" / "estimates.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(int(row["seq"]) for row in rows) == list(range(300))
    assert sorted(e["seq"] for _, e in estimates) == list(range(300))
    assert {topic for topic, _ in estimates} == {f"twins/m{i}/estimate" for i in (1, 2, 3)}
    assert sum(e["alarm"] for _, e in estimates) >= 5          # every 40th reading is a spike
    assert not shm_of("mqtt-twin")
