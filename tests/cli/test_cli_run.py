"""Issue 8: `edgeflow run FILE` is `python FILE`: same output, same exit codes, --node for one node."""

from __future__ import annotations

import time

import pytest

from _clitools import EXAMPLES, NODES, edgeflow, stderr_lines, write_app

pytestmark = pytest.mark.slow
QUICKSTART_EDGES = ["fake_camera -> gpu_processor: shm (same host), REALTIME",
                    "gpu_processor -> gateway: shm (same host), REALTIME",
                    "fake_camera -> gateway: shm (same host), REALTIME"]


def run_example(*args, cwd):
    """The examples have fixed app names: another test run on this host may be running one right now."""
    for _ in range(10):
        out = edgeflow("run", *args, cwd=cwd)
        if "is already running on this host" not in out.stderr:
            return out
        time.sleep(2)
    pytest.skip("another run of the example's app kept running on this host")


def test_run_the_quickstart_to_the_end(tmp_path):
    out = run_example(str(EXAMPLES / "quickstart" / "main.py"), "--frames", "20", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line for line in lines if " -> " in line] == QUICKSTART_EDGES


def test_run_passes_script_arguments_and_the_run_flags(tmp_path):
    log = tmp_path / "log.csv"
    out = run_example(str(EXAMPLES / "folder_style"), "--frames", "10", "--log", str(log), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "camera -> logger: shm (same host), DURABLE" in out.stdout
    assert len(log.read_text().splitlines()) >= 10           # the logger got every frame (plus a header)


def test_one_node_with_frames(tmp_path):
    write_app(tmp_path, NODES + '''
app = EdgeApp("one-node")
app.node(Cam, name="cam")
app.node(Log, name="log")
app.link("cam").to("log")
if __name__ == "__main__":
    app.run()
''')
    out = edgeflow("run", str(tmp_path / "main.py"), "--node", "cam", "--frames", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "cam -> log: shm (same host), DURABLE"
    assert lines[1:3] == ["summary:", "  node       in      out  errors restarts  drops"]
    assert lines[3].split() == ["cam", "0", "3", "0", "0", "-"]
    assert lines[4:] == ["exit code 0"]


@pytest.mark.parametrize("flag", [["--stats"], ["--stats", "0.5"]], ids=["bare", "interval"])
def test_run_with_stats_prints_the_table_once_per_interval(tmp_path, flag):
    write_app(tmp_path, NODES + '''
app = EdgeApp("stats-run")
app.node(Cam, name="cam", fps=20)
app.node(Log, name="log")
app.link("cam").to("log")
if __name__ == "__main__":
    app.run()
''')
    out = edgeflow("run", str(tmp_path / "main.py"), *flag, "--duration", "1.8", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    tables = out.stdout.count("proc p50")
    if flag == ["--stats"]:
        assert tables == 0, out.stdout                       # a bare --stats: every 5 s, so none in 1.8 s
    else:
        assert 2 <= tables <= 4, out.stdout                  # at about 0.5, 1.0, 1.5 s: once per interval
    assert out.stdout.count("summary:") == 1                 # and the summary once at the end


def test_unknown_node_exits_2_with_one_line():
    out = edgeflow("run", str(EXAMPLES / "quickstart" / "main.py"), "--node", "gpu_procesor")
    assert out.returncode == 2
    assert stderr_lines(out) == ["GraphError: unknown node 'gpu_procesor' (did you mean 'gpu_processor'?)"]


def test_missing_file_exits_2_with_one_line(tmp_path):
    out = edgeflow("run", str(tmp_path / "nope.py"))
    assert out.returncode == 2
    assert stderr_lines(out) == [f"ConfigError: {tmp_path / 'nope.py'}: no such file"]


def test_graph_error_exits_2(tmp_path):
    write_app(tmp_path, NODES + '''
app = EdgeApp("cyclic")
app.node(Cam, name="cam")
app.node(Det, name="a")
app.node(Det, name="b")
app.link("cam").to("a").to("b").to("a")
if __name__ == "__main__":
    app.run()
''')
    out = edgeflow("run", str(tmp_path / "main.py"), "--frames", "2")
    assert out.returncode == 2
    assert len(stderr_lines(out)) == 1 and stderr_lines(out)[0].startswith("GraphError: ")
    assert "cycle" in out.stderr


def test_bad_flag_values_exit_2():
    assert edgeflow("run", str(EXAMPLES / "quickstart"), "--frames", "0").returncode == 2
    assert edgeflow("run", str(EXAMPLES / "quickstart"), "--duration", "-1").returncode == 2


def test_a_failing_run_exits_1(tmp_path):
    write_app(tmp_path, NODES + '''
class Boom(ProducerNode):
    def setup(self):
        raise RuntimeError("cannot open the camera")
    def produce(self):
        return b"x"

app = EdgeApp("fails")
app.node(Boom, name="boom")
app.node(Log, name="log")
app.link("boom").to("log")
if __name__ == "__main__":
    app.run()
''')
    out = edgeflow("run", str(tmp_path / "main.py"), "--node", "boom", "--frames", "2", cwd=tmp_path)
    assert out.returncode == 1
    # a node that fails leaves its ring for its restart to take over (consumers wait rather than finish);
    # nothing restarts it here, so the test removes it
    from edgeflow.transport.shm import sweep_app
    assert sweep_app("fails") == ["edgeflow.fails.boom.ctl"]
