"""A running app that changes (edgeflow.runtime.dynamic): nodes and links added and removed without stopping
the others, refused changes that change nothing, and stream templates activated, updated and deactivated.
Real node processes; each node notes its pid and what it received in a file (tests/runtime/dynamic_nodes.py).
"""

from __future__ import annotations

import os

import pytest

from edgeflow import EdgeApp
from edgeflow.errors import ConfigError, GraphError
from edgeflow.qos import QoS
from edgeflow.runtime import metrics

from .dynamic_nodes import Collect, Hub, Scale, Tick
from .nodes import read_lines, wait_for

pytestmark = pytest.mark.slow


def pids(path) -> dict[str, int]:
    return {p[1]: int(p[2]) for p in (line.split() for line in read_lines(path)) if p[0] == "pid"}


def seen(path, topic: str) -> list[int]:
    return [int(p[1]) for p in (line.split() for line in read_lines(path)) if p[0] == topic]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def rings(app: str, node: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"edgeflow.{app}.{node}")]


def test_nodes_added_and_removed_while_the_others_run(app, tmp_path):
    out = tmp_path / "seen.txt"
    ef = EdgeApp(app)
    ef.node(Tick, name="cam1", value=1, out=str(out))
    ef.node(Collect, name="sink", out=str(out))
    ef.link("cam1").to("sink")
    with ef.start() as running:
        wait_for(lambda: seen(out, "cam1"), 10, "cam1's frames at the sink")
        before = pids(out)
        assert running.add(Tick, name="cam2", value=2, out=str(out), to="sink") == ["cam2"]
        wait_for(lambda: seen(out, "cam2"), 10, "cam2's frames at the running sink")
        assert set(seen(out, "cam2")) == {2}
        part = EdgeApp(app)                                  # a fragment: a relay between a new and an old node
        part.node(Tick, name="cam3", value=3, out=str(out))
        part.node(Scale, name="x10", params={"k": 10}, out=str(out))
        part.link("cam3").to("x10")
        part.link("x10").to("sink")
        assert sorted(running.add(part)) == ["cam3", "x10"]
        wait_for(lambda: seen(out, "x10"), 10, "x10's frames at the sink")
        assert set(seen(out, "x10")) == {30}
        graph = running.supervisor.graph
        assert [e.link for e in graph.inputs_of("sink")] == [("cam1", "sink"), ("cam2", "sink"), ("x10", "sink")]
        assert graph.inputs_of("sink")[1].qos is QoS.DURABLE    # into a sink: DURABLE, as at start

        gone_pids = [pids(out)["cam3"], pids(out)["x10"]]
        assert rings(app, "cam3") and rings(app, "x10")
        assert sorted(running.remove(["cam3", "x10"])) == ["cam3", "x10"]
        assert not any(alive(p) for p in gone_pids), "their processes are gone"
        assert not rings(app, "cam3") and not rings(app, "x10"), "and so are their rings"
        n1 = len(seen(out, "cam1"))
        wait_for(lambda: len(seen(out, "cam1")) > n1 + 2, 10, "cam1 going on")
        assert pids(out)["cam1"] == before["cam1"] and pids(out)["sink"] == before["sink"], "nothing restarted"
        stats = running.statistics()
        assert "x10" not in stats["nodes"] and stats["nodes"]["sink"]["restarts"] == 0
        assert {e["source"] for e in stats["edges"]} == {"cam1", "cam2"}


def test_a_refused_change_changes_nothing(app, tmp_path):
    out = tmp_path / "seen.txt"
    ef = EdgeApp(app)
    ef.node(Tick, name="cam", out=str(out))
    ef.node(Scale, name="a", out=str(out))
    ef.node(Collect, name="sink", out=str(out))
    ef.link("cam").to("a").to("sink")
    with ef.start() as running:
        wait_for(lambda: seen(out, "a"), 10, "frames at the sink")
        before = running.supervisor.graph
        cycle = EdgeApp(app)
        cycle.node(Scale, name="b", out=str(out))
        cycle.link("a").to("b")
        cycle.link("b").to("a")
        with pytest.raises(GraphError, match="cycle: "):
            running.add(cycle)
        with pytest.raises(GraphError, match="unknown node 'sinc'.*did you mean 'sink'"):
            running.add(Tick, name="cam9", to="sinc")
        with pytest.raises(GraphError, match="node 'cam': the running app has a node of that name"):
            running.add(Tick, name="cam", to="sink")
        with pytest.raises(GraphError, match="node 'a': no path from any producer"):
            running.remove("cam")
        with pytest.raises(GraphError, match="unknown node 'nope'"):
            running.remove("nope")
        assert running.supervisor.graph is before
        assert sorted(r.job.spec.name for r in running.supervisor.replicas) == ["a", "cam", "sink"]
        assert "b" not in pids(out) and "cam9" not in pids(out)


def test_a_removed_durable_consumer_no_longer_holds_its_producer_back(app, tmp_path):
    out = tmp_path / "seen.txt"
    ef = EdgeApp(app)
    ef.node(Tick, name="cam", fps=200, out=str(out))
    ef.node(Scale, name="a", out=str(out))
    ef.node(Collect, name="sink", out=str(out))
    ef.link("cam").to("a").to("sink")                            # a -> sink: DURABLE
    with ef.start() as running:
        wait_for(lambda: seen(out, "a"), 10, "frames at the sink")
        running.remove("sink")
        start = running.statistics()["nodes"]["a"]["frames_out"]
        # with the sink's group left in a's ring, a would block after its ring's 8 slots
        wait_for(lambda: running.statistics()["nodes"]["a"]["frames_out"] > start + 40, 10, "a going on")
        assert not running.statistics()["nodes"]["a"]["blocked"]


def stream_app(app: str, out) -> EdgeApp:
    ef = EdgeApp(app)
    ef.node(Hub, name="gateway", out=str(out))
    ef.streams(source=Tick, workers=[Scale], to="gateway", source_options={"out": str(out)},
               worker_options={"out": str(out)})
    return ef


def test_streams_activate_update_and_deactivate(app, tmp_path):
    out = tmp_path / "seen.txt"
    with stream_app(app, out).start() as running:
        info = running.streams.activate("cam-1", "4", {"k": 2})
        assert info["nodes"] == ["stream-cam-1-source", "stream-cam-1-scale"]
        assert info["topics"] == ["stream-cam-1-scale"]
        running.streams.activate("cam-2", "5", {"k": 3})
        wait_for(lambda: seen(out, "stream-cam-1-scale") and seen(out, "stream-cam-2-scale"), 10,
                 "both streams at the gateway")
        assert set(seen(out, "stream-cam-1-scale")) == {8} and set(seen(out, "stream-cam-2-scale")) == {15}
        wait_for(lambda: running.streams.list()["cam-1"]["state"] == "running", 10, "stream state running")
        stats = running.statistics()
        assert stats["nodes"]["stream-cam-1-scale"]["stream_id"] == "cam-1"
        assert "stream_id" not in stats["nodes"]["gateway"]
        graph_nodes = {n["name"]: n for n in running.supervisor.graph_dict()["nodes"]}
        assert graph_nodes["stream-cam-2-source"]["stream"] == "cam-2"

        worker = pids(out)["stream-cam-1-scale"]
        running.streams.update("cam-1", {"k": 7})                 # no restart: on_params in the same process
        wait_for(lambda: 28 in seen(out, "stream-cam-1-scale"), 10, "the new params in use")
        assert pids(out)["stream-cam-1-scale"] == worker and alive(worker)
        wait_for(lambda: running.statistics()["nodes"]["stream-cam-1-scale"]["extra"].get("user_metrics", {})
                 .get("gauges", {}).get("scale_k") == 7, 10, "the node's own gauge")
        assert running.streams.list()["cam-1"]["params"] == {"k": 7}

        running.streams.activate("cam-1", "4", {"k": 7})           # the same again: nothing restarts
        assert pids(out)["stream-cam-1-scale"] == worker
        running.streams.activate("cam-1", "6", {"k": 1})           # a new url: new processes
        wait_for(lambda: 6 in seen(out, "stream-cam-1-scale"), 10, "the new url's frames")
        assert not alive(worker)

        source = pids(out)["stream-cam-2-source"]
        running.streams.deactivate("cam-2")
        assert not alive(source) and not rings(app, "stream-cam-2")
        assert "cam-2" not in running.streams.list()
        with pytest.raises(GraphError, match="not active"):
            running.streams.deactivate("cam-2")
        running.streams.activate("cam-2", "9", {})                 # the same id again, from scratch
        wait_for(lambda: 9 in seen(out, "stream-cam-2-scale"), 10, "cam-2 back")
        assert running.wait(timeout=0.2) is None, "the gateway does not end when streams come and go"


def test_stream_operations_refuse_bad_input_and_leave_the_app_running(app, tmp_path):
    out = tmp_path / "seen.txt"
    with stream_app(app, out).start() as running:
        with pytest.raises(GraphError, match="stream 'a.b'"):
            running.streams.activate("a.b", "1")
        with pytest.raises(ConfigError, match="params must be a JSON object"):
            running.streams.activate("ok", "1", params=[1])      # type: ignore[arg-type]
        assert running.streams.list() == {}
        running.streams.activate("s", "1", {"k": 2})
        wait_for(lambda: seen(out, "stream-s-scale"), 10, "frames")
        with pytest.raises(ConfigError, match="node 'stream-s-scale': option 'params': k must be a number"):
            running.streams.update("s", {"k": "unchecked"})        # the class's check: nothing changes
        assert running.streams.list()["s"]["params"] == {"k": 2}
        with pytest.raises(ConfigError, match="option 'params'"):
            running.streams.activate("t", "1", {"k": "unchecked"})
        assert "t" not in running.streams.list()
        running.streams.update("s", {"k": "refuse"})               # the worker refuses: old params stay
        wait_for(lambda: "on_params" in (running.statistics()["nodes"]["stream-s-scale"]["last_error"] or ""),
                 10, "the refusal in the statistics")
        n = len(seen(out, "stream-s-scale"))
        wait_for(lambda: len(seen(out, "stream-s-scale")) > n + 2, 10, "frames going on")
        assert set(seen(out, "stream-s-scale")) == {2}


def test_a_stream_that_cannot_run_fails_alone(app, tmp_path):
    out = tmp_path / "seen.txt"
    with stream_app(app, out).start() as running:
        running.streams.activate("good", "2", {})
        running.streams.activate("bad", "refuse", {})
        wait_for(lambda: running.streams.list()["bad"]["state"] == "failed", 15, "the bad stream failed")
        n = len(seen(out, "stream-good-scale"))
        wait_for(lambda: len(seen(out, "stream-good-scale")) > n + 2, 10, "the good stream going on")
        assert running.wait(timeout=0.2) is None, "the app runs on"
        running.streams.deactivate("bad")
        assert "bad" not in running.streams.list()


def test_the_gateway_reaches_streams_through_control_messages(app, tmp_path):
    """What the gateway's stream API sends ("@streams" control messages), through the real supervisor."""
    out = tmp_path / "seen.txt"
    with stream_app(app, out).start() as running:
        sup = running.supervisor
        sent = []
        gateway = next(r for r in sup.replicas if r.job.spec.name == "gateway")
        sup._send = lambda rep, message: sent.append(message)     # what would go down the gateway's pipe

        def ask(ident: str, message: dict) -> dict:
            sup.dynamic.submit(lambda: sup._stream_control(gateway, {"id": ident, "node": "@streams",
                                                                     "message": message})).result(10)
            return wait_for(lambda: next((m[1]["answer"] for m in sent if m[0] == "control_result"
                                          and m[1]["id"] == ident), None), 10, f"the answer to {message}")

        assert ask("1", {"action": "template"})["template"]["workers"] == [f"{Scale.__module__}:Scale"]
        answer = ask("2", {"action": "activate", "id": "z", "url": "3", "params": {}})
        assert answer["ok"] and answer["topics"] == ["stream-z-scale"]
        assert ask("3", {"action": "deactivate", "id": "nope"})["status"] == 404
        assert ask("4", {"action": "activate", "id": "bad id", "url": "3"})["status"] == 400
        assert ask("5", {"action": "deactivate", "id": "z"})["ok"]
        assert not rings(app, "stream-z")


def test_templates_are_checked_when_declared():
    ef = EdgeApp("tmpl")
    ef.node(Hub, name="gateway")
    with pytest.raises(GraphError, match="source must be a producer"):
        ef.streams(source=Scale, to="gateway")
    with pytest.raises(GraphError, match="worker must be a consumer"):
        ef.streams(source=Tick, workers=[Collect], to="gateway")
    ef.streams(source=Tick, workers=[Scale], to="gatewy")
    with pytest.raises(GraphError, match="to='gatewy' is not a node.*did you mean 'gateway'"):
        ef.graph()
    with pytest.raises(GraphError, match="declared already"):
        ef.streams(source=Tick, to="gateway")
    ok = EdgeApp("tmpl2")
    ok.node(Hub, name="gateway")
    ok.streams(source=Tick, workers=[Scale], to="gateway")
    assert ok.graph().to_dict()["streams"]["to"] == ["gateway"]   # a gateway fed later is reached


def test_user_metrics_merge_over_replicas():
    snaps = [{"extra": {"user_metrics": {"gauges": {"g": 1.0}, "counters": {"c": 2}}}},
             {"extra": {"user_metrics": {"gauges": {"g": 3.0}, "counters": {"c": 5}}}}, {"extra": {}}]
    assert metrics.merge(snaps)["extra"]["user_metrics"] == {"gauges": {"g": 2.0}, "counters": {"c": 7}}
