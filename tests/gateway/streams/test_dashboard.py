"""The dashboard's Streams section in a real headless Chromium against a real app: a stream added with the
form shows up in the list and gets a live tile whose canvas shows the stream's annotated frames; deactivate
and delete from the page do what they say. Also the API docs page renders every operation."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from ..browser import INSTALL, chromium, find_chromium, open_page
from .live import LiveApp

pytestmark = pytest.mark.slow

STATE = """(() => {
  const tile = document.querySelector('.tile[data-stream-id]');
  const row = document.querySelector('#stream-rows tr[data-stream-id]');
  let pixels = null;
  if (tile && Number(tile.dataset.frames) > 0) {
    const c = tile.querySelector('canvas'), g = c.getContext('2d');
    const at = (x, y) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3));
    pixels = {mark: at(5, 5), body: at(Math.floor(c.width * 3 / 4), Math.floor(c.height / 2)),
              size: [c.width, c.height]};
  }
  return JSON.stringify({
    section: !document.getElementById('streams-section').hidden,
    rows: [...document.querySelectorAll('#stream-rows tr')].map(r => [...r.cells].map(c => c.textContent)),
    tile: tile ? {id: tile.dataset.streamId, frames: Number(tile.dataset.frames),
                  metrics: tile.querySelector('.metrics').textContent,
                  state: tile.querySelector('.state').textContent} : null,
    rowId: row ? row.dataset.streamId : null, pixels,
    error: document.getElementById('stream-error').textContent});
})()"""


def need_chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"chromium is not installed ({INSTALL})")
        pytest.skip(f"chromium is not installed ({INSTALL})")
    return exe


def test_a_stream_added_from_the_dashboard_shows_its_live_frames(app, tmp_path):
    exe = need_chromium()
    with LiveApp(tmp_path / "run", app, token="tile-token") as live, \
            chromium(exe, tmp_path / "profile", tmp_path / "chromium.log") as port:
        states, errors = asyncio.run(asyncio.wait_for(_drive(port, live), 90))
        assert live.ok("GET", "/api/streams") == []                 # deleted from the page
    # no script error, no CSP violation: only the browser's note of the refused stream's 400
    assert errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"], \
        errors
    empty, added, bad, stopped, gone = states
    assert empty["section"] and empty["rows"] == [] and empty["tile"] is None   # the app has a template
    assert added["tile"]["id"] == added["rowId"] and added["tile"]["frames"] >= 3
    row = added["rows"][0]
    assert row[0] == "cam-7" and row[1] == "synthetic://120" and row[2] == "running"
    assert json.loads(row[5]) == {"threshold": 4}
    assert "test_stream_threshold 4.0" in added["tile"]["metrics"] and added["tile"]["state"] == "running"
    pixels = added["pixels"]
    assert pixels["size"] == [96, 64]                                 # the stream's own frames
    assert all(v > 235 for v in pixels["mark"]), pixels               # through the worker (its white mark)
    assert all(abs(v - 120) <= 6 for v in pixels["body"]), pixels     # the source's grey level
    assert "option 'url'" in bad["error"] and len(bad["rows"]) == 1   # refused, with the reason shown
    assert stopped["tile"] is None and stopped["rows"][0][2] == "stopped"
    assert gone["rows"] == []


async def _drive(port: int, live: LiveApp):
    states = []

    async def state() -> dict:
        return json.loads(await page.evaluate(STATE))

    async with open_page(port, f"{live.url}/dashboard?token={live.token}") as page:
        await page.wait_for("(() => { const s = document.getElementById('streams-section'); "
                            "return s && !s.hidden; })()")
        states.append(await state())
        await page.evaluate("""(() => {
          const f = document.getElementById('stream-form');
          f.elements.namedItem('name').value = 'cam-7';
          f.elements.namedItem('url').value = 'synthetic://120';
          f.elements.namedItem('params').value = '{"threshold": 4}';
          f.querySelector('button[type=submit]').click();
        })()""")
        await page.wait_for(f"(() => {{ const s = {STATE}; const o = JSON.parse(s); return o.tile && "
                            "o.tile.frames >= 3 && o.rows.length && o.rows[0][2] === 'running' && "
                            "o.tile.metrics.includes('test_stream_threshold 4.0'); })()", timeout=40)
        states.append(await state())
        await page.evaluate("""(() => {
          const f = document.getElementById('stream-form');
          f.elements.namedItem('name').value = 'bad';
          f.elements.namedItem('url').value = 'rtsp://nowhere/live';
          f.querySelector('button[type=submit]').click();
        })()""")
        await page.wait_for("document.getElementById('stream-error').textContent.length > 0")
        states.append(await state())
        await page.evaluate("document.querySelector('#stream-rows button.deactivate').click()")
        await page.wait_for(f"(() => {{ const o = JSON.parse({STATE}); return !o.tile && o.rows.length && "
                            "o.rows[0][2] === 'stopped'; })()")
        states.append(await state())
        await page.evaluate("document.querySelector('#stream-rows button.delete').click()")
        await page.wait_for("document.querySelector('#stream-rows button.delete').textContent === "
                            "'confirm delete'")
        await page.evaluate("document.querySelector('#stream-rows button.delete').click()")
        await page.wait_for("document.querySelectorAll('#stream-rows tr').length === 0")
        states.append(await state())
        return states, list(page.errors)


def test_the_api_docs_page_renders_every_operation_and_tries_one(app, tmp_path):
    exe = need_chromium()
    with LiveApp(tmp_path / "run", app, token="doc-token") as live, \
            chromium(exe, tmp_path / "profile", tmp_path / "chromium.log") as port:
        found, errors = asyncio.run(asyncio.wait_for(_docs(port, live), 60))
        listed = live.ok("GET", "/api/streams")
    assert not errors, errors
    assert found["operations"] == ["health", "listStreams", "createStream", "getStream", "updateStream",
                                   "deleteStream", "activateStream", "deactivateStream"]
    assert found["schemas"] == ["StreamCreate", "StreamUpdate", "Stream", "Error"]
    assert "name" in found["createFields"] and "rtsp_url" in found["createFields"]
    assert found["status"] == "201" and '"name": "gate-3"' in found["result"]
    assert [s["name"] for s in listed] == ["gate-3"]                   # the try-it form's own example


async def _docs(port: int, live: LiveApp):
    async with open_page(port, f"{live.url}/api/docs?token={live.token}") as page:
        await page.wait_for("document.body && Number(document.body.dataset.operations) > 0")
        # try createStream with the example the form was filled with (is_active: the url is refused, so off)
        await page.evaluate("""(() => {
          const op = document.querySelector('[data-operation=createStream]');
          op.open = true;
          const body = op.querySelector('.try-body');
          const value = JSON.parse(body.value); value.is_active = false; body.value = JSON.stringify(value);
          op.querySelector('form.try button').click();
        })()""")
        result = "document.querySelector('[data-operation=createStream] .try-result')"
        await page.wait_for(f"{result}.dataset.status")
        found = json.loads(await page.evaluate("""JSON.stringify({
          operations: [...document.querySelectorAll('.op')].map(o => o.dataset.operation),
          schemas: [...document.querySelectorAll('.schema')].map(s => s.dataset.schema),
          createFields: [...document.querySelectorAll('[data-schema=StreamCreate] td code')]
            .map(c => c.textContent),
          status: document.querySelector('[data-operation=createStream] .try-result').dataset.status,
          result: document.querySelector('[data-operation=createStream] .try-result').textContent})"""))
        return found, list(page.errors)
