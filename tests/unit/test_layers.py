"""The layers of DESIGN.md stay layered: lower layers never import upper ones."""

import pathlib
import re

import edgeflow

IMPORTS = re.compile(r"^\s*(?:from|c?import)\s+(edgeflow[\w.]*)", re.M)
MAY_NOT_IMPORT = {"_fast": ("nodes", "transport", "runtime", "graph", "gateway", "cli", "deploy", "bench"),
                  "transport": ("nodes", "runtime", "graph", "gateway", "cli", "deploy", "bench"),
                  "nodes": ("_fast", "transport", "runtime", "graph", "gateway", "cli", "deploy", "bench"),
                  # the benchmarks measure the runtime; the runtime never depends on them (or on the CLI)
                  "runtime": ("bench", "cli", "deploy"),
                  # the benchmarks use edgeflow as an application does; only the CLI sits above them
                  "bench": ("cli", "deploy", "gateway"),
                  # connectors are nodes: they talk to their library and to self.context, never to the rings,
                  # the runtime or the graph
                  "connectors": ("_fast", "transport", "runtime", "graph", "_nodeload", "gateway", "cli", "deploy",
                                 "bench"),
                  "models": ("_fast", "transport", "runtime", "graph", "_nodeload", "gateway", "cli", "deploy",
                             "bench"),
                  "sources": ("_fast", "transport", "runtime", "graph", "_nodeload", "gateway", "cli", "deploy",
                              "bench"),
                  # recording and replay read and write files and rings; the runtime, the gateway and the CLI
                  # use them, never the other way round
                  "record": ("runtime", "graph", "_nodeload", "gateway", "cli", "deploy", "bench"),
                  # a pipeline file builds an EdgeApp as main.py would: the graph, never what runs it
                  "pipeline": ("_fast", "transport", "runtime", "gateway", "cli", "deploy", "bench")}
LEAVES = ("errors.py",)
SOURCES = {".py", ".pyx", ".pxd", ".pxi", ".pyi"}          # errors imports nothing from edgeflow at all


def test_lower_layers_never_import_upper_ones():
    pkg = pathlib.Path(edgeflow.__file__).parent
    checked = 0
    for layer, banned in MAY_NOT_IMPORT.items():
        prefixes = tuple(f"edgeflow.{name}" for name in banned)
        for src in (pkg / layer).rglob("*.p[yx]*"):          # .py .pyx .pxd .pxi .pyi
            if src.suffix not in SOURCES:
                continue                                      # compiled caches
            checked += 1
            for target in IMPORTS.findall(src.read_text()):
                assert not target.startswith(prefixes), f"{src.name} imports {target}"
    assert checked >= 5


def test_errors_module_is_a_leaf():
    pkg = pathlib.Path(edgeflow.__file__).parent
    for name in LEAVES:
        assert not IMPORTS.findall((pkg / name).read_text()), f"{name} must not import edgeflow"


def test_connectors_know_the_runtime_fields():
    from edgeflow import _nodeload
    from edgeflow.connectors import _base
    assert _base.RUNTIME_FIELDS == _nodeload.RUNTIME_KEYS
