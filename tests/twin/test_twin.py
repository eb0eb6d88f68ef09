"""`edgeflow twin -c config.yaml`: PyEdgeTwin's example configuration and Kalman model block, unchanged, run
as an EdgeFlow pipeline against a mosquitto of the test's own, into a CSV file and a recording InfluxDB 2.x
HTTP server (InfluxDB 2 is not installable here); its health endpoints; its errors.

The configuration and the model (tests/twin/seed/) are the seed's README text (seed 004, copied here), with
the addresses coming in through ${ENV} and a CSV sink added; each test copies them into its tmp_path.
"""

from __future__ import annotations

import csv
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors._servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SEED = Path(__file__).parent / "seed"
TOPIC = "sensors/motor-001/temperature"
N = 200


def kalman(values, q=0.01, r=0.1):
    """The seed's filter, computed here: (estimate, anomaly, residual) per reading."""
    x, p, out = 0.0, 1.0, []
    for z in values:
        p_pred = p + q
        k = p_pred / (p_pred + r)
        x = x + k * (z - x)
        p = (1 - k) * p_pred
        out.append((x, abs(z - x) > 3 * (p_pred + r) ** 0.5, z - x))
    return out


def readings():
    """A warming motor with noise and two spikes (anomalies)."""
    values = [40.0 + i * 0.05 + ((i * 7919) % 13 - 6) * 0.03 for i in range(N)]
    values[120] += 9.0
    values[170] -= 9.0
    return values


def seed_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "twin"
    shutil.copytree(SEED, folder)
    return folder / "config.yaml"


class Influx(http.server.BaseHTTPRequestHandler):
    """Answers like InfluxDB 2.x (204 to /ping and to writes) and keeps (path, headers, body) of each."""

    protocol_version = "HTTP/1.1"
    seen: list = []

    def do_GET(self):
        self._answer(b"")

    def do_POST(self):
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _answer(self, body: bytes) -> None:
        self.seen.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.send_header("X-Influxdb-Version", "v2.7.0")
        self.end_headers()

    def log_message(self, *args):
        pass


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def answer(port: int, path: str, status: int) -> str | None:
    """The body of ``path`` when it answers ``status``, else None."""
    code, body = get(port, path)
    return body if code == status else None


def connectors_up(metrics: str | None) -> dict | None:
    """node -> its edgeflow_connector_up value, once all three connectors are in /metrics."""
    found = dict(re.findall(r'^edgeflow_connector_up\{node="(\w+)",target="[^"]*"\} (\S+)$', metrics or "", re.M))
    return found if len(found) == 3 else None


def wait_for(condition, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the twin exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(0.05)              # polling a file and an HTTP endpoint: no event to await


def csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as file:
        return [row for row in csv.DictReader(file)]


def run_env(**extra: str) -> dict[str, str]:
    """The checkout importable (pyedgetwin too, no install needed), output unbuffered, ``extra`` set."""
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def session(broker, client_id: str) -> None:
    """A persistent session subscribed to TOPIC: what is published while its client is away waits in it."""
    client = broker.client(client_id, clean=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.loop_start()
    client.subscribe(TOPIC, 1)
    assert subscribed.wait(10), "no SUBACK"
    client.disconnect()
    client.loop_stop()


def publish(broker, values) -> None:
    """One JSON reading per value, QoS 1, each acknowledged by the broker."""
    client = broker.client("motor-001")
    client.loop_start()
    sent = [client.publish(TOPIC, f'{{"asset_id": "motor-001", "value": {v!r}}}', qos=1) for v in values]
    for info in sent:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.mark.slow
def test_seed_config_and_model_run_with_edgeflow_twin(tmp_path, app):
    from connectors._mosquitto import Broker
    config = seed_copy(tmp_path)
    broker = Broker(tmp_path / "broker").start()
    Influx.seen = []
    influx = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Influx)
    threading.Thread(target=influx.serve_forever, daemon=True).start()
    proc = None
    try:
        session(broker, f"edgeflow-{app}-mqtt-0")
        values = readings()
        publish(broker, values)
        port = free_port()
        env = run_env(MQTT_HOST="127.0.0.1", MQTT_PORT=str(broker.port), INFLUXDB_TOKEN="s3cret-token",
                      INFLUX_URL=f"http://127.0.0.1:{influx.server_port}")
        proc = subprocess.Popen([sys.executable, "-m", "edgeflow", "twin", "-c", str(config), "--port",
                                 str(port), "--app", app], cwd=config.parent, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        out_csv = config.parent / "out" / "twin.csv"
        wait_for(lambda: len(csv_rows(out_csv)) >= N, 60, f"{N} CSV rows", proc)
        wait_for(lambda: answer(port, "/healthz", 200), 20, "/healthz 200", proc)
        # the connectors' states reach the gateway with the statistics: /metrics shows them, /readyz follows
        up = wait_for(lambda: connectors_up(answer(port, "/metrics", 200)), 20, "connector states", proc)
        assert up == {"mqtt": "1.0", "influxdb2": "1.0", "csv": "1.0"}
        wait_for(lambda: answer(port, "/readyz", 200), 20, "/readyz 200", proc)
        assert 'edgeflow_model_info{node="model",version="1.0.0"} 1.0' in answer(port, "/metrics", 200)

        broker.stop()
        body = wait_for(lambda: answer(port, "/readyz", 503), 20, "/readyz 503 with the broker stopped", proc)
        assert "mqtt" in body and str(broker.port) in body
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
        print(output)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            print(proc.communicate()[0])            # shown when the test failed
        broker.stop()
        influx.shutdown()
        influx.server_close()
    assert proc.returncode == 0, output

    rows = csv_rows(out_csv)
    assert len(rows) == N
    expected = kalman(values)
    assert [float(row["raw_value"]) for row in rows] == values
    assert [float(row["twin_estimate"]) for row in rows] == [e for e, _, _ in expected]
    assert [float(row["residual"]) for row in rows] == [r for _, _, r in expected]
    flags = [i for i, row in enumerate(rows) if row["anomaly_flag"] == "true"]
    assert flags == [i for i, (_, a, _) in enumerate(expected) if a] and {120, 170} <= set(flags)
    assert {(row["twin_id"], row["asset_id"], row["model_version"]) for row in rows} == \
        {("motor-twin-001", "motor-001", "1.0.0")}
    assert {row["meta.mqtt_topic"] for row in rows} == {TOPIC}

    writes = [(path, headers, body) for path, headers, body in Influx.seen if body]
    assert {path for path, _, _ in writes} == {"/api/v2/write?org=myorg&bucket=twins&precision=ns"}
    assert {headers["Authorization"] for _, headers, _ in writes} == {"Token s3cret-token"}
    lines = b"\n".join(body for _, _, body in writes).decode().splitlines()
    assert len(lines) == N
    tags = "twin_output,asset_id=motor-001,model_version=1.0.0,twin_id=motor-twin-001 "
    assert all(line.startswith(tags) for line in lines)
    estimates = [float(line.split("twin_estimate=")[1].split(",")[0]) for line in lines]
    assert estimates == [e for e, _, _ in expected]


def test_a_misspelt_key_is_one_line_with_file_and_line(tmp_path):
    config = seed_copy(tmp_path)
    text = config.read_text().replace("  host: ${MQTT_HOST}", "  hots: 127.0.0.1")
    config.write_text(text)
    line = text.splitlines().index("  hots: 127.0.0.1") + 1
    env = run_env(MQTT_PORT="1", INFLUX_URL="http://127.0.0.1:1", INFLUXDB_TOKEN="t")
    out = subprocess.run([sys.executable, "-m", "edgeflow", "twin", "-c", "config.yaml"], cwd=config.parent,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"config.yaml:{line}:3: mqtt.hots: unknown key (did you mean 'host'?)"]


def test_the_configuration_maps_to_nodes_and_options(tmp_path, app):
    from edgeflow.twin import load
    config = seed_copy(tmp_path)
    config.write_text(config.read_text().replace("workers: 1", "workers: 2")
                      + "    columns: [twin_estimate, anomaly_flag]\n    append: false\n")
    env = {"MQTT_HOST": "broker.local", "MQTT_PORT": "1884", "INFLUX_URL": "http://influx:8086",
           "INFLUXDB_TOKEN": "s3cret-token"}
    twin = load(config, env, name=app, port=9123)
    graph = twin.app.graph()
    nodes = {spec.name: spec for spec in graph.nodes}
    assert nodes["model"].replicas == 2
    assert nodes["mqtt"].options["url"] == "mqtt://broker.local:1884"
    assert nodes["mqtt"].options["topics"] == [TOPIC]
    influx = nodes["influxdb2"].options
    assert {k: influx[k] for k in ("url", "token", "org", "bucket", "measurement", "tags")} == {
        "url": "http://influx:8086", "token": "s3cret-token", "org": "myorg", "bucket": "twins",
        "measurement": "twin_output", "tags": ["asset_id", "twin_id", "model_version"]}
    assert nodes["csv_columns"].options["columns"] == ["twin_estimate", "anomaly_flag"]
    assert nodes["csv"].options["path"] == "out/twin.csv" and nodes["csv"].options["meta"] is False
    assert nodes["gateway"].options["web"] == {"port": 9123}
    edges = {(e.source, e.target): e.qos.name for e in graph.edges}
    assert edges == {("mqtt", "model"): "DURABLE", ("model", "influxdb2"): "DURABLE",
                     ("model", "csv_columns"): "DURABLE", ("csv_columns", "csv"): "DURABLE",
                     ("model", "gateway"): "REALTIME"}
    assert twin.truncate == [Path.cwd() / "out" / "twin.csv"]          # append: false (relative to the run)

    import edgeflow.models
    import pyedgetwin.models.base as base
    assert base.ModelBlock is edgeflow.models.ModelBlock
    assert base.ModelBlockContext("motor-001", "twin", "1.0", {"q": 1}).get("q") == 1

    from pyedgetwin.cli import main
    result = CliRunner(env=env).invoke(main, ["validate", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "node model x2: consumer TwinModel" in result.output


ENV = {"MQTT_HOST": "h", "MQTT_PORT": "1883", "INFLUX_URL": "http://influx:8086", "INFLUXDB_TOKEN": "t"}


@pytest.mark.parametrize("old, new, column, message", [
    ("  workers: 1", "  workers: 0", 12, "runtime.workers: expected an integer from 1 to 32, got 0"),
    ("  workers: 1", "  wrokers: 1", 3, "runtime.wrokers: unknown key (did you mean 'workers'?)"),
    ("  csv:", "  cvs:", 3, "sinks.cvs: unknown key (did you mean 'csv'?)"),
    ('    url: "${INFLUX_URL}"', "    url: udp://influx", 5,
     "sinks.influxdb2.url: unknown URL scheme udp:// in 'udp://influx' (expected http:// or https://)"),
    ("sinks:", "health: {host: 0.0.0.0}", 10, "health.host: '0.0.0.0' is reachable from other hosts: give "
                                              "health.token (or $EDGEFLOW_GATEWAY_TOKEN)"),
])
def test_problems_name_the_file_line_and_key(tmp_path, monkeypatch, old, new, column, message):
    from edgeflow.twin import PipelineError, load
    config = seed_copy(tmp_path)
    lines = config.read_text().splitlines()
    line = lines.index(old) + 1
    lines[line - 1] = new
    if old == "sinks:":
        lines = lines[:line]                       # health instead of the sinks (stdout then)
    config.write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(config.parent)
    with pytest.raises(PipelineError) as caught:
        load("config.yaml", ENV)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"config.yaml:{line}:{column}: {message}")


def test_columns_and_stdout_nodes(capsys):
    from edgeflow.twin.nodes import Columns, StdoutSink
    node = Columns("csv_columns", columns=["timestamp", "twin_estimate", "missing"])
    node.setup()
    assert node.process({"twin_estimate": 1.5, "raw_value": 2.0}) == {"twin_estimate": 1.5, "missing": None}
    sink = StdoutSink("stdout", exclude_fields=["raw_value"])
    sink.setup()
    sink.consume([{"twin_estimate": 1.5, "raw_value": 2.0}, {"twin_estimate": 2.5}])
    assert capsys.readouterr().out == '{"twin_estimate": 1.5}\n{"twin_estimate": 2.5}\n'
