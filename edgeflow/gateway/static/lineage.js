// EdgeFlow dashboard: the lineage tree of the frame a viewer clicked (GET /api/lineage/{topic}/{frame_id}).
// Self-contained (no CDN). Every value from the server is written with textContent, never as markup.
"use strict";

window.EdgeFlowLineage = (function () {
  const TRACE = "edgeflow.trace";
  let asked = 0;                     // the newest request: an older answer arriving late is dropped

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return styled(e);
  }
  // the look, set through the CSSOM (the page's CSP allows no inline style sheet)
  const LOOK = {
    "lin-tree": { listStyle: "none", margin: "0", paddingLeft: "14px", borderLeft: "1px solid #2a313b" },
    "lin-line": { display: "flex", flexWrap: "wrap", gap: "6px", padding: "2px 0", fontSize: "12px" },
    "lin-id": { color: "#8a96a6", fontVariantNumeric: "tabular-nums" },
    "lin-ms": { color: "#3ecf8e", fontVariantNumeric: "tabular-nums" },
    "lin-note": { color: "#8a96a6", fontSize: "12px", fontStyle: "italic" },
    "lin-head": { fontSize: "12px", margin: "0 0 6px", color: "#d8dee6" },
    "lin-missing": { opacity: "0.6" },
  };
  function styled(e) {
    for (const cls of e.classList) Object.assign(e.style, LOOK[cls] || {});
    return e;
  }
  const ms = (v) => (v === null || v === undefined) ? "–" : (v < 10 ? Number(v).toFixed(2) : Number(v).toFixed(1));

  // the sent time of a frame's last hop: tells apart two replicas' frames with the same id
  function sentOf(meta) {
    const trace = meta && meta[TRACE];
    const last = Array.isArray(trace) && trace.length ? trace[trace.length - 1] : null;
    return Array.isArray(last) && last.length === 3 && Number.isInteger(last[2]) ? last[2] : null;
  }

  // a frame's own hop: the last of its trace (its node sent it)
  const ownHop = (item) => (item.hops && item.hops.length ? item.hops[item.hops.length - 1] : null);

  function timing(hop, link) {
    if (!hop) return "";
    return ms(hop.ms) + " ms in node" + (link === null || link === undefined ? "" : ", " + ms(link) + " ms link on");
  }

  function row(item, hop, link) {
    const li = el("li", "lin-item" + (item.missing ? " lin-missing" : ""));
    li.dataset.topic = item.topic;
    li.dataset.frameId = String(item.frame_id);
    li.dataset.node = item.node || "";
    li.dataset.missing = item.missing ? "1" : "0";
    if (hop) li.dataset.ms = String(hop.ms);
    if (link !== null && link !== undefined) li.dataset.linkMs = String(link);
    const line = el("div", "lin-line");
    line.append(el("b", "lin-node", item.node || "?"), el("span", "lin-id", item.topic + " #" + item.frame_id));
    if (hop) line.appendChild(el("span", "lin-ms", timing(hop, link)));
    if (item.missing) line.appendChild(el("span", "lin-note", "no longer in its ring"));
    else if (item.seen) line.appendChild(el("span", "lin-note", "(shown above)"));
    else if (item.truncated) line.appendChild(el("span", "lin-note", "(not read: tree too large)"));
    li.appendChild(line);
    return li;
  }

  // a frame's row: the time its node took, and the link from it on to the frame made from it (none for the root)
  function tree(item, link) {
    const hop = ownHop(item);
    const li = row(item, hop, link);
    const parents = item.parents || [];
    if (parents.length) {
      const ul = el("ul", "lin-tree");
      for (const p of parents) {
        if (p.hops) ul.appendChild(tree(p, p.link_ms === undefined ? null : p.link_ms));
        else {
          // a parent no ring holds any more: its hop is still in this frame's trace, just before this one's
          const hops = item.hops || [];
          const before = hops.length >= 2 && hops[hops.length - 2].node === p.node ? hops[hops.length - 2] : null;
          ul.appendChild(row(p, before, before ? hops[hops.length - 1].wait_ms : null));
        }
      }
      li.appendChild(ul);
    }
    return li;
  }

  function render(box, body) {
    const hops = body.hops || [];
    const total = hops.length ? (hops[hops.length - 1].sent_us - hops[0].received_us) / 1000 : null;
    const head = el("div", "lin-head");
    head.textContent = (body.node || body.topic) + " #" + body.frame_id + " · " + hops.length + " hops · " +
      ms(total) + " ms end to end" + (body.source === "gateway" ? " · from the gateway's copy" : "");
    const ul = el("ul", "lin-tree lin-root");
    ul.style.paddingLeft = "0";
    ul.style.borderLeft = "0";
    ul.appendChild(tree(body, null));
    box.replaceChildren(head, ul);
    if (body.truncated) box.appendChild(el("div", "lin-note", "more ancestors than one answer reads"));
    box.dataset.state = "ready";
    box.dataset.root = body.topic + "#" + body.frame_id;
  }

  // show the lineage of the frame `info` describes (a topic as /api/topics lists it) in `box`
  function show(box, topic, info, withToken) {
    const ask = ++asked;
    if (!info || info.frame_id === null || info.frame_id === undefined) {
      box.replaceChildren(el("div", "lin-note", "no frame yet"));
      box.dataset.state = "empty";
      return;
    }
    const sent = sentOf(info.meta);
    const url = "/api/lineage/" + encodeURIComponent(topic) + "/" + encodeURIComponent(info.frame_id) +
      (sent === null ? "" : "?sent_us=" + sent);
    box.dataset.state = "loading";
    box.dataset.root = "";
    box.replaceChildren(el("div", "lin-note", "frame #" + info.frame_id + ": reading its lineage…"));
    fetch(withToken(url), { cache: "no-store" })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (ask !== asked) return;
        if (ok) { render(box, body); return; }
        box.replaceChildren(el("div", "lin-note", "frame #" + info.frame_id + ": " + ((body && body.error) || "no lineage")));
        box.dataset.state = "error";
      })
      .catch(() => {
        if (ask !== asked) return;
        box.replaceChildren(el("div", "lin-note", "lineage unavailable"));
        box.dataset.state = "error";
      });
  }

  return { show, sentOf };
})();
