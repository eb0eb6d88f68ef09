"""Helpers of the pipeline tests: files in a temp folder, `edgeflow` in a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeflow.pipeline import PipelineError, load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = ROOT / "examples"
TESTS = ROOT / "tests"


def write(folder: Path, name: str, text: str) -> Path:
    """``text`` (dedented) as folder/name."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems(paths, env: dict | None = None) -> list[str]:
    """The lines of the PipelineError that loading ``paths`` raises (fails when it loads)."""
    with pytest.raises(PipelineError) as info:
        load(paths, env=env if env is not None else {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env(**extra: str) -> dict[str, str]:
    """The checkout and tests/ importable (``pipeline.pl_nodes``), a free gateway port, unbuffered."""
    path = os.pathsep.join(p for p in (str(ROOT), str(TESTS), os.environ.get("PYTHONPATH")) if p)
    out = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "GATEWAY_HTTP_PORT": str(free_port()),
           "GATEWAY_TCP_PORT": str(free_port())}
    out.pop("EDGEFLOW_DEBUG", None)
    out.update(extra)
    return out


def edgeflow(*args: str, cwd: Path | None = None, environ: dict | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m edgeflow.cli ARGS`` in a subprocess; printed (pytest shows it on failure)."""
    out = subprocess.run([sys.executable, "-m", "edgeflow.cli", *args], cwd=cwd or ROOT,
                         env=environ or env(), capture_output=True, text=True, timeout=timeout)
    print(f"$ edgeflow {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def python(script: Path, *args: str, cwd: Path | None = None, environ: dict | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` in a subprocess; printed."""
    out = subprocess.run([sys.executable, str(script), *args], cwd=cwd or ROOT, env=environ or env(),
                         capture_output=True, text=True, timeout=timeout)
    print(f"$ python {script} {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out
