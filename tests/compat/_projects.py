"""Helpers of the compatibility tests: write a project in the original EdgeFlow's layout into a folder, run its
main.py as a real `python main.py`, and read what each node recorded.

Every node of these projects records how many frames it handled in ``out/<node>.txt`` ("<count> <hostname>"),
rewritten after each frame, so a test sees that frames reached every node without parsing logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# what a node calls after each frame; written into every project as record.py (next to main.py)
RECORD = '''
import os
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def record(name, count, hostname):
    """Rewrite out/<name>.txt with '<count> <hostname>' (atomically: a reader never sees half a line)."""
    OUT.mkdir(exist_ok=True)
    tmp = OUT / f".{name}.{os.getpid()}"
    tmp.write_text(f"{count} {hostname}")
    os.replace(tmp, OUT / f"{name}.txt")
'''


def write_project(folder: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text, dedented) and record.py into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, text in {"record.py": RECORD, **files}.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return folder


def env(**extra: str) -> dict[str, str]:
    """The environment of a run: this checkout first on sys.path, the project's folder for its own modules."""
    out = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1", **extra}
    out.pop("EDGEFLOW_CAPTURE_GRAPH", None)
    return out


def run(project: Path, *args: str, command: tuple[str, ...] | None = None, timeout: float = 90,
        **extra: str) -> subprocess.CompletedProcess:
    """``python main.py ARGS`` in the project (or ``command``), with a timeout; prints what it said."""
    cmd = list(command) if command else [sys.executable, "main.py"]
    done = subprocess.run([*cmd, *args], cwd=project, env=env(**extra), capture_output=True, text=True,
                          timeout=timeout)
    print(done.stdout, done.stderr, sep="\n")
    return done


def counts(project: Path) -> dict[str, tuple[int, str]]:
    """node -> (frames it recorded, the hostname it saw), from out/."""
    found = {}
    out = project / "out"
    for path in sorted(out.glob("*.txt")) if out.is_dir() else ():
        count, _, host = path.read_text().partition(" ")
        found[path.stem] = (int(count), host)
    return found
