"""examples/motor_twin end to end (issue 14, section 4): ``python main.py`` and ``edgeflow run pipeline.yaml``
against a mosquitto and an InfluxDB 1.x of the test's own.

The test publishes 1,000 temperature readings itself (a smooth warm-up, bounded noise, spikes at known
indexes) into the app's persistent MQTT session, runs the example with ``--frames 1000``, and reads every
estimate back from the three places it goes: the CSV file, the MQTT topic and InfluxDB. Each must equal a
Kalman filter computed here, independently of the example's model (within 1e-9), with the anomaly flag set
exactly at the injected spikes; and the YAML version must give the same results as the Python one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from connectors._influx import start as start_influx
from connectors._mosquitto import Broker
from connectors._servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "motor_twin"
APP = "motor-twin"
READINGS = 1000
SPIKES = {97: 7.5, 250: 6.0, 251: 8.0, 500: -7.0, 777: 9.0, 998: 6.5}    # index -> glitch (°C)
Q, R, SIGMAS, RESET_AFTER = 0.01, 0.09, 3.0, 5                           # the example's parameters
SESSION = "edgeflow-motor-twin-sensors-0"                                # its MqttSource's client id

pytestmark = pytest.mark.slow


def readings() -> list[dict]:
    """The motor's readings: warming up from 40 °C, noise within ±0.25 °C (so only a spike passes 3 sigma)."""
    rng = random.Random(14)
    out = []
    for i in range(READINGS):
        value = 40 + 35 * (1 - math.exp(-i / 400)) + 2.5 * math.sin(i / 90) + rng.uniform(-0.25, 0.25)
        out.append({"asset": "motor-001", "seq": i, "value": value + SPIKES.get(i, 0.0),
                    "ts": 1_800_000_000.0 + i * 0.05})
    return out


def kalman(values: list[float]) -> list[tuple[float, float, bool]]:
    """(estimate, residual, anomaly) per value: a random-walk Kalman filter; a value beyond 3 sigma of the
    prediction is flagged and left out of the estimate, unless RESET_AFTER come in a row (then start over)."""
    out, x, p, rejected = [], None, 0.0, 0
    for z in values:
        if x is None:
            x, p = z, R
            out.append((x, 0.0, False))
            continue
        predicted = p + Q
        innovation = z - x
        flagged = abs(innovation) > SIGMAS * math.sqrt(predicted + R)
        if flagged and rejected + 1 < RESET_AFTER:
            p, rejected = predicted, rejected + 1
        elif flagged:
            x, p, rejected = z, R, 0
        else:
            gain = predicted / (predicted + R)
            x, p, rejected = x + gain * innovation, (1 - gain) * predicted, 0
        out.append((x, innovation, flagged))
    return out


def environment(**extra: str) -> dict[str, str]:
    """The checkout importable, a free gateway port, output unbuffered, and ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "GATEWAY_HTTP_PORT": str(free_port()),
            **extra}


def publish(broker: Broker, sent: list[dict]) -> None:
    """Open the app's persistent session (so the broker keeps the readings for it), then publish them."""
    session = broker.client(SESSION, clean=False)
    subscribed = threading.Event()
    session.on_subscribe = lambda *args: subscribed.set()
    session.loop_start()
    session.subscribe("motors/+/temperature", qos=1)
    assert subscribed.wait(10), "the broker never acknowledged the session's subscription"
    session.disconnect()
    session.loop_stop()
    client = broker.client("motor-test-publisher")
    client.loop_start()
    infos = [client.publish("motors/motor-001/temperature", json.dumps(r), qos=1) for r in sent]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def run(variant: str, broker: Broker, influx, tmp_path: Path) -> dict[str, list]:
    """Run one version of the example on the readings; its estimates from the CSV, MQTT and InfluxDB."""
    folder = tmp_path / variant
    folder.mkdir()
    database = f"motor_twin_{variant}"
    influx.create_database(database)
    sent = readings()
    watcher = broker.client(f"twin-watcher-{variant}")
    received: list[dict] = []
    watcher.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    watcher.loop_start()
    watcher.subscribe("twins/#", 1)
    publish(broker, sent)
    if variant == "python":
        command = [sys.executable, str(EXAMPLE / "main.py")]
    else:
        command = [sys.executable, "-m", "edgeflow.cli", "run", str(EXAMPLE / "pipeline.yaml"), "-c",
                   str(EXAMPLE / "influx.yaml")]
    env = environment(MQTT_URL=broker.url, INFLUX_URL=influx.url, INFLUX_DB=database)
    out = subprocess.run([*command, "--frames", str(READINGS)], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=120)
    print(out.stdout, out.stderr, sep="\n")
    deadline = time.monotonic() + 10
    while len(received) < READINGS and time.monotonic() < deadline:
        time.sleep(0.05)               # the last estimates may still be on their way from the broker
    watcher.disconnect()
    watcher.loop_stop()
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"edgeflow.{APP}.")]
    with open(folder / "out" / "motor_twin.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    points = influx.rows("SELECT * FROM motor_twin ORDER BY time", database)
    return {"sent": sent, "csv": rows, "mqtt": received, "influx": points}


def check(results: dict[str, list]) -> list[tuple]:
    """Every estimate, wherever it went, is the reference filter's; returns them as (seq, raw, estimate,
    residual, flag) tuples."""
    sent = results["sent"]
    expected = kalman([r["value"] for r in sent])
    assert {i for i, (_, _, flagged) in enumerate(expected) if flagged} == set(SPIKES)   # the data is fair
    csv_rows = [(int(r["seq"]), float(r["raw_value"]), float(r["twin_estimate"]), float(r["residual"]),
                 r["anomaly_flag"] == "true") for r in results["csv"]]
    mqtt_rows = [(m["seq"], m["raw_value"], m["twin_estimate"], m["residual"], m["anomaly_flag"])
                 for m in results["mqtt"]]
    influx_rows = [(p["seq"], p["raw_value"], p["twin_estimate"], p["residual"], p["anomaly_flag"])
                   for p in results["influx"]]
    for where, rows in (("csv", csv_rows), ("mqtt", mqtt_rows), ("influx", influx_rows)):
        assert [row[0] for row in rows] == list(range(READINGS)), where          # each once, in order
        assert [row[1] for row in rows] == [r["value"] for r in sent], where
        for (seq, _, estimate, residual, flagged), (want, want_residual, want_flag) in zip(rows, expected):
            assert abs(estimate - want) <= 1e-9 and abs(residual - want_residual) <= 1e-9, (where, seq)
            assert flagged == want_flag, (where, seq)
        assert {row[0] for row in rows if row[4]} == set(SPIKES), where          # anomalies where injected
    assert [float(r["timestamp"]) for r in results["csv"]] == [r["ts"] for r in sent]     # reading's time
    assert {r["meta.mqtt_topic"] for r in results["csv"]} == {"motors/motor-001/temperature"}
    assert [p["time"] for p in results["influx"]] == [round(r["ts"] * 1e6) * 1000 for r in sent]
    assert all(p["asset_id"] == "motor-001" for p in results["influx"])
    return csv_rows


def test_the_motor_twin_estimates_like_a_kalman_filter_in_python_and_in_yaml(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    try:
        (tmp_path / "influx").mkdir()
        influx = start_influx(tmp_path / "influx")
        try:
            python = check(run("python", broker, influx, tmp_path))
            yaml = check(run("yaml", broker, influx, tmp_path))
        finally:
            influx.stop()
    finally:
        broker.stop()
    assert yaml == python                                # the same results, bit for bit


def test_the_yaml_pipeline_is_main_py_as_a_file(tmp_path):
    env = environment()
    graphs = []
    for target, cwd in ((EXAMPLE / "main.py", EXAMPLE), (EXAMPLE / "pipeline.yaml", tmp_path)):
        out = subprocess.run([sys.executable, "-m", "edgeflow.cli", "graph", str(target), "--format", "json"],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        graphs.append(json.loads(out.stdout))
    python, yaml = graphs
    twin = next(n for n in yaml["nodes"] if n["name"] == "twin")
    # the file's folder goes first on the model node's sys.path (as `python main.py` puts main.py's there)
    assert twin["config"].pop("python_path") == [str(EXAMPLE)]
    assert yaml == python
    assert [n["name"] for n in python["nodes"]] == ["sensors", "twin", "csv", "publish", "gateway"]


def test_simulate_runs_the_motor_and_the_dashboard_shows_the_twin(tmp_path):
    """``main.py --simulate``: the built-in motor's readings go through the twin; while it runs, the gateway's
    ``/api/topics/twin`` has the newest estimate and the history the live plot draws."""
    broker = Broker(tmp_path / "broker").start()
    try:
        env = environment(MQTT_URL=broker.url)
        url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/api/topics/twin"
        proc = subprocess.Popen([sys.executable, str(EXAMPLE / "main.py"), "--simulate", "--frames", "150"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            topic, deadline = None, time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        topic = json.loads(response.read())
                    if len(topic["history"]["seq"]) >= 20:
                        break
                except (OSError, KeyError):
                    pass                   # not serving yet, or no message yet
                time.sleep(0.1)
            output, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        broker.stop()
    print(output)
    assert proc.returncode == 0, output[-3000:]
    assert topic is not None and len(topic["history"]["seq"]) >= 20, topic
    assert set(topic["value"]) == {"asset_id", "seq", "raw_value", "twin_estimate", "residual",
                                   "anomaly_flag"}
    history = topic["history"]
    assert set(history["fields"]) == {"raw_value", "twin_estimate", "residual", "seq"}
    assert list(history["flags"]) == ["anomaly_flag"]
    with open(tmp_path / "out" / "motor_twin.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["seq"]) for r in rows] == list(range(150))
    assert rows[96]["anomaly_flag"] == "true"              # the simulator's glitch every 97th reading
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"edgeflow.{APP}.")]
