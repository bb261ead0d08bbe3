// Behaviour of the gpt2graph explorer page: the body of one CustomJS attached to every event, so the
// ancestry rules, panels and attention patterns are shipped once. `cb_obj` says which model changed: the
// node selection, the overview selection, a head widget, the colour widget, or a range of the main plot.
// Every string that reaches HTML goes through esc(); panels[] and head_panels[] are HTML sanitised in Python.

// n: lanes (the positions shown; a view may show some); a node's position is nodes.data.pos
const n = meta.n_tokens, NV = meta.n_vectors, G = meta.n_groups, H = meta.n_head
const SAME = 0, UPTO = 1, FROM = 2
const N = nodes.data.x.length

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}
const unit_of = (i) => i < NV ? Math.floor(i / n) : G + (i - NV)
const pos_of = (i) => i < NV ? i % n : -1
const node_of = (u, p) => u < G ? u * n + p : NV + (u - G)

// Nodes one step away from node i under CSR rules (ptr, src, mode); with `all`, everything reachable.
function walk(i, ptr, src, mode, all) {
  const seen = new Uint8Array(N)
  const out = [], stack = [i]
  seen[i] = 1
  while (stack.length > 0) {
    const j = stack.pop(), u = unit_of(j), p = pos_of(j)
    for (let r = ptr[u]; r < ptr[u + 1]; r++) {
      const v = src[r], m = mode[r]
      let lo = -1, hi = -1
      if (v < G) {
        if (m == SAME) { lo = p; hi = p }
        else if (m == UPTO) { lo = 0; hi = p }
        else if (m == FROM) { lo = p; hi = n - 1 }
        else { lo = 0; hi = n - 1 }
      }
      for (let q = lo; q <= hi; q++) {
        const k = node_of(v, q)
        if (!seen[k]) {
          seen[k] = 1
          out.push(k)
          if (all) stack.push(k)
        }
      }
    }
  }
  return out
}

function fmt(x) {
  const a = Math.abs(x)
  return a != 0 && (a < 1e-3 || a >= 1e4) ? x.toExponential(2) : x.toFixed(3)
}

function lens_of(i) {
  let lo = 0, hi = meta.lens_nodes.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (meta.lens_nodes[mid] == i) return meta.lens_texts[mid]
    if (meta.lens_nodes[mid] < i) lo = mid + 1; else hi = mid - 1
  }
  return ""
}

function header(i, n_anc, n_desc) {
  const d = nodes.data, u = unit_of(i), p = d.pos[i]
  const where = []
  if (meta.unit_layer[u] >= 0) where.push(`layer ${meta.unit_layer[u]}`)
  if (meta.unit_head[u] >= 0) where.push(`head ${meta.unit_head[u]}`)
  where.push(p >= 0 ? `position ${p} (${esc(meta.tokens[p])})` : "every position (a parameter)")
  const stats = ["norm", "mean", "std", "min", "max"].map((s) => `<td>${s}</td><td>${fmt(d[s][i])}</td>`)
  const top = lens_of(i)
  const label = `<span class="g2g-label">${esc(meta.lens_label[u])}</span>`
  const lens = top ? `<div class="g2g-lens">${label} ${esc(top)}</div>` : ""
  const effect = d.dla_text && d.dla_text[i] ? `<div class="g2g-lens">${esc(d.dla_text[i])}</div>` : ""
  const table = `<tr>${stats.slice(0, 3).join("")}</tr><tr>${stats.slice(3).join("")}</tr>`
  return `<div class="g2g-node"><div class="g2g-id">${esc(d.id[i])}</div>` +
    `<div>${esc(meta.unit_kind[u])} · shape ${esc(meta.unit_shape[u])} · ${where.join(" · ")}</div>` +
    `<table class="g2g-stats">${table}</table>${lens}${effect}` +
    `<div class="g2g-trace"><span class="g2g-swatch" style="border-color:${meta.colors.ancestor}"></span>` +
    `${n_anc} nodes it is computed from · <span class="g2g-swatch" style="border-color:${meta.colors.descendant}">` +
    `</span>${n_desc} nodes computed from it</div></div>`
}

function panel_index(i) {
  const k = meta.node_panel_keys.indexOf(i)
  return k >= 0 ? meta.node_panel_values[k] : meta.unit_panel[unit_of(i)]
}

function show_head(L, h) {
  // the patterns of the view's heads only: another head shows empty
  const T = n * (n + 1) / 2, li = meta.heat_layers.indexOf(L), hi = meta.heat_heads.indexOf(h)
  if (li < 0 || hi < 0) {
    heat.data = {...heat.data, prob: new Float32Array(T).fill(NaN)}
    heat_title.text = `Attention pattern · layer ${L}, head ${h}: not in this view`
    return
  }
  const off = (li * meta.heat_heads.length + hi) * T
  // a copy, not a view: on a Bokeh server the change is sent back, and a view would carry its whole buffer
  const prob = new Float32Array(patterns.buffer, patterns.byteOffset + 4 * off, T).slice()
  heat.data = {...heat.data, prob: prob}
  heat_title.text = `Attention pattern · layer ${L}, head ${h}`
}

function focus_row(p) {
  focus.data = p < 0 ? {x: [], y: [], w: []} : {x: [p / 2], y: [p], w: [p + 1]}
}

function links(i) {
  // the selected node's direct inputs and outputs, including those across positions and parameters
  const d = nodes.data, xs0 = [], ys0 = [], xs1 = [], ys1 = [], color = []
  const add = (a, b, c) => {
    xs0.push(d.x[a] + d.w[a] / 2); ys0.push(d.y[a]); xs1.push(d.x[b] - d.w[b] / 2); ys1.push(d.y[b]); color.push(c)
  }
  for (const j of walk(i, meta.in_ptr, meta.in_src, meta.in_mode, false)) add(j, i, meta.colors.ancestor)
  for (const j of walk(i, meta.out_ptr, meta.out_src, meta.out_mode, false)) add(i, j, meta.colors.descendant)
  link_source.data = {x0: xs0, y0: ys0, x1: xs1, y1: ys1, color: color}
}

function select_node() {
  const sel = nodes.selected.indices
  if (sel.length == 0) {
    anc_filter.indices = []
    desc_filter.indices = []
    link_source.data = {x0: [], y0: [], x1: [], y1: [], color: []}
    panel.text = meta.intro
    focus_row(-1)
    return
  }
  const i = sel[sel.length - 1]
  if (sel.length > 1) {
    nodes.selected.indices = [i]  // overlapping glyphs: keep one; this handler runs again with it
    return
  }
  const anc = walk(i, meta.in_ptr, meta.in_src, meta.in_mode, true)
  const desc = walk(i, meta.out_ptr, meta.out_src, meta.out_mode, true)
  anc_filter.indices = anc
  desc_filter.indices = desc
  links(i)
  const u = unit_of(i)
  // a head's node: its role scores and circuits (from the analysis, sanitised in Python) before the glossary
  const head = meta.head_panels.length && meta.unit_head[u] >= 0 ?
    meta.head_panels[meta.unit_layer[u] * H + meta.unit_head[u]] : ""
  panel.text = header(i, anc.length, desc.length) + head + meta.panels[panel_index(i)]
  if (meta.unit_head[u] >= 0) {  // a head's vector or weight: open its attention pattern
    layer_w.value = meta.unit_layer[u]
    head_w.value = meta.unit_head[u]
    show_head(layer_w.value, head_w.value)
  }
  focus_row(meta.unit_head[u] >= 0 ? pos_of(i) : -1)
}

function zoom_to_overview() {
  const sel = overview.selected.indices
  if (sel.length == 0) return
  const d = overview.data, k = sel[0]
  const half_lanes = Math.max(1, Math.floor(meta.max_positions / 2)) * meta.lane_pitch
  y_range.setv({start: d.y[k] - half_lanes, end: d.y[k] + half_lanes})
  x_range.setv({start: d.x[k] - meta.block_width, end: d.x[k] + meta.block_width})
  overview.selected.indices = []
}

function recolor() {
  const mode = meta.color_modes[color_w.active]
  const spec = mode == "category" ? {field: "cat", transform: mappers.category}
    : {field: `c_${mode}`, transform: mappers[mode]}
  for (const g of glyphs) g.fill_color = spec
  legend.visible = mode == "category"
  for (const [name, bar] of Object.entries(colorbars)) bar.visible = name == mode
}

function level_of_detail() {
  if (overview_r == null) return
  const detail = (y_range.end - y_range.start) / meta.lane_pitch <= meta.max_positions
  for (const r of detail_renderers) r.visible = detail
  overview_r.visible = !detail
}

if (cb_obj === nodes.selected) select_node()
else if (overview != null && cb_obj === overview.selected) zoom_to_overview()
else if (cb_obj === layer_w || cb_obj === head_w) show_head(layer_w.value, head_w.value)
else if (cb_obj === color_w) recolor()
else level_of_detail()
