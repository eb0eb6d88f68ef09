"""A synthetic camera: a ball that circles over scrolling stripes, with the frame number drawn in.

Each frame is drawn straight into the output ring (``self.output``), so it reaches every consumer on this
host without a copy.
"""
import math

import cv2
import numpy as np

from edgeflow import ProducerNode

BALL_BGR = (0, 255, 255)            # yellow: the detector looks for this colour


class Camera(ProducerNode):
    width = 640                     # node.toml's [config] overrides these
    height = 480

    def setup(self):
        self.count = 0
        # the background is two stripe periods wide, so a moving crop of it scrolls seamlessly
        x = np.arange(2 * self.width)
        stripes = (40 + 20 * (x // 40 % 2)).astype(np.uint8)
        self.background = np.broadcast_to(stripes[None, :, None], (self.height, 2 * self.width, 3))

    def produce(self):
        self.count += 1                          # the ring numbers frames from 1 too: the two agree
        img = self.output((self.height, self.width, 3), np.uint8)
        shift = (self.count * 4) % 80            # 80 px: one stripe period
        np.copyto(img, self.background[:, shift:shift + self.width])
        t = self.count / 30.0
        cx = int(self.width / 2 + self.width / 3 * math.sin(t * 2))
        cy = int(self.height / 2 + self.height / 4 * math.cos(t * 2))
        cv2.circle(img, (cx, cy), 30, BALL_BGR, -1)
        cv2.putText(img, f"frame {self.count}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        return img, {"ball": [cx, cy]}
