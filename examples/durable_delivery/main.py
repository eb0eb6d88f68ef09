"""Nothing lost, nothing twice: a DURABLE chain with a live sensor that cannot wait and an exactly-once ledger.

    python examples/durable_delivery/main.py --frames 500     # or --duration 10; Ctrl-C stops it

- ``sensor`` samples at 200 Hz. A live sensor cannot be paused, so it declares ``on_backpressure="drop_oldest"``:
  when the chain behind it is a whole ring behind, the oldest sample not taken yet is dropped and counted
  (drops, reason "backpressure"), never silently.
- ``smoother`` keeps a running mean. Its input is DURABLE: while its output is full it keeps its input frame
  and waits, however long the ledger is paused or restarting (kill it with ``kill -9``: it is restarted, and
  the frame it held is handed out again).
- ``ledger`` appends one line per sample to ``ledger.csv``. ``exactly_once=True``: a result that reaches it a
  second time after a crash upstream is dropped by the runtime (counted as drops, reason "duplicate"), so each
  sample id is in the file once.

The summary at the end shows frames in and out per node, drops by reason and restarts.
"""
import csv
import math
import time

import numpy as np

from edgeflow import ConsumerNode, EdgeApp, ProducerNode, QoS, SinkNode

app = EdgeApp("durable-delivery")


@app.node(name="sensor", fps=200, on_backpressure="drop_oldest")
class Sensor(ProducerNode):
    """A 200 Hz sensor: [sample number, reading]."""

    def setup(self):
        self.n = 0

    def produce(self):
        self.n += 1
        return np.array([self.n, math.sin(self.n / 50) + 0.05 * np.random.randn()])


@app.node(name="smoother")
class Smoother(ConsumerNode):
    """An exponential moving average of the readings: [sample number, reading, smoothed]."""

    def setup(self):
        self.mean = 0.0

    def process(self, data):
        self.mean = 0.9 * self.mean + 0.1 * float(data[1])
        return np.array([data[0], data[1], self.mean])


@app.node(name="ledger", exactly_once=True)
class Ledger(SinkNode):
    """Appends ``sample,reading,smoothed,written_at`` to ledger.csv, one line per sample."""

    def setup(self):
        self.file = open("ledger.csv", "a", newline="", buffering=1)
        self.writer = csv.writer(self.file)

    def consume(self, data):
        self.writer.writerow([int(data[0]), f"{data[1]:.4f}", f"{data[2]:.4f}", f"{time.time():.3f}"])

    def teardown(self):
        self.file.close()


app.link("sensor").to("smoother", qos=QoS.DURABLE).to("ledger", qos=QoS.DURABLE)

if __name__ == "__main__":
    app.run()
