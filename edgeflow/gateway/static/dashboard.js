// EdgeFlow dashboard: live topic cards, the pipeline graph and node/link statistics.
// Self-contained (no CDN). Every value from the server is written with textContent or as an SVG text node,
// never as markup, so a hostile topic name or metadata cannot inject script.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const cards = new Map();          // topic name -> card state
  let lastStats = null;             // newest stats message
  let statsAt = 0;                  // performance.now() when it arrived
  let ticks = 0;
  let graphKey = "";
  let viewerTopic = null;

  // -- helpers ---------------------------------------------------------------------------------------------
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
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toFixed(d);
  const ms = (v) => (v === null || v === undefined) ? "–" : (v < 10 ? Number(v).toFixed(2) : Number(v).toFixed(1));
  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function setPill(id, cls, text) {
    const p = $(id);
    p.className = "pill " + cls;
    p.textContent = text;
  }
  function banner(text) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
  }

  // -- statistics feed ---------------------------------------------------------------------------------------
  let statsSocket = null;
  let statsBackoff = 500;
  function connectStats() {
    const ws = new WebSocket(wsUrl("/ws/stats"));
    statsSocket = ws;
    ws.onopen = () => { statsBackoff = 500; setPill("conn", "pill-ok", "live"); banner(""); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "stats") onStats(msg);
    };
    ws.onclose = () => {
      if (statsSocket !== ws) return;
      setPill("conn", "pill-bad", "reconnecting");
      checkAuth();
      setTimeout(connectStats, statsBackoff);
      statsBackoff = Math.min(statsBackoff * 2, 8000);
    };
  }
  function checkAuth() {
    fetch(withToken("/api/status"), { cache: "no-store" }).then((r) => {
      if (r.status === 401) {
        banner("This gateway needs a token: open the dashboard as /dashboard?token=<token>.");
        setPill("conn", "pill-bad", "unauthorized");
      }
    }).catch(() => {});
  }

  function onStats(msg) {
    lastStats = msg;
    statsAt = performance.now();
    ticks += 1;
    document.body.dataset.ticks = String(ticks);
    $("app-name").textContent = msg.app || "";
    $("node-name").textContent = msg.node || "";
    document.title = (msg.app ? msg.app + " · " : "") + "EdgeFlow";
    setPill("ready", msg.ready ? "pill-ok" : "pill-wait", msg.ready ? "inputs attached" : "inputs not attached");
    $("uptime").textContent = duration(msg.uptime_s);
    $("updated").textContent = new Date(msg.time * 1000).toLocaleTimeString();
    updateCards(msg.topics || []);
    updateGraph(msg.nodes || [], msg.edges || []);
    updateNodeTable(msg.nodes || []);
    updateEdgeTable(msg.edges || []);
    updateViewerFacts();
  }

  // -- topic cards --------------------------------------------------------------------------------------------
  function updateCards(topics) {
    $("no-topics").hidden = topics.length > 0;
    $("topic-count").textContent = topics.length ? String(topics.length) : "";
    const seen = new Set();
    for (const t of topics) {
      seen.add(t.name);
      let card = cards.get(t.name);
      if (!card) card = addCard(t.name);
      card.info = t;
      const c = card.el;
      c.querySelector(".kind").textContent = t.kind === "data" ? "data" : (t.kind ? "video" : "");
      c.querySelector(".fps").textContent = fmt(t.fps, 1);
      c.querySelector(".res").textContent = t.width ? t.width + "×" + t.height : (t.dtype || "–");
      c.querySelector(".fid").textContent = t.frame_id === null ? "" : "#" + t.frame_id;
      c.dataset.kind = t.kind || "";
      if (t.width && t.height) c.querySelector(".media").style.aspectRatio = t.width + " / " + t.height;
      if (t.kind === "data") showData(card, t);
      else if (t.kind && !card.ws && !document.hidden) openVideo(card);
    }
    for (const [name, card] of cards) {
      if (!seen.has(name)) { closeVideo(card); card.el.remove(); cards.delete(name); }
    }
    refreshAges();
  }

  function addCard(name) {
    const node = $("card-template").content.firstElementChild.cloneNode(true);
    node.querySelector(".topic").textContent = name;
    node.querySelector(".topic").title = name;
    node.dataset.topic = name;
    node.dataset.frames = "0";
    const card = { name, el: node, canvas: node.querySelector("canvas"), ws: null, frames: 0, info: null,
                   backoff: 500, pending: null, decoding: false, bitmap: null,
                   plot: null, plotFrames: -1, plotBusy: false };
    node.addEventListener("click", () => openViewer(name));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter") openViewer(name); });
    $("cards").appendChild(node);
    cards.set(name, card);
    return card;
  }

  function openVideo(card) {
    // one WebSocket per topic: browsers limit plain HTTP connections per host, and an <img> MJPEG stream
    // would hold one each; the server sends the newest JPEG at this page's pace, encoded once for everyone
    const ws = new WebSocket(wsUrl("/ws/video/" + encodeURIComponent(card.name)));
    ws.binaryType = "blob";
    card.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") return;
      card.pending = ev.data;                 // newest only: a frame that arrives while one decodes replaces it
      card.backoff = 500;
      if (!card.decoding) drawNext(card);
    };
    ws.onclose = () => {
      if (card.ws !== ws) return;
      card.ws = null;
      if (cards.get(card.name) === card && !document.hidden) {
        setTimeout(() => { if (!card.ws && cards.get(card.name) === card && !document.hidden) openVideo(card); },
                   card.backoff);
        card.backoff = Math.min(card.backoff * 2, 8000);
      }
    };
  }

  function drawNext(card) {
    // decode off the main thread, then paint: the picture never blanks between frames
    const blob = card.pending;
    card.pending = null;
    if (!blob) return;
    card.decoding = true;
    createImageBitmap(blob).then((bitmap) => {
      if (card.bitmap) card.bitmap.close();
      card.bitmap = bitmap;
      paint(card.canvas, bitmap);
      if (viewerTopic === card.name) paint($("viewer-canvas"), bitmap);
      card.frames += 1;
      card.el.dataset.frames = String(card.frames);
      card.el.querySelector(".overlay").hidden = true;
    }).catch(() => {}).finally(() => {
      card.decoding = false;
      if (card.pending) drawNext(card);
    });
  }

  function paint(canvas, bitmap) {
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
  }

  function closeVideo(card) {
    if (card.ws) { const ws = card.ws; card.ws = null; ws.close(); }
  }

  function showData(card, t) {
    const pre = card.el.querySelector("pre.data");
    card.canvas.hidden = true;
    pre.hidden = false;
    pre.textContent = JSON.stringify(t.value === undefined ? null : t.value, null, 1);
    card.el.querySelector(".overlay").hidden = t.frame_id !== null;
    card.frames = t.frames;
    card.el.dataset.frames = String(t.frames);
    const message = t.value !== null && typeof t.value === "object" && !Array.isArray(t.value);
    if (message && t.frames !== card.plotFrames && !card.plotBusy && !document.hidden) refreshPlot(card, t);
  }

  // -- live plot of a dict-message topic (plot.js draws it) -------------------------------------------------
  function refreshPlot(card, t) {
    // only the points after the newest one drawn: a plot costs the gateway a few numbers per message
    const frames = t.frames;
    const since = card.plot ? card.plot.lastSeq : 0;
    card.plotBusy = true;
    const url = "/api/topics/" + encodeURIComponent(card.name) + "?since=" + since;
    fetch(withToken(url), { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .then((body) => {
        if (!body || !body.history || cards.get(card.name) !== card) return;
        const media = card.el.querySelector(".media");
        if (!card.plot) card.plot = EdgeFlowPlot.create(card.el.querySelector(".plots"));
        if (!EdgeFlowPlot.update(card.plot, body.history)) return;     // the topic started again: next tick
        card.plotFrames = frames;
        const drawn = card.plot.fields.size > 0;
        media.classList.toggle("plotting", drawn);
        card.plot.root.hidden = !drawn;
        if (drawn) EdgeFlowPlot.draw(card.plot);
      })
      .catch(() => {})
      .finally(() => { card.plotBusy = false; });
  }

  function refreshAges() {
    if (!lastStats) return;
    const since = (performance.now() - statsAt) / 1000;
    for (const card of cards.values()) {
      const t = card.info;
      const age = card.el.querySelector(".age");
      if (!t || t.age_s === null) { age.textContent = "–"; age.className = "age"; continue; }
      const a = t.age_s + since;
      age.textContent = duration(a);
      age.className = "age " + (a < 1 ? "age-ok" : a < 5 ? "age-warn" : "age-bad");
      const overlay = card.el.querySelector(".overlay");
      if (a >= 5) { overlay.hidden = false; overlay.textContent = "no new frames for " + duration(a); }
      else if (card.frames > 0 || t.kind === "data") overlay.hidden = true;
    }
  }

  document.addEventListener("visibilitychange", () => {
    // a hidden tab watches nothing, so the gateway encodes nothing for it
    for (const card of cards.values()) {
      if (document.hidden) closeVideo(card);
      else if (card.info && card.info.kind && card.info.kind !== "data" && !card.ws) openVideo(card);
    }
  });

  // -- full-size viewer -----------------------------------------------------------------------------------------
  function openViewer(name) {
    const card = cards.get(name);
    if (!card) return;
    viewerTopic = name;
    $("viewer-title").textContent = name;
    const isData = card.info && card.info.kind === "data";
    $("viewer-canvas").hidden = isData;
    $("viewer-data").hidden = !isData;
    if (card.bitmap) paint($("viewer-canvas"), card.bitmap);
    $("viewer").hidden = false;
    updateViewerFacts();
    showLineage();
  }
  function showLineage() {
    // the lineage of the frame shown (lineage.js): where it came from, hop by hop
    const card = viewerTopic && cards.get(viewerTopic);
    if (card && window.EdgeFlowLineage) EdgeFlowLineage.show($("viewer-lineage"), card.name, card.info, withToken);
  }
  $("viewer-canvas").addEventListener("click", showLineage);
  $("viewer-data").addEventListener("click", showLineage);
  function closeViewer() {
    viewerTopic = null;
    $("viewer").hidden = true;
  }
  function updateViewerFacts() {
    if (!viewerTopic) return;
    const card = cards.get(viewerTopic);
    if (!card || !card.info) return;
    const t = card.info;
    const facts = [fmt(t.fps, 1) + " fps", t.width ? t.width + "×" + t.height : t.dtype,
      "frame #" + t.frame_id, (t.viewers || 0) + " viewer(s)", (t.encodes || 0) + " encodes"];
    const b = t.buffer;
    if (b && b.delay_s > 0) {
      // the play-out buffer: how much it holds now, and what it had to drop (late or beyond queue_size)
      facts.push("buffer " + b.delay_s + " s: " + b.depth + "/" + b.queue_size + " held, " +
        b.late_drops + " late drops, " + b.overflow_drops + " overflow drops");
    }
    $("viewer-facts").textContent = facts.join(" · ");
    $("viewer-meta").textContent = JSON.stringify(t.meta || {}, null, 1);
    if (t.kind === "data") $("viewer-data").textContent = JSON.stringify(t.value, null, 1);
  }
  $("viewer-close").addEventListener("click", closeViewer);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeViewer(); });

  // -- pipeline graph (inline SVG) --------------------------------------------------------------------------------
  const NODE_W = 176, NODE_H = 58, COL = 360, ROW = 96, PAD = 24, LANE = 40;
  const nodeEls = new Map();
  const edgeEls = new Map();

  function layers(nodes, edges) {
    // longest path from a source: every link points right (the graph is validated acyclic)
    const layer = new Map(nodes.map((n) => [n.name, 0]));
    for (let i = 0; i < nodes.length; i++) {
      let changed = false;
      for (const e of edges) {
        if (!layer.has(e.source) || !layer.has(e.target)) continue;
        if (layer.get(e.target) < layer.get(e.source) + 1) { layer.set(e.target, layer.get(e.source) + 1); changed = true; }
      }
      if (!changed) break;
    }
    return layer;
  }

  function buildGraph(nodes, edges) {
    const root = $("graph");
    while (root.firstChild) root.removeChild(root.firstChild);
    nodeEls.clear();
    edgeEls.clear();
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                                   markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z" }));
    defs.appendChild(marker);
    root.appendChild(defs);
    const layer = layers(nodes, edges);
    const columns = [];
    for (const n of nodes) {
      const l = layer.get(n.name) || 0;
      (columns[l] = columns[l] || []).push(n.name);
    }
    // links that jump over a column run in lanes above the nodes, so they never cross a node box
    const long = edges.filter((e) => (layer.get(e.target) || 0) - (layer.get(e.source) || 0) > 1);
    const top = PAD + (long.length ? 12 + long.length * LANE : 0);
    const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
    const pos = new Map();
    columns.forEach((col, l) => {
      if (!col) return;
      const offset = (tallest - col.length) * ROW / 2;
      col.forEach((name, i) => pos.set(name, { x: PAD + l * COL, y: top + offset + i * ROW }));
    });
    const width = PAD * 2 + Math.max(0, columns.length - 1) * COL + NODE_W;
    const height = top + PAD + (tallest - 1) * ROW + NODE_H;
    root.setAttribute("viewBox", "0 0 " + width + " " + height);
    root.setAttribute("width", width);
    root.setAttribute("height", height);
    const edgeLayer = svg("g");
    root.appendChild(edgeLayer);
    edges.forEach((e, i) => {
      const a = pos.get(e.source), b = pos.get(e.target);
      if (!a || !b) return;
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 4, y2 = b.y + NODE_H / 2;
      let d, lx, ly, dy;
      const lane = long.indexOf(e);
      if (lane >= 0) {
        const y = top - 12 - lane * LANE;
        d = `M ${x1} ${y1} C ${x1 + 50} ${y1}, ${x1 + 20} ${y}, ${x1 + 80} ${y} L ${x2 - 80} ${y} ` +
            `C ${x2 - 20} ${y}, ${x2 - 50} ${y2}, ${x2} ${y2}`;
        lx = (x1 + x2) / 2; ly = y; dy = -20;          // both labels above the lane line
      } else {
        const mx = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
        lx = mx; ly = (y1 + y2) / 2; dy = 14;
      }
      const g = svg("g", { class: "edge" });
      g.appendChild(svg("path", { d, "marker-end": "url(#arrow)" }));
      const label = svg("text", { x: lx, y: ly - 6, "text-anchor": "middle" }, "");
      const drops = svg("text", { x: lx, y: ly + dy, "text-anchor": "middle", class: "drops" }, "");
      g.appendChild(label);
      g.appendChild(drops);
      edgeLayer.appendChild(g);
      edgeEls.set(i, { g, label, drops });
    });
    for (const n of nodes) {
      const p = pos.get(n.name);
      const g = svg("g", { class: "node", transform: `translate(${p.x},${p.y})` });
      const rect = svg("rect", { width: NODE_W, height: NODE_H, rx: 9, stroke: kindColor(n.type) });
      const name = svg("text", { x: 12, y: 23, class: "name" }, clip(n.name, 22));
      const sub = svg("text", { x: 12, y: 43, class: "sub" }, "");
      const title = svg("title", {}, n.name);
      g.append(rect, name, sub, title);
      root.appendChild(g);
      nodeEls.set(n.name, { sub });
    }
  }

  function kindColor(kind) {
    const v = getComputedStyle(document.documentElement).getPropertyValue("--" + (kind || "consumer"));
    return (v || "#5b6777").trim() || "#5b6777";
  }
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

  function updateGraph(nodes, edges) {
    const key = JSON.stringify([nodes.map((n) => [n.name, n.type]), edges.map((e) => [e.source, e.target])]);
    if (key !== graphKey) { graphKey = key; buildGraph(nodes, edges); }
    for (const n of nodes) {
      const item = nodeEls.get(n.name);
      if (!item) continue;
      const reps = n.replicas > 1 ? " ×" + n.replicas : "";
      const restarts = n.restarts ? " · " + n.restarts + " restarts" : "";
      item.sub.textContent = (n.type || "node") + reps + " · " + fmt(n.fps, 1) + " fps" + restarts;
    }
    edges.forEach((e, i) => {
      const item = edgeEls.get(i);
      if (!item) return;
      item.label.textContent = [e.transport || "?", e.qos || "", fmt(e.fps, 1) + " fps"].filter(Boolean).join(" · ");
      item.drops.textContent = e.drops ? e.drops + " dropped" : "";
      item.g.setAttribute("class", e.drops ? "edge dropping" : "edge");
    });
  }

  // -- tables ------------------------------------------------------------------------------------------------
  function cell(tr, text, cls) { const td = el("td", cls, text); tr.appendChild(td); return td; }

  function updateNodeTable(nodes) {
    const body = $("nodes");
    const rows = [];
    for (const n of nodes) {
      const tr = el("tr");
      const name = cell(tr, "");
      const dot = el("span", "dot");
      dot.style.background = kindColor(n.type);
      name.append(dot, document.createTextNode(n.name + (n.replicas > 1 ? " ×" + n.replicas : "")));
      cell(tr, n.type || "");
      const states = cell(tr, "");
      const counts = {};
      for (const s of n.states || []) counts[s] = (counts[s] || 0) + 1;
      for (const [s, k] of Object.entries(counts)) {
        states.appendChild(el("span", "state state-" + s, (k > 1 ? k + " " : "") + s + " "));
      }
      cell(tr, fmt(n.fps, 1), "num");
      cell(tr, n.frames_in, "num");
      cell(tr, n.frames_out, "num");
      const p = n.processing_ms || {}, l = n.latency_ms || {};
      cell(tr, ms(p.p50) + " / " + ms(p.p99) + " ms", "num");
      cell(tr, ms(l.p50) + " / " + ms(l.p99) + " ms", "num");
      const drops = cell(tr, "");
      const entries = Object.entries(n.drops || {}).filter(([, v]) => v);
      if (!entries.length) drops.textContent = "–";
      for (const [reason, count] of entries) drops.appendChild(el("span", "chip", reason + " " + count));
      cell(tr, n.restarts || 0, "num");
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function updateEdgeTable(edges) {
    const rows = edges.map((e) => {
      const tr = el("tr");
      cell(tr, (e.source || "?") + (e.channel ? "." + e.channel : "") + " → " + (e.target || "?"));
      cell(tr, e.transport || "–");
      cell(tr, e.qos || "–");
      cell(tr, fmt(e.fps, 1), "num");
      cell(tr, e.frames || 0, "num");
      const d = cell(tr, e.drops || 0, "num");
      if (e.drops) d.classList.add("age-warn");
      return tr;
    });
    $("edges").replaceChildren(...rows);
  }

  // -- start --------------------------------------------------------------------------------------------------
  $("link-metrics").href = withToken("/metrics");
  $("link-graph").href = withToken("/api/graph");
  document.body.dataset.ticks = "0";
  setInterval(refreshAges, 250);
  connectStats();
})();
