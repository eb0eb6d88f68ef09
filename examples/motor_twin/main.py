"""A motor's digital twin: temperature readings over MQTT in, a Kalman filter's estimate and anomaly flag out
to a CSV file, to InfluxDB (when configured), back to MQTT, and to the dashboard's live plot.

    python examples/motor_twin/main.py --simulate --frames 1000     # a simulated motor sends 1000 readings
    MQTT_URL=mqtt://broker:1883 python examples/motor_twin/main.py   # real sensors; Ctrl-C stops it
    edgeflow run examples/motor_twin/pipeline.yaml                   # the same pipeline as a file

Needs an MQTT broker (``apt install mosquitto``; ``MQTT_URL``, default ``mqtt://127.0.0.1:1883``). Open
http://127.0.0.1:8000/dashboard (``GATEWAY_HTTP_PORT``) for the twin's live plot: raw value against the
estimate, anomalies marked.

- ``sensors`` (MqttSource) subscribes ``motors/+/temperature`` at QoS 1 with a persistent session; each
  reading's ``ts`` is its frame's capture time.
- ``twin`` runs the model block ``models/kalman.py:KalmanFilter`` (edgeflow.models): per reading
  ``raw_value``, ``twin_estimate``, ``residual`` and ``anomaly_flag`` (residual beyond 3 sigma). Edit the
  file while the app runs: the new version takes over between two messages (hot reload).
- ``csv`` (CsvSink) writes one row per estimate to ``out/motor_twin.csv`` (``TWIN_CSV``).
- ``publish`` (MqttSink) sends each estimate to ``twins/<asset>/estimate``.
- ``influx`` (InfluxSink), only when ``INFLUX_URL`` is set: points of measurement ``motor_twin`` tagged by
  asset, into the InfluxDB 1.x database ``INFLUX_DB`` (default ``motor_twin``; create it first).
- ``gateway``: the dashboard and the REST API (``/api/topics/twin``: the newest estimate and a short history).

``--simulate`` runs simulator.py's motor in a thread (50 readings a second, a glitch every 97th); with
``--frames N`` the source stops after N readings and the app ends once everything is written.
"""
import os
import sys
import threading

from edgeflow import EdgeApp
from edgeflow.config import settings
from edgeflow.connectors import CsvSink, InfluxSink, MqttSink, MqttSource
from edgeflow.pipeline.builtins import Gateway        # the built-in gateway (class: GatewayNode in YAML)
from models.kalman import KalmanFilter

MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
INFLUX_URL = os.environ.get("INFLUX_URL")
PARAMS = {"process_noise": 0.01, "measurement_noise": 0.09, "threshold": 3.0, "reset_after": 5}

app = EdgeApp("motor-twin")
app.node(MqttSource, name="sensors", url=MQTT_URL, topics=["motors/+/temperature"], qos=1,
         timestamp_field="ts")
app.node(KalmanFilter, name="twin", params=PARAMS, twin_id="motor-twin-001", asset_id="motor-001")
app.node(CsvSink, name="csv", path=os.environ.get("TWIN_CSV", "out/motor_twin.csv"))
app.node(MqttSink, name="publish", url=MQTT_URL, topic="twins/{asset_id}/estimate", qos=1)
app.node(Gateway, name="gateway", web={"port": settings.GATEWAY_HTTP_PORT})
app.link("sensors").to("twin", qos="durable")
app.link("twin").to("csv")
app.link("twin").to("publish")
app.link("twin").to("gateway")
if INFLUX_URL:
    app.node(InfluxSink, name="influx", url=INFLUX_URL, database=os.environ.get("INFLUX_DB", "motor_twin"),
             measurement="motor_twin", tags=["asset_id"])
    app.link("twin").to("influx")


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--simulate" in argv:
        from simulator import simulate
        argv.remove("--simulate")
        frames = int(argv[argv.index("--frames") + 1]) if "--frames" in argv else None
        threading.Thread(target=simulate, args=(MQTT_URL, frames), daemon=True).start()
    app.run(argv)
