"""Issue 11: projects written for the original EdgeFlow (github witdory/edgeflow) run unchanged with
`python main.py`, as real processes: folder nodes with node.toml's [node], [build] and [runtime] tables, the
Arduino-style setup()/loop() hooks, a sink using self.hostname, `edgeflow.run(a, b)` with a shared node, a
module-level `sys.run()` without a __main__ guard, and generic `Node` subclasses that say their kind with type=.

The projects are written in the original's style for these tests (see _projects.py: each node records its
frame count in out/<node>.txt).
"""

from __future__ import annotations

import socket
import sys

import pytest

from _projects import counts, run, write_project

pytestmark = pytest.mark.slow

HOST = socket.gethostname()

CAMERA = '''
    from edgeflow.nodes import ProducerNode
    import numpy as np
    from record import record


    class Camera(ProducerNode):
        def setup(self):
            self.n = 0

        def loop(self):
            self.n += 1
            record(self.name, self.n, self.hostname)
            return np.full((120, 160, 3), self.n % 256, dtype=np.uint8)
'''
CAMERA_TOML = '''
    [node]
    type = "producer"
    description = "A synthetic camera"

    [build]
    base = "python:3.11-slim"
    dependencies = ["numpy"]

    [runtime]
    gpu = false
'''
YOLO = '''
    from edgeflow.nodes import ConsumerNode
    from record import record


    class Yolo(ConsumerNode):
        def setup(self):
            self.n = 0

        def loop(self, data):
            self.n += 1
            record(self.name, self.n, self.hostname)
            return data, {"boxes": int(data[0, 0, 0])}
'''
YOLO_TOML = '''
    [node]
    type = "consumer"

    [build]
    base = "nvcr.io/nvidia/pytorch:24.01-py3"
    dependencies = ["ultralytics", "numpy<2"]

    [runtime]
    gpu = true
'''
LOGGER = '''
    from edgeflow.nodes import SinkNode
    from record import record


    class LoggerNode(SinkNode):
        def setup(self):
            print(f"[Logger] Initialized on host: {self.hostname}", flush=True)
            self.frame_count = 0

        def loop(self, data):
            self.frame_count += 1
            record(self.name, self.frame_count, self.hostname)
'''
LOGGER_TOML = '''
    # Logger Node Configuration
    [node]
    type = "sink"
'''
NODES = {"nodes/camera/__init__.py": CAMERA, "nodes/camera/node.toml": CAMERA_TOML,
         "nodes/yolo/__init__.py": YOLO, "nodes/yolo/node.toml": YOLO_TOML,
         "nodes/logger/__init__.py": LOGGER, "nodes/logger/node.toml": LOGGER_TOML}

# examples/my-robot/main.py of the original, with a logger, and run() at module level with no guard
MY_ROBOT = '''
    from edgeflow import System, QoS, run
    from edgeflow.comms import DualRedisBroker

    sys = System("{app}", broker=DualRedisBroker())

    cam = sys.node("nodes/camera", device="camera", fps=40)
    gpu = sys.node("nodes/yolo", device="gpu", replicas=2)
    logger = sys.node("nodes/logger")

    sys.link(cam).to(gpu, qos=QoS.REALTIME)
    sys.link(cam).to(logger, qos=QoS.DURABLE)

    print("Starting EdgeFlow...", flush=True)
    sys.run()
'''

# examples/my-robot/main_multi.py's idea: two Systems, the camera shared, one launch
MULTI = '''
    import edgeflow
    from edgeflow import System, QoS

    realtime = System("{app}")
    cam = realtime.node("nodes/camera", fps=40)
    gpu = realtime.node("nodes/yolo")
    realtime.link(cam).to(gpu, qos=QoS.REALTIME)

    logging = System("{app}-logging")
    logging.share(cam)
    logger = logging.node("nodes/logger")
    logging.link(cam).to(logger, qos=QoS.DURABLE)

    archive = System("{app}-archive")
    camera_again = archive.node("nodes/camera")      # the same folder: the same node, run once
    sink = archive.node("nodes/logger", name="archive")
    archive.link(camera_again).to(sink)

    edgeflow.{runner}(realtime, logging, archive)
'''

GENERIC = '''
    import numpy as np
    from edgeflow import EdgeApp, Node
    from edgeflow.nodes import EdgeNode
    from record import record

    app = EdgeApp("{app}")


    @app.node(name="source", type="producer", fps=40)
    class Source(Node):
        def setup(self):
            self.n = 0

        def loop(self):
            self.n += 1
            record(self.name, self.n, self.hostname)
            return np.arange(12, dtype=np.float32) * self.n


    @app.node(name="double", type="consumer")
    class Double(EdgeNode):
        def configure(self):
            self.n = 0

        def loop(self, data):
            self.n += 1
            record(self.name, self.n, self.hostname)
            return data * 2


    class Store(Node):
        node_type = "sink"

        def loop(self, data):
            self.n = getattr(self, "n", 0) + 1
            record(self.name, self.n, self.hostname)


    app.node(Store, name="store")
    app.node("nodes/printer")
    app.link("source").to("double").to("store")
    app.link("double").to("printer")

    if __name__ == "__main__":
        app.run()
'''
PRINTER = '''
    from edgeflow.nodes import EdgeNode
    from record import record


    class Printer(EdgeNode):
        def setup(self):
            self.n = 0

        def loop(self, data):
            self.n += 1
            record(self.name, self.n, self.hostname)
'''


def test_my_robot_with_an_unguarded_run_at_module_level(tmp_path, app):
    project = write_project(tmp_path / "my-robot", {**NODES, "main.py": MY_ROBOT.format(app=app)})
    done = run(project, "--frames", "20")
    assert done.returncode == 0, done.stderr
    # each of the 4 node processes (camera, yolo x2, logger) re-imports main.py as __mp_main__ and prints the
    # line once more; its sys.run() returns there at once instead of starting the app again (no 5th, 6th...)
    assert done.stdout.count("Starting EdgeFlow...") == 1 + 4
    seen = counts(project)
    assert seen["camera"] == (20, HOST)
    assert seen["logger"] == (20, HOST)                              # DURABLE: every frame
    assert 1 <= seen["yolo"][0] <= 20 and seen["yolo"][1] == HOST
    assert f"[Logger] Initialized on host: {HOST}" in done.stdout + done.stderr
    assert "camera -> logger: shm (same host), DURABLE" in done.stdout


def test_hostname_comes_from_the_environment(tmp_path, app):
    project = write_project(tmp_path / "my-robot", {**NODES, "main.py": MY_ROBOT.format(app=app)})
    done = run(project, "--frames", "5", HOSTNAME="robot-7")
    assert done.returncode == 0, done.stderr
    assert counts(project)["logger"] == (5, "robot-7")


@pytest.mark.parametrize("runner", ["run", "run_all"])
def test_several_systems_in_one_launch_share_the_camera(tmp_path, app, runner):
    project = write_project(tmp_path / "multi", {**NODES, "main.py": MULTI.format(app=app, runner=runner)})
    done = run(project, "--frames", "15")
    assert done.returncode == 0, done.stderr
    seen = counts(project)
    assert set(seen) == {"camera", "yolo", "logger", "archive"}
    assert seen["camera"][0] == 15                  # one camera process fed all three Systems' nodes
    assert seen["logger"][0] == 15 and seen["archive"][0] == 15
    assert seen["yolo"][0] >= 1
    for line in ("camera -> yolo: shm (same host), REALTIME", "camera -> logger: shm (same host), DURABLE",
                 "camera -> archive: shm (same host), DURABLE"):
        assert line in done.stdout


def test_one_node_of_the_merged_systems_runs_alone_with_node(tmp_path, app):
    project = write_project(tmp_path / "multi", {**NODES, "main.py": MULTI.format(app=app, runner="run")})
    done = run(project, "--node", "camera", "--frames", "4")
    assert done.returncode == 0, done.stderr
    assert counts(project) == {"camera": (4, HOST)}


def test_a_genuine_node_run_of_an_unguarded_main_is_not_skipped(tmp_path, app):
    project = write_project(tmp_path / "my-robot", {**NODES, "main.py": MY_ROBOT.format(app=app)})
    done = run(project, "--node", "camera", "--frames", "3")
    assert done.returncode == 0, done.stderr
    assert counts(project) == {"camera": (3, HOST)}


def test_edgeflow_run_and_python_m_edgeflow_run_an_unguarded_main(tmp_path, app):
    project = write_project(tmp_path / "my-robot", {**NODES, "main.py": MY_ROBOT.format(app=app)})
    done = run(project, "run", "main.py", "--frames", "6", command=(sys.executable, "-m", "edgeflow"))
    assert done.returncode == 0, done.stderr
    seen = counts(project)
    assert seen["camera"][0] == 6 and seen["logger"][0] == 6
    graph = run(project, "graph", "main.py", command=(sys.executable, "-m", "edgeflow"))
    assert graph.returncode == 0 and "camera -> logger" in graph.stdout


def test_generic_node_subclasses_say_their_kind_with_type(tmp_path, app):
    project = write_project(tmp_path / "generic", {
        "main.py": GENERIC.format(app=app), "nodes/printer/__init__.py": PRINTER,
        "nodes/printer/node.toml": '[node]\ntype = "sink"\nname = "printer"\n'})
    done = run(project, "--frames", "10")
    assert done.returncode == 0, done.stderr
    seen = counts(project)
    assert seen["source"][0] == 10
    assert 1 <= seen["double"][0] <= 10
    assert seen["store"][0] == seen["double"][0] and seen["printer"][0] == seen["double"][0]  # DURABLE sinks


def test_systems_that_define_one_name_differently_fail_in_one_line(tmp_path, app):
    main = MULTI.format(app=app, runner="run").replace('archive.node("nodes/camera")',
                                                       'archive.node("nodes/camera", fps=5)')
    project = write_project(tmp_path / "multi", {**NODES, "main.py": main})
    done = run(project, "--frames", "3")
    assert done.returncode == 2                    # a GraphError is a configuration error
    assert done.stderr.strip().splitlines()[-1] == (
        f"GraphError: node 'camera': systems '{app}' and '{app}-archive' define it differently "
        "(fps=40.0 and fps=5.0); give one of them another name, or share() the node")
    assert not (project / "out").exists()          # nothing started
