"""Issue 14 §3: EDGEFLOW_LOG_FORMAT=json (or --log-format json) makes every stderr line of a real run one JSON
object with time, level, node, replica and message, and topic and frame_id where a frame is being handled;
plain text stays the default."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from edgeflow.config import SETTINGS

pytestmark = pytest.mark.slow

APP = textwrap.dedent('''
    import logging
    import os
    import warnings

    from edgeflow import ConsumerNode, EdgeApp, ProducerNode, SinkNode

    log = logging.getLogger("testapp")


    class Count(ProducerNode):
        def produce(self):
            return {"n": 1}


    class Check(ConsumerNode):
        def process(self, data):
            frame = self.current_frame
            log.info("checking frame %d", frame.frame_id)
            if frame.frame_id == 2:
                warnings.warn("frame 2 looks odd")
            if frame.frame_id == 3:
                raise ValueError("frame 3 is bad\\nsecond line")
            return data


    class Keep(SinkNode):
        def consume(self, data):
            log.warning("kept one")


    app = EdgeApp(os.environ["TEST_APP"])
    app.node(Count, name="count", fps=100)
    app.node(Check, name="check", replicas=2)
    app.node(Keep, name="keep")
    app.link("count").to("check", qos="DURABLE")        # every frame reaches a replica
    app.link("check").to("keep")
    if __name__ == "__main__":
        app.run()
''')
FIELDS = {"time", "level", "logger", "node", "replica", "pid", "message"}


def run_app(tmp_path, app: str, *args: str, command=("python",), **env: str) -> subprocess.CompletedProcess:
    """The app above as `python main.py ARGS` (or `edgeflow run main.py ARGS`), no setting inherited."""
    (tmp_path / "main.py").write_text(APP)
    clean = {k: v for k, v in os.environ.items() if k not in {s.name for s in SETTINGS}}
    cmd = [sys.executable, "main.py"] if command == ("python",) else [sys.executable, "-m", "edgeflow.cli",
                                                                         "run", "main.py"]
    out = subprocess.run([*cmd, "--frames", "5", *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=90, env={**clean, "TEST_APP": app, "PYTHONUNBUFFERED": "1", **env})
    print(out.stdout, out.stderr, sep="\n")
    assert out.returncode == 0
    return out


def json_lines(out: subprocess.CompletedProcess) -> list[dict]:
    """Every stderr line parsed as JSON (a line that is not fails the test), each with the fields."""
    lines = out.stderr.splitlines()
    assert lines, "nothing was logged"
    records = [json.loads(line) for line in lines]
    for record in records:
        assert FIELDS <= set(record), record
        datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    return records


def check_records(records: list[dict]) -> None:
    checking = [r for r in records if r["message"].startswith("checking frame")]
    assert sorted(r["frame_id"] for r in checking) == [1, 2, 3, 4, 5]
    for r in checking:                        # the node's own line carries the frame it handles
        assert (r["level"], r["logger"], r["node"], r["topic"]) == ("INFO", "testapp", "check", "count")
        assert r["replica"] in (0, 1) and r["message"] == f"checking frame {r['frame_id']}"
    failed = [r for r in records if "ValueError" in r["message"]]
    assert len(failed) == 1                   # the runtime's line about the failing frame: that frame
    assert (failed[0]["level"], failed[0]["logger"], failed[0]["node"]) == \
        ("ERROR", "edgeflow.runtime", "check")
    assert (failed[0]["topic"], failed[0]["frame_id"]) == ("count", 3)
    assert "Traceback" in failed[0]["message"] and "second line" in failed[0]["message"]
    warned = [r for r in records if r["logger"] == "py.warnings"]
    assert len(warned) == 1 and "frame 2 looks odd" in warned[0]["message"] and warned[0]["frame_id"] == 2
    kept = [r for r in records if r["message"] == "kept one"]
    assert len(kept) == 4
    assert {(r["node"], r["replica"], r["level"]) for r in kept} == {("keep", 0, "WARNING")}
    assert all(r["topic"].startswith("check") for r in kept)


def test_json_logs_from_the_environment(tmp_path, app):
    out = run_app(tmp_path, app, EDGEFLOW_LOG_FORMAT="json")
    check_records(json_lines(out))
    assert "summary:" in out.stdout           # stdout (edges, summary) is unchanged


def test_json_logs_from_the_flag_of_edgeflow_run(tmp_path, app):
    check_records(json_lines(run_app(tmp_path, app, "--log-format", "json", command=("edgeflow", "run"))))


def test_plain_text_stays_the_default(tmp_path, app):
    lines = run_app(tmp_path, app).stderr.splitlines()
    checking = [line for line in lines if "checking frame" in line]
    assert len(checking) == 5
    for line in checking:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} check\[[01]\] checking frame [1-5]", line)
    assert not any(line.startswith("{") for line in lines)


def test_a_bad_log_format_is_a_config_error(tmp_path, app):
    (tmp_path / "main.py").write_text(APP)
    out = subprocess.run([sys.executable, "main.py", "--log-format", "xml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "TEST_APP": app})
    assert out.returncode == 2
    assert out.stderr.strip() == "ConfigError: --log-format xml: must be text or json"


def test_the_launcher_s_lines_have_no_node():
    """configure() without a node (the launcher, the supervisor): node and replica are null; a format given
    to configure() reaches the processes started after it through the environment."""
    code = ("import logging, os; from edgeflow import _logging; _logging.configure(log_format='json'); "
            "logging.getLogger('edgeflow.supervisor').warning('from the launcher'); "
            "print(os.environ['EDGEFLOW_LOG_FORMAT'])")
    clean = {k: v for k, v in os.environ.items() if k not in {s.name for s in SETTINGS}}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=clean)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stderr)
    assert FIELDS <= set(record) and "topic" not in record
    assert (record["node"], record["replica"], record["message"]) == (None, None, "from the launcher")
    assert out.stdout == "json\n"
