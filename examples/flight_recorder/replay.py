"""The detector on recorded camera frames instead of a live camera (record first with main.py):

    python examples/flight_recorder/main.py --duration 5
    python examples/flight_recorder/replay.py                     # out/flight.mcap's camera, at its pace
    edgeflow lineage out/flight.mcap --topic detector --frame 20  # where a recorded result came from

Or feed a running app: ``python main.py --node detector`` in one shell, ``edgeflow replay out/flight.mcap
--topics camera --wait 10`` in another. A replayed frame keeps its recorded timestamp and meta; the id it had
in the recording is in ``meta["edgeflow.recorded"]`` ([ring topic, frame id]).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))    # main.py's Detector, run from anywhere

from edgeflow import EdgeApp, SinkNode  # noqa: E402
from edgeflow.record.replay import ReplaySource  # noqa: E402
from main import Detector  # noqa: E402

app = EdgeApp("flight-replay")


@app.node(name="log")
class Log(SinkNode):
    """Prints every tenth detection with the recorded camera frame it came from."""

    def setup(self):
        self.n = 0

    def consume(self, data):
        self.n += 1
        if self.n % 10 == 1:
            recorded = self.current_frame.meta.get("edgeflow.recorded")
            print(f"detection {self.n}: x={data['x']} y={data['y']} from recorded frame {recorded}", flush=True)


app.node(ReplaySource, name="camera", path="out/flight.mcap", topic="camera", speed=1.0)
app.node(Detector, name="detector", replicas=2)
app.link("camera").to("detector", qos="durable")
app.link("detector").to("log", qos="durable")

if __name__ == "__main__":
    app.run()
