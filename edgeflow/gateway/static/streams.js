// EdgeFlow dashboard: the Streams section (the gateway's stream API, docs/streams.md).
// Lists the streams with their workers' state, adds one from the form, activates, deactivates and deletes,
// and shows a live tile per active stream (its /ws/frames socket: JPEG frames and a metrics message).
// Shown only when the app declares a stream template or has streams stored. Everything from the server is
// written with textContent, never as markup.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1500;
  const tiles = new Map();          // stream id -> tile state
  let streams = [];
  let shown = false;
  let busy = false;
  const armed = new Map();          // stream id -> until when (performance.now()) its delete button is armed

  function withToken(path) {
    if (!token) return path;
    return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }
  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + withToken(path);
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  const masked = (url) => String(url).replace(/(:\/\/[^:/@]*):[^@/]*@/, "$1:***@");   // no camera passwords
  const fmt = (v) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toFixed(1);

  async function api(method, path, body) {
    const init = { method, cache: "no-store", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(withToken(path), init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Error((data && data.error) || (r.status + " " + r.statusText));
    return data;
  }

  function showError(text) {
    $("stream-error").textContent = text || "";
  }

  // -- the list ------------------------------------------------------------------------------------------------
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const [status, list] = await Promise.all([api("GET", "/api/status"), api("GET", "/api/streams")]);
      const info = status.streams || {};
      shown = Boolean(info.template) || list.length > 0;
      $("streams-section").hidden = !shown;
      streams = list;
      render();
    } catch (e) {
      /* the stats feed shows the connection state; the list comes back with the next poll */
    } finally {
      busy = false;
    }
  }

  function render() {
    $("stream-count").textContent = streams.length ? String(streams.length) : "";
    const rows = streams.map((s) => {
      const tr = el("tr");
      tr.dataset.streamId = s.id;
      tr.appendChild(el("td", "name", s.name));
      const url = el("td", "url", masked(s.url));
      url.title = masked(s.url);
      tr.appendChild(url);
      const state = el("td", "", "");
      state.appendChild(el("span", "state state-" + s.worker_state, s.worker_state));
      if (s.error) { state.title = s.error; state.appendChild(el("span", "chip", "error")); }
      tr.appendChild(state);
      tr.appendChild(el("td", "", s.source_state || "–"));
      tr.appendChild(el("td", "num", fmt(s.fps)));
      tr.appendChild(el("td", "params", JSON.stringify(s.params)));
      tr.appendChild(el("td", "", s.worker_started_at ? new Date(s.worker_started_at).toLocaleTimeString() : "–"));
      const actions = el("td", "actions");
      const toggle = el("button", s.is_active ? "deactivate" : "activate", s.is_active ? "deactivate" : "activate");
      toggle.type = "button";
      toggle.addEventListener("click", () => act("POST", "/api/streams/" + encodeURIComponent(s.id) + "/" +
                                                 (s.is_active ? "deactivate" : "activate")));
      const isArmed = (armed.get(s.id) || 0) > performance.now();
      const del = el("button", "delete danger", isArmed ? "confirm delete" : "delete");
      del.type = "button";
      del.addEventListener("click", () => {
        // two clicks: a stream's workers stop at once, so no single stray click removes it
        if ((armed.get(s.id) || 0) > performance.now()) {
          armed.delete(s.id);
          act("DELETE", "/api/streams/" + encodeURIComponent(s.id));
        } else {
          armed.set(s.id, performance.now() + 4000);
          del.textContent = "confirm delete";
        }
      });
      actions.append(toggle, del);
      tr.appendChild(actions);
      return tr;
    });
    $("stream-rows").replaceChildren(...rows);
    updateTiles();
  }

  async function act(method, path, body) {
    showError("");
    try {
      await api(method, path, body);
    } catch (e) {
      showError(e.message);
    }
    busy = false;
    await refresh();
  }

  // -- the form ------------------------------------------------------------------------------------------------
  $("stream-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const field = (name) => form.elements.namedItem(name);     // form.name is the form's own name
    const body = { name: field("name").value.trim(), url: field("url").value.trim(),
                   is_active: field("is_active").checked };
    const text = field("params").value.trim();
    if (text) {
      try { body.params = JSON.parse(text); } catch (e) { showError("params: not JSON (" + e.message + ")"); return; }
    }
    const button = form.querySelector("button");
    button.disabled = true;
    showError("");
    try {
      await api("POST", "/api/streams", body);
      for (const name of ["name", "url", "params"]) field(name).value = "";
    } catch (e) {
      showError(e.message);
    } finally {
      button.disabled = false;
    }
    busy = false;
    await refresh();
  });

  // -- live tiles ------------------------------------------------------------------------------------------------
  function updateTiles() {
    const active = new Map(streams.filter((s) => s.is_active).map((s) => [s.id, s]));
    for (const [id, s] of active) {
      let tile = tiles.get(id);
      if (!tile) tile = addTile(s);
      tile.el.querySelector(".topic").textContent = s.name;
      tile.el.querySelector(".state").textContent = s.worker_state;
      if (!tile.ws && !document.hidden) openTile(tile);
    }
    for (const [id, tile] of tiles) {
      if (!active.has(id)) { closeTile(tile); tile.el.remove(); tiles.delete(id); }
    }
  }

  function addTile(s) {
    const node = $("tile-template").content.firstElementChild.cloneNode(true);
    node.dataset.streamId = s.id;
    node.dataset.frames = "0";
    const tile = { id: s.id, el: node, canvas: node.querySelector("canvas"), ws: null, frames: 0,
                   pending: null, decoding: false, backoff: 500 };
    $("stream-tiles").appendChild(node);
    tiles.set(s.id, tile);
    return tile;
  }

  function openTile(tile) {
    const ws = new WebSocket(wsUrl("/ws/frames?stream_id=" + encodeURIComponent(tile.id)));
    ws.binaryType = "blob";
    tile.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") { onMetrics(tile, ev.data); return; }
      tile.pending = ev.data;              // newest only: a frame arriving while one decodes replaces it
      tile.backoff = 500;
      if (!tile.decoding) draw(tile);
    };
    ws.onclose = () => {
      if (tile.ws !== ws) return;
      tile.ws = null;
      if (tiles.get(tile.id) === tile && !document.hidden) {
        setTimeout(() => { if (!tile.ws && tiles.get(tile.id) === tile && !document.hidden) openTile(tile); },
                   tile.backoff);
        tile.backoff = Math.min(tile.backoff * 2, 8000);
      }
    };
  }

  function closeTile(tile) {
    if (tile.ws) { const ws = tile.ws; tile.ws = null; ws.close(); }
  }

  function draw(tile) {
    const blob = tile.pending;
    tile.pending = null;
    if (!blob) return;
    tile.decoding = true;
    createImageBitmap(blob).then((bitmap) => {
      const c = tile.canvas;
      if (c.width !== bitmap.width || c.height !== bitmap.height) { c.width = bitmap.width; c.height = bitmap.height; }
      c.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      tile.frames += 1;
      tile.el.dataset.frames = String(tile.frames);
      tile.el.querySelector(".overlay").hidden = true;
      tile.el.querySelector(".media").style.aspectRatio = c.width + " / " + c.height;
    }).catch(() => {}).finally(() => {
      tile.decoding = false;
      if (tile.pending) draw(tile);
    });
  }

  function onMetrics(tile, text) {
    let m;
    try { m = JSON.parse(text); } catch (e) { return; }
    if (m.type !== "metrics") return;
    const e = tile.el;
    e.querySelector(".fps").textContent = fmt(m.fps);
    e.querySelector(".state").textContent = m.worker_state;
    e.querySelector(".source").textContent = m.source_state || "–";
    const user = m.user_metrics || {};
    const parts = Object.entries(user.gauges || {}).map(([k, v]) => k + " " + fmt(v))
      .concat(Object.entries(user.counters || {}).map(([k, v]) => k + " " + v));
    const metrics = e.querySelector(".metrics");
    metrics.textContent = parts.join(" · ");
    metrics.title = parts.join("\n");
    e.dataset.metrics = String(Number(e.dataset.metrics || "0") + 1);
  }

  document.addEventListener("visibilitychange", () => {
    // a hidden tab watches nothing, so the gateway encodes nothing for it
    for (const tile of tiles.values()) {
      if (document.hidden) closeTile(tile);
      else if (!tile.ws) openTile(tile);
    }
    if (!document.hidden) refresh();
  });

  $("link-api").href = withToken("/api/docs");
  refresh();
  setInterval(refresh, POLL_MS);
})();
