"""MqttSource and MqttSink against a real mosquitto (issue 13): messages in and out, bit-exact and in order;
a persistent session across a SIGKILL of the source; the broker stopped while the sink sends; TLS, passwords
and bad input with one-line errors. Plain paho-mqtt clients are the outside world."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import pytest

from edgeflow import EdgeApp
from edgeflow.connectors import MqttSink, MqttSource
from edgeflow.errors import ConfigError

from ._servers import free_port, read_lines, wait_for
from . import mqtt_nodes
from ._mosquitto import Broker


class Collector:
    """A plain paho subscriber (persistent session, QoS 1) that keeps every message it gets."""

    def __init__(self, broker: Broker, topic: str, client_id: str = "collector") -> None:
        self.messages: list = []
        self.lock = threading.Lock()
        self.broker, self.topic = broker, topic
        self.subscribed = threading.Event()
        self.client = broker.client(client_id, clean=False)
        self.client.on_message = self._got
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.subscribe(topic, 1)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _got(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def payloads(self) -> list[dict]:
        with self.lock:
            return [json.loads(p) for _, p in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(broker: Broker, messages, qos: int = 1, rate: float | None = None) -> None:
    """Publish (topic, payload) pairs from a plain paho client, waiting for every PUBACK."""
    client = broker.client("publisher")
    client.loop_start()
    infos = []
    start = time.monotonic()
    for i, (topic, payload) in enumerate(messages):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)                 # pacing a publisher, not synchronising
        infos.append(client.publish(topic, payload, qos=qos))
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def relay_app(app: str, broker: Broker, out_path, **source_options) -> EdgeApp:
    """sensors (MqttSource) -> twin (adds the asset) -> publish (MqttSink) and -> lines (a file)."""
    edge = EdgeApp(app)
    source_options.setdefault("topics", ["sensors/+/temperature"])
    edge.node(source_options.pop("cls", MqttSource), name="sensors", url=broker.url, qos=1, **source_options)
    edge.node(mqtt_nodes.Passthrough, name="twin")
    edge.node(MqttSink, name="publish", url=broker.url, topic="twins/{asset}/estimate", qos=1)
    edge.node(mqtt_nodes.LineSink, name="lines", path=str(out_path))
    edge.link("sensors").to("twin", qos="durable").to("publish")
    edge.link("twin").to("lines")
    return edge


def sensor_messages(n: int, assets: int = 3) -> list[tuple[str, bytes]]:
    return [(f"sensors/m{i % assets}/temperature", json.dumps({"seq": i, "celsius": 20.0 + i / 7}).encode())
            for i in range(n)]


def wait_subscribed(running, node: str = "sensors", timeout: float = 15.0) -> None:
    """Until the node's connection is up (its subscriptions are sent right after the CONNACK)."""
    def up():
        conns = (running.statistics()["nodes"].get(node, {}).get("extra") or {}).get("connections") or {}
        return conns and all(c["state"] == "up" for c in conns.values())
    wait_for(up, timeout, f"{node} connected")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_relay_every_message_once_in_order_bit_exact(app, mqtt_broker, tmp_path, protocol):
    n = 1500
    collector = Collector(mqtt_broker, "twins/#", client_id=f"collector-{app}")
    edge = relay_app(app, mqtt_broker, tmp_path / "lines.txt", protocol=protocol)
    sent = sensor_messages(n)
    try:
        with edge.start() as running:
            wait_subscribed(running)
            publish_all(mqtt_broker, sent)
            wait_for(lambda: len(collector.messages) >= n, 60, f"{n} messages relayed")
            running.stop()
            assert running.wait(15) == 0
            stats = running.statistics()["nodes"]
    finally:
        collector.close()
    got = collector.payloads()
    assert len(got) == n                                    # once each
    by_asset: dict = {}
    for topic, payload in collector.messages:
        asset = topic.split("/")[1]
        by_asset.setdefault(asset, []).append(json.loads(payload)["seq"])
        assert topic == f"twins/{asset}/estimate"
    for asset, seqs in by_asset.items():
        assert seqs == sorted(seqs), f"{asset}: out of order"   # in order per topic
    want = {json.loads(p)["seq"]: json.loads(p) for _, p in sent}
    for message in got:
        original = want[message["seq"]]
        assert message["celsius"] == original["celsius"]          # bit-exact through JSON
        assert message["asset"] == f"m{message['seq'] % 3}"
    assert stats["sensors"]["extra"]["events"]["messages"] >= n
    assert stats["sensors"]["errors"] == 0


def test_source_meta_timestamp_and_payload_kinds(app, mqtt_broker, tmp_path):
    edge = EdgeApp(app)
    edge.node(MqttSource, name="raw", url=mqtt_broker.url, topics="raw/#", qos=2, payload="bytes")
    edge.node(MqttSource, name="json", url=mqtt_broker.url, topics=["js/+"], qos=0, payload="json",
              timestamp_field="ts")
    edge.node(mqtt_nodes.Recorder, name="rec", path=str(tmp_path / "rec.jsonl"))
    edge.link("raw").to("rec")
    edge.link("json").to("rec")
    with edge.start() as running:
        wait_subscribed(running, "raw")
        wait_subscribed(running, "json")
        client = mqtt_broker.client("meta-publisher")
        client.loop_start()
        client.publish("raw/a", b"\x00\xffbinary", qos=2, retain=True).wait_for_publish(10)
        client.publish("js/1", b"not json {", qos=0).wait_for_publish(10)       # counted, skipped
        client.publish("js/1", json.dumps({"ts": 1700000000.25, "v": 1}), qos=0).wait_for_publish(10)
        client.publish("js/2", json.dumps({"ts": "2024-05-01T12:00:00Z", "v": 2}), qos=0).wait_for_publish(10)
        client.publish("js/3", json.dumps(42.5), qos=0).wait_for_publish(10)     # no ts field: counted
        client.publish("js/4", json.dumps({"ts": 1700000000250, "v": 4}), qos=0).wait_for_publish(10)  # ms
        wait_for(lambda: len(read_lines(tmp_path / "rec.jsonl")) >= 4, 15, "4 frames recorded")
        wait_for(lambda: (running.statistics()["nodes"]["json"]["extra"].get("events") or {})
                 .get("bad_payload") == 2, 10, "2 bad payloads counted")
        client.publish("raw/a", b"", qos=1, retain=True).wait_for_publish(10)   # clear the retained message
        client.disconnect()
        client.loop_stop()
        running.stop()
        assert running.wait(15) == 0
        stats = running.statistics()["nodes"]
    rows = [json.loads(line) for line in read_lines(tmp_path / "rec.jsonl")]
    raw = [r for r in rows if r["meta"].get("mqtt_topic") == "raw/a"][0]
    assert bytes.fromhex(raw["hex"]) == b"\x00\xffbinary"
    assert raw["meta"]["mqtt_qos"] == 2 and raw["meta"]["mqtt_retain"] is False   # sent live, not retained
    by_v = {r["data"]["v"]: r for r in rows if "data" in r}
    assert by_v[1]["timestamp"] == 1700000000.25
    assert by_v[2]["timestamp"] == 1714564800.0
    assert by_v[4]["timestamp"] == 1700000000.25
    assert by_v[1]["meta"] == {"mqtt_topic": "js/1", "mqtt_qos": 0, "mqtt_retain": False, "mqtt_dup": False}
    assert stats["json"]["errors"] == 0 and stats["json"]["state"] if "state" in stats["json"] else True


@pytest.mark.slow
def test_source_sigkilled_misses_nothing(app, mqtt_broker, tmp_path):
    """SIGKILL the MqttSource while the publisher goes on: its persistent session keeps what was sent while it
    was away, and what it had received but not written into its ring comes again. Lost: 0."""
    n = 3000
    pidfile = tmp_path / "pids"
    lines = tmp_path / "lines.txt"
    edge = relay_app(app, mqtt_broker, lines, cls=mqtt_nodes.PidMqttSource, pidfile=str(pidfile))
    with edge.start() as running:
        wait_subscribed(running)
        publisher = threading.Thread(target=publish_all, args=(mqtt_broker, sensor_messages(n)),
                                     kwargs={"rate": 1500.0})
        publisher.start()
        wait_for(lambda: len(read_lines(lines)) >= n // 5, 30, "a fifth of the messages through")
        first = int(read_lines(pidfile)[0])
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(read_lines(pidfile)) >= 2, 30, "the source restarted")
        publisher.join(60)
        wait_for(lambda: {int(line.split()[1]) for line in read_lines(lines)} >= set(range(n)), 60,
                 "every message through after the restart")
        running.stop()
        assert running.wait(15) == 0
        stats = running.statistics()["nodes"]
    seqs = [int(line.split()[1]) for line in read_lines(lines)]
    lost = set(range(n)) - set(seqs)
    assert not lost, f"{len(lost)} messages lost"
    duplicates = len(seqs) - len(set(seqs))
    assert duplicates <= 25, f"{duplicates} duplicates: more than the broker's in-flight window"
    assert stats["sensors"]["restarts"] >= 1


@pytest.mark.slow
def test_broker_stopped_5s_while_sink_sends(app, tmp_path):
    """The broker goes away for 5 s while MqttSink sends 1,000 frames: the spool keeps them and sends them in
    order after the reconnect. Lost: 0."""
    n = 1000
    broker = Broker(tmp_path / "broker").start()
    collector = None
    try:
        collector = Collector(broker, "out/#", client_id=f"collector-{app}")
        edge = EdgeApp(app)
        edge.node(mqtt_nodes.Counter, name="count", fps=200)
        edge.node(MqttSink, name="publish", url=broker.url, topic="out/{asset}", qos=1, reconnect_min=0.1,
                  reconnect_max=0.5)
        edge.link("count").to("publish")
        with edge.start(frames=n) as running:
            wait_for(lambda: len(collector.messages) >= 100, 30, "100 messages before the outage")
            broker.stop()
            wait_for(lambda: (running.statistics()["nodes"]["publish"]["extra"]["connections"].popitem()[1]
                              ["state"]) == "down", 10, "the sink saw the broker go")
            time.sleep(5.0)              # the outage itself: what the sink must ride out
            broker.start()
            assert running.wait(60) == 0
            stats = running.statistics()["nodes"]["publish"]
        wait_for(lambda: len({p["seq"] for p in collector.payloads()}) >= n, 30, "every frame at the collector")
    finally:
        if collector is not None:
            collector.close()
        broker.stop()
    seqs = [p["seq"] for p in collector.payloads()]
    assert set(seqs) == set(range(n)), f"lost: {sorted(set(range(n)) - set(seqs))[:10]}"
    first = [s for i, s in enumerate(seqs) if s not in seqs[:i]]
    assert first == sorted(first), "not in order after the reconnect"
    assert stats["extra"]["events"].get("spooled", 0) > 0
    assert stats["extra"]["events"].get("overflow", 0) == 0


def test_unreachable_broker_at_start_is_retried_not_a_crash_loop(app, tmp_path, caplog):
    broker = Broker(tmp_path / "late")            # not started yet
    edge = EdgeApp(app)
    edge.node(MqttSource, name="sensors", url=broker.url, topics="late/#", qos=1, connect_timeout=0.5,
              reconnect_min=0.1, reconnect_max=0.3)
    edge.node(mqtt_nodes.LineSink, name="lines", path=str(tmp_path / "lines.txt"))
    edge.link("sensors").to("lines")
    try:
        with edge.start() as running:
            wait_for(lambda: (running.statistics()["nodes"].get("sensors", {}).get("extra") or {})
                     .get("connections"), 15, "the source's connection state")
            conn = next(iter(running.statistics()["nodes"]["sensors"]["extra"]["connections"].values()))
            assert conn["state"] in ("down", "connecting")
            broker.start()
            wait_subscribed(running)
            publish_all(broker, [("late/x", json.dumps({"seq": 7}).encode())])
            wait_for(lambda: read_lines(tmp_path / "lines.txt"), 15, "the message through")
            running.stop()
            assert running.wait(15) == 0
            stats = running.statistics()["nodes"]["sensors"]
    finally:
        broker.stop()
    assert stats["restarts"] == 0
    assert read_lines(tmp_path / "lines.txt")[0].split()[:2] == ["late/x", "7"]


def test_bad_password_is_one_line_naming_node_and_broker(app, tmp_path):
    broker = Broker(tmp_path / "auth", users={"edge": "right"}).start()
    try:
        edge = EdgeApp(app)
        edge.node(MqttSource, name="sensors", url=f"mqtt://edge:wrong@127.0.0.1:{broker.port}", topics="a/#")
        edge.node(mqtt_nodes.LineSink, name="lines", path=str(tmp_path / "x"))
        edge.link("sensors").to("lines")
        with edge.start() as running:
            code = running.wait(30)
            stats = running.statistics()["nodes"]["sensors"]
        assert code not in (0, None)
        assert stats["restarts"] == 0                            # a configuration error is not retried
        why = stats["extra"].get("config_error") or ""
        assert "sensors" in why and f"127.0.0.1:{broker.port}" in why and "wrong" not in why, why
        assert "\n" not in why
        # the right password works
        edge2 = EdgeApp(app + "-ok")
        edge2.node(MqttSource, name="sensors", url=broker.url, username="edge", password="right", topics="a/#")
        edge2.node(mqtt_nodes.LineSink, name="lines", path=str(tmp_path / "ok"))
        edge2.link("sensors").to("lines")
        with edge2.start() as running:
            wait_subscribed(running)
            running.stop()
            assert running.wait(15) == 0
    finally:
        broker.stop()


def test_tls_with_a_ca(app, tmp_path):
    broker = Broker(tmp_path / "tls", tls=True).start()
    try:
        edge = EdgeApp(app)
        edge.node(MqttSource, name="sensors", url=broker.url, topics="s/#", ca=broker.ca)
        edge.node(MqttSink, name="back", url=broker.url, topic="echo/{mqtt_topic}", ca=broker.ca)
        edge.link("sensors").to("back")
        collector = Collector(broker, "echo/#", client_id=f"tls-{app}")
        try:
            with edge.start() as running:
                wait_subscribed(running)
                publish_all(broker, [("s/1", b'{"k": "v"}')])
                wait_for(lambda: collector.messages, 15, "the echo over TLS")
                running.stop()
                assert running.wait(15) == 0
        finally:
            collector.close()
        assert collector.messages == [("echo/s/1", b'{"k":"v"}')]
    finally:
        broker.stop()


@pytest.mark.parametrize("options, message", [
    ({"url": "amqp://127.0.0.1", "topics": "a"}, "option 'url': unknown URL scheme amqp://"),
    ({"url": "mqtt://127.0.0.1", "topics": "a/#/b"}, "option 'topics': 'a/#/b' is not a valid topic filter"),
    ({"url": "mqtt://127.0.0.1", "topics": "a", "qos": 3}, "option 'qos': 3 is out of range"),
    ({"url": "mqtt://127.0.0.1", "topics": "a", "payload": "jsn"}, "did you mean 'json'?"),
    ({"url": "mqtt://127.0.0.1", "topic": "a"}, "option 'topic': unknown option (did you mean 'topics'?)"),
    ({"url": "mqtt://127.0.0.1", "topics": "a", "protocol": 4}, "option 'protocol'"),
    ({"url": "mqtts://127.0.0.1", "topics": "a", "ca": "/nonexistent.pem"}, "option 'ca': no such file"),
])
def test_source_options_checked_at_registration(options, message):
    edge = EdgeApp("opts")
    with pytest.raises(ConfigError) as err:
        edge.node(MqttSource, name="sensors", **options)
    assert str(err.value).startswith("node 'sensors': ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"url": "mqtt://127.0.0.1"}, "option 'topic': required"),
    ({"url": "mqtt://127.0.0.1", "topic": "a/+"}, "wildcards are for subscriptions"),
    ({"url": "mqtt://127.0.0.1", "topic": "a/{x"}, "not a valid template"),
    ({"url": "mqtt://127.0.0.1", "topic": "a", "on_full": "wait"}, "option 'on_full'"),
    ({"url": "http://127.0.0.1", "topic": "a"}, "unknown URL scheme http://"),
])
def test_sink_options_checked_at_registration(options, message):
    edge = EdgeApp("opts")
    with pytest.raises(ConfigError) as err:
        edge.node(MqttSink, name="out", **options)
    assert str(err.value).startswith("node 'out': ") and message in str(err.value)


def test_sink_payload_kinds_and_bad_topics(app, mqtt_broker, tmp_path, caplog):
    """Images as JPEG/PNG, bytes as they are, a frame that cannot fill the topic counted and skipped."""
    import cv2
    import numpy as np
    collector = Collector(mqtt_broker, "img/#", client_id=f"img-{app}")
    edge = EdgeApp(app)
    edge.node(mqtt_nodes.Images, name="cam", fps=50)
    edge.node(MqttSink, name="png", url=mqtt_broker.url, topic="img/png/{kind}", payload="png", qos=1)
    edge.node(MqttSink, name="auto", url=mqtt_broker.url, topic="img/auto", qos=1)
    edge.link("cam").to("png")
    edge.link("cam").to("auto")
    try:
        with edge.start(frames=4) as running:
            assert running.wait(30) == 0
            stats = running.statistics()["nodes"]
        wait_for(lambda: len(collector.messages) >= 4 + 2, 15, "the images")
    finally:
        collector.close()
    want = mqtt_nodes.Images.image(0)
    pngs = [p for t, p in collector.messages if t.startswith("img/png/")]
    jpegs = [p for t, p in collector.messages if t == "img/auto"]
    assert len(pngs) == 2 and len(jpegs) == 4          # frames 1 and 3 have no 'kind' in meta: bad_topic
    decoded = cv2.imdecode(np.frombuffer(pngs[0], np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, want)                # PNG: lossless, bit-exact
    assert cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape == want.shape
    assert stats["png"]["extra"]["events"]["bad_topic"] == 2


def test_metrics_and_readyz_follow_the_broker(app, tmp_path):
    """edgeflow_connector_up and /readyz on the gateway: up while the broker is, 503 naming the node when not."""
    import urllib.error
    import urllib.request


    broker = Broker(tmp_path / "ready").start()
    port = free_port()
    edge = EdgeApp(app)
    edge.node(MqttSource, name="sensors", url=broker.url, topics="r/#", reconnect_min=0.1, reconnect_max=0.3)
    edge.node(mqtt_nodes.WebGateway, name="gateway", port=port)
    edge.link("sensors").to("gateway")

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return None, ""
    try:
        with edge.start() as running:
            up = f'edgeflow_connector_up{{node="sensors",target="mqtt://127.0.0.1:{broker.port}"}} 1.0'
            wait_for(lambda: up in get("/metrics")[1], 30, "the connection up in /metrics")
            assert get("/readyz")[0] == 200
            broker.stop()
            status = wait_for(lambda: (lambda s: s if s[0] == 503 else None)(get("/readyz")), 20, "/readyz 503")
            assert f"node 'sensors': mqtt://127.0.0.1:{broker.port} down" in status[1]
            assert f'edgeflow_connector_up{{node="sensors",target="mqtt://127.0.0.1:{broker.port}"}} 0.0' \
                in get("/metrics")[1]
            broker.start()
            wait_for(lambda: get("/readyz")[0] == 200, 30, "/readyz 200 again")
            running.stop()
            assert running.wait(15) == 0
    finally:
        broker.stop()


def test_connector_guarantees_are_documented():
    for cls in (MqttSource, MqttSink):
        assert "Guarantee: " in cls.__doc__
    logging.getLogger("edgeflow").debug("ok")
