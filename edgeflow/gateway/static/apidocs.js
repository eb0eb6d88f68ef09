// EdgeFlow API docs: renders /api/openapi.json (operations, parameters, bodies, responses, schemas) with a
// try-it form per operation. Self-contained (no CDN); every value is written with textContent, never as markup.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const METHODS = ["get", "post", "put", "delete", "patch"];
  let doc = null;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function token() { return $("token").value.trim(); }
  function withToken(path) {
    const t = token();
    if (!t) return path;
    return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(t);
  }

  // -- schemas ---------------------------------------------------------------------------------------------------
  function resolve(schema) {
    if (schema && schema.$ref) return doc.components.schemas[schema.$ref.split("/").pop()] || {};
    return schema || {};
  }
  function refName(schema) { return schema && schema.$ref ? schema.$ref.split("/").pop() : null; }
  function typeText(schema) {
    const name = refName(schema);
    if (name) return name;
    const s = schema || {};
    if (s.type === "array") return "array of " + typeText(s.items);
    let t = s.type || "any";
    if (s.format) t += " (" + s.format + ")";
    if (s.nullable) t += " | null";
    return t;
  }
  function constraints(s) {
    const out = [];
    if (s.minLength !== undefined || s.maxLength !== undefined) out.push((s.minLength || 0) + "–" + (s.maxLength || "…") + " chars");
    if (s.minimum !== undefined || s.maximum !== undefined) out.push((s.minimum ?? "…") + " ≤ x ≤ " + (s.maximum ?? "…"));
    if (s.enum) out.push("one of " + s.enum.join(", "));
    if (s.maxProperties !== undefined) out.push("≤ " + s.maxProperties + " keys");
    if (s.default !== undefined) out.push("default " + JSON.stringify(s.default));
    return out.join("; ");
  }
  function fieldTable(schema) {
    const s = resolve(schema);
    if (s.type === "array") {
      const p = el("p", "", "A JSON array of " + typeText(s.items) + ".");
      return p;
    }
    const props = s.properties || {};
    const required = new Set(s.required || []);
    const table = el("table");
    const head = el("tr");
    for (const h of ["field", "type", "", "constraints", "description"]) head.appendChild(el("th", "", h));
    table.appendChild(head);
    for (const [name, raw] of Object.entries(props)) {
      const sub = resolve(raw);
      const tr = el("tr");
      tr.appendChild(el("td", "", "")).appendChild(el("code", "", name));
      tr.appendChild(el("td", "type", typeText(raw)));
      tr.appendChild(el("td", "req", required.has(name) ? "required" : ""));
      tr.appendChild(el("td", "", constraints(sub)));
      tr.appendChild(el("td", "", sub.description || ""));
      table.appendChild(tr);
    }
    if (s.anyOf) {
      const tr = el("tr");
      const td = el("td", "", "one of: " + s.anyOf.map((a) => (a.required || []).join(" + ")).join(" or ") + " is required");
      td.colSpan = 5;
      tr.appendChild(td);
      table.appendChild(tr);
    }
    return table;
  }

  // -- operations --------------------------------------------------------------------------------------------------
  function renderOperation(path, method, op, shared) {
    const node = $("op-template").content.firstElementChild.cloneNode(true);
    node.dataset.operation = op.operationId || (method + " " + path);
    node.querySelector(".method").textContent = method.toUpperCase();
    node.querySelector(".method").classList.add(method);
    node.querySelector(".path").textContent = path;
    node.querySelector(".summary").textContent = op.summary || "";
    const parameters = [...(shared || []), ...(op.parameters || [])];
    if (parameters.length) {
      const box = node.querySelector(".params");
      box.appendChild(el("h4", "", "Parameters"));
      const table = el("table");
      for (const p of parameters) {
        const tr = el("tr");
        tr.appendChild(el("td", "", "")).appendChild(el("code", "", p.name));
        tr.appendChild(el("td", "type", p.in + " · " + typeText(p.schema)));
        tr.appendChild(el("td", "", p.description || ""));
        table.appendChild(tr);
      }
      box.appendChild(table);
    }
    const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    if (body) {
      const box = node.querySelector(".request");
      box.appendChild(el("h4", "", "Request body: " + (refName(body.schema) || "JSON")));
      box.appendChild(fieldTable(body.schema));
    }
    const responses = node.querySelector(".responses");
    responses.appendChild(el("h4", "", "Responses"));
    const table = el("table");
    for (const [status, r] of Object.entries(op.responses || {})) {
      const tr = el("tr");
      tr.appendChild(el("td", "", status));
      const schema = r.content && r.content["application/json"] && r.content["application/json"].schema;
      tr.appendChild(el("td", "type", schema ? typeText(schema) : ""));
      tr.appendChild(el("td", "", r.description || ""));
      table.appendChild(tr);
    }
    responses.appendChild(table);
    tryForm(node, path, method, parameters, body);
    return node;
  }

  function tryForm(node, path, method, parameters, body) {
    const form = node.querySelector("form.try");
    const inputs = node.querySelector(".try-params");
    for (const p of parameters) {
      const label = el("label", "", p.name);
      const input = el("input");
      input.name = p.name;
      input.dataset.in = p.in;
      label.appendChild(input);
      inputs.appendChild(label);
    }
    const textarea = node.querySelector(".try-body");
    if (body) {
      textarea.hidden = false;
      const example = resolve(body.schema).example;
      textarea.value = example === undefined ? "{}" : JSON.stringify(example, null, 2);
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      let url = path;
      const query = [];
      for (const input of inputs.querySelectorAll("input")) {
        if (input.dataset.in === "path") url = url.replace("{" + input.name + "}", encodeURIComponent(input.value));
        else if (input.value) query.push(encodeURIComponent(input.name) + "=" + encodeURIComponent(input.value));
      }
      if (query.length) url += "?" + query.join("&");
      const init = { method: method.toUpperCase(), headers: {}, cache: "no-store" };
      if (token()) init.headers.Authorization = "Bearer " + token();
      if (body) { init.headers["Content-Type"] = "application/json"; init.body = textarea.value; }
      const out = node.querySelector(".try-result");
      out.hidden = false;
      out.textContent = "…";
      try {
        const r = await fetch(url, init);
        const text = await r.text();
        let shown = text;
        try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as it came */ }
        out.dataset.status = String(r.status);
        out.textContent = r.status + " " + r.statusText + "\n\n" + shown;
      } catch (e) {
        out.textContent = "request failed: " + e.message;
      }
    });
  }

  function render() {
    $("title").textContent = doc.info.title;
    $("version").textContent = "v" + doc.info.version + " · OpenAPI " + doc.openapi;
    $("description").textContent = doc.info.description || "";
    const ops = $("operations");
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of METHODS) {
        if (item[method]) ops.appendChild(renderOperation(path, method, item[method], item.parameters));
      }
    }
    const schemas = $("schemas");
    for (const [name, schema] of Object.entries(doc.components.schemas || {})) {
      const box = el("div", "schema");
      box.dataset.schema = name;
      box.appendChild(el("h3", "", name));
      if (schema.description) box.appendChild(el("p", "description", schema.description));
      box.appendChild(fieldTable(schema));
      schemas.appendChild(box);
    }
    document.body.dataset.operations = String(ops.children.length);
  }

  $("token").value = params.get("token") || "";
  $("link-dashboard").href = withToken("/dashboard");
  fetch("/api/openapi.json", { cache: "no-store" })
    .then((r) => { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
    .then((d) => { doc = d; render(); })
    .catch((e) => { const p = $("load-error"); p.hidden = false; p.textContent = "cannot load the description: " + e.message; });
})();
