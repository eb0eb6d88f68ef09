// EdgeFlow dashboard: live plots of a dict-message topic's numeric fields, drawn as inline SVG (no library).
//
// The page feeds each plot the `history` of /api/topics/{topic} (columns: seq, frame_id, timestamp, fields,
// flags), asking only for the points after the newest one it has (?since=). Fields whose ranges overlap share
// a chart (a raw value and its estimate), others get their own; a true flag (anomaly_flag) is a red mark on
// every chart at its message. What is drawn is also in data attributes, so a test reads it back from the DOM:
//   svg.plot      data-fields, data-frame-ids, data-ymin / data-ymax and the pixel rows they are drawn at,
//                 data-y-low / data-y-high
//   polyline      data-field, data-values (one per point, "" for none); its points are the drawn pixels
//   circle.mark   data-flag, data-frame-id, data-index
// Every value is written with textContent or setAttribute, never as markup.
"use strict";

window.EdgeFlowPlot = (function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 340, H = 112, LEFT = 46, RIGHT = 6, TOP = 8, BOTTOM = 8;
  const COLORS = ["#4cc2ff", "#f5b942", "#b58cff", "#3ecf8e", "#ff9f5a", "#f2d25c", "#e36bae", "#8a96a6"];
  const SHARE = 0.25;        // two ranges share a chart when they overlap by this much of the wider one

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const short = (v) => (v === null || v === undefined) ? "–" :
    (Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : String(+v.toPrecision(5)));

  // -- the points a plot holds ---------------------------------------------------------------------------
  function create(root) {
    return { root, size: 300, lastSeq: 0, seq: [], frameIds: [], fields: new Map(), flags: new Map(),
             colors: new Map() };
  }

  function clear(state) {
    state.seq = []; state.frameIds = [];
    for (const column of state.fields.values()) column.length = 0;
    for (const column of state.flags.values()) column.length = 0;
  }

  // Add a history answer to the plot; false when the topic started again (ask once more from the start).
  function update(state, history) {
    if (!history) return true;
    state.size = history.size || state.size;
    if (history.last_seq < state.lastSeq) {          // a new topic of the same name: start over
      clear(state);
      state.lastSeq = 0;
      return false;
    }
    const seq = history.seq || [];
    if (seq.length && seq[0] !== state.lastSeq + 1) clear(state);   // points were pushed out: take the window
    const before = state.seq.length;
    for (const [table, given] of [[state.fields, history.fields || {}], [state.flags, history.flags || {}]]) {
      for (const name of Object.keys(given)) {
        if (!table.has(name)) table.set(name, new Array(before).fill(null));
      }
      for (const [name, column] of table) {
        const values = given[name];
        for (let i = 0; i < seq.length; i++) column.push(values ? values[i] : null);
      }
    }
    for (const name of state.fields.keys()) {
      if (!state.colors.has(name)) state.colors.set(name, COLORS[state.colors.size % COLORS.length]);
    }
    state.seq.push(...seq);
    state.frameIds.push(...(history.frame_id || []));
    const extra = state.seq.length - state.size;
    if (extra > 0) {
      state.seq.splice(0, extra); state.frameIds.splice(0, extra);
      for (const column of state.fields.values()) column.splice(0, extra);
      for (const column of state.flags.values()) column.splice(0, extra);
    }
    state.lastSeq = history.last_seq;
    return true;
  }

  // -- which fields share a chart --------------------------------------------------------------------------
  function range(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (v !== null && v !== undefined) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return lo <= hi ? [lo, hi] : null;
  }

  function shares(a, b) {
    const span = Math.max(a[1] - a[0], b[1] - b[0]);
    const overlap = Math.min(a[1], b[1]) - Math.max(a[0], b[0]);
    if (span === 0) return a[0] === b[0];
    return overlap >= SHARE * span;
  }

  function groups(state) {
    const out = [];
    for (const [name, column] of state.fields) {
      const r = range(column);
      if (!r) continue;
      const group = out.find((g) => shares(g.range, r));
      if (group) {
        group.names.push(name);
        group.range = [Math.min(group.range[0], r[0]), Math.max(group.range[1], r[1])];
      } else {
        out.push({ names: [name], range: r });
      }
    }
    return out;
  }

  // -- drawing --------------------------------------------------------------------------------------------
  function draw(state) {
    const n = state.seq.length;
    const step = (W - LEFT - RIGHT) / Math.max(1, n - 1);
    const xOf = (i) => (n === 1 ? W - RIGHT : LEFT + i * step);
    const charts = groups(state).map((g) => chart(state, g, n, xOf));
    const marks = [];
    for (const [name, column] of state.flags) {
      const count = column.filter(Boolean).length;
      marks.push(el("span", "plot-flag" + (count ? " on" : ""), name + " " + count));
    }
    const foot = el("div", "plot-flags");
    foot.append(...marks);
    state.root.replaceChildren(...charts, ...(marks.length ? [foot] : []));
    state.root.dataset.points = String(n);
    state.root.dataset.lastSeq = String(state.lastSeq);
    state.root.dataset.lastFrameId = n ? String(state.frameIds[n - 1]) : "";
  }

  function chart(state, group, n, xOf) {
    let [lo, hi] = group.range;
    if (lo === hi) { const d = Math.abs(lo) * 0.05 || 1; lo -= d; hi += d; }
    const pad = (hi - lo) * 0.06;
    lo -= pad; hi += pad;
    const yLow = H - BOTTOM, yHigh = TOP;
    const yOf = (v) => yLow - (v - lo) / (hi - lo) * (yLow - yHigh);
    const box = el("figure", "plot-chart");
    const legend = el("figcaption", "plot-legend");
    const plot = svg("svg", { class: "plot", viewBox: `0 0 ${W} ${H}`,
                              "data-fields": group.names.join(","),
                              "data-frame-ids": state.frameIds.join(","),
                              "data-ymin": lo, "data-ymax": hi, "data-y-low": yLow, "data-y-high": yHigh,
                              "data-width": W, "data-height": H, role: "img",
                              "aria-label": group.names.join(", ") });
    plot.append(svg("line", { class: "axis", x1: LEFT, y1: yHigh, x2: LEFT, y2: yLow }),
                svg("line", { class: "axis", x1: LEFT, y1: yLow, x2: W - RIGHT, y2: yLow }),
                svg("text", { class: "tick", x: LEFT - 4, y: yHigh + 8, "text-anchor": "end" }, short(hi)),
                svg("text", { class: "tick", x: LEFT - 4, y: yLow, "text-anchor": "end" }, short(lo)));
    for (const name of group.names) {
      const column = state.fields.get(name);
      const points = [];
      column.forEach((v, i) => {
        if (v !== null && v !== undefined) points.push(xOf(i).toFixed(2) + "," + yOf(v).toFixed(2));
      });
      const color = state.colors.get(name);
      const values = column.map((v) => v ?? "").join(",");
      plot.append(svg("polyline", { class: "series", points: points.join(" "), stroke: color,
                                    "data-field": name, "data-values": values }));
      const item = el("span", "plot-key");
      const swatch = el("i");
      swatch.style.background = color;
      item.append(swatch, document.createTextNode(name + " "), el("b", "", short(column[n - 1])));
      legend.append(item);
    }
    const first = state.fields.get(group.names[0]);
    for (const [flag, column] of state.flags) {
      column.forEach((on, i) => {
        if (!on) return;
        const v = first[i];
        plot.append(svg("circle", { class: "mark", r: 3.2, cx: xOf(i).toFixed(2),
                                    cy: (v === null || v === undefined ? yHigh : yOf(v)).toFixed(2),
                                    "data-flag": flag, "data-frame-id": state.frameIds[i],
                                    "data-index": i }));
      });
    }
    box.append(legend, plot);
    return box;
  }

  return { create, update, draw };
})();
