"""A simulated motor: its temperature sensor publishes readings over MQTT (plain paho-mqtt, QoS 1).

    python examples/motor_twin/simulator.py --count 1000          # MQTT_URL, default mqtt://127.0.0.1:1883
    python examples/motor_twin/main.py --simulate --frames 1000    # the same, in a thread of the app

Each reading goes to ``motors/<motor>/temperature`` as ``{"asset": "motor-001", "seq": 17, "value": 64.21,
"ts": 1733566500.1}``. The motor warms up towards 75 °C under a load that changes slowly; the sensor adds
noise (0.3 °C) and, every ``spike_every`` readings, a glitch of 6-10 °C: what the twin should flag.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import threading
import time
import urllib.parse

TOPIC = "motors/{motor}/temperature"
SOURCE_SESSION = "edgeflow-motor-twin-sensors-0"     # the app's MqttSource's client id (app and node name)


def temperature(i: int) -> float:
    """The motor's true temperature at reading i: a warm-up from 40 °C and a slow load cycle."""
    return 40.0 + 35.0 * (1.0 - math.exp(-i / 400.0)) + 2.5 * math.sin(i / 90.0)


def open_session(url: str) -> None:
    """Open the app's persistent session (its MqttSource's client id, QoS 1) before the first reading: the
    broker then keeps every reading for the app, however long the app takes to start."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    parts = urllib.parse.urlsplit(url)
    session = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=SOURCE_SESSION, clean_session=False)
    subscribed = threading.Event()
    session.on_subscribe = lambda *args: subscribed.set()
    session.connect(parts.hostname, parts.port or 1883)
    session.loop_start()
    session.subscribe(TOPIC.format(motor="+"), qos=1)
    subscribed.wait(10)
    session.disconnect()
    session.loop_stop()


def simulate(url: str, count: int | None, rate: float = 50.0, motor: str = "motor-001", spike_every: int = 97,
             seed: int | None = None) -> None:
    """Publish ``count`` readings (None: until the process ends) at ``rate`` a second."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    rng = random.Random(seed)
    open_session(url)
    parts = urllib.parse.urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"motor-simulator-{motor}")
    client.connect(parts.hostname, parts.port or 1883)
    client.loop_start()
    topic = TOPIC.format(motor=motor)
    i, due = 0, time.monotonic()
    try:
        while count is None or i < count:
            value = temperature(i) + rng.gauss(0.0, 0.3)
            if spike_every and i % spike_every == spike_every - 1:
                value += rng.uniform(6.0, 10.0)
            reading = {"asset": motor, "seq": i, "value": round(value, 3), "ts": time.time()}
            client.publish(topic, json.dumps(reading), qos=1).wait_for_publish(10)
            i += 1
            due += 1.0 / rate
            time.sleep(max(0.0, due - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()


def main() -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--count", type=int, default=None, help="readings to send (default: until Ctrl-C)")
    parser.add_argument("--rate", type=float, default=50.0, help="readings a second (50)")
    parser.add_argument("--motor", default="motor-001")
    args = parser.parse_args()
    try:
        simulate(args.url, args.count, args.rate, args.motor)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
