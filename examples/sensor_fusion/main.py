"""Sensor fusion: a 30 Hz camera, a 10 Hz lidar and a 200 Hz IMU, with jitter, matched by capture time.

    python examples/sensor_fusion/main.py --duration 5          # or --frames N (frames per sensor)

The fusion node gets one frame per input, in link order (camera, lidar, imu), whose capture stamps lie within
``slop`` of each other (ROS's ApproximateTimeSynchronizer rule), draws the lidar and IMU readings onto the
camera image and sends it to the gateway. Its statistics show the sets made and why frames were dropped.
"""
import random
import time

import cv2
import numpy as np

from edgeflow import EdgeApp, Frame, FusionNode, GatewayNode, ProducerNode, SinkNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface

app = EdgeApp("sensor-fusion")


class JitteredSensor(ProducerNode):
    """A sensor whose capture stamps wobble by up to ``jitter`` seconds around the tick, as real drivers do."""
    jitter = 0.002

    def stamp(self) -> float:
        return time.time() - random.uniform(0, self.jitter)


@app.node(name="camera", fps=30)
class Camera(JitteredSensor):
    def produce(self):
        t = self.stamp()
        img = self.output((240, 320, 3), np.uint8)          # drawn straight into shared memory
        img[:] = 40
        x = int(160 + 120 * np.sin(t))
        cv2.circle(img, (x, 120), 20, (0, 200, 255), -1)
        return Frame(img, timestamp=t)


@app.node(name="lidar", fps=10)
class Lidar(JitteredSensor):
    def produce(self):
        angles = np.linspace(0, 2 * np.pi, 360, dtype=np.float32)
        ranges = 5 + np.random.default_rng().normal(0, 0.05, 360).astype(np.float32)
        return Frame(np.stack([angles, ranges], axis=1), timestamp=self.stamp())


@app.node(name="imu", fps=200)
class Imu(JitteredSensor):
    def produce(self):
        accel_gyro = np.random.default_rng().normal(0, 0.01, 6).astype(np.float32)
        accel_gyro[2] += 9.81
        return Frame(accel_gyro, timestamp=self.stamp())


@app.node(name="fuse", slop=0.05, policy="approximate", queue_size=30)
class Fuse(FusionNode):
    def process(self, frames):
        camera, lidar, imu = frames
        img = self.output(camera.data.shape, np.uint8)
        np.copyto(img, camera.data)
        span = max(f.timestamp for f in frames) - min(f.timestamp for f in frames)
        cv2.putText(img, f"lidar {lidar.data[:, 1].mean():.2f} m  az {imu.data[2]:.2f}", (8, 20),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        return img, {"span_ms": round(1e3 * span, 3), "ids": [f.frame_id for f in frames]}


@app.node(name="gateway")
class Gateway(GatewayNode):
    def configure(self):
        self.add_interface(WebInterface())


@app.node(name="report")
class Report(SinkNode):
    """Counts fused sets and their time spans, and prints a summary at the end."""

    def setup(self):
        self.spans = []

    def consume(self, data):
        self.spans.append(self.current_frame.meta["span_ms"])

    def teardown(self):
        if self.spans:
            print(f"report: {len(self.spans)} fused sets, span p50 {np.median(self.spans):.1f} ms, "
                  f"max {max(self.spans):.1f} ms (slop 50 ms)", flush=True)
        else:
            print("report: no fused sets", flush=True)


if __name__ == "__main__":
    for sensor in ("camera", "lidar", "imu"):          # the fusion node's input order is the link order
        app.link(sensor).to("fuse")
    app.link("fuse").to("gateway")
    app.link("fuse").to("report")
    app.run()
