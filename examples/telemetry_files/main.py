"""Telemetry to files: a sensor's dict messages appended to CSV and to JSON lines, each once, across crashes.

    python examples/telemetry_files/main.py --frames 50      # or --duration 10; Ctrl-C stops it

- ``sensor`` sends a dict message 50 times a second: sample number, temperature, a 3-axis vibration reading
  (a small numpy array) and a status.
- ``csv`` (CsvSink) appends one row per message to ``out/telemetry.csv``: a header, then ``frame_id``,
  ``topic``, ``timestamp`` (capture time), the fields (``vibration`` as a JSON list) and ``meta.*``; every
  frame is written and handed to the OS before it is acknowledged.
- ``jsonl`` (JsonlSink) appends one JSON object per message to ``out/telemetry-<start>.jsonl``, a new file
  every 60 s of capture time (``<start>``: the file's first capture time, UTC), writing in batches of up to
  200 ms; its frames stay unacknowledged until their batch is written.

Kill either sink (``kill -9``): it is restarted, cuts a line the kill left half-written and skips a frame it
had written but not acknowledged, so no row is lost or doubled. Run the example again: both files go on.
"""
import math

import numpy as np

from edgeflow import EdgeApp, ProducerNode
from edgeflow.connectors import CsvSink, JsonlSink

app = EdgeApp("telemetry-files")


@app.node(name="sensor", fps=50)
class Sensor(ProducerNode):
    """A 50 Hz motor sensor: {"seq", "temperature", "vibration", "status"}."""

    def setup(self):
        self.n = 0

    def produce(self):
        self.n += 1
        t = self.n / 50
        temperature = round(60 + 8 * math.sin(t / 4), 3)
        vibration = np.array([math.sin(7 * t), math.cos(5 * t), 0.1 * math.sin(t)], dtype=np.float32)
        return {"seq": self.n, "temperature": temperature, "vibration": vibration,
                "status": "hot" if temperature > 66 else "ok"}


app.node(CsvSink, name="csv", path="out/telemetry.csv")
app.node(JsonlSink, name="jsonl", path="out/telemetry-{start}.jsonl", rotate_s=60,
         flush="batch", flush_ms=200)
app.link("sensor").to("csv")
app.link("sensor").to("jsonl")

if __name__ == "__main__":
    app.run()
