"""Helpers of the model tests: the JSON lines model_nodes.Lines writes; model files written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.connectors._servers import free_port, wait_for  # noqa: F401 (re-exported)

SCALE = '''"""A model block of the hot reload tests (written by the test)."""
from edgeflow.models import ModelBlock

__version__ = {version!r}
FACTOR = {factor}


class Scale(ModelBlock):
    def init(self, context):
        self.version, self.replica = context.version, context.replica
        self.events = context.params.get("events")
        note(self.events, f"init {{self.version}}")
{init}
    def process(self, msg):
        return {{"n": msg["n"], "y": msg["n"] * FACTOR, "v": self.version, "r": self.replica}}

    def shutdown(self):
        note(self.events, f"shutdown {{self.version}}")


def note(path, text):
    if path:
        with open(path, "a") as file:
            file.write(text + "\\n")
'''


def read_json(path: Path) -> list[dict]:
    """The complete JSON lines of ``path`` (none when it does not exist yet)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def write_model(path: Path, version: str | None, factor: int, init: str = "") -> None:
    """Write the Scale model (``__version__`` = version, or none) atomically: a reader sees the old file or
    the new one, never half of it."""
    text = SCALE.format(version=version, factor=factor, init=f"        {init}\n" if init else "")
    if version is None:
        text = text.replace("__version__ = None\n", "")
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
