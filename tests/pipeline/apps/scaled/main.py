"""counter -> scale -> csv, every frame (DURABLE): the Python twin of pipeline.yaml beside it."""
import os

from edgeflow import EdgeApp, QoS
from edgeflow.connectors import CsvSink

from pipeline.pl_nodes import Counter, Scale

app = EdgeApp(os.environ["PL_APP"])
app.node(Counter, name="counter", fps=200)
app.node(Scale, name="scale", factor=2.5, offset=1)
app.node(CsvSink, name="csv", path=os.environ["PL_OUT"])
app.link("counter").to("scale", qos=QoS.DURABLE).to("csv")

if __name__ == "__main__":
    app.run()
