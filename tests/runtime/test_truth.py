"""Issue 11, section 2: a run tells the truth. Real ``python main.py`` processes: exit codes, one traceback and
a count for a failing hook, the on_error policy, --frames with refused results, and the summary every run ends
with. Apps are written to tmp_path and run with subprocess (a sanity timeout each, never a sleep)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60                 # seconds a run that must end by itself may take before the test fails

NODES = '''
import os
import numpy as np
from edgeflow import ConsumerNode, EdgeApp, ProducerNode, SinkNode


class Cam(ProducerNode):
    fps = None

    def setup(self):
        self.i = 0

    def produce(self):
        self.i += 1
        return np.array([self.i], np.int64)


class Words(ProducerNode):
    """Returns a str every time: refused ("cannot be sent") on every call."""
    fps = None

    def produce(self):
        return "not a frame"


class Fails(ConsumerNode):
    """Raises on every frame, or only in its first process when ``once`` names a marker file."""
    once = None

    def process(self, data):
        if self.once is None or not os.path.exists(self.once):
            if self.once is not None:
                open(self.once, "w").close()
            raise ValueError(f"bad frame {int(data[0])}")       # a message that varies: still one problem
        return data.copy()


class Pass(ConsumerNode):
    def process(self, data):
        return data.copy()


class Log(SinkNode):
    out = None

    def consume(self, data):
        if self.out:
            with open(self.out, "a") as f:
                f.write(f"{int(data[0])}\\n")
'''


def write_app(tmp_path: Path, app: str, body: str) -> Path:
    """main.py in tmp_path: NODES, an EdgeApp named ``app`` and ``body`` (its nodes and links), app.run()."""
    main = tmp_path / "main.py"
    main.write_text(NODES + f"\napp = EdgeApp({app!r})\n" + body + '\nif __name__ == "__main__":\n    app.run()\n')
    return main


def run(main: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``python main.py ARGS`` to its end (TimeoutExpired fails the test: the run did not end)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(main), *args], cwd=main.parent, env=env, capture_output=True,
                          text=True, timeout=timeout)
    print(f"$ python main.py {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def summary_row(out: str, node: str) -> dict:
    """The summary's figures of one node: in, out, errors, restarts, drops (text)."""
    assert out.count("summary:") == 1, "the summary is printed exactly once"
    section = out.split("summary:", 1)[1]
    match = re.search(rf"^  {re.escape(node)} +(\d+) +(\d+) +(\d+) +(\d+)  (.*)$", section, re.M)
    assert match, f"no summary row for {node}"
    fin, fout, errors, restarts = map(int, match.groups()[:4])
    return {"in": fin, "out": fout, "errors": errors, "restarts": restarts, "drops": match.group(5)}


def test_a_node_raising_on_every_frame_exits_1_with_one_traceback_and_a_count(app, tmp_path):
    main = write_app(tmp_path, app, '''
app.node(Cam, name="cam")
app.node(Fails, name="work")
app.node(Log, name="log")
app.link("cam").to("work", qos="durable").to("log")
''')
    done = run(main, "--frames", "150")

    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert output.count("Traceback (most recent call last)") == 1, "one traceback, however many errors"
    assert output.count("work: ValueError: bad frame") == 1
    assert "work: 100 times so far: ValueError: bad frame" in output        # then a count, not a traceback
    row = summary_row(done.stdout, "work")
    assert row["in"] == 150 and row["errors"] == 150 and row["out"] == 0
    assert "error 150" in row["drops"]
    assert re.search(r"^  work: every call failed \(150 of 150\)", done.stdout, re.M), done.stdout
    assert done.stdout.rstrip().endswith("exit code 1")


def test_a_clean_run_exits_0_with_its_summary(app, tmp_path):
    main = write_app(tmp_path, app, '''
app.node(Cam, name="cam")
app.node(Pass, name="work", replicas=2)
app.node(Log, name="log")
app.link("cam").to("work", qos="durable").to("log", qos="durable")
''')
    done = run(main, "--frames", "40")

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert summary_row(done.stdout, "cam") == {"in": 0, "out": 40, "errors": 0, "restarts": 0, "drops": "-"}
    assert summary_row(done.stdout, "work")["in"] == 40          # both replicas' frames
    assert summary_row(done.stdout, "log")["in"] == 40
    assert "failed:" not in done.stdout and done.stdout.rstrip().endswith("exit code 0")


def test_frames_ends_when_every_result_is_refused_and_exits_1(app, tmp_path):
    main = write_app(tmp_path, app, '''
app.node(Words, name="words")
app.node(Log, name="log")
app.link("words").to("log")
''')
    done = run(main, "--frames", "25")              # TimeoutExpired here: the run never ended

    assert done.returncode == 1
    assert done.stderr.count("node 'words' returned str, which cannot be sent") == 1
    row = summary_row(done.stdout, "words")
    assert row["errors"] == 25 and row["out"] == 0 and "unsendable 25" in row["drops"]
    assert "words: every call failed (25 of 25)" in done.stdout


def test_on_error_restart_restarts_the_node_and_it_goes_on(app, tmp_path):
    out, marker = tmp_path / "log.txt", tmp_path / "failed-once"
    main = write_app(tmp_path, app, f'''
app.node(Cam, name="cam")
app.node(Fails, name="work", on_error="restart", once={str(marker)!r})
app.node(Log, name="log", out={str(out)!r})
app.link("cam").to("work", qos="durable").to("log", qos="durable")
''')
    done = run(main, "--frames", "30")

    assert done.returncode == 0, "one crash, restarted, then a clean run"
    assert "work[0]: crashed (exit code 1); restart 1 in 0.5 s" in done.stdout
    assert done.stderr.count("Traceback (most recent call last)") == 1
    row = summary_row(done.stdout, "work")
    assert row["restarts"] == 1 and row["errors"] == 1         # the crashed process's error is kept
    got = [int(x) for x in out.read_text().split()]
    # the frame that raised is dropped (counted: "error 1"), not handed to the restarted process again (it
    # would most likely make it crash again); DURABLE: every later frame reaches the restarted process
    assert sorted(got) == list(range(2, 31))
    assert row["drops"] == "error 1"


def test_duration_with_a_node_in_a_restart_loop_exits_1(app, tmp_path):
    main = write_app(tmp_path, app, '''
app.node(Cam, name="cam", fps=50)
app.node(Fails, name="work", on_error="restart")
app.node(Log, name="log")
app.link("cam").to("work").to("log")
''')
    done = run(main, "--duration", "4")

    assert done.returncode == 1
    row = summary_row(done.stdout, "work")
    assert row["restarts"] >= 1 and row["errors"] >= 2
    assert re.search(r"^  work: (in a restart loop|crashed \d+ times)", done.stdout, re.M), done.stdout


def test_on_error_stop_stops_the_run_and_exits_1(app, tmp_path):
    main = write_app(tmp_path, app, '''
app.node(Cam, name="cam", fps=50)          # endless: only the stop policy ends this run
app.node(Fails, name="work", on_error="stop")
app.node(Log, name="log")
app.link("cam").to("work").to("log")
''')
    done = run(main)

    assert done.returncode == 1
    assert "work[0]: stopped after an error (on_error='stop'); stopping the run" in done.stdout
    assert "restart" not in done.stdout.split("summary:")[0]
    row = summary_row(done.stdout, "work")
    assert row["errors"] == 1 and row["restarts"] == 0
    assert "work: stopped by its hook's error (on_error='stop') (last error: ValueError: bad frame" \
        in done.stdout


@pytest.mark.parametrize("value", ["retry", "'Skip'", "3"])
def test_an_invalid_on_error_is_a_config_error_naming_the_node_before_anything_runs(app, tmp_path, value):
    main = write_app(tmp_path, app, f'''
app.node(Cam, name="cam")
app.node(Pass, name="work", on_error={value if value != "retry" else repr(value)})
app.link("cam").to("work")
''')
    done = run(main, "--frames", "5")

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ConfigError: node 'work': on_error="), done.stderr
    assert "'skip', 'restart', 'stop'" in lines[0]
    assert " -> " not in done.stdout, "nothing started"


def test_a_node_run_ends_with_its_summary_and_its_exit_code(app, tmp_path):
    main = write_app(tmp_path, app, '''
app.node(Words, name="words")
app.node(Log, name="log")
app.link("words").to("log")
''')
    done = run(main, "--node", "words", "--frames", "5")

    assert done.returncode == 1, "every result refused"
    assert summary_row(done.stdout, "words")["errors"] == 5
    from edgeflow.transport.shm import sweep_app
    sweep_app(app)        # no consumer ran: the ring a --node producer leaves is this test's to remove


def test_a_clean_node_run_exits_0_with_its_summary(app, tmp_path):
    main = write_app(tmp_path, app, '''
app.node(Cam, name="cam")
app.node(Log, name="log")
app.link("cam").to("log")
''')
    done = run(main, "--node", "cam", "--frames", "5")

    assert done.returncode == 0, done.stderr
    assert summary_row(done.stdout, "cam") == {"in": 0, "out": 5, "errors": 0, "restarts": 0, "drops": "-"}


def test_a_node_whose_calls_all_fail_for_failing_after_seconds_is_failing_until_one_succeeds(monkeypatch):
    from edgeflow.runtime import metrics
    clock = [100.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    m = metrics.NodeMetrics("work")
    assert m.failed("error", "ValueError: boom") is False
    clock[0] += metrics.FAILING_AFTER - 0.1
    assert m.failed("error", "ValueError: boom") is False and not m.snapshot()["failing"]
    clock[0] += 0.2
    assert m.failed("error", "ValueError: boom") is True           # said once ...
    assert m.failed("error", "ValueError: boom") is False          # ... not again
    snap = m.snapshot()
    assert snap["failing"] and snap["was_failing"] and snap["errors"] == 4
    assert metrics.failure(metrics.merge([snap])).startswith("failing")
    assert m.succeeded() is True
    m.calls = 10                                                   # 4 errors of 10 calls, then a success
    snap = m.snapshot()
    assert not snap["failing"] and snap["was_failing"], "the run still fails: it was failing"
    assert "FAILING" not in metrics.format_table({"work": {**metrics.merge([snap]), "restarts": 0}})
