"""A digital twin fed over MQTT: sensor readings in, estimates out to MQTT and to a CSV file.

    python examples/mqtt_twin/main.py --simulate --frames 300     # a built-in simulator publishes 300 readings
    MQTT_URL=mqtt://broker:1883 python examples/mqtt_twin/main.py  # real sensors; Ctrl-C stops it

Needs an MQTT broker (``apt install mosquitto``; default ``mqtt://127.0.0.1:1883``, or ``MQTT_URL``).

- ``sensors`` (MqttSource) subscribes ``factory/+/temperature`` at QoS 1 with a persistent session: readings
  sent while the app is down are delivered when it comes back, and a reading is acknowledged to the broker only
  once it is in the node's output ring. Each reading's own ``ts`` field is its frame's timestamp.
- ``twin`` keeps one exponential moving average per motor and flags readings far above it.
- ``publish`` (MqttSink) sends each estimate to ``twins/<motor>/estimate``; while the broker is away it spools
  them (bounded) and sends them in order after the reconnect.
- ``csv`` (CsvSink) appends one row per estimate to ``out/estimates.csv`` (DURABLE: nothing lost, and after a
  crash no row twice).

``--simulate`` starts a simulator thread that publishes readings of three motors (plain paho-mqtt, 200 a
second); with ``--frames N`` the source stops after N readings and the app ends when everything is written.
"""
import json
import math
import os
import random
import sys
import threading
import time

from edgeflow import ConsumerNode, EdgeApp
from edgeflow.connectors import CsvSink, MqttSink, MqttSource

MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")

app = EdgeApp("mqtt-twin")


@app.node(name="twin")
class MotorTwin(ConsumerNode):
    """Per motor: an exponential moving average of its temperature, and an alarm when a reading is 5 °C over."""

    def setup(self):
        self.estimates = {}

    def process(self, reading):
        motor = self.current_frame.meta["mqtt_topic"].split("/")[1]
        celsius = float(reading["celsius"])
        estimate = self.estimates.get(motor, celsius)
        self.estimates[motor] = estimate = 0.8 * estimate + 0.2 * celsius
        return {"asset": motor, "seq": reading["seq"], "celsius": celsius, "estimate": round(estimate, 3),
                "alarm": celsius > estimate + 5.0}


app.node(MqttSource, name="sensors", url=MQTT_URL, topics=["factory/+/temperature"], qos=1,
         timestamp_field="ts")
app.node(MqttSink, name="publish", url=MQTT_URL, topic="twins/{asset}/estimate", qos=1)
app.node(CsvSink, name="csv", path="out/estimates.csv")
app.link("sensors").to("twin", qos="durable").to("publish")
app.link("twin").to("csv")


def simulate(url: str, count: int | None) -> None:
    """Publish readings of motors m1..m3 at 200 a second (every 40th one a spike)."""
    import urllib.parse

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    parts = urllib.parse.urlsplit(url)
    # open the source's persistent session first (its fixed client id, QoS 1): the broker then keeps every
    # reading for it, however long the app takes to start
    session = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgeflow-mqtt-twin-sensors-0",
                          clean_session=False)
    subscribed = threading.Event()
    session.on_subscribe = lambda *args: subscribed.set()
    session.connect(parts.hostname, parts.port or 1883)
    session.loop_start()
    session.subscribe("factory/+/temperature", qos=1)
    subscribed.wait(10)
    session.disconnect()
    session.loop_stop()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="mqtt-twin-simulator")
    client.connect(parts.hostname, parts.port or 1883)
    client.loop_start()
    i = 0
    while count is None or i < count:
        motor = f"m{i % 3 + 1}"
        celsius = 60 + 10 * math.sin(i / 50) + random.gauss(0, 0.3) + (12 if i % 40 == 39 else 0)
        client.publish(f"factory/{motor}/temperature",
                       json.dumps({"seq": i, "celsius": round(celsius, 2), "ts": time.time()}), qos=1)
        i += 1
        time.sleep(0.005)                 # 200 readings a second
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--simulate" in argv:
        argv.remove("--simulate")
        frames = int(argv[argv.index("--frames") + 1]) if "--frames" in argv else None
        simulator = threading.Thread(target=simulate, args=(MQTT_URL, frames), daemon=True)
        simulator.start()
    app.run(argv)
