"""Every example, and the README's code, runs to the end on this machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_pubsub_example_delivers_every_frame_zero_copy():
    out = run([str(ROOT / "examples/pubsub/main.py"), "--frames", "12"], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [f"frame {i + 1}: (480, 640, 3) mean={i}" for i in range(12)]


def test_readme_pubsub_snippet_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Pub/sub in 15 lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 15, "the README promises 15 lines"
    (tmp_path / "main.py").write_text(code)
    out = run(["main.py"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ids = [int(line.split()[0]) for line in out.stdout.splitlines()]
    assert ids == list(range(1, 31))


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_main_py_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# main.py\n.*?)```", readme, re.S).group(1)
    assert len(code.splitlines()) <= 32
    (tmp_path / "main.py").write_text(code.replace("port=8000", f"port={free_port()}"))
    out = run(["main.py", "--frames", "30"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == ["camera -> detector: shm (same host), REALTIME",
                                           "detector -> gateway: shm (same host), REALTIME"]
    assert not list(Path("/dev/shm").glob("edgeflow.demo.*"))
