"""People detection on a real video: OpenCV's HOG person detector in two replicas, counted frame by frame.

    python examples/people_detector/main.py [SOURCE] [--frames N] [--detect-width PX] [--fps F]

SOURCE is a video file or a camera index (default: examples/data/vtest.avi, 19 s of a street, in the repository).

video --DURABLE--> detector (2 replicas) --REALTIME--> gateway
                                        --DURABLE----> counter
"""
import argparse
from pathlib import Path

import cv2
import numpy as np

from edgeflow import ConsumerNode, EdgeApp, EndOfStream, GatewayNode, ProducerNode, QoS, SinkNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface

DEFAULT_VIDEO = Path(__file__).resolve().parents[1] / "data" / "vtest.avi"


def open_capture(source: str) -> cv2.VideoCapture:
    """A capture for a file path or a camera index ("0", "1", ...)."""
    return cv2.VideoCapture(int(source) if source.isdigit() else source)


class VideoSource(ProducerNode):
    """Decodes each frame straight into a slot of the output ring: no frame is ever copied on this host."""

    source = str(DEFAULT_VIDEO)
    fps = None                      # as fast as the detectors take frames (a camera paces itself)

    def setup(self):
        self.cap = open_capture(self.source)
        ok, first = self.cap.read()     # the first frame tells the size to loan; cameras misreport it
        if not ok:
            raise RuntimeError(f"{self.source}: cannot read a frame")
        self.pending, self.shape, self.count = first, first.shape, 0

    def produce(self):
        buf = self.output(self.shape, np.uint8)
        if self.pending is not None:
            np.copyto(buf, self.pending)
            self.pending = None
        else:
            # Decoding into the loan (read(image=buf)) took 0.53 ms per 768x576 frame here, read() then
            # np.copyto 0.65 ms: OpenCV writes into buf when its shape and dtype fit, so we keep that.
            ok, img = self.cap.read(image=buf)
            if not ok:
                raise EndOfStream       # the file ran out (or the camera went away)
            if img is not buf:          # the size changed mid-stream: OpenCV allocated a new array
                buf = img               # returning it publishes a copy; the loan is given back
        self.count += 1
        return buf, {"source_frame": self.count}

    def teardown(self):
        self.cap.release()


class Detector(ConsumerNode):
    """OpenCV's built-in HOG + linear SVM person detector; draws the boxes into its output slot."""

    detect_width = 768              # frames wider than this are shrunk before detection

    def setup(self):
        cv2.setNumThreads(1)        # one core per replica: two replicas on two cores, no oversubscription
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def process(self, data):
        scale = min(1.0, self.detect_width / data.shape[1])
        small = data if scale == 1.0 else cv2.resize(data, None, fx=scale, fy=scale,
                                                     interpolation=cv2.INTER_AREA)
        rects, _ = self.hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
        boxes = [[round(v / scale) for v in rect] for rect in rects]
        out = self.output(data.shape, data.dtype)   # the input is a read-only view: draw on a copy
        np.copyto(out, data)
        for x, y, w, h in boxes:
            cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(out, f"people: {len(boxes)}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2)
        return out, {"people": len(boxes), "boxes": boxes}


class Gateway(GatewayNode):
    """Serves the annotated frames (port: $GATEWAY_HTTP_PORT, default 8000)."""

    def configure(self):
        self.add_interface(WebInterface())


class Counter(SinkNode):
    """Logs the number of people in every frame and sums up at the end."""

    def setup(self):
        self.people = {}            # source frame -> people; the two replicas' frames arrive interleaved

    def consume(self, data):
        meta = self.current_frame.meta
        frame, people = meta["source_frame"], meta["people"]
        self.people[frame] = people
        print(f"frame {frame:4d}: {people} {'person' if people == 1 else 'people'}", flush=True)

    def teardown(self):
        counts = list(self.people.values())
        mean = sum(counts) / len(counts) if counts else 0.0
        with_people = sum(1 for n in counts if n > 0)
        print(f"counter: {len(counts)} frames processed, {mean:.2f} people per frame on average "
              f"({with_people} frames with people, at most {max(counts, default=0)})", flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=str(DEFAULT_VIDEO),
                        help="a video file or a camera index (default: %(default)s)")
    parser.add_argument("--detect-width", type=int, default=Detector.detect_width,
                        help="shrink wider frames to this width before detection (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=None,
                        help="the producer's rate (default: as fast as the detectors go)")
    # app.run() reads these itself; they are declared here only so that "--frames 40" does not make "40" the
    # source: parse_known_args cannot know which unknown flags take a value
    runtime = parser.add_argument_group("run flags (read by app.run())")
    runtime.add_argument("--frames", type=int, help="stop the producer after N frames")
    runtime.add_argument("--duration", type=float, help="stop after S seconds")
    runtime.add_argument("--stats", type=float, nargs="?", const=5.0, help="print statistics every S seconds")
    runtime.add_argument("--node", help="run only this node")
    runtime.add_argument("--replica", type=int, help="with --node: which replica")
    runtime.add_argument("--debug", action="store_true", help="debug logging")
    args, _ = parser.parse_known_args()
    return args


def main():
    args = parse_args()
    capture = open_capture(args.source)      # fail here in one line, not in a node that restarts 5 times
    if not capture.isOpened():
        raise SystemExit(f"people_detector: cannot open {args.source}")
    capture.release()
    is_file = not args.source.isdigit()

    app = EdgeApp("people-detector")
    video = app.node(VideoSource, name="video", source=args.source, fps=args.fps)
    detector = app.node(Detector, name="detector", replicas=2, detect_width=args.detect_width)
    gateway = app.node(Gateway, name="gateway", node_port=30080)
    counter = app.node(Counter, name="counter")
    # a file: every frame is worth detecting (the producer waits for the detectors); a live camera: always
    # the newest frame, never a backlog
    app.link(video).to(detector, qos=QoS.DURABLE if is_file else QoS.REALTIME)
    app.link(detector).to(gateway, qos=QoS.REALTIME)
    app.link(detector).to(counter, qos=QoS.DURABLE)
    app.run()


if __name__ == "__main__":          # spawned node processes import this file for its classes only
    main()
