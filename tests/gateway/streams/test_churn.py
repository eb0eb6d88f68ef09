"""Churn: 8 streams activated and deactivated 50 times over the API of a real app while 2 others run steadily.
Nothing leaks (processes, rings, database rows) and the steady streams keep their frame rate (never below 0.9x
of what they did before, measured in 2-second windows at the gateway)."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from .live import LiveApp, wait_for
from .test_live import stored_rows

pytestmark = pytest.mark.slow

CHURNING, STEADY, CYCLES = 8, 2, 50
WINDOW = 2.0          # seconds per frame-rate sample


def topic_frames(live: LiveApp, topic: str) -> int:
    status, body = live.call("GET", f"/api/topics/{topic}")
    return body["frames"] if status == 200 else 0


def test_churning_streams_leak_nothing_and_do_not_slow_the_others(app, tmp_path, state_dir):
    with LiveApp(tmp_path / "run", app, workers=False, fps=10) as live:
        steady = [live.ok("POST", "/api/streams", {"name": f"steady-{i}", "url": f"synthetic://{40 + i}",
                                                   "is_active": True}, 201)["id"] for i in range(STEADY)]
        topics = [f"stream-{sid}-source" for sid in steady]
        wait_for(lambda: all(topic_frames(live, t) > 5 for t in topics), 30, "the steady streams' frames")
        churn = [live.ok("POST", "/api/streams", {"name": f"churn-{i}", "url": f"synthetic://{100 + i}"},
                         201)["id"] for i in range(CHURNING)]
        children, rings = live.children(), live.rings()
        steady_pids = {n: p for n, p in live.pids().items() if any(sid in n for sid in steady)}

        def rate_windows(stop_after: float | None, work) -> list[float]:
            """Per-window frame rates of the slower steady stream while ``work()`` runs (or for a time)."""
            rates, mark = [], (time.monotonic(), [topic_frames(live, t) for t in topics])
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                job = pool.submit(work) if work else None
                end = None if job else time.monotonic() + stop_after
                while (job is not None and not job.done()) or (end is not None and time.monotonic() < end):
                    time.sleep(0.1)
                    now = time.monotonic()
                    if now - mark[0] >= WINDOW:
                        counts = [topic_frames(live, t) for t in topics]
                        rates.append(min((c - b) / (now - mark[0]) for c, b in zip(counts, mark[1])))
                        mark = (now, counts)
                if job is not None:
                    job.result()
            return rates

        baseline = rate_windows(3 * WINDOW, None)
        normal = min(baseline)
        assert normal > 8, baseline                              # 10 fps sources

        def started() -> int:
            return sum(1 for name, _ in live.noted("pid") if any(sid in name for sid in churn))

        def cycle_all():
            with concurrent.futures.ThreadPoolExecutor(CHURNING) as calls:
                for n in range(1, CYCLES + 1):
                    on = list(calls.map(lambda s: live.call("POST", f"/api/streams/{s}/activate"), churn))
                    assert all(status == 200 for status, _ in on), on
                    # each source really ran (its ring made) before it is stopped again
                    wait_for(lambda: started() >= n * CHURNING, 30, f"cycle {n}: the 8 sources started")
                    off = list(calls.map(lambda s: live.call("POST", f"/api/streams/{s}/deactivate"), churn))
                    assert all(status == 200 and not body["is_active"] for status, body in off), off

        t0 = time.monotonic()
        during = rate_windows(None, cycle_all)
        took = time.monotonic() - t0
        assert len(during) >= 3, (during, took)
        assert min(during) >= 0.9 * normal, \
            f"steady rate {min(during):.1f} fps < 0.9 x {normal:.1f} ({during})"

        assert started() == CHURNING * CYCLES
        for sid in churn:
            live.ok("DELETE", f"/api/streams/{sid}")
        wait_for(lambda: live.children() == children, 10, "the churned streams' processes gone")
        assert live.rings() == rings, "no ring of a churned stream left"
        assert {n: p for n, p in live.pids().items() if any(sid in n for sid in steady)} == steady_pids
        assert sorted(i for i, _ in stored_rows(live, "sqlite", state_dir)) == sorted(steady)
        assert all(s["worker_state"] == "running" for s in live.ok("GET", "/api/streams"))
