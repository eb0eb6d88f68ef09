"""Every kind of node and link, for the round trip through `edgeflow graph main.py --format yaml`."""
from edgeflow import ConsumerNode, EdgeApp, QoS, RedisBroker
from edgeflow.connectors import CsvSink
from edgeflow.pipeline.builtins import Gateway

from pipeline.pl_nodes import Counter, Drop, Pair, Scale


class Local(ConsumerNode):
    """A class of main.py itself: exported as main:Local."""

    def process(self, data):
        return data


app = EdgeApp("every-kind", broker=RedisBroker("redis://:s3cret-pw@127.0.0.1:6390/0"))
app.node(Counter, name="counter", fps=None, device="camera", group="front")
app.node(Scale, name="scale", factor=2, offset=0.5, api_token="tok-123", nested={"a": [1, 2], "b": None},
         replicas=2, group="front", description="scales n", build={"base": "python:3.11-slim",
                                                                    "dependencies": ["numpy"]},
         runtime={"gpu": True})
app.node("nodes/relay", limit=4)
app.node(Pair, name="pair", slop=0.1)
app.node(Local, name="local", fps=12.5)
app.node(CsvSink, name="csv", path="out/pairs.csv", flush="batch")
app.node(Drop, name="drop")
app.node(Gateway, name="gateway", node_port=30081, web={"port": 8123, "token": "gw-secret-token"})
app.link("counter").to("scale").to("relay")
app.link("scale").to("pair", qos=QoS.BALANCED, max_lag=5)
app.link("relay").to("pair", qos=QoS.DURABLE, codec="jpeg")
app.link("pair").to("csv")
app.link("pair").to("drop", qos=QoS.REALTIME)
app.link("pair").to("gateway", channel="fused")
app.link("pair").to("gateway", channel="again", codec="png")
app.link("counter").to("local", qos=QoS.BALANCED)
app.link("local").to("gateway")

if __name__ == "__main__":
    app.run()
