"""Flight recorder: a camera, a 2-replica detector and a lidar, every frame recorded to MCAP as it runs.

    python examples/flight_recorder/main.py --duration 10          # or --frames N; Ctrl-C stops it
    edgeflow record examples/flight_recorder/main.py --topics camera,detector -o out/cli.mcap   # from outside

- ``camera`` (30 fps) draws a moving ball into a 480x640 BGR image (straight into shared memory).
- ``detector`` (2 replicas) finds the ball: a dict message ``{"x", "y", "score", "mask_px"}``; its meta names
  the camera frame it came from (``edgeflow.parents``) and the hop trace.
- ``lidar`` (10 fps) sends a (360, 3) float32 point array.
- ``rec`` (RecorderNode) writes all three to ``out/flight-0001.mcap``, ``out/flight-0002.mcap``, ... (a new
  file every 60 s of capture time or 500 MB), lz4-compressed chunks of at most 1 s: a crash, even a SIGKILL,
  loses at most the last second. Its links are BALANCED: a slow disk never holds the pipeline back (a frame
  it cannot keep up with is dropped from the recording and counted).

Open the files in Foxglove (the camera is a ``foxglove.RawImage`` topic, the detector a JSON topic whose
fields plot), or read them back exactly with ``edgeflow.record.open_recording("out/flight.mcap")``.
"""
import math
import time

import cv2
import numpy as np

from edgeflow import ConsumerNode, EdgeApp, Frame, ProducerNode
from edgeflow.record import RecorderNode

app = EdgeApp("flight-recorder")


@app.node(name="camera", fps=30)
class Camera(ProducerNode):
    """A ball moving on a circle, drawn into the output ring."""

    def produce(self):
        t = time.time()
        img = self.output((480, 640, 3), np.uint8)
        img[:] = (40, 30, 20)
        x, y = int(320 + 200 * math.cos(t)), int(240 + 150 * math.sin(t))
        cv2.circle(img, (x, y), 25, (0, 200, 255), -1)
        return Frame(img, timestamp=t)


@app.node(name="detector", replicas=2)
class Detector(ConsumerNode):
    """Where the ball is: the centre of the bright pixels."""

    def process(self, img):
        mask = img[:, :, 2] > 200
        ys, xs = np.nonzero(mask)
        if not len(xs):
            return {"x": None, "y": None, "score": 0.0, "mask_px": 0}
        return {"x": float(xs.mean()), "y": float(ys.mean()), "score": 1.0, "mask_px": int(mask.sum())}


@app.node(name="lidar", fps=10)
class Lidar(ProducerNode):
    """A ring of 360 points at a slowly breathing range."""

    def produce(self):
        angle = np.radians(np.arange(360, dtype=np.float32))
        r = 5 + np.sin(time.time()).astype(np.float32)
        return np.stack([r * np.cos(angle), r * np.sin(angle), np.zeros_like(angle)], axis=1)


app.node(RecorderNode, name="rec", path="out/flight.mcap", compression="lz4", rotate_s=60, rotate_mb=500)
app.link("camera").to("detector")
for source in ("camera", "detector", "lidar"):
    app.link(source).to("rec", qos="BALANCED")

if __name__ == "__main__":
    app.run()
