"""A YAML pipeline's per-frame cost next to the same pipeline written in Python (issue 14: no extra cost).

    python benchmarks/bench_pipeline_yaml.py [--frames 20000] [--rounds 3]
    pytest benchmarks/bench_pipeline_yaml.py --benchmark-only

Both cases run telemetry -> scale -> stamp (small dict messages, DURABLE links, every node its own process):
``python`` builds the app with ``EdgeApp``/``app.node``/``app.link``, ``yaml`` loads the same graph with
``edgeflow.load("pipeline.yaml")`` (the classes named ``_yaml_nodes:Telemetry``...). The figure is messages/s
at the sink from its first message to its last (start-up excluded alike); the graphs are checked equal
(``Graph.to_dict()``). Cases alternate ``--rounds`` times; the medians and their ratio are printed (target:
yaml / python = 1.0x within the noise). Start-up to the first frame is measured by
tests/pipeline/test_startup.py (``edgeflow run pipeline.yaml`` beside ``python main.py``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)              # children (spawned) inherit sys.path: they import _yaml_nodes

import edgeflow  # noqa: E402
from edgeflow import EdgeApp  # noqa: E402

import _yaml_nodes  # noqa: E402

PIPELINE = """\
app: {app}
nodes:
  telemetry: {{class: "_yaml_nodes:Telemetry", options: {{messages: {n}}}}}
  scale: {{class: "_yaml_nodes:Scale"}}
  stamp: {{class: "_yaml_nodes:Stamp", options: {{messages: {n}, path: "{path}"}}}}
links:
  - {{from: telemetry, to: scale, qos: durable}}
  - {{from: scale, to: stamp, qos: durable}}
"""


def python_app(app: str, n: int, path: str) -> EdgeApp:
    built = EdgeApp(app)
    built.node(_yaml_nodes.Telemetry, name="telemetry", messages=n)
    built.node(_yaml_nodes.Scale, name="scale")
    built.node(_yaml_nodes.Stamp, name="stamp", messages=n, path=path)
    built.link("telemetry").to("scale", qos="durable")
    built.link("scale").to("stamp", qos="durable")
    return built


def yaml_app(app: str, n: int, path: str, folder: str) -> EdgeApp:
    file = pathlib.Path(folder) / "pipeline.yaml"
    file.write_text(PIPELINE.format(app=app, n=n, path=path))
    return edgeflow.load(file)


def run(case: str, n: int, tag: str) -> float:
    """Messages/s at the sink for one run of ``case`` ("python" or "yaml")."""
    with tempfile.TemporaryDirectory(prefix="edgeflow-bench-yaml-") as folder:
        path = str(pathlib.Path(folder) / "times")
        app = f"benchyaml{tag}"
        built = python_app(app, n, path) if case == "python" else yaml_app(app, n, path, folder)
        with built.start() as running:
            code = running.wait(300)
        if code != 0:
            raise RuntimeError(f"{case}: the pipeline ended with exit code {code}")
        first, last = (float(x) for x in pathlib.Path(path).read_text().split())
    return (n - 1) / (last - first)


def same_graph(n: int) -> bool:
    """True when both ways build the same graph (the sink's path aside, which is the same string here)."""
    with tempfile.TemporaryDirectory() as folder:
        a = python_app("benchyamlgraph", n, "/tmp/x").graph().to_dict()
        b = yaml_app("benchyamlgraph", n, "/tmp/x", folder).graph().to_dict()
    return a == b


def measure(n: int, rounds: int, progress=print) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"python": [], "yaml": []}
    for r in range(rounds):
        for case in (("python", "yaml") if r % 2 == 0 else ("yaml", "python")):
            rate = run(case, n, f"{case[0]}{r}{os.getpid()}")
            results[case].append(rate)
            progress(f"round {r + 1}: {case:7s} {rate:10,.0f} messages/s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not same_graph(args.frames):
        print("the YAML and Python graphs differ", file=sys.stderr)
        return 1
    results = measure(args.frames, args.rounds)
    py, yml = statistics.median(results["python"]), statistics.median(results["yaml"])
    print(f"\nper-frame cost, {args.frames} dict messages, telemetry -> scale -> stamp (DURABLE), medians of "
          f"{args.rounds}:")
    print(f"  python EdgeApp     : {py:10,.0f} messages/s")
    print(f"  edgeflow.load(yaml): {yml:10,.0f} messages/s   ({yml / py:.2f}x python; target 1.0x)")
    return 0


try:
    import pytest
except ImportError:
    pytest = None

if pytest is not None:
    FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"

    @pytest.mark.parametrize("case", ["python", "yaml"])
    def test_pipeline_messages_per_second(benchmark, case: str) -> None:
        benchmark.group = "yaml pipeline vs python (messages/s at the sink)"
        n = 300 if FAST else 5000
        counter = iter(range(1, 1 << 30))
        value = benchmark.pedantic(lambda: run(case, n, f"t{case[0]}{next(counter)}{os.getpid()}"),
                                   rounds=1 if FAST else 3, iterations=1)
        benchmark.extra_info.update(messages_per_s=value, messages=n)
        assert value > 0

    def test_both_ways_build_the_same_graph() -> None:
        assert same_graph(10)


if __name__ == "__main__":
    sys.exit(main())
