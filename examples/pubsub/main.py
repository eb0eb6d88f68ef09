"""Fast pub/sub between two processes over shared memory: the README's first example.

    python examples/pubsub/main.py [--frames N]
"""
import argparse
import multiprocessing as mp

import edgeflow as ef


def viewer(n):
    with ef.Subscriber("camera", app="demo", qos=ef.QoS.DURABLE, group="viewer") as sub:
        for _ in range(n):
            with sub.recv(timeout=5.0) as frame:          # a read-only view of the slot: no copy
                print(f"frame {frame.frame_id}: {frame.data.shape} mean={frame.data.mean():.0f}")


def main(n):
    with ef.Publisher("camera", app="demo") as pub:
        pub.declare_group("viewer")                       # every frame from now on, before the viewer attaches
        child = mp.get_context("spawn").Process(target=viewer, args=(n,))
        child.start()
        for i in range(n):
            with pub.loan((480, 640, 3), "uint8") as img:  # write straight into shared memory
                img[...] = i % 256
        child.join(timeout=30)
    return child.exitcode


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames to send (default 30)")
    raise SystemExit(main(parser.parse_args().frames))
