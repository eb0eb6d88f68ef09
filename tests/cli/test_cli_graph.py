"""Issue 8: `edgeflow graph FILE`: text, mermaid, dot and json (the gateway's /api/graph object)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from _clitools import EXAMPLES, NODES, edgeflow, write_app
from edgeflow.cli import _load, cli
from edgeflow.cli.graph import graph_view

QUICKSTART = str(EXAMPLES / "quickstart" / "main.py")


def test_text_lists_nodes_and_each_link_with_qos_and_route():
    result = CliRunner().invoke(cli, ["graph", QUICKSTART])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("app test-distributed-system: 3 nodes, 3 links; broker redis://localhost:")
    assert "  fake_camera    producer  30 fps, device camera" in lines
    assert "  gpu_processor  consumer  2 replicas, device gpu" in lines
    assert lines[-3:] == ["  fake_camera -> gpu_processor: shm (same host), REALTIME",
                          "  gpu_processor -> gateway: shm (same host), REALTIME",
                          "  fake_camera -> gateway: shm (same host), REALTIME"]


def test_json_is_graph_to_dict_plus_transport_and_alone_on_stdout(tmp_path):
    write_app(tmp_path, NODES + '''
print("a line the script prints while it loads")
app = EdgeApp("json-demo")
app.node(Cam, name="cam", replicas=2)
app.node(Log, name="log")
if __name__ == "__main__":
    app.link("cam").to("log", channel="raw")
    app.run()
''')
    out = edgeflow("graph", str(tmp_path / "main.py"), "--format", "json")
    assert out.returncode == 0
    view = json.loads(out.stdout)                        # nothing else on stdout
    assert "a line the script prints" in out.stderr
    expected = _load.load_app(tmp_path / "main.py").graph().to_dict()
    for edge in expected["edges"]:
        edge.update(transport="shm", reason="same host")
    assert view == expected
    assert view["edges"] == [{"source": "cam", "target": "log", "qos": "DURABLE", "channel": "raw",
                              "codec": None, "max_lag": None, "transport": "shm", "reason": "same host"}]
    assert [n["replicas"] for n in view["nodes"]] == [2, 1]     # one edge per link, replicas not expanded
    assert edgeflow("graph", str(tmp_path / "main.py"), "--json").stdout == out.stdout


def test_graph_view_is_json_able_for_every_example():
    for name in ("quickstart", "folder_style", "sensor_fusion", "people_detector"):
        path = EXAMPLES / name / "main.py"
        if path.exists():
            view = graph_view(_load.load_app(path).graph())
            assert json.loads(json.dumps(view)) == view
            assert all(edge["transport"] == "shm" for edge in view["edges"])


def test_mermaid_and_dot(tmp_path):
    write_app(tmp_path, NODES + '''
app = EdgeApp("drawn")
app.node(Cam, name="end")                 # a Mermaid keyword as a node name
app.node(Det, name="det", group="vision")
app.node(Log, name="log")
app.link("end").to("det").to("log")
if __name__ == "__main__":
    app.run()
''')
    mermaid = CliRunner().invoke(cli, ["graph", str(tmp_path / "main.py"), "-f", "mermaid"]).stdout
    assert mermaid.splitlines()[0] == "flowchart LR"
    assert 'n0["end (producer)"]' in mermaid and 'subgraph g_vision["shm group vision"]' in mermaid
    assert 'n0 -->|"REALTIME, shm"| n1' in mermaid and 'n1 ==>|"DURABLE, shm"| n2' in mermaid
    dot = CliRunner().invoke(cli, ["graph", str(tmp_path / "main.py"), "-f", "dot"]).stdout
    assert dot.startswith('digraph "drawn" {') and dot.rstrip().endswith("}")
    assert '"det" -> "log" [label="DURABLE, shm", style=bold];' in dot
    assert "subgraph cluster_0" in dot


def test_graph_errors_exit_2_with_graph_error(tmp_path):
    write_app(tmp_path, NODES + '''
app = EdgeApp("bad")
app.node(Cam, name="camera")
app.node(Det, name="detector")
app.link("camera").to("detektor")
if __name__ == "__main__":
    app.run()
''')
    out = edgeflow("graph", str(tmp_path / "main.py"))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "GraphError: link camera -> detektor: unknown node 'detektor' (did you mean 'detector'?)"]
    assert edgeflow("graph", str(tmp_path / "nothing.py")).returncode == 2
