"""Issue 14, section 4: the dashboard's live plot of a dict-message topic's numeric fields, and the topic's
JSON with a short history at ``/api/topics/{topic}``.

The API tests publish dict messages into a real hub behind aiohttp's test server; the browser test runs a real
Server on a free loopback port and a real headless Chromium, and reads back what the page drew (SVG polylines'
points and their data attributes) while messages keep coming.
"""

from __future__ import annotations

import asyncio
import json
import math
import os

import numpy as np
import pytest

from edgeflow.frame import Frame
from edgeflow.gateway.fields import HISTORY

from .browser import INSTALL, chromium, find_chromium, open_page
from .helpers import client_for, run_async, serving

ANOMALIES = {7, 19, 33, 170, 402}           # frame ids whose message is flagged


def twin_message(n: int) -> dict:
    """Message n of a twin's output: a raw reading, its estimate, the residual, a flag, and a text field."""
    raw = 60 + 5 * math.sin(n / 9) + (9.0 if n in ANOMALIES else 0.0)
    estimate = 60 + 5 * math.sin((n - 1) / 9)
    return {"asset_id": "motor-001", "raw_value": raw, "twin_estimate": estimate, "residual": raw - estimate,
            "anomaly_flag": n in ANOMALIES}


def dict_frame(n: int, topic: str = "twin", message: dict | None = None) -> Frame:
    return Frame(twin_message(n) if message is None else message, frame_id=n, topic=topic,
                 timestamp=1000.0 + n / 10)


# -- the API -------------------------------------------------------------------------------------------------
@run_async
async def test_a_dict_topic_has_its_latest_message_and_the_history_of_its_numeric_fields():
    async with client_for() as (client, hub):
        for n in range(1, 11):
            hub.publish(dict_frame(n))
        hub.publish(Frame(np.arange(6.0), frame_id=1, topic="vector"))
        body = await (await client.get("/api/topics/twin")).json()
        assert body["kind"] == "data" and body["value"] == twin_message(10)       # the latest message
        history = body["history"]
        assert history["size"] == HISTORY and history["last_seq"] == 10
        assert history["seq"] == list(range(1, 11)) and history["frame_id"] == list(range(1, 11))
        assert history["timestamp"] == [1000.0 + n / 10 for n in range(1, 11)]
        assert list(history["fields"]) == ["raw_value", "twin_estimate", "residual"]    # texts left out
        for name, column in history["fields"].items():
            assert column == [twin_message(n)[name] for n in range(1, 11)], name
        assert history["flags"] == {"anomaly_flag": [n in ANOMALIES for n in range(1, 11)]}

        newer = (await (await client.get("/api/topics/twin?since=8")).json())["history"]
        assert newer["seq"] == [9, 10] and newer["fields"]["raw_value"] == [twin_message(n)["raw_value"]
                                                                            for n in (9, 10)]
        none_newer = (await (await client.get("/api/topics/twin?since=10")).json())["history"]
        assert none_newer["seq"] == [] and none_newer["last_seq"] == 10 and none_newer["fields"] == {}
        last_two = (await (await client.get("/api/topics/twin?points=2")).json())["history"]
        assert last_two["frame_id"] == [9, 10]
        for bad in ("since=-1", "since=x", "points=1.5"):
            resp = await client.get(f"/api/topics/twin?{bad}")
            assert resp.status == 400, bad
            assert (await resp.json())["parameter"] == bad.split("=")[0]

        vector = await (await client.get("/api/topics/vector")).json()
        assert vector["value"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and "history" not in vector   # no dict
        listed = (await (await client.get("/api/topics")).json())["topics"]
        assert all("history" not in t for t in listed)            # the list (and /ws/stats) stays light


@run_async
async def test_the_history_is_bounded_and_takes_numpy_nested_and_missing_fields():
    async with client_for() as (client, hub):
        for n in range(1, HISTORY + 51):
            hub.publish(dict_frame(n, "wide", {"n": np.int64(n), "x": np.float32(0.5), "pos": {"y": n / 2},
                                               "ok": np.bool_(n % 2), "bad": float("nan") if n == 60 else 1.0,
                                               **({"late": 3} if n > HISTORY + 40 else {})}))
        history = (await (await client.get("/api/topics/wide")).json())["history"]
        assert history["last_seq"] == HISTORY + 50
        assert history["frame_id"] == list(range(51, HISTORY + 51))            # the newest HISTORY points
        fields = history["fields"]
        assert fields["n"] == list(range(51, HISTORY + 51)) and set(fields["x"]) == {0.5}
        assert fields["pos.y"] == [n / 2 for n in range(51, HISTORY + 51)]
        assert fields["bad"][60 - 51] is None and fields["bad"].count(None) == 1        # NaN: no value
        assert fields["late"] == [None] * (HISTORY - 10) + [3] * 10                     # absent before
        assert history["flags"]["ok"] == [bool(n % 2) for n in range(51, HISTORY + 51)]


# -- the page ------------------------------------------------------------------------------------------------
PLOT_STATE = """(() => {
  const card = document.querySelector('.card[data-topic="twin"]');
  const plots = card && card.querySelector('.plots');
  if (!plots || plots.hidden || !plots.dataset.points) return null;
  return JSON.stringify({
    points: Number(plots.dataset.points), lastFrameId: Number(plots.dataset.lastFrameId),
    charts: [...plots.querySelectorAll('svg.plot')].map(s => ({
      fields: s.dataset.fields.split(','), frameIds: s.dataset.frameIds.split(',').map(Number),
      ymin: Number(s.dataset.ymin), ymax: Number(s.dataset.ymax),
      yLow: Number(s.dataset.yLow), yHigh: Number(s.dataset.yHigh),
      box: (r => [r.width, r.height])(s.getBoundingClientRect()),
      series: [...s.querySelectorAll('polyline')].map(p => ({
        field: p.dataset.field, values: p.dataset.values.split(',').map(Number),
        points: p.getAttribute('points').split(' ').map(xy => xy.split(',').map(Number)),
        color: p.getAttribute('stroke')})),
      marks: [...s.querySelectorAll('circle.mark')].map(c => ({
        frameId: Number(c.dataset.frameId), flag: c.dataset.flag, cy: Number(c.getAttribute('cy'))}))})),
    legend: [...plots.querySelectorAll('.plot-key')].map(k => k.textContent),
    flags: [...plots.querySelectorAll('.plot-flag')].map(k => k.textContent)});
})()"""


def check_plot(state: dict, first: int, last: int) -> None:
    """The page drew messages first..last of the twin topic: every value, at the right height, marks where
    the messages were flagged."""
    frames = list(range(first, last + 1))
    assert state["points"] == len(frames) and state["lastFrameId"] == last
    charts = {tuple(c["fields"]): c for c in state["charts"]}
    assert set(charts) == {("raw_value", "twin_estimate"), ("residual",)}, list(charts)   # raw vs estimate
    for chart in charts.values():
        assert chart["frameIds"] == frames and chart["box"][0] > 200 and chart["box"][1] > 40
        scale = (chart["yLow"] - chart["yHigh"]) / (chart["ymax"] - chart["ymin"])
        for series in chart["series"]:
            expected = [twin_message(n)[series["field"]] for n in frames]
            assert series["values"] == expected, series["field"]               # the exact numbers
            drawn = [chart["ymin"] + (chart["yLow"] - y) / scale for _, y in series["points"]]
            assert np.allclose(drawn, expected, atol=0.02 / scale), series["field"]   # and where they are
            xs = [x for x, _ in series["points"]]
            assert xs == sorted(xs) and len(set(xs)) == len(xs)                    # oldest left, newest right
        flagged = [n for n in frames if n in ANOMALIES]
        assert [m["frameId"] for m in chart["marks"]] == flagged
        assert all(m["flag"] == "anomaly_flag" for m in chart["marks"])
        first_series = chart["series"][0]
        for mark in chart["marks"]:                 # on the chart's first line, at the flagged message
            i = chart["frameIds"].index(mark["frameId"])
            assert abs(mark["cy"] - first_series["points"][i][1]) < 0.01
    colors = [s["color"] for c in charts.values() for s in c["series"]]
    assert len(set(colors)) == 3
    assert state["flags"] == [f"anomaly_flag {len([n for n in frames if n in ANOMALIES])}"]
    assert any(text.startswith("raw_value ") for text in state["legend"])


def test_the_dashboard_plots_a_dict_topic_live_with_its_anomalies_marked(tmp_path):
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"chromium is not installed ({INSTALL})")
        pytest.skip(f"chromium is not installed ({INSTALL})")
    with serving(stats_interval=0.2) as server, chromium(exe, tmp_path / "profile", tmp_path / "log") as port:
        states, png, errors = asyncio.run(asyncio.wait_for(_watch(port, server), 60))
    (tmp_path / "plot.png").write_bytes(png)
    assert not errors, errors
    check_plot(states[0], 1, 40)
    check_plot(states[1], 41 + 420 - HISTORY, 460)        # more than the window: the newest HISTORY points


def drawn(frame_id: int) -> str:
    """A page expression: the plot's newest point is message ``frame_id``."""
    return f"(() => {{ const s = {PLOT_STATE}; return s && JSON.parse(s).lastFrameId === {frame_id}; }})()"


async def _watch(port: int, server):
    states = []
    for n in range(1, 41):
        server.on_frame(dict_frame(n))
    async with open_page(port, server.url + "/dashboard") as page:
        await page.wait_for(drawn(40))
        states.append(json.loads(await page.evaluate(PLOT_STATE)))
        for n in range(41, 461):              # live: messages keep coming while the page draws
            server.on_frame(dict_frame(n))
            if n % 60 == 0:
                await asyncio.sleep(0.1)
        await page.wait_for(drawn(460))
        states.append(json.loads(await page.evaluate(PLOT_STATE)))
        png = await page.screenshot()
        return states, png, list(page.errors)
