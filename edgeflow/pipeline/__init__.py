"""Pipelines as configuration: a YAML or JSON file describes the same graph the Python API builds.

    app: demo
    nodes:
      camera:   {class: nodes:Camera, fps: 30}
      detector: {path: nodes/detector, replicas: 2}
      gateway:  {class: GatewayNode, interfaces: {web: {port: 8000, token: "${TOKEN}"}}}
    links:
      - camera -> detector -> gateway

``edgeflow.load("pipeline.yaml")`` (or a list of files, merged) returns an EdgeApp; ``edgeflow run``,
``graph`` and ``deploy`` take such files (``-c base.yaml -c site.yaml``), and ``edgeflow graph main.py
--format yaml`` writes one from a Python app. See docs/pipelines.md.

Modules: tree.py (files to marked values), merge.py, subst.py (``${VAR}``, secrets), validate.py (the
schema), builtins.py (short class names, the built-in gateway), load.py (the EdgeApp), export.py (YAML out).
"""

from __future__ import annotations

from edgeflow.pipeline.errors import PipelineError
from edgeflow.pipeline.load import Source, load, source_of

SUFFIXES = (".yaml", ".yml", ".json")
"""The file names taken as pipeline files (anything else is a Python file)."""

__all__ = ["load", "source_of", "Source", "PipelineError", "SUFFIXES", "is_pipeline_file"]


def is_pipeline_file(path: object) -> bool:
    """True for a ``.yaml``, ``.yml`` or ``.json`` file name."""
    return str(path).lower().endswith(SUFFIXES)
