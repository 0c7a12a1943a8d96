"use strict";
// Helpers shared by the mjave pages (try.js, review.js).
// Safety rule of these pages: every text from the server or the user reaches the page through
// textContent or text nodes (Element.append of a string), never through innerHTML, so a product
// text such as "<img src=x onerror=...>" is shown literally and never runs.

const MJ = (() => {
  /** A new element: el("span", {class: "x", title: "t", text: "hello"}, child, "text", ...). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c);  // strings become text nodes
    }
    return e;
  }

  /** Attribute colours: light enough to read black text on, distinct side by side. */
  const PALETTE = ["#ffd166", "#8ecae6", "#b5e48c", "#f4a3c0", "#cdb4db", "#ffb38a",
                   "#a0e7e5", "#e9c46a", "#bde0fe", "#d8f3dc", "#f9c6c9", "#c9ada7"];

  function colours(names) {
    const out = new Map();
    names.forEach((n, i) => out.set(n, PALETTE[i % PALETTE.length]));
    return out;
  }

  /** Blue (0) -> yellow (0.5) -> red (1), the colour scale of the paper-style gate figures. */
  function heat(v, alpha) {
    v = Math.min(Math.max(Number(v) || 0, 0), 1);
    let r, g, b;
    if (v < 0.5) {
      const t = v / 0.5;
      r = 40 + 215 * t; g = 60 + 195 * t; b = 200 * (1 - t);
    } else {
      const t = (v - 0.5) / 0.5;
      r = 255; g = 255 * (1 - t); b = 0;
    }
    return `rgba(${Math.round(r)}, ${Math.round(g)}, ${Math.round(b)}, ${alpha})`;
  }

  /** (x - lo) / (hi - lo) over an array, 0.5 everywhere when all values are equal. */
  function minmax(values) {
    const finite = values.filter((x) => typeof x === "number" && isFinite(x));
    const lo = Math.min(...finite), hi = Math.max(...finite);
    return (x) => (hi - lo > 1e-9 ? (x - lo) / (hi - lo) : 0.5);
  }

  /** fetch + JSON; a non-2xx answer throws an Error carrying the server's `detail`. */
  async function fetchJSON(url, options) {
    const opts = Object.assign({headers: {}}, options || {});
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.headers["content-type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    const r = await fetch(url, opts);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : r.statusText;
      const err = new Error(`${r.status}: ${detail}`);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  /** A random id (hex) that works outside secure contexts too. */
  function randomId() {
    const a = new Uint8Array(16);
    crypto.getRandomValues(a);
    return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function fmt(x, digits) {
    return typeof x === "number" && isFinite(x) ? x.toFixed(digits === undefined ? 3 : digits) : "–";
  }

  /**
   * Append `text` to `parent` with the character ranges of `marks` ([{begin, end, make}], not
   * overlapping) wrapped in the element `make()` returns; `fill(container, a, b)` writes the
   * plain characters [a, b) (default: one text node).
   */
  function markRanges(parent, text, marks, fill) {
    const write = fill || ((c, a, b) => { if (b > a) c.append(text.slice(a, b)); });
    const sorted = marks.filter((m) => m.begin < m.end && m.begin >= 0 && m.end <= text.length)
      .sort((x, y) => x.begin - y.begin);
    let pos = 0;
    for (const m of sorted) {
      if (m.begin < pos) continue;  // overlapping: the earlier one wins
      write(parent, pos, m.begin);
      const e = m.make();
      write(e, m.begin, m.end);
      parent.append(e);
      pos = m.end;
    }
    write(parent, pos, text.length);
  }

  return {el, colours, heat, minmax, fetchJSON, randomId, fmt, markRanges, PALETTE};
})();
