"""A simple OpenCV detector: threshold on the ball's colour, then the bounding boxes of the contours.

The input is a read-only view of the camera's slot; the output is written into a slot of this node's own ring
(``self.output``) and returned, so the annotated frame is never copied again on its way to the gateway.
"""
import cv2
import numpy as np

from edgeflow import ConsumerNode

LOWER = np.array([0, 180, 180], np.uint8)       # BGR: yellow, and not the white text (blue is high there)
UPPER = np.array([90, 255, 255], np.uint8)


class Detector(ConsumerNode):
    min_area = 200

    def process(self, data):
        out = self.output(data.shape, data.dtype)
        np.copyto(out, data)
        mask = cv2.inRange(data, LOWER, UPPER)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) >= self.min_area]
        for x, y, w, h in boxes:
            cv2.rectangle(out, (x, y), (x + w, y + h), (0, 0, 255), 2)
            cv2.putText(out, "ball", (x, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
        return out, {"boxes": [list(b) for b in boxes]}
