"""The stream API of a real app (``python app_main.py``: launcher, supervisor, a process per node) through
every route, over both store backends: streams activated, changed live, restarted, deactivated and deleted
(their processes stop, their rings leave /dev/shm), refused with a reason, and kept across a restart of the
whole app (Ctrl-C, then ``python app_main.py`` again: the active ones run again)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from edgeflow.gateway.streams.store import TABLE

from .live import LiveApp, alive, annotated_level, decode, wait_for, watch
from .test_api import parse_metrics, seed_body

pytestmark = pytest.mark.slow


def stored_rows(live: LiveApp, backend: str, state_dir) -> list[tuple]:
    """(id, is_active) of the app's rows, read from the database directly."""
    import sqlite3
    sql = f"SELECT id, is_active FROM {TABLE} WHERE app = '{live.app}' ORDER BY created_at"
    if backend == "sqlite":
        with sqlite3.connect(state_dir / f"{live.app}.sqlite3") as conn:
            return [(i, bool(a)) for i, a in conn.execute(sql).fetchall()]
    with psycopg.connect(os.environ["EDGEFLOW_DB_URL"], autocommit=True) as conn:
        return [(i, bool(a)) for i, a in conn.execute(sql).fetchall()]


def level_frames(live: LiveApp, sid: str, level: int, frames: int = 2, timeout: float = 20.0) -> None:
    """Wait until /ws/frames shows ``frames`` annotated frames of grey ``level`` (a restart may show older
    ones first)."""
    deadline = time.monotonic() + timeout
    while True:
        images, _ = watch(live, sid, frames, timeout=max(1.0, deadline - time.monotonic()))
        seen = [annotated_level(decode(jpeg)) for _, jpeg in images]
        if all(mark and abs(got - level) <= 3 for mark, got in seen):
            return
        assert time.monotonic() < deadline, f"frames of level {level} never came: {seen}"


def node_pids(live: LiveApp, sid: str) -> dict[str, int]:
    return {name: pid for name, pid in live.pids().items() if name.startswith(f"stream-{sid}-")}


def test_every_route_against_a_running_app(app, tmp_path, backend, state_dir):
    with LiveApp(tmp_path / "run", app) as live:
        # the seed's body, active at once
        s = live.ok("POST", "/api/streams", seed_body(rtsp_url="synthetic://80", is_active=True), 201)
        sid = s["id"]
        assert s["is_active"] is True and s["url"] == s["rtsp_url"] == "synthetic://80"
        assert s["params"] == {"grid_size": 16, "threshold": 1.0}
        level_frames(live, sid, 80)
        running = wait_for(lambda: (lambda v: v if v["worker_state"] == "running" else None)(
            live.ok("GET", f"/api/streams/{sid}")), 20, "the stream running")
        assert running["nodes"] == [f"stream-{sid}-source", f"stream-{sid}-annotate"]
        assert running["topics"] == [f"stream-{sid}-annotate"] and running["worker_started_at"]
        assert [x["id"] for x in live.ok("GET", "/api/streams")] == [sid]
        first = node_pids(live, sid)
        assert len(first) == 2 and all(alive(p) for p in first.values())
        assert live.rings(sid)

        # new params reach the running worker: no restart
        changed = live.ok("PUT", f"/api/streams/{sid}", {"threshold": 2.5})
        assert changed["params"] == {"grid_size": 16, "threshold": 2.5} and changed["threshold"] == 2.5
        wait_for(lambda: ["stream-" + sid + "-annotate", "2.5"] in live.noted("params"), 10, "on_params(2.5)")
        assert node_pids(live, sid) == first
        wait_for(lambda: watch(live, sid, 2)[1][-1][1]["user_metrics"]["gauges"].get("test_stream_threshold")
                 == 2.5, 20, "the worker's gauge at its new threshold on /ws/frames")
        text = live.call("GET", "/metrics")[1]
        got = parse_metrics(text)
        worker = f"stream-{sid}-annotate"
        assert got[("test_stream_threshold", frozenset({("node", worker), ("stream_id", sid)}))] == 2.5
        assert got[("test_stream_frames_total", frozenset({("node", worker), ("stream_id", sid)}))] > 0
        assert ("edgeflow_node_fps", frozenset({("node", worker), ("stream_id", sid)})) in got
        assert ("edgeflow_edge_frames_total", frozenset({("edge", f"{worker}->gateway"),
                                                         ("stream_id", sid)})) in got
        assert got[("edgeflow_streams_total", frozenset())] == 1
        assert got[("edgeflow_streams_active", frozenset())] == 1

        # a new url restarts its processes
        live.ok("PUT", f"/api/streams/{sid}", {"rtsp_url": "synthetic://160"})
        level_frames(live, sid, 160)
        second = node_pids(live, sid)
        assert set(second.values()).isdisjoint(first.values())
        assert not any(alive(p) for p in first.values())

        # deactivate: its processes stop and its rings go; activate: back
        off = live.ok("POST", f"/api/streams/{sid}/deactivate")
        assert off["is_active"] is False and off["worker_state"] == "stopped"
        assert not any(alive(p) for p in second.values()) and not live.rings(sid)
        assert live.ok("POST", f"/api/streams/{sid}/deactivate")["is_active"] is False      # idempotent
        assert live.ok("POST", f"/api/streams/{sid}/activate")["is_active"] is True
        assert live.ok("POST", f"/api/streams/{sid}/activate")["is_active"] is True          # idempotent
        level_frames(live, sid, 160)

        # refused with a reason, and nothing changes
        status, answer = live.call("POST", "/api/streams", seed_body(rtsp_url="rtsp://cam", is_active=True))
        assert status == 400 and "option 'url': expected synthetic://" in answer["error"], answer
        bad_params = {"name": "p", "url": "synthetic://1", "is_active": True, "params": {"threshold": "high"}}
        status, answer = live.call("POST", "/api/streams", bad_params)
        assert status == 400 and "option 'params': threshold must be a number" in answer["error"], answer
        idle = live.ok("POST", "/api/streams", {"name": "idle", "url": "rtsp://cam"}, 201)
        status, answer = live.call("POST", f"/api/streams/{idle['id']}/activate")
        assert status == 400 and "option 'url'" in answer["error"]
        failed = live.ok("GET", f"/api/streams/{idle['id']}")
        assert failed["is_active"] is False and "option 'url'" in failed["error"]
        status, answer = live.call("PUT", f"/api/streams/{sid}", {"url": "nope://x"})
        assert status == 400
        level_frames(live, sid, 160)                          # the old url runs again
        assert live.ok("GET", f"/api/streams/{sid}")["url"] == "synthetic://160"
        for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/activate"),
                             ("POST", "/deactivate")):
            status, answer = live.call(method, f"/api/streams/{uuid.uuid4()}{path}",
                                       {"name": "x"} if method == "PUT" else None)
            assert status == 404 and answer["error"].startswith("unknown stream"), (method, path)
        status, answer = live.call("POST", "/api/streams", {"name": "x", "url": "u", "grid_size": "16"})
        assert status == 422 and answer["field"] == "grid_size"

        # deleting an active stream stops it first
        third = node_pids(live, sid)
        assert all(alive(p) for p in third.values())
        assert live.ok("DELETE", f"/api/streams/{sid}") == {"id": sid, "deleted": True}
        assert not any(alive(p) for p in third.values()) and not live.rings(sid)
        assert live.call("GET", f"/api/streams/{sid}")[0] == 404
        assert [x["id"] for x in live.ok("GET", "/api/streams")] == [idle["id"]]
        assert stored_rows(live, backend, state_dir) == [(idle["id"], False)]
        live.ok("DELETE", f"/api/streams/{idle['id']}")
        assert stored_rows(live, backend, state_dir) == []


def test_streams_outlive_a_restart_of_the_app(app, tmp_path, backend, state_dir):
    live = LiveApp(tmp_path / "run", app).start()
    try:
        on = live.ok("POST", "/api/streams", {"name": "on", "url": "synthetic://50", "is_active": True,
                                              "params": {"threshold": 3}}, 201)
        off = live.ok("POST", "/api/streams", {"name": "off", "url": "synthetic://90"}, 201)
        level_frames(live, on["id"], 50)
        before = live.ok("GET", "/api/streams")
        old_pids = node_pids(live, on["id"])
    finally:
        assert live.stop() == 0, live.log_tail()
    assert not any(alive(p) for p in old_pids.values())
    assert not live.rings(), "Ctrl-C leaves no ring behind"

    again = LiveApp(tmp_path / "run", app).start()                 # a new port, the same store
    try:
        after = again.ok("GET", "/api/streams")
        keys = ("id", "name", "url", "params", "is_active", "created_at")
        assert [{k: s[k] for k in keys} for s in after] == [{k: s[k] for k in keys} for s in before]
        level_frames(again, on["id"], 50)                          # activated again by the gateway
        assert set(node_pids(again, on["id"]).values()).isdisjoint(old_pids.values())
        assert not node_pids(again, off["id"]), "an inactive stream stays inactive"
        assert again.ok("GET", f"/api/streams/{off['id']}")["worker_state"] == "stopped"
        wait_for(lambda: again.ok("GET", f"/api/streams/{on['id']}")["worker_state"] == "running", 20,
                 "the restored stream running")
    finally:
        assert again.stop() == 0, again.log_tail()
    assert stored_rows(again, backend, state_dir) == [(on["id"], True), (off["id"], False)]


def test_schemathesis_finds_no_server_error(app, tmp_path):
    exe = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or shutil.which("schemathesis")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("schemathesis is not installed (pip install schemathesis)")
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    with LiveApp(tmp_path / "run", app) as live:
        done = subprocess.run(
            [exe, "run", f"{live.url}/api/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", "8", "--seed", "15",
             "--generation-database", "none", "--no-color", "--max-failures", "1"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "passed" in done.stdout and "Stateful" in done.stdout
        assert "Error handling request" not in live.log_tail(400) and " failed\n" not in live.log_tail(400)
