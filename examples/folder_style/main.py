"""Folder-style EdgeFlow (seed 001): every node is a package under nodes/ with its own node.toml.

    python examples/folder_style/main.py --frames 100 [--log PATH]

camera --REALTIME--> detector --> gateway
camera --DURABLE---> logger  (one CSV line per frame: it never misses one)
"""
import argparse

from edgeflow import QoS, System


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", metavar="PATH", help="the logger's CSV file (default: its node.toml's path)")
    args, _ = parser.parse_known_args()          # --frames, --duration, --stats, --node are app.run()'s
    return args


if __name__ == "__main__":          # spawned node processes import this file too: build and run only here
    args = parse_args()
    sys = System("folder-demo")                  # seed 001's spelling; shadows nothing this file uses
    cam = sys.node("nodes/camera")               # relative to this file, so any cwd works
    det = sys.node("nodes/detector")
    gw = sys.node("nodes/gateway")
    log = sys.node("nodes/logger", **({"path": args.log} if args.log else {}))
    sys.link(cam).to(det, qos=QoS.REALTIME)      # the detector always gets the newest frame
    sys.link(det).to(gw)
    sys.link(cam).to(log, qos=QoS.DURABLE)       # the logger gets every frame, in order
    sys.run()
