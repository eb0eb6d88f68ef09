"""CsvSink and JsonlSink (issue 13): rows read back with Python's csv and json modules, bit-exact; rotation by
size and by capture time; a new run continuing the newest file; the sink SIGKILLed at the worst moments (after
a write not yet acknowledged, mid-line, mid-frame) and restarted: every frame once, no torn line; bad options
refused at registration. Real node processes, real files."""

from __future__ import annotations

import base64
import csv
import datetime
import io
import json
import os
import signal

import pytest

from edgeflow import EdgeApp
from edgeflow.connectors import CsvSink, JsonlSink
from edgeflow.connectors._rotate import TAIL_START, scan_tail
from edgeflow.errors import ConfigError

from . import file_nodes
from ._servers import read_lines, wait_for
from .file_nodes import T0, Telemetry, varied_message


def run(ef: EdgeApp, timeout: float = 60) -> tuple[int | None, dict]:
    with ef.start() as running:
        code = running.wait(timeout)
        stats = running.statistics()["nodes"]
    return code, stats


def csv_rows(path) -> tuple[list[str], list[dict]]:
    """(header, rows) of a CSV file, read with the csv module; the file must end with a complete line."""
    with open(path, newline="", encoding="utf-8") as file:
        text = file.read()
    assert text.endswith("\n"), f"{path}: the last line is torn"
    records = list(csv.reader(text.splitlines(keepends=True)))
    header, body = records[0], records[1:]
    assert all(len(r) == len(header) for r in body), f"{path}: a row does not have {len(header)} cells"
    return header, [dict(zip(header, r)) for r in body]


def jsonl_rows(path) -> list[dict]:
    with open(path, encoding="utf-8") as file:
        text = file.read()
    assert text.endswith("\n") or not text, f"{path}: the last line is torn"
    return [json.loads(line) for line in text.splitlines()]


def expected_json(seq: int, frame_id: int, timestamp: float) -> dict:
    """What a JSONL line holds for varied_message(seq), computed here without the sink's code."""
    m = varied_message(seq)
    row = {"frame_id": frame_id, "topic": "p", "timestamp": timestamp, "data.timestamp": m.pop("timestamp")}
    for key, value in m.items():
        if key == "pos":
            row["pos.x"], row["pos.y"] = value["x"], value["y"]
        elif key == "vector":
            row[key] = [int(v) for v in value]
        elif key == "raw":
            row[key] = base64.b64encode(value).decode()
        else:
            row[key] = value
    row["meta.site"] = "north"
    return row


def test_rows_read_back_bit_exact_from_csv_and_jsonl(app, tmp_path):
    ef = EdgeApp(app)
    ef.node(Telemetry, name="p", count=12, varied=True, step=0.1)
    ef.node(CsvSink, name="csv", path=str(tmp_path / "a" / "b" / "v.csv"))
    ef.node(JsonlSink, name="jsonl", path=str(tmp_path / "v.jsonl"))
    ef.link("p").to("csv")
    ef.link("p").to("jsonl")
    code, stats = run(ef)
    assert code == 0, stats

    header, rows = csv_rows(tmp_path / "a" / "b" / "v.csv")       # parent folders created
    assert header == ["frame_id", "topic", "timestamp", "seq", "value", "tiny", "big", "text", "ok", "none",
                      "vector", "raw", "pos.x", "pos.y", "data.timestamp", "meta.site", "extra"]
    assert len(rows) == 12
    for i, row in enumerate(rows):
        seq, m = i + 1, varied_message(i + 1)
        assert int(row["frame_id"]) == seq and row["topic"] == "p"
        assert float(row["timestamp"]) == T0 + i * 0.1                 # the capture time, bit-exact
        assert row["data.timestamp"] == m["timestamp"]
        assert int(row["seq"]) == seq and float(row["value"]) == m["value"] and int(row["big"]) == m["big"]
        assert row["tiny"] == ("" if seq % 2 == 0 else repr(m["tiny"]))   # missing: an empty cell
        assert seq % 2 == 0 or float(row["tiny"]) == m["tiny"]
        assert row["text"] == m["text"]                                   # commas, quotes, a line break
        assert row["ok"] == ("true" if m["ok"] else "false") and row["none"] == ""
        assert json.loads(row["vector"]) == [seq, -seq, 3]
        assert base64.b64decode(row["raw"]) == m["raw"]
        assert float(row["pos.x"]) == seq * 0.5 and int(row["pos.y"]) == -seq
        assert row["meta.site"] == "north"
        assert (json.loads(row["extra"]) if row["extra"] else None) == \
            ({"rare": [seq, {"deep": True}]} if seq % 3 == 0 else None)  # a field the first row lacked

    lines = jsonl_rows(tmp_path / "v.jsonl")
    assert lines == [expected_json(i + 1, i + 1, T0 + i * 0.1) for i in range(12)]
    assert stats["csv"]["extra"]["events"] == {"files": 1, "rows": 12}
    assert stats["csv"]["extra"]["connections"][str(tmp_path / "a" / "b" / "v.csv")]["state"] == "up"


def test_size_rotation_keeps_each_file_under_rotate_bytes(app, tmp_path):
    ef = EdgeApp(app)
    ef.node(Telemetry, name="p", count=40)
    ef.node(CsvSink, name="csv", path=str(tmp_path / "size.csv"), rotate_bytes=700)
    ef.node(JsonlSink, name="jsonl", path=str(tmp_path / "size.jsonl"), rotate_bytes=900, flush="batch",
            flush_rows=7)
    ef.link("p").to("csv")
    ef.link("p").to("jsonl")
    code, stats = run(ef)
    assert code == 0, stats

    def files(suffix):        # -{n} before the suffix, since the path has no placeholder
        found = sorted(tmp_path.glob(f"size-*{suffix}"), key=lambda p: int(p.stem.split("-")[1]))
        assert [p.name for p in found] == [f"size-{n}{suffix}" for n in range(1, len(found) + 1)]
        assert len(found) >= 3 and all(p.stat().st_size <= limit for p in found)
        return found

    limit = 700
    seqs = []
    for path in files(".csv"):
        header, rows = csv_rows(path)                        # every file starts with its header
        assert header[:3] == ["frame_id", "topic", "timestamp"]
        seqs += [int(r["seq"]) for r in rows]
    assert seqs == list(range(1, 41))
    limit = 900
    assert [r["seq"] for path in files(".jsonl") for r in jsonl_rows(path)] == list(range(1, 41))
    assert stats["jsonl"]["extra"]["events"]["files"] == len(list(tmp_path.glob("size-*.jsonl")))


def stamp(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def test_time_rotation_follows_capture_times(app, tmp_path):
    """Frames stamped 1 s apart, rotate_s=10: files of 10, 10 and 5 frames, named after their first frame."""
    ef = EdgeApp(app)
    ef.node(Telemetry, name="p", count=25, step=1.0)
    ef.node(JsonlSink, name="jsonl", path=str(tmp_path / "t-{start}.jsonl"), rotate_s=10)
    ef.node(CsvSink, name="csv", path=str(tmp_path / "t-{n:03d}.csv"), rotate_s=10, flush="os", flush_ms=50)
    ef.link("p").to("jsonl")
    ef.link("p").to("csv")
    code, stats = run(ef)
    assert code == 0, stats
    names = [f"t-{stamp(T0 + s)}.jsonl" for s in (0, 10, 20)]
    assert sorted(p.name for p in tmp_path.glob("t-*.jsonl")) == names
    assert [[r["seq"] for r in jsonl_rows(tmp_path / n)] for n in names] == \
        [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    assert sorted(p.name for p in tmp_path.glob("t-*.csv")) == ["t-001.csv", "t-002.csv", "t-003.csv"]
    assert [[int(r["seq"]) for r in csv_rows(tmp_path / f"t-00{n}.csv")[1]] for n in (1, 2, 3)] == \
        [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]


def test_a_new_run_continues_the_newest_file_and_cuts_a_torn_line(app, tmp_path):
    """Run 1 leaves j-1.jsonl and j-2.jsonl (rotate_s) and c.csv; a crash's torn line is appended to the
    newest of each; run 2 (the same frame ids, capture times 0.5 s later) cuts it and appends all its rows there."""
    def pipeline(name, t0):
        ef = EdgeApp(name)
        ef.node(Telemetry, name="p", count=5, step=1000.0, t0=t0)
        ef.node(JsonlSink, name="jsonl", path=str(tmp_path / "j-{n}.jsonl"), rotate_s=3600)
        ef.node(CsvSink, name="csv", path=str(tmp_path / "c.csv"))
        ef.link("p").to("jsonl")
        ef.link("p").to("csv")
        return ef

    code, _ = run(pipeline(app, T0))
    assert code == 0
    assert [len(jsonl_rows(tmp_path / f"j-{n}.jsonl")) for n in (1, 2)] == [4, 1]     # T0 + 4000 s: new file
    with open(tmp_path / "j-2.jsonl", "ab") as file:
        file.write(b'{"frame_id":6,"topic":"p","timest')
    with open(tmp_path / "c.csv", "ab") as file:
        file.write(b'6,p,1800005000.0,6,0.6000000000000001,"s')

    code, stats = run(pipeline(app + "b", T0 + 0.5))
    assert code == 0, stats
    assert sorted(p.name for p in tmp_path.glob("j-*.jsonl")) == ["j-1.jsonl", "j-2.jsonl"]
    assert [r["seq"] for r in jsonl_rows(tmp_path / "j-2.jsonl")] == [5, 1, 2, 3, 4, 5]
    header, rows = csv_rows(tmp_path / "c.csv")
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5] * 2                        # one header
    for name in ("jsonl", "csv"):
        events = stats[name]["extra"]["events"]
        assert events["torn_lines"] == 1 and "duplicates_skipped" not in events, events


def test_a_file_another_program_wrote_is_refused(app, tmp_path):
    path = tmp_path / "theirs.csv"
    path.write_text("a,b\n1,2\n")
    ef = EdgeApp(app)
    ef.node(Telemetry, name="p", count=3)
    ef.node(CsvSink, name="csv", path=str(path))
    ef.link("p").to("csv")
    code, stats = run(ef)
    assert code == 2
    assert stats["csv"]["failure"] == "stopped by a configuration error"
    why = stats["csv"]["extra"]["config_error"]
    assert f"node 'csv': option 'path': '{path}' is not a file a CsvSink wrote" in why
    assert path.read_text() == "a,b\n1,2\n"


def parsed(records: list[bytes]) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(records).decode())))


@pytest.mark.parametrize("torn", [b"", b'9,p,"half a quoted\nfield', b"9,p,1.5,no quote"])
def test_a_csv_tail_read_back_from_inside_a_quoted_field_finds_its_records(tmp_path, torn):
    """A quoted field of 90 KB with line breaks and quotes ends just before the last three rows, so the window
    read back first (the last 64 KB) starts inside it: only the count of quotes before the window tells its
    line breaks from record ends. A torn row (with an open quote and a line break in it) is left out."""
    header = ["frame_id", "topic", "timestamp", "text", "extra"]
    rows = [header] + [[str(i), "p", repr(i / 3), f'small "{i}"\nx', ""] for i in range(1, 5)]
    rows += [["5", "p", repr(5 / 3), 'line\n"q"\n' * 10_000, ""]]
    rows += [[str(i), "p", repr(i / 3), f"t{i}", ""] for i in (6, 7, 8)]
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as file:
        csv.writer(file, lineterminator="\n").writerows(rows)
    good = path.stat().st_size
    with open(path, "ab") as file:
        file.write(torn)
    text = path.read_bytes()
    begin = len(text) - TAIL_START
    assert text.index(b"line\n") < begin < text.rindex(b'"q"'), "the window must start inside the big field"

    tail = scan_tail(path, quoted=True, head=2, enough=lambda records: len(records) >= 3)
    assert (tail.good, tail.size, tail.from_start) == (good, len(text), False)
    assert parsed(tail.last) == rows[-3:]
    assert parsed(tail.head) == rows[:2]
    whole = scan_tail(path, quoted=True, head=2, enough=lambda records: False)     # grows to the whole file
    assert whole.from_start and parsed(whole.last) == rows and whole.good == good


def test_a_jsonl_head_is_its_first_line_whatever_quotes_it_holds(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"frame_id": i, "text": 'say "hi' * i}) + "\n" for i in range(1, 4)]
    path.write_text("".join(lines) + '{"frame_id": 4, "te')
    tail = scan_tail(path, quoted=False, head=1, enough=lambda records: True)
    assert [r.decode() for r in tail.head] == lines[:1] and [r.decode() for r in tail.last] == lines
    assert tail.good == len("".join(lines))


def kill_at_marks(marks, modes: list[str]) -> None:
    """SIGKILL the sink each time it notes a stall in ``marks`` (the restarted process makes the next)."""
    for i, mode in enumerate(modes):
        line = wait_for(lambda: (read_lines(marks)[i:] or [None])[0], 30, f"stall {i + 1} ({mode})")
        noted, pid = line.split()
        assert noted == mode
        os.kill(int(pid), signal.SIGKILL)


def each_frame_once(seqs_parts: list[tuple[int, int]], frames: int, parts: int) -> None:
    """Every (seq, part) exactly once. (Not in order: a frame handed out again after a crash may come after
    newer ones.)"""
    expected = [(seq, part) for seq in range(1, frames + 1) for part in range(parts)]
    assert sorted(seqs_parts) == expected, "a row is missing or duplicated"


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("array", [True, False])
def test_csv_sink_killed_mid_run_has_every_frame_once_and_no_torn_line(app, tmp_path, array):
    """A steady 200 frames/s of 3-message frames; the CsvSink SIGKILLed three times: after writing a frame it
    had not acknowledged (handed out again: skipped), in the middle of a line (cut off, written again) and
    after two of a frame's three rows (the third written on its own)."""
    marks, path, frames = tmp_path / "marks", tmp_path / "out" / "kill.csv", 120
    ef = EdgeApp(app)
    ef.node(Telemetry, name="p", count=frames, rows=3, fps=200, array=array)
    ef.node(file_nodes.StallingCsvSink, name="csv", path=str(path), marks=str(marks),
            stalls=["after", "torn", "rows"], at=5)
    ef.link("p").to("csv")
    with ef.start() as running:
        kill_at_marks(marks, ["after", "torn", "rows"])
        code = running.wait(40)
        stats = running.statistics()["nodes"]
    assert code is not None, "the run did not end"
    assert stats["csv"]["restarts"] == 3
    header, rows = csv_rows(path)
    each_frame_once([(int(r["seq"]), int(r["part"])) for r in rows], frames, 3)
    assert all(r["index"] == r["part"] for r in rows)
    events = stats["csv"]["extra"]["events"]
    assert events["duplicates_skipped"] == 1 and events["torn_lines"] == 1, events
    assert events["frames_completed"] == 2, events      # the torn frame's rows 2-3, the "rows" frame's 3rd


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_jsonl_sink_batching_killed_mid_run_has_every_frame_once(app, tmp_path):
    """flush="batch": a batch is written, then the sink is killed before acknowledging its frames (all handed
    out again: skipped); then killed with a batch written up to the middle of a line."""
    marks, path, frames = tmp_path / "marks", tmp_path / "kill.jsonl", 120
    ef = EdgeApp(app)
    ef.node(Telemetry, name="p", count=frames, rows=3, fps=200, array=True)
    ef.node(file_nodes.StallingJsonlSink, name="jsonl", path=str(path), marks=str(marks), flush="batch",
            flush_rows=30, stalls=["after", "torn"], at=2)
    ef.link("p").to("jsonl")
    with ef.start() as running:
        kill_at_marks(marks, ["after", "torn"])
        code = running.wait(40)
        stats = running.statistics()["nodes"]
    assert code is not None, "the run did not end"
    assert stats["jsonl"]["restarts"] == 2
    rows = jsonl_rows(path)
    each_frame_once([(r["seq"], r["part"]) for r in rows], frames, 3)
    events = stats["jsonl"]["extra"]["events"]
    assert events["duplicates_skipped"] >= 2 and events["torn_lines"] == 1, events


@pytest.mark.slow
def test_a_write_that_fails_is_undone_and_retried_until_it_succeeds(app, tmp_path):
    """The sink's file may not grow past 1000 bytes (RLIMIT_FSIZE: EFBIG, as on a full disk): the write that
    crosses it is cut back to the last whole row and retried with back-off, the connection shown down
    meanwhile; once the limit goes, every row is there once."""
    path = tmp_path / "full.csv"
    ef = EdgeApp(app)
    ef.node(Telemetry, name="p", count=40)
    ef.node(file_nodes.FullDiskCsvSink, name="csv", path=str(path), limit=1000, failures=2)
    ef.link("p").to("csv")
    code, stats = run(ef)
    assert code == 0, stats
    header, rows = csv_rows(path)
    assert [int(r["seq"]) for r in rows] == list(range(1, 41))
    events = stats["csv"]["extra"]["events"]
    assert events["write_errors"] == 2 and events["rows"] == 40, events
    assert stats["csv"]["extra"]["connections"][str(path)]["reconnects"] == 1      # down, then up again


@pytest.mark.parametrize("cls, options, message", [
    (CsvSink, {}, "node 'x': option 'path': required"),
    (CsvSink, {"path": "o.csv", "rotate_bytse": 10},
     "node 'x': option 'rotate_bytse': unknown option (did you mean 'rotate_bytes'?)"),
    (CsvSink, {"path": "o-{date}.csv"}, "option 'path': 'o-{date}.csv': unknown placeholder {date}"),
    (CsvSink, {"path": "o-{n/x.csv"}, "node 'x': option 'path': 'o-{n/x.csv': "),
    (JsonlSink, {"path": "{n}/x.jsonl"}, "option 'path': '{n}/x.jsonl': placeholders go in the file"),
    (JsonlSink, {"path": "x-{n:s}.jsonl"}, "node 'x': option 'path': 'x-{n:s}.jsonl': {n:s} does not format"),
    (JsonlSink, {"path": "x-{start:%Y}.jsonl"}, "'x-{start:%Y}.jsonl': {start} takes no format"),
    (CsvSink, {"path": 3}, "node 'x': option 'path': expected a file path, got 3"),
    (CsvSink, {"path": "o.csv", "flush": "sometimes"}, "node 'x': option 'flush': 'sometimes' is not one of"),
    (CsvSink, {"path": "o.csv", "flush_rows": 10}, "node 'x': option 'flush_rows': only with flush='batch'"),
    (CsvSink, {"path": "o.csv", "flush": "batch", "flush_ms": 0}, "node 'x': option 'flush_ms': 0 is out of"),
    (CsvSink, {"path": "o.csv", "rotate_bytes": 1.5}, "node 'x': option 'rotate_bytes': expected an integer"),
    (JsonlSink, {"path": "o.jsonl", "rotate_s": 0}, "node 'x': option 'rotate_s': 0 is out of range"),
    (JsonlSink, {"path": "o.jsonl", "fsync": "yes"}, "node 'x': option 'fsync': expected True or False"),
    (JsonlSink, {"path": "o.jsonl", "meta": 1}, "node 'x': option 'meta': expected True or False"),
])
def test_bad_options_fail_at_registration(app, cls, options, message):
    ef = EdgeApp(app)
    with pytest.raises(ConfigError) as info:
        ef.node(cls, name="x", **options)
    assert message in str(info.value) and "\n" not in str(info.value)
