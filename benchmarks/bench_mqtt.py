"""MQTT ingest: MqttSource messages/s into a DURABLE ring next to a plain paho-mqtt subscriber loop.

    python benchmarks/bench_mqtt.py [--messages 20000] [--rounds 3]
    pytest benchmarks/bench_mqtt.py --benchmark-only

The benchmark starts its own mosquitto (a free loopback port, its files in a temporary folder). Both cases
drain the same backlog from the broker, so the publisher's speed is not measured: each case's client first
subscribes with a persistent session (QoS 1) and goes away, the messages (200-byte JSON, QoS 1) are published,
then the client comes back and the broker hands it the backlog through its usual in-flight window.

- ``plain``: a paho client (automatic acknowledgements) that ``json.loads`` each payload, as a hand-written
  subscriber would; timed from its first message to its last.
- ``edgeflow``: an app of an MqttSource (manual acknowledgement once the frame is in its output ring) linked
  DURABLE to a sink that counts; timed by the sink from its first frame to its last.

Every message's sequence number is checked at the receiving end (all there, in order). Cases alternate
``--rounds`` times; the medians and their ratio are printed (issue 13 target: edgeflow >= 0.8x plain).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout that is not pip-installed; children inherit it

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edgeflow import EdgeApp, SinkNode  # noqa: E402
from edgeflow.connectors import MqttSource  # noqa: E402

TOPIC = "bench/sensor/temperature"
PAYLOAD_BYTES = 200


def payload(i: int) -> bytes:
    """A 200-byte JSON message carrying its sequence number."""
    head = json.dumps({"seq": i, "celsius": 21.5, "pad": ""}).encode()
    body = json.dumps({"seq": i, "celsius": 21.5, "pad": "x" * (PAYLOAD_BYTES - len(head))}).encode()
    assert len(body) == PAYLOAD_BYTES
    return body


class Mosquitto:
    """The benchmark's own broker (a queue big enough for the whole backlog)."""

    def __init__(self) -> None:
        import shutil
        import socket
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            raise FileNotFoundError("mosquitto is not installed")
        self.dir = tempfile.TemporaryDirectory(prefix="edgeflow-bench-mqtt-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = pathlib.Path(self.dir.name) / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "max_queued_messages 1000000", "max_queued_bytes 0", "log_dest none"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def client(self, client_id: str = "", clean: bool = True) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        c.connect("127.0.0.1", self.port)
        return c

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.dir.cleanup()

    def __enter__(self) -> "Mosquitto":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prepare_backlog(broker: Mosquitto, client_id: str, n: int) -> None:
    """Subscribe ``client_id`` with a persistent session, leave, and publish n messages it will drain."""
    subscribed = threading.Event()
    sub = broker.client(client_id, clean=False)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe(TOPIC, 1)
    sub.loop_start()
    assert subscribed.wait(10)
    sub.disconnect()
    sub.loop_stop()
    pub = broker.client(f"{client_id}-pub")
    pub.loop_start()
    infos = [pub.publish(TOPIC, payload(i), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


def run_plain(broker: Mosquitto, n: int, tag: str) -> float:
    """Messages/s of a plain paho subscriber loop draining the backlog."""
    client_id = f"plain-{tag}"
    prepare_backlog(broker, client_id, n)
    seqs: list[int] = []
    stamps: list[float] = []
    done = threading.Event()

    def on_message(client, userdata, message):
        seqs.append(json.loads(message.payload)["seq"])
        if len(seqs) == 1:
            stamps.append(time.perf_counter())
        if len(seqs) == n:
            stamps.append(time.perf_counter())
            done.set()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert done.wait(120), f"plain: {len(seqs)} of {n} messages"
    client.disconnect()
    client.loop_stop()
    assert seqs == list(range(n))
    return (n - 1) / (stamps[1] - stamps[0])


class CountingSink(SinkNode):
    """Writes the perf_counter() of its first and n-th frame to ``path`` and checks the sequence numbers."""

    def setup(self):
        self.seen = 0
        self.first = None

    def consume(self, data):
        if data["seq"] != self.seen:
            raise AssertionError(f"message {data['seq']} where {self.seen} was expected")
        self.seen += 1
        if self.first is None:
            self.first = time.perf_counter()
        if self.seen == self.n:
            pathlib.Path(self.path).write_text(f"{self.first!r} {time.perf_counter()!r}\n")


def run_edgeflow(broker: Mosquitto, n: int, tag: str) -> float:
    """Messages/s of MqttSource -> DURABLE ring -> a counting sink, draining the backlog."""
    client_id = f"edgeflow-{tag}"
    prepare_backlog(broker, client_id, n)
    with tempfile.TemporaryDirectory(prefix="edgeflow-bench-mqtt-out-") as out:
        path = pathlib.Path(out) / "times"
        app = EdgeApp(f"bench-mqtt-{tag}")
        app.node(MqttSource, name="sensors", url=broker.url, topics=[TOPIC], qos=1, client_id=client_id)
        app.node(CountingSink, name="count", n=n, path=str(path))
        app.link("sensors").to("count", qos="durable")
        with app.start() as running:
            deadline = time.monotonic() + 120
            while not path.exists() or not path.read_text().endswith("\n"):
                if time.monotonic() > deadline or running.wait(0) is not None:
                    raise RuntimeError(f"edgeflow: the sink did not get {n} messages "
                                       f"({running.statistics()['nodes'].get('count', {}).get('frames_in')})")
                time.sleep(0.02)
            running.stop()
            running.wait(15)
        first, last = (float(x) for x in path.read_text().split())
    return (n - 1) / (last - first)


CASES = {"plain": run_plain, "edgeflow": run_edgeflow}


def measure(broker: Mosquitto, n: int, rounds: int, progress=print) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {case: [] for case in CASES}
    for r in range(rounds):
        for case, run in CASES.items():
            rate = run(broker, n, f"{case}{r}{os.getpid()}")
            results[case].append(rate)
            progress(f"round {r + 1}: {case:9s} {rate:10,.0f} messages/s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with Mosquitto() as broker:
        results = measure(broker, args.messages, args.rounds)
    plain, edge = statistics.median(results["plain"]), statistics.median(results["edgeflow"])
    print(f"\nMQTT ingest, QoS 1, {PAYLOAD_BYTES}-byte JSON, {args.messages} messages, medians of {args.rounds}:")
    print(f"  plain paho subscriber : {plain:10,.0f} messages/s")
    print(f"  MqttSource -> DURABLE : {edge:10,.0f} messages/s   ({edge / plain:.2f}x plain; target >= 0.8x)")
    return 0


# -- pytest-benchmark ---------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:                         # plain-script mode needs no pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def broker():
        try:
            with Mosquitto() as b:
                yield b
        except FileNotFoundError:
            if os.environ.get("CI"):
                pytest.fail("mosquitto is not installed (CI installs it for the MQTT benchmark)")
            pytest.skip("mosquitto is not installed: the MQTT benchmark starts its own")

    FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"

    @pytest.mark.parametrize("case", list(CASES))
    def test_mqtt_ingest(benchmark, broker, case: str) -> None:
        benchmark.group = "mqtt ingest QoS 1"
        n = 200 if FAST else 20000
        counter = iter(range(1, 1 << 30))
        rate = benchmark.pedantic(lambda: CASES[case](broker, n, f"{case}{next(counter)}"), rounds=3,
                                  iterations=1)
        benchmark.extra_info.update(messages_per_s=rate, messages=n)
        assert rate > 0


if __name__ == "__main__":
    sys.exit(main())
