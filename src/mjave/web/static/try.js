"use strict";
// The try page of `mjave serve`: POST /v1/extract with explain=true and draw the answer.
// Uses the public API only (GET /v1/model, POST /v1/extract). All text via textContent.
// The category goes with the request: a model trained with model.restrict_to_category decodes
// only the attributes seen with it (a select of the schema's categories, else free text).

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {model: null, colours: new Map(), imageData: null, imageUrl: null, last: null};

  async function loadModel() {
    try {
      const m = await MJ.fetchJSON("/v1/model");
      state.model = m;
      state.colours = MJ.colours(m.attributes || []);
      const info = m.info || {};
      const parts = [info.model || "model", `${(m.attributes || []).length} attributes`,
                     info.uses_image ? "reads images" : "text only"];
      $("model-info").textContent = parts.join(" · ");
      setUpCategory(info);
      if (!info.uses_image) {
        $("drop").hidden = true;
      } else if (info.missing_image === "error") {
        $("image-name").textContent = "this model needs an image";
      }
    } catch (e) {
      setStatus(`cannot read the model: ${e.message}`, true);
    }
  }

  function setUpCategory(info) {
    const categories = Array.isArray(info.categories) ? info.categories : [];
    const select = $("category");
    if (categories.length) {
      for (const c of categories) select.append(MJ.el("option", {value: String(c), text: String(c)}));
      select.hidden = false;
      $("category-text").hidden = true;
      document.querySelector('label[for="category-text"]').htmlFor = "category";
    }
    $("category-hint").textContent = info.restrict_to_category
      ? "decodes only the attributes seen with this category in training"
      : "this model decodes every attribute whatever the category";
  }

  function category() {
    const value = $("category").hidden ? $("category-text").value.trim() : $("category").value;
    return value || null;
  }

  function setStatus(text, error) {
    const s = $("status");
    s.textContent = text || "";
    s.classList.toggle("error", Boolean(error));
  }

  function useFile(file) {
    if (!file) return;
    const limit = state.model && state.model.limits ? state.model.limits.max_image_bytes : null;
    if (limit && file.size > limit) {
      setStatus(`the image has ${file.size} bytes; the server accepts at most ${limit}`, true);
      return;
    }
    const reader = new FileReader();
    reader.onload = () => {
      state.imageData = String(reader.result);
      if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
      state.imageUrl = URL.createObjectURL(file);
      $("image-name").textContent = file.name;
      $("clear-image").hidden = false;
    };
    reader.onerror = () => setStatus("could not read the image file", true);
    reader.readAsDataURL(file);
  }

  function clearImage() {
    state.imageData = null;
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = null;
    $("image").value = "";
    $("image-name").textContent = "";
    $("clear-image").hidden = true;
  }

  async function extract() {
    const text = $("text").value;
    if (!text.trim()) {
      setStatus("paste a product text first", true);
      return;
    }
    const body = {text, explain: true};
    if (state.imageData) body.image_base64 = state.imageData;
    const cat = category();
    if (cat) body.category = cat;
    const button = $("extract");
    button.disabled = true;
    setStatus("extracting…");
    try {
      const result = await MJ.fetchJSON("/v1/extract", {json: body});
      state.last = {text, result, imageUrl: state.imageData ? state.imageUrl : null};
      render(state.last);
      setStatus(result.warning ? `warning: ${result.warning}` : `${result.values.length} values`);
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function colourOf(attr) {
    if (!state.colours.has(attr)) {
      state.colours.set(attr, MJ.PALETTE[state.colours.size % MJ.PALETTE.length]);
    }
    return state.colours.get(attr);
  }

  function render({text, result, imageUrl}) {
    $("output").hidden = false;
    const explain = result.explain || null;
    renderLegend(result);
    renderText(text, result.values || [], explain);
    renderImplicit(result.values || []);
    renderAttributes(result, explain);
    renderImage(imageUrl, explain);
  }

  function renderLegend(result) {
    const legend = $("legend");
    legend.replaceChildren();
    const attrs = new Set((result.values || []).map((v) => v.attribute));
    for (const a of attrs) {
      const chip = MJ.el("span", {class: "chip", text: a});
      chip.style.backgroundColor = colourOf(a);
      legend.append(chip);
    }
    if (!attrs.size) legend.append(MJ.el("span", {class: "muted", text: "no values found"}));
  }

  function renderText(text, values, explain) {
    const box = $("rendered");
    box.replaceChildren();
    const tokens = explain ? explain.tokens.slice().sort((a, b) => a.begin - b.begin) : [];
    const gates = tokens.map((t) => t.global_gate).filter((g) => typeof g === "number");
    const hasGates = gates.length > 0;
    box.classList.toggle("no-gates", !hasGates);
    $("gate-hint").hidden = !hasGates;
    const norm = MJ.minmax(gates);
    let ti = 0;
    // Write the characters [a, b): tokens as cells with a gate bar above, gaps as text.
    function fill(container, a, b) {
      while (ti < tokens.length && tokens[ti].end <= a) ti++;
      let pos = a;
      for (let k = ti; k < tokens.length && tokens[k].begin < b; k++) {
        const t = tokens[k];
        const s = Math.max(t.begin, pos), e = Math.min(t.end, b);
        if (e <= s) continue;
        if (s > pos) container.append(text.slice(pos, s));
        const cell = MJ.el("span", {class: "tok"});
        const bar = MJ.el("span", {class: "gate"});
        if (typeof t.global_gate === "number") {
          bar.style.backgroundColor = `rgba(196, 61, 0, ${(0.08 + 0.92 * norm(t.global_gate)).toFixed(3)})`;
          cell.title = `“${t.text}”  global gate ${MJ.fmt(t.global_gate)}`;
          cell.dataset.gate = String(t.global_gate);
        }
        cell.append(bar, MJ.el("span", {class: "tok-text", text: text.slice(s, e)}));
        container.append(cell);
        pos = e;
      }
      if (b > pos) container.append(text.slice(pos, b));
    }
    const marks = values.map((v) => ({
      begin: v.begin, end: v.end,
      make: () => {
        const m = MJ.el("mark", {class: "val", title: `${v.attribute} · score ${MJ.fmt(v.score)}`,
                                 "data-attribute": v.attribute});
        m.style.backgroundColor = colourOf(v.attribute);
        return m;
      },
    }));
    MJ.markRanges(box, text, marks, fill);
  }

  // Values named without a span (a model trained with model.implicit_values): listed apart,
  // with what they were read from, since there is nothing in the text to highlight.
  function renderImplicit(values) {
    const named = values.filter((v) => v.begin === null || v.begin === undefined);
    const list = $("implicit-values");
    list.replaceChildren();
    $("implicit").hidden = named.length === 0;
    for (const v of named) {
      const chip = MJ.el("span", {class: "chip", text: v.attribute});
      chip.style.backgroundColor = colourOf(v.attribute);
      list.append(MJ.el("li", {"data-attribute": v.attribute}, chip, " ",
                        MJ.el("strong", {text: v.value}),
                        MJ.el("span", {class: "muted",
                                       text: ` from the ${v.source || "image"} · score ${MJ.fmt(v.score)}`})));
    }
  }

  function renderAttributes(result, explain) {
    const table = $("attributes");
    table.replaceChildren();
    const predicted = new Map((result.attributes || []).map((a) => [a.name, a.score]));
    let rows = explain && explain.attribute_probs
      ? Object.entries(explain.attribute_probs) : Array.from(predicted.entries());
    rows = rows.sort((x, y) => y[1] - x[1]);
    table.append(MJ.el("tr", null, MJ.el("th", {text: "attribute"}),
                       MJ.el("th", {text: "probability"}), MJ.el("th")));
    for (const [name, p] of rows) {
      const swatch = MJ.el("span", {class: "swatch"});
      swatch.style.backgroundColor = colourOf(name);
      const bar = MJ.el("span", {class: "pbar"});
      bar.style.width = `${Math.round(100 * Math.min(Math.max(p, 0), 1))}%`;
      const tr = MJ.el("tr", {class: predicted.has(name) ? "predicted" : "below"},
                       MJ.el("td", null, swatch, " ", name),
                       MJ.el("td", {class: "bar-cell"}, bar),
                       MJ.el("td", {class: "num", text: MJ.fmt(p)}));
      tr.title = predicted.has(name) ? "predicted (at or above the threshold)" : "below the threshold";
      table.append(tr);
    }
  }

  function renderImage(imageUrl, explain) {
    const panel = $("image-panel");
    const map = explain ? explain[$("map-kind").value] || explain.regional_gate : null;
    if (!imageUrl) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    $("preview").src = imageUrl;
    const heat = $("heatmap");
    heat.replaceChildren();
    heat.hidden = !$("overlay-on").checked;
    if (!map) {
      $("map-hint").textContent = "this model has no regional gate";
      return;
    }
    const rows = map.length, cols = map[0].length;
    heat.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
    heat.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
    const flat = map.flat();
    const norm = MJ.minmax(flat);
    map.forEach((row, r) => row.forEach((v, c) => {
      const cell = MJ.el("div", {class: "heat-cell", title: `region (${r + 1}, ${c + 1}): ${MJ.fmt(v)}`});
      cell.style.backgroundColor = MJ.heat(norm(v), 0.5);
      heat.append(cell);
    }));
    const lo = Math.min(...flat), hi = Math.max(...flat);
    $("map-hint").textContent = `${rows}x${cols} regions, ${MJ.fmt(lo)} (blue) .. ${MJ.fmt(hi)} (red)`;
  }

  document.addEventListener("DOMContentLoaded", () => {
    loadModel();
    $("extract").addEventListener("click", extract);
    $("text").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); extract(); }
    });
    $("image").addEventListener("change", (e) => useFile(e.target.files[0]));
    $("clear-image").addEventListener("click", clearImage);
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
    });
    const redraw = () => { if (state.last) renderImage(state.last.imageUrl, state.last.result.explain); };
    $("map-kind").addEventListener("change", redraw);
    $("overlay-on").addEventListener("change", redraw);
  });
})();
