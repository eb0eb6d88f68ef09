"""The startup benchmark: a real ``python main.py --frames N`` (3 nodes, written into a temp dir) until its
last node holds its first frame (it writes ``time.time()`` to a file), from just before ``Popen``. Floor:
``python -c "import numpy, edgeflow"`` from Popen to exit.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeflow.bench.nodes import leftovers, new_app_name
from edgeflow.bench.results import BenchError

if TYPE_CHECKING:                             # runtime imports this module: the config is only a type here
    from edgeflow.bench.runtime import RuntimeConfig

STARTUP_CASE = "python main.py (3 nodes) -> first frame at the last node"
IMPORT_CASE = 'python -c "import numpy, edgeflow" (floor)'
ROOT = Path(__file__).resolve().parents[2]        # the checkout: main.py's subprocess imports this edgeflow


@dataclasses.dataclass(frozen=True)
class StartupResult:
    """Seconds from just before Popen to an event (the last node's first frame, or the interpreter's exit)."""

    case: str
    runs_s: tuple[float, ...] = ()
    exit_s: tuple[float, ...] = ()
    note: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every run finished and passed its checks."""
        return self.error is None and bool(self.runs_s)

    @property
    def median_s(self) -> float | None:
        """The median of ``runs_s``."""
        return statistics.median(self.runs_s) if self.runs_s else None


# ------------------------------------------------------------------------------------------------ startup

STARTUP_SCRIPT = '''\
"""camera -> detector -> store: the startup benchmark's main.py (the store stamps its first frame)."""
import os
import time

import numpy as np

from edgeflow import ConsumerNode, EdgeApp, ProducerNode, QoS, SinkNode

app = EdgeApp(os.environ["EDGEFLOW_BENCH_APP"])


@app.node(name="camera", fps=100)
class Camera(ProducerNode):
    def produce(self):
        return self.output((480, 640, 3), np.uint8)


@app.node(name="detector")
class Detector(ConsumerNode):
    def process(self, data):
        return data


@app.node(name="store")
class Store(SinkNode):
    def setup(self):
        self.stamped = False

    def consume(self, data):
        if not self.stamped:
            self.stamped = True
            path = os.environ["EDGEFLOW_BENCH_STAMP"]
            with open(path + ".tmp", "w") as f:
                f.write(repr(time.time()))
            os.replace(path + ".tmp", path)


# DURABLE: its group is declared before any node starts, so the store gets the first frame however the three
# processes' start-up races (REALTIME: a detector that attached after the camera's last frame got nothing)
app.link("camera").to("detector", qos=QoS.DURABLE).to("store")

if __name__ == "__main__":
    app.run()
'''


def _env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH, plus ``extra``."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), **extra}


def _startup_once(folder: Path, frames: int, timeout: float) -> tuple[float, float, str]:
    """One ``python main.py --frames N``: (seconds to the store's first frame, seconds to exit, app name)."""
    app, stamp = new_app_name("start"), folder / "first-frame"
    stamp.unlink(missing_ok=True)
    env = _env(EDGEFLOW_BENCH_APP=app, EDGEFLOW_BENCH_STAMP=str(stamp))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "main.py", "--frames", str(frames)], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()                           # its nodes follow: PR_SET_PDEATHSIG
        out, _ = proc.communicate()
        raise BenchError(f"python main.py --frames {frames} did not exit within {timeout:g} s:\n{out}")
    t_exit = time.time() - t0
    if proc.returncode != 0:
        raise BenchError(f"python main.py exited with code {proc.returncode}:\n{out}")
    if not stamp.exists():
        raise BenchError(f"the store never received a frame:\n{out}")
    if "camera -> detector: shm" not in out:
        raise BenchError(f"python main.py did not print its edges:\n{out}")
    return float(stamp.read_text()) - t0, t_exit, app


def startup(cfg: RuntimeConfig) -> StartupResult:
    """``python main.py --frames N`` (3 nodes) to the last node's first frame, ``cfg.startup_runs`` times.

    Raises:
        BenchError: a run failed, timed out, or left segments or node processes behind.
    """
    runs, exits = [], []
    with tempfile.TemporaryDirectory(prefix="edgeflow-rtbench-") as folder:
        Path(folder, "main.py").write_text(STARTUP_SCRIPT)
        for _ in range(cfg.startup_runs):
            first, t_exit, app = _startup_once(Path(folder), cfg.startup_frames, cfg.timeout_s)
            if left := leftovers(app):
                raise BenchError(f"python main.py left {', '.join(left)}")
            runs.append(first)
            exits.append(t_exit)
    note = f"--frames {cfg.startup_frames} at 100 fps; exits after {statistics.median(exits):.2f} s"
    return StartupResult(STARTUP_CASE, tuple(runs), tuple(exits), note)


def import_floor(cfg: RuntimeConfig) -> StartupResult:
    """The floor of any startup: ``python -c "import numpy, edgeflow"``, Popen to exit."""
    runs = []
    for _ in range(max(cfg.startup_runs, 1)):
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "import numpy, edgeflow"], env=_env(), check=True,
                       timeout=cfg.timeout_s)
        runs.append(time.time() - t0)
    return StartupResult(IMPORT_CASE, tuple(runs), tuple(runs), "Popen to exit")


