"""``edgeflow init NAME``: a new project folder that runs with ``python main.py`` and has a passing test.

    edgeflow init my-pipeline
    cd my-pipeline && python main.py --frames 5 && pytest

The project: ``main.py`` (source -> invert -> printer: a producer, a consumer and a sink), ``test_main.py``
(each node run in-process with ``edgeflow.testing.run_node``, and the graph checked) and a README. The
templates are strings here rather than files, so they ship with the package without package-data settings.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgeflow.errors import ConfigError

MAIN = '''\
"""{app}: a producer -> consumer -> sink pipeline.

    python main.py --frames 5        # every node on this host; producers stop after 5 frames
    edgeflow graph main.py           # the pipeline, each link with its QoS and route
"""
import numpy as np

from edgeflow import ConsumerNode, EdgeApp, ProducerNode, SinkNode

app = EdgeApp("{app}")


@app.node(name="source", fps=30)
class Source(ProducerNode):
    """A synthetic camera: small frames whose pixels all hold the frame number (mod 256)."""

    def setup(self):
        self.count = 0

    def produce(self):
        self.count += 1
        return np.full((48, 64, 3), self.count % 256, dtype=np.uint8)


@app.node(name="invert")
class Invert(ConsumerNode):
    """The processing step: a negative of each frame (the input is a read-only view: return a new array)."""

    def process(self, data):
        return 255 - data


@app.node(name="printer")
class Printer(SinkNode):
    """The end of the pipeline: one line per frame (its links are DURABLE: it sees every frame)."""

    def consume(self, data):
        frame = self.current_frame
        print(f"printer: frame {{frame.frame_id}} mean {{float(data.mean()):.0f}}", flush=True)


app.link("source").to("invert").to("printer")

if __name__ == "__main__":          # node processes import this file too: run only here
    app.run()
'''

TEST = '''\
"""Tests for {app}: each node runs in this process (no processes, no shared memory)."""
import numpy as np

from edgeflow.testing import run_node

from main import Invert, Printer, Source, app


def test_source_numbers_its_frames():
    result = run_node(Source, frames=3)
    assert not result.errors
    assert [int(frame.data[0, 0, 0]) for frame in result.outputs] == [1, 2, 3]


def test_invert_returns_the_negative():
    result = run_node(Invert, [np.zeros((48, 64, 3), np.uint8)])
    assert not result.errors
    assert (result.outputs[0].data == 255).all()


def test_printer_consumes_every_frame(capsys):
    result = run_node(Printer, [np.full((4, 4, 3), 7, np.uint8)] * 2)
    assert not result.errors
    assert capsys.readouterr().out.count("printer: frame") == 2


def test_the_graph_is_source_invert_printer():
    graph = app.graph()
    assert [(edge.source, edge.target, edge.qos.name) for edge in graph.edges] == [
        ("source", "invert", "REALTIME"), ("invert", "printer", "DURABLE")]
'''

README = '''\
# {app}

An EdgeFlow pipeline: `source` (producer) -> `invert` (consumer) -> `printer` (sink).

    python main.py --frames 5     # run every node on this host, stop after 5 frames
    pytest                        # test each node in-process
    edgeflow graph main.py        # the pipeline with each link's QoS and route
    edgeflow deploy main.py --registry docker.io/you --namespace {dns} --dry-run --no-build   # k8s/
'''


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", type=click.Path(file_okay=False, path_type=Path))
def init(name: Path) -> None:
    """Create the project folder NAME: main.py (producer -> consumer -> sink), test_main.py, README.md.

    The folder's name is the app's name (letters, digits, '-' and '_'); the folder must not exist yet or
    be empty.
    """
    from edgeflow import _nodeload
    from edgeflow.deploy.manifests import dns_name

    app = name.resolve().name
    if not _nodeload.is_valid_name(app):
        raise ConfigError(f"{name}: the folder's name {app!r} becomes the app's name: "
                          f"{_nodeload.NAME_RULE}")
    if name.exists() and any(name.iterdir()):
        raise ConfigError(f"{name}: already exists and is not empty")
    name.mkdir(parents=True, exist_ok=True)
    for file, text in (("main.py", MAIN), ("test_main.py", TEST), ("README.md", README)):
        (name / file).write_text(text.format(app=app, dns=dns_name(app)))
    click.echo(f"created {name}/ (app {app!r}): main.py, test_main.py, README.md")
    click.echo(f"next: cd {name} && python main.py --frames 5 && pytest")
