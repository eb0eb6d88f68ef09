"""`edgeflow graph` shows what each stream of a stream template becomes."""

from __future__ import annotations

from edgeflow import EdgeApp
from edgeflow.cli.graph import format_text
from tests.runtime.dynamic_nodes import Hub, Scale, Tick


def test_the_text_view_names_the_stream_template():
    app = EdgeApp("fleet")
    app.node(Hub, name="gateway")
    app.streams(source=Tick, workers=[Scale], to="gateway")
    text = format_text(app.graph())
    assert text.splitlines()[-1] == "  stream-<id>-source -> stream-<id>-scale -> gateway, REALTIME"
