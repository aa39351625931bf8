// The API page: reads openapi.json from this server, lists every route with its schemas
// and examples, and sends requests. Plain DOM, no framework, nothing fetched elsewhere.
// URLs are relative to the page, so it also works behind a path prefix (an API Gateway stage).
"use strict";

(function () {
  const base = location.pathname.replace(/docs\/?$/, "");
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // Markdown-lite for descriptions: `code` spans only; everything else is text.
  function prose(text, cls) {
    const p = el("p", { class: cls || "desc" });
    String(text || "").split(/(`[^`]*`)/).forEach((part) => {
      if (part.startsWith("`") && part.endsWith("`") && part.length > 1) {
        p.append(el("code", { text: part.slice(1, -1) }));
      } else if (part) {
        p.append(document.createTextNode(part));
      }
    });
    return p;
  }

  let spec = null;

  function resolve(schema) {
    let s = schema || {};
    for (let i = 0; i < 16 && s.$ref; i++) {
      const name = s.$ref.replace("#/components/schemas/", "");
      s = Object.assign({ title: name }, (spec.components && spec.components.schemas || {})[name] || {});
    }
    return s;
  }

  function typeName(schema) {
    const s = resolve(schema);
    if (schema && schema.$ref) return schema.$ref.split("/").pop();
    if (s.enum) return "enum";
    let t = s.type;
    if (Array.isArray(t)) t = t.join(" | ");
    if (t === "array") return "array of " + typeName(s.items || {});
    if (s.oneOf) return "one of";
    return t || (s.properties ? "object" : "any");
  }

  // A schema as a nested list: properties with types, required marks and descriptions.
  function renderSchema(schema, depth, seen) {
    depth = depth || 0;
    seen = seen || new Set();
    const s = resolve(schema);
    const box = el("div", { class: "schema" });
    if (depth > 6) return box;
    const ref = schema && schema.$ref;
    if (ref && seen.has(ref)) {
      box.append(el("span", { class: "note", text: "(" + ref.split("/").pop() + ", as above)" }));
      return box;
    }
    const seen2 = new Set(seen);
    if (ref) seen2.add(ref);
    if (s.enum) {
      box.append(el("span", { class: "note", text: "one of: " }), el("code", { text: s.enum.join(", ") }));
      return box;
    }
    const variants = s.oneOf || s.anyOf;
    if (variants) {
      const ul = el("ul");
      variants.forEach((v, i) => {
        ul.append(el("li", {}, el("span", { class: "note", text: "variant " + (i + 1) + ": " }),
          el("span", { class: "type", text: typeName(v) }), renderSchema(v, depth + 1, seen2)));
      });
      box.append(el("span", { class: "note", text: "one of:" }), ul);
      return box;
    }
    if (s.type === "array" || (Array.isArray(s.type) && s.type.includes("array"))) {
      const items = s.items || {};
      const inner = resolve(items);
      if (inner.properties || inner.oneOf) box.append(renderSchema(items, depth + 1, seen2));
      return box;
    }
    if (s.properties) {
      const required = new Set(s.required || []);
      const ul = el("ul");
      for (const [name, prop] of Object.entries(s.properties)) {
        const p = resolve(prop);
        const li = el("li", {},
          el("span", { class: "name", text: name }),
          required.has(name) ? el("span", { class: "req", text: "*" }) : null,
          " ",
          el("span", { class: "type", text: typeName(prop) }),
          p.description || prop.description ? el("span", { class: "note", text: " — " + (prop.description || p.description) }) : null);
        const nested = resolve(prop.items || {});
        if (p.properties || p.oneOf || nested.properties || nested.oneOf) li.append(renderSchema(prop, depth + 1, seen2));
        ul.append(li);
      }
      box.append(ul);
    }
    return box;
  }

  function exampleFor(media) {
    if (!media) return undefined;
    if (media.example !== undefined) return media.example;
    const s = resolve(media.schema || {});
    return s.example;
  }

  // Pretty JSON, but a list of plain values (a row of pixels) on one line.
  function show(value) {
    if (typeof value === "string") return value;
    return JSON.stringify(value, null, 2)
      .replace(/\[\s*([^\[\]{}]*?)\s*\]/g, (_, inner) => "[" + inner.replace(/,\s+/g, ", ") + "]");
  }

  function opId(method, path) {
    return "op-" + method + "-" + path.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "");
  }

  function renderOp(method, path, op) {
    const id = opId(method, path);
    const details = el("details", { class: "op", id, "data-method": method, "data-path": path });
    details.append(el("summary", {},
      el("span", { class: "method " + method, text: method }),
      el("span", { class: "path", text: path }),
      prose(op.summary || "", "summary")));
    const body = el("div", { class: "op-body" });
    if (op.description && op.description !== op.summary) body.append(prose(op.description));

    // Path parameters, pre-filled with their examples.
    const inputs = {};
    const params = op.parameters || [];
    if (params.length) {
      body.append(el("h4", { text: "Parameters" }));
      for (const p of params) {
        const input = el("input", { type: "text", name: p.name, value: p.example !== undefined ? String(p.example) : "" });
        inputs[p.name] = input;
        body.append(el("label", { class: "param" }, el("span", { text: p.name + (p.required ? " *" : "") }), input,
          p.description ? el("span", { class: "note", text: p.description }) : null));
      }
    }

    // Request body: one editor, one content type at a time.
    let editor = null;
    let mediaSelect = null;
    const content = (op.requestBody && op.requestBody.content) || {};
    const medias = Object.keys(content);
    if (medias.length) {
      body.append(el("h4", { text: "Request body" }));
      if (op.requestBody.description) body.append(prose(op.requestBody.description));
      mediaSelect = el("select", { class: "media" }, medias.map((m) => el("option", { value: m, text: m })));
      editor = el("textarea", { class: "body", spellcheck: "false" });
      const schemaBox = el("div");
      const fill = () => {
        const m = content[mediaSelect.value];
        const ex = exampleFor(m);
        editor.value = ex === undefined ? "" : show(ex);
        schemaBox.replaceChildren(renderSchema(m.schema || {}));
      };
      mediaSelect.addEventListener("change", fill);
      body.append(el("label", { class: "param" }, el("span", { text: "content-type" }), mediaSelect), editor,
        el("details", { class: "schema-box" }, el("summary", { text: "Schema" }), schemaBox));
      fill();
    }

    // Send, and show the answer.
    const button = el("button", { class: "send", type: "button", text: "Send" });
    const result = el("div", { class: "result", hidden: true },
      el("span", { class: "result-status" }), el("pre", { class: "result-body" }));
    button.addEventListener("click", async () => {
      let url = path.replace(/\{([^}]+)\}/g, (_, name) => encodeURIComponent(inputs[name] ? inputs[name].value : ""));
      url = base + url.replace(/^\//, "");
      const init = { method: method.toUpperCase(), headers: {} };
      if (editor) {
        init.headers["content-type"] = mediaSelect.value;
        init.body = editor.value;
      }
      button.disabled = true;
      result.hidden = false;
      result.className = "result";
      const status = result.querySelector(".result-status");
      const out = result.querySelector(".result-body");
      status.textContent = "sending…";
      out.textContent = "";
      const t0 = performance.now();
      try {
        const res = await fetch(url, init);
        const text = await res.text();
        const ms = (performance.now() - t0).toFixed(1);
        const type = res.headers.get("content-type") || "";
        status.textContent = res.status + " " + res.statusText + " · " + ms + " ms · " + type;
        result.className = "result " + (res.ok ? "ok" : "fail");
        result.dataset.status = String(res.status);
        let pretty = text;
        if (type.includes("json")) {
          try { pretty = show(JSON.parse(text)); } catch (e) { /* shown as sent */ }
        }
        out.textContent = pretty;
      } catch (e) {
        status.textContent = "request failed: " + e;
        result.className = "result fail";
        result.dataset.status = "0";
      } finally {
        button.disabled = false;
      }
    });
    body.append(button, result);

    // Responses: status, description, schema.
    const responses = el("div", { class: "responses" });
    for (const [code, r] of Object.entries(op.responses || {})) {
      const row = el("div", {}, el("span", { class: "status-code", text: code }), prose(r.description || "", "inline"));
      for (const [m, media] of Object.entries(r.content || {})) {
        const box = el("details", { class: "schema-box" }, el("summary", { text: m + " · " + typeName(media.schema || {}) }));
        box.append(renderSchema(media.schema || {}));
        const ex = exampleFor(media);
        if (ex !== undefined) box.append(el("pre", { text: show(ex) }));
        row.append(box);
      }
      responses.append(row);
    }
    body.append(el("h4", { text: "Responses" }), responses);
    details.append(body);
    return details;
  }

  function render() {
    $("title").textContent = spec.info.title;
    $("version").textContent = "v" + spec.info.version + " · OpenAPI " + spec.openapi;
    $("description").replaceWith(prose(spec.info.description, "lead"));
    const byTag = new Map();
    for (const t of spec.tags || []) byTag.set(t.name, { desc: t.description, ops: [] });
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const method of ["get", "post", "put", "delete", "patch"]) {
        const op = item[method];
        if (!op) continue;
        const tag = (op.tags && op.tags[0]) || "other";
        if (!byTag.has(tag)) byTag.set(tag, { desc: "", ops: [] });
        byTag.get(tag).ops.push([method, path, op]);
      }
    }
    const ops = $("ops");
    const toc = $("toc");
    let count = 0;
    for (const [tag, group] of byTag) {
      if (!group.ops.length) continue;
      ops.append(el("h2", { class: "tag", text: tag }));
      if (group.desc) ops.append(prose(group.desc, "tag-desc"));
      toc.append(el("h2", { text: tag }));
      for (const [method, path, op] of group.ops) {
        const section = renderOp(method, path, op);
        ops.append(section);
        const link = el("a", { href: "#" + section.id, text: method.toUpperCase() + " " + path });
        link.addEventListener("click", () => { section.open = true; });
        toc.append(link);
        count++;
      }
    }
    $("status").textContent = count + " routes";
    document.body.dataset.ready = "true";
    // Open the first route, the one most people came for.
    const first = ops.querySelector(".op");
    if (first) first.open = true;
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.open = true;
    }
  }

  fetch(base + "openapi.json")
    .then((res) => {
      if (!res.ok) throw new Error("openapi.json answered " + res.status);
      return res.json();
    })
    .then((doc) => { spec = doc; render(); })
    .catch((e) => {
      const s = $("status");
      s.textContent = "Could not load the API description: " + e.message;
      s.className = "error";
      document.body.dataset.ready = "error";
    });
})();
