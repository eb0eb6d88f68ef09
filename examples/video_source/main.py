"""VideoSource: a video file, RTSP/HTTP stream or camera -> boxes around what moves -> the dashboard.

    python examples/video_source/main.py                  # examples/data/vtest.avi, looped, at its 10 fps
    python examples/video_source/main.py --url rtsp://user:password@192.168.1.20:554/stream1
    python examples/video_source/main.py --url 0          # the first camera (/dev/video0)
    python examples/video_source/main.py --frames 100     # stop after 100 frames (a file: then the run ends)

Open http://127.0.0.1:8000/dashboard (``--port``, default $GATEWAY_HTTP_PORT or 8000) to see the boxes; the
source's state (connecting, live, lost) is on /readyz and /metrics. Unplug the camera or restart the RTSP
server: the source reconnects by itself, with back-off, and the frames come back.
"""

import argparse
from pathlib import Path

import cv2

from edgeflow import ConsumerNode, EdgeApp, GatewayNode
from edgeflow.config import settings
from edgeflow.nodes.gateway.interfaces.web import WebInterface
from edgeflow.sources import VideoSource

VIDEO = str(Path(__file__).resolve().parent.parent / "data" / "vtest.avi")


class Motion(ConsumerNode):
    """Boxes around the moving regions (OpenCV's MOG2 background model), and their count in the meta."""

    min_area: int = 300               # pixels: smaller blobs are noise

    def setup(self):
        self.model = cv2.createBackgroundSubtractorMOG2(history=100, detectShadows=False)
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.seen = 0

    def process(self, image):
        mask = self.model.apply(image)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) >= self.min_area]
        out = image.copy()                # the input is a read-only view of the source's ring
        for x, y, w, h in boxes:
            cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 0), 2)
        if self.seen % 50 == 0:           # a live view (REALTIME) may start a few frames in: the first one seen
            index = self.current_frame.meta.get("frame_index")
            print(f"frame {index}: {len(boxes)} moving regions", flush=True)
        self.seen += 1
        return out, {"moving": len(boxes)}


class Gateway(GatewayNode):
    """The dashboard and the API on ``port``."""

    port: int = 8000

    def configure(self):
        self.add_interface(WebInterface(port=self.port))


def build(url, port: int) -> EdgeApp:
    app = EdgeApp("video-source")
    source = {"url": url, "width": 640}           # resized into the ring: 640 wide, aspect kept
    if url == VIDEO:
        source["loop"] = True
    app.node(VideoSource, name="camera", **source)
    app.node(Motion, name="motion")
    app.node(Gateway, name="gateway", port=port)
    app.link("camera").to("motion").to("gateway")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=VIDEO, help="a video file, an rtsp:// or http:// URL, or a camera "
                                                     "index (default: examples/data/vtest.avi, looped)")
    parser.add_argument("--port", type=int, default=settings.GATEWAY_HTTP_PORT, help="the dashboard's port")
    args, _ = parser.parse_known_args()           # --frames and --duration are the runtime's (app.run)
    url = int(args.url) if args.url.isdigit() else args.url
    build(url, args.port).run()


if __name__ == "__main__":          # spawned node processes import this file for its classes only
    main()
