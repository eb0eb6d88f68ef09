"""Hot reload of a model block (issue 14, section 2) under load, in real node processes: the model's source file
is rewritten while a producer sends numbered messages at a steady rate; every message is processed exactly once,
by exactly one version, and the outputs switch from the old version to the new one once and never back. A new
version whose init() raises is reported and the old one keeps running."""

from __future__ import annotations

import pytest

from edgeflow import EdgeApp, QoS
from edgeflow.models import ModelNode

from . import model_nodes
from ._helpers import read_json, wait_for, write_model

N = 600
FPS = 300.0


def pipeline(app: str, model: str, out, **options) -> EdgeApp:
    """numbers -> model -> sink, DURABLE all the way (nothing is dropped for being slow)."""
    ef = EdgeApp(app)
    ef.node(model_nodes.Numbers, name="numbers", count=N, fps=FPS)
    ef.node(ModelNode, name="model", model=model, watch_interval=0.05, **options)
    ef.node(model_nodes.Lines, name="sink", out=str(out))
    ef.link("numbers").to("model", qos=QoS.DURABLE).to("sink")
    return ef


def versions_in_order(rows: list[dict]) -> list[str]:
    """The versions of the outputs in message order, each run of one version once: ["1", "2"] for a switch."""
    runs: list[str] = []
    for row in sorted(rows, key=lambda r: r["n"]):
        if not runs or runs[-1] != row["v"]:
            runs.append(row["v"])
    return runs


def check_exactly_once(rows: list[dict], factors: dict[str, int]) -> None:
    """Every message 0..N-1 once, computed by the version it names."""
    numbers = sorted(r["n"] for r in rows)
    assert numbers == list(range(N)), f"lost {sorted(set(range(N)) - set(numbers))[:10]}, " \
                                      f"{len(numbers) - len(set(numbers))} twice"
    for row in rows:
        assert row["v"] == row["meta_v"], row                # the frame's meta names the same version
        assert row["y"] == row["n"] * factors[row["v"]], row


@pytest.mark.slow
def test_a_rewritten_model_file_switches_versions_between_two_messages_under_load(app, tmp_path):
    source, out, events = tmp_path / "scale.py", tmp_path / "out.jsonl", tmp_path / "events"
    write_model(source, "1", 2)
    ef = pipeline(app, f"{source}:Scale", out, params={"events": str(events)})
    with ef.start() as running:
        wait_for(lambda: len(read_json(out)) >= 100, 30, "100 outputs of version 1")
        write_model(source, "2", 3)                          # version 2 multiplies by 3
        wait_for(lambda: any(r["v"] == "2" for r in read_json(out)), 30, "an output of version 2")
        assert running.wait(timeout=60) == 0
        model = running.statistics()["nodes"]["model"]["extra"]["model"]
    rows = read_json(out)
    check_exactly_once(rows, {"1": 2, "2": 3})
    assert versions_in_order(rows) == ["1", "2"]             # one switch point, never back
    assert len([r for r in rows if r["v"] == "2"]) < N - 100   # the switch came mid-stream
    assert (model["version"], model["reloads"], model["reload_failures"]) == ("2", 1, 0)
    assert model["last_reload_error"] is None and model["source"] == str(source)
    # version 2 was ready (init ran) before version 1 was shut down; version 2's shutdown came at the end
    assert events.read_text().splitlines() == ["init 1", "init 2", "shutdown 1", "shutdown 2"]


@pytest.mark.slow
def test_a_version_whose_init_raises_is_reported_and_the_old_one_keeps_running(app, tmp_path, capfd):
    source, out = tmp_path / "scale.py", tmp_path / "out.jsonl"
    write_model(source, "1", 2)
    ef = pipeline(app, str(source), out)                     # the file's only model block
    with ef.start() as running:
        wait_for(lambda: len(read_json(out)) >= 100, 30, "100 outputs of version 1")
        write_model(source, "2", 3, init="raise RuntimeError('calibration table missing')")

        def reported():
            model = running.statistics()["nodes"]["model"]["extra"]["model"]
            return model if model["reload_failures"] else None
        model = wait_for(reported, 30, "the failed reload in the statistics")
        assert model["version"] == "1" and model["reloads"] == 0
        assert "RuntimeError: calibration table missing" in model["last_reload_error"]
        seen = len(read_json(out))
        wait_for(lambda: len(read_json(out)) >= seen + 50, 30, "version 1 going on after the failure")
        write_model(source, None, 5)                          # a fixed version (no __version__: its hash)
        wait_for(lambda: read_json(out)[-1]["v"].startswith("src-"), 30, "the fixed version running")
        assert running.wait(timeout=60) == 0
        model = running.statistics()["nodes"]["model"]["extra"]["model"]
    rows = read_json(out)
    fixed = model["version"]
    assert fixed.startswith("src-") and model["last_reload_error"] is None
    check_exactly_once(rows, {"1": 2, fixed: 5})
    assert versions_in_order(rows) == ["1", fixed]           # version 2 never processed a message
    assert (model["reloads"], model["reload_failures"]) == (1, 1)
    err = capfd.readouterr().err
    assert "node 'model': model reload failed, version 1 keeps running: " in err
    assert "calibration table missing" in err
