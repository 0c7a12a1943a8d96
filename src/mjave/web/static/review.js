"use strict";
// The review page of `mjave review`: a leased queue of suggestions/conflicts, keyboard driven.
// Every text (product texts, values, names) is written with textContent / text nodes.

(() => {
  const $ = (id) => document.getElementById(id);
  const KEYS = {
    suggestion: {a: "accept", r: "reject"},
    conflict: {t: "keep_table", x: "keep_text"},
  };
  const LABELS = {accept: "accepted", reject: "rejected", edit: "edited", keep_table: "kept the table value",
                  keep_text: "kept the text value", undo: "undid a decision"};

  function sessionId() {
    let s = sessionStorage.getItem("mjave-review-session");
    if (!s) {
      s = MJ.randomId();
      sessionStorage.setItem("mjave-review-session", s);
    }
    return s;
  }

  const state = {
    session: sessionId(), meta: null, kind: "suggestion", item: null,
    back: [], forward: [],
  };

  function reviewer() {
    return $("reviewer").value.trim() || (state.meta && state.meta.reviewer) || "reviewer";
  }

  function setStatus(text, error) {
    const s = $("status");
    s.textContent = text || "";
    s.classList.toggle("error", Boolean(error));
  }

  function filters() {
    const num = (id) => {
      const v = $(id).value;
      return v === "" ? null : Number(v);
    };
    return {attribute: $("f-attribute").value || null, category: $("f-category").value || null,
            min_score: num("f-min"), max_score: num("f-max"), order: $("f-order").value || null};
  }

  function fillSelect(select, values) {
    const keep = select.value;
    select.replaceChildren(MJ.el("option", {value: "", text: "all"}));
    for (const v of values) select.append(MJ.el("option", {value: v, text: v}));
    if (values.includes(keep)) select.value = keep;
  }

  async function loadMeta() {
    state.meta = await MJ.fetchJSON("/api/meta");
    if (!$("reviewer").value) {
      $("reviewer").value = localStorage.getItem("mjave-reviewer") || state.meta.reviewer;
    }
    if (!state.orderSet && state.meta.order) {  // the server's default, once
      $("f-order").value = state.meta.order;
      state.orderSet = true;
    }
    for (const kind of ["suggestion", "conflict"]) {
      const c = state.meta.kinds[kind].counts;
      const tab = $(`tab-${kind}`);
      tab.querySelector(".count").textContent = `(${c.undecided} of ${c.total} left)`;
      tab.hidden = kind === "conflict" && c.total === 0;
    }
    const facets = state.meta.kinds[state.kind];
    fillSelect($("f-attribute"), facets.attributes);
    fillSelect($("f-category"), facets.categories);
  }

  function showProgress(counts) {
    if (!counts) return;
    $("progress").textContent = `${counts.decided} of ${counts.total} decided · ${counts.undecided} left`;
  }

  function request(json) {
    return Object.assign({session: state.session, reviewer: reviewer()}, json);
  }

  // Actions run one after another in the order they were asked for (keys pressed while a
  // request is under way wait for it instead of being lost or racing it).
  let queue = Promise.resolve();
  function guarded(fn) {
    queue = queue.then(fn).catch((e) => {
      state.editPending = false;
      setStatus(e.message, true);
    });
    return queue;
  }

  async function claim(after) {
    const body = request(Object.assign({kind: state.kind}, filters()));
    if (after !== undefined && after !== null) body.after = after;
    const r = await MJ.fetchJSON("/api/claim", {json: body});
    showProgress(r.counts);
    show(r.item);
  }

  async function openItem(id) {
    const item = await MJ.fetchJSON(`/api/items/${id}/open`, {json: request({})});
    show(item);
  }

  function show(item) {
    state.item = item;
    hideEdit();
    $("card").hidden = !item;
    $("empty").hidden = Boolean(item);
    if (!item) return;
    $("c-product").textContent = item.product_id;
    $("c-category").textContent = item.category || "";
    $("c-category-wrap").hidden = !item.category;
    $("c-held").textContent = item.held_by && item.held_by !== reviewer() ? `held by ${item.held_by}` : "";
    $("c-attribute").textContent = `${item.attribute}:`;
    const conflict = item.kind === "conflict";
    $("c-table-wrap").hidden = !conflict;
    $("c-table").textContent = item.table_value || "";
    $("c-value").textContent = item.value;
    $("c-score").textContent = `score ${MJ.fmt(item.score)}`;
    const box = $("c-text");
    box.replaceChildren();
    if (item.text !== null && item.text !== undefined) {
      const marks = item.highlight ? [{begin: item.highlight[0], end: item.highlight[1],
                                       make: () => MJ.el("mark", {title: `${item.attribute}: ${item.value}`})}] : [];
      MJ.markRanges(box, item.text, marks);
    }
    $("c-evidence").textContent = item.evidence && (!item.text || !item.highlight) ? `evidence: ${item.evidence}` : "";
    const img = $("c-image");
    if (item.has_image) {
      img.src = `/api/image/${item.id}`;
      img.hidden = false;
    } else {
      img.removeAttribute("src");
      img.hidden = true;
    }
    const d = $("c-decision");
    d.replaceChildren();
    if (item.decision) {
      const dec = item.decision;
      const what = dec.action === "edit" ? `edited to “${dec.edited_value}”` : LABELS[dec.action];
      d.append("Decision: ", MJ.el("span", {class: `act-${dec.action}`, text: what}),
               ` by ${dec.reviewer} at ${dec.time}`);
      d.dataset.action = dec.action;
    } else {
      d.append(MJ.el("span", {class: "muted", text: "Undecided"}));
      d.dataset.action = "";
    }
    const hist = $("c-history");
    hist.replaceChildren();
    if (item.history.length > 1 || (item.history.length === 1 && !item.decision)) {
      for (const h of item.history) {
        const what = h.action === "edit" ? `edit → “${h.edited_value}”` : h.action;
        hist.append(MJ.el("li", {text: `${h.time} ${h.reviewer}: ${what}`}));
      }
    }
    $("actions-suggestion").hidden = conflict;
    $("actions-conflict").hidden = !conflict;
  }

  async function decide(action, editedValue) {
    const item = state.item;
    if (!item) return;
    const body = request({action, request_id: MJ.randomId()});
    if (action === "edit") body.edited_value = editedValue;
    const done = await MJ.fetchJSON(`/api/items/${item.id}/decide`, {json: body});
    const what = action === "edit" ? `edited to “${editedValue}”` : LABELS[action];
    setStatus(`${item.attribute} = ${item.value}: ${what}`);
    state.back.push(item.id);
    state.forward = [];
    if (item.decision) {
      show(done);  // a re-decision on an item visited again: stay on it
      return;
    }
    await claim(item.id);  // the next one after it, so skipped items wait for the wrap-around
    refreshCounts();
  }

  async function refreshCounts() {
    try {
      await loadMeta();
      await loadStats();
    } catch (e) { /* counts are cosmetic */ }
  }

  // Precision per attribute: an attribute the model gets wrong shows, not averaged away.
  async function loadStats() {
    const s = await MJ.fetchJSON(`/api/stats?kind=${encodeURIComponent(state.kind)}`);
    $("stats-bound").textContent = `lower bound (${Math.round(100 * s.confidence)}%)`;
    const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
    const rows = [...s.attributes, s.overall].map((a) => {
      const all = a.attribute === "*";  // the overall row, in bold
      const cells = [all ? "all" : a.attribute, a.decided, a.accepted, a.rejected, a.edited,
                     pct(a.precision), pct(a.lower_bound)];
      return MJ.el("tr", {class: all ? "predicted" : null}, ...cells.map((text) => MJ.el("td", {text})));
    });
    $("stats-rows").replaceChildren(...rows);
  }

  async function undo() {
    const body = request({});
    if (state.item && state.item.decision) body.item_id = state.item.id;
    const item = await MJ.fetchJSON("/api/undo", {json: body});
    if (state.item && state.item.id !== item.id) state.forward.push(state.item.id);
    setStatus(`undone: ${item.attribute} = ${item.value}`);
    show(item);
    refreshCounts();
  }

  async function next() {
    const current = state.item;
    if (current) state.back.push(current.id);
    if (state.forward.length) {
      await openItem(state.forward.pop());
    } else {
      await claim(current ? current.id : undefined);
    }
  }

  async function prev() {
    if (!state.back.length) {
      setStatus("nothing before this item");
      return;
    }
    const id = state.back.pop();
    const current = state.item ? state.item.id : null;
    try {
      await openItem(id);
    } catch (e) {
      state.back.push(id);
      throw e;
    }
    if (current !== null && current !== id) state.forward.push(current);
  }

  function showEdit() {
    state.editPending = false;
    if (!state.item) return;
    $("edit-form").hidden = false;
    const input = $("edit-value");
    input.value = state.item.decision && state.item.decision.edited_value
      ? state.item.decision.edited_value : state.item.value;
    input.focus();
    input.select();
  }

  function hideEdit() {
    $("edit-form").hidden = true;
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target;
    const typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" ||
                              target.tagName === "TEXTAREA");
    if (typing) {
      if (e.key === "Escape" && target.id === "edit-value") { hideEdit(); target.blur(); }
      return;
    }
    if (state.editPending) {  // "e" was pressed and the edit box is on its way: no commands
      e.preventDefault();
      return;
    }
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const action = KEYS[state.kind][key];
    if (action && state.item) {
      e.preventDefault();
      guarded(() => decide(action));
    } else if (key === "e" && state.item) {
      e.preventDefault();
      state.editPending = true;
      guarded(async () => showEdit());
    } else if (key === "u") {
      e.preventDefault();
      guarded(undo);
    } else if (key === "ArrowRight" || key === "ArrowDown") {
      e.preventDefault();
      guarded(next);
    } else if (key === "ArrowLeft" || key === "ArrowUp") {
      e.preventDefault();
      guarded(prev);
    }
  }

  async function switchKind(kind) {
    state.kind = kind;
    state.back = [];
    state.forward = [];
    for (const k of ["suggestion", "conflict"]) {
      $(`tab-${k}`).setAttribute("aria-selected", String(k === kind));
    }
    const facets = state.meta.kinds[kind];
    fillSelect($("f-attribute"), facets.attributes);
    fillSelect($("f-category"), facets.categories);
    await claim();
    await refreshCounts();
  }

  document.addEventListener("DOMContentLoaded", () => {
    guarded(async () => {
      await loadMeta();
      await claim();
      await loadStats();
    });
    document.addEventListener("keydown", onKey);
    $("reviewer").addEventListener("change", () => {
      localStorage.setItem("mjave-reviewer", reviewer());
    });
    for (const k of ["suggestion", "conflict"]) {
      $(`tab-${k}`).addEventListener("click", () => guarded(() => switchKind(k)));
    }
    for (const id of ["f-attribute", "f-category", "f-min", "f-max", "f-order"]) {
      $(id).addEventListener("change", () => guarded(async () => {
        state.back = [];
        state.forward = [];
        await claim();
      }));
    }
    document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => {
      const action = b.dataset.action;
      if (action === "edit") guarded(async () => showEdit());
      else guarded(() => decide(action));
    }));
    document.querySelectorAll("[data-nav]").forEach((b) => b.addEventListener("click", () => {
      const nav = b.dataset.nav;
      if (nav === "undo") guarded(undo);
      else if (nav === "next") guarded(next);
      else guarded(prev);
    }));
    $("edit-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = $("edit-value").value.trim();
      if (!value) { setStatus("the corrected value is empty", true); return; }
      $("edit-value").blur();
      guarded(() => decide("edit", value));
    });
    $("edit-cancel").addEventListener("click", hideEdit);
    // Keep the leases of an open page; give them back when the page goes away.
    setInterval(() => {
      MJ.fetchJSON("/api/renew", {json: {session: state.session}}).catch(() => {});
    }, Math.max(5000, 1000 * ((state.meta && state.meta.lease_seconds) || 300) / 3));
    window.addEventListener("pagehide", () => {
      fetch("/api/release", {method: "POST", keepalive: true,
                             headers: {"content-type": "application/json"},
                             body: JSON.stringify({session: state.session})}).catch(() => {});
    });
  });
})();
