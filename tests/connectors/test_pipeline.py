"""The connectors together (issue 13): 10,000 QoS-1 messages from a plain paho client through
MqttSource -> consumer -> MqttSink and into PostgresSink, against a real mosquitto and a real PostgreSQL:
every message arrives once, in order per topic, bit-exact, in both places."""

from __future__ import annotations

import json

import pytest

from edgeflow import EdgeApp
from edgeflow.connectors import MqttSink, MqttSource, PostgresSink

from . import mqtt_nodes
from ._servers import wait_for
from .test_mqtt import Collector, publish_all, wait_subscribed

N = 10_000
ASSETS = 4


def readings() -> list[tuple[str, bytes]]:
    """N readings of ASSETS motors; floats that JSON must carry exactly (thirds, tiny and huge values)."""
    out = []
    for i in range(N):
        body = {"seq": i, "celsius": 20.0 + i / 3.0, "tiny": i * 1e-300, "big": float(i) * 1e300 if i else 0.5,
                "label": f"r{i}-ü", "ok": i % 2 == 0}
        out.append((f"plant/m{i % ASSETS}/temperature", json.dumps(body).encode()))
    return out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ten_thousand_messages_once_in_order_bit_exact_to_mqtt_and_postgres(app, mqtt_broker, postgres):
    sent = readings()
    db = postgres.new_database()
    edge = EdgeApp(app)
    edge.node(MqttSource, name="sensors", url=mqtt_broker.url, topics=["plant/+/temperature"], qos=1)
    edge.node(mqtt_nodes.Passthrough, name="twin")
    edge.node(MqttSink, name="publish", url=mqtt_broker.url, topic="twins/{asset}/estimate", qos=1)
    edge.node(PostgresSink, name="db", url=db, table="estimates")
    edge.link("sensors").to("twin", qos="durable").to("publish")
    edge.link("twin").to("db")
    collector = Collector(mqtt_broker, "twins/#", client_id=f"collector-{app}")
    try:
        with edge.start() as running:
            wait_subscribed(running)
            publish_all(mqtt_broker, sent)
            wait_for(lambda: len(collector.messages) >= N, 120, f"{N} messages at the collector")
            wait_for(lambda: postgres.query(db, "SELECT count(*) FROM estimates")[0][0] >= N, 60,
                     f"{N} rows in PostgreSQL")
            running.stop()
            assert running.wait(20) == 0
            stats = running.statistics()["nodes"]
    finally:
        collector.close()

    want = {json.loads(payload)["seq"]: (topic, json.loads(payload)) for topic, payload in sent}
    # MQTT: each once, in order per topic, every value exactly as sent
    got = [(topic, json.loads(payload)) for topic, payload in collector.messages]
    assert len(got) == N and {m["seq"] for _, m in got} == set(range(N))
    per_topic: dict = {}
    for topic, message in got:
        per_topic.setdefault(topic, []).append(message["seq"])
        source_topic, original = want[message["seq"]]
        assert topic == f"twins/{source_topic.split('/')[1]}/estimate"
        assert {k: message[k] for k in original} == original, message["seq"]
    assert all(seqs == sorted(seqs) for seqs in per_topic.values()), "out of order on a topic"

    # PostgreSQL: one row per message, values exact
    rows = postgres.query(db, "SELECT seq, celsius, tiny, big, label, ok, asset FROM estimates ORDER BY seq")
    assert len(rows) == N and [r[0] for r in rows] == list(range(N)), "a row missing or twice"
    for seq, celsius, tiny, big, label, ok, asset in rows:
        original = want[seq][1]
        assert (celsius, tiny, big, label, ok) == (original["celsius"], original["tiny"], original["big"],
                                                   original["label"], original["ok"]), seq
        assert asset == f"m{seq % ASSETS}"
    assert stats["sensors"]["errors"] == 0 and stats["db"]["errors"] == 0
    assert stats["publish"]["extra"]["events"].get("overflow", 0) == 0
