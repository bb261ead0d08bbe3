// Behaviour of the gpt2graph explorer page: the body of one CustomJS attached to every event, so the
// ancestry rules, panels and attention patterns are shipped once. `cb_obj` says which model changed: the
// node selection, the overview selection, a head widget, the colour widget, the window slider, or a range of
// the main plot. Every string that reaches HTML goes through esc(); panels[] and head_panels[] are HTML
// sanitised in Python.
//
// The page draws the view it is given: n lanes, the positions it shows (every position of a whole run). The
// node source holds a *window* of W lanes (all of a short view): each vector group's W nodes, one group after
// another, then the parameters. A node is also known by its index in the view (group * n + lane, then the
// parameters), which the lens lines, DLA texts and per-node panels are keyed by. A long view's page carries
// what any window needs (window.py): per group, its geometry; per vector of the view, its statistics
// (float16) and colours; it fills the source when the window moves. A node's position is nodes.data.pos; ids
// are made from each unit's id around the position (the `ids` source), never carried per node.
const n = meta.n_tokens, NV = meta.n_vectors, G = meta.n_groups, H = meta.n_head
const SAME = 0, UPTO = 1, FROM = 2
const W = meta.window[1]
const start = () => meta.window[0]
const rows = () => nodes.data.x.length

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}
const unit_of = (i) => i < G * W ? Math.floor(i / W) : G + (i - G * W)
const pos_of = (i) => i < G * W ? start() + i % W : -1  // the lane
// the row of unit u on lane p, or -1 outside the window
const row_of = (u, p) => u >= G ? G * W + (u - G) : (p >= start() && p < start() + W ? u * W + (p - start()) : -1)
const global_of = (i) => i < G * W ? unit_of(i) * n + pos_of(i) : NV + (i - G * W)
// a node's id, from its unit's id around the position (window.id_pieces)
const id_of = (i) => i < G * W ? ids.data.head[unit_of(i)] + nodes.data.pos[i] + ids.data.tail[unit_of(i)]
  : ids.data.head[unit_of(i)]

// Nodes one step away from node i under CSR rules (ptr, src, mode); with `all`, everything reachable; only
// nodes in the window (the canvas has no others).
function walk(i, ptr, src, mode, all) {
  const seen = new Uint8Array(rows())
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
        lo = Math.max(lo, start()); hi = Math.min(hi, start() + W - 1)
      }
      for (let q = lo; q <= hi; q++) {
        const k = row_of(v, q)
        if (k >= 0 && !seen[k]) {
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
  if (meta.s_norm !== undefined) return Number(x).toPrecision(3)  // float16 statistics: 3 digits are all there is
  const a = Math.abs(x)
  return a != 0 && (a < 1e-3 || a >= 1e4) ? x.toExponential(2) : x.toFixed(3)
}

// the text a source of (node, text) rows sorted by node (lens lines, DLA lines) has for node i, or ""
function text_of(source, i) {
  const g = global_of(i), with_text = source.data.node
  let lo = 0, hi = with_text.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (with_text[mid] == g) return source.data.text[mid]
    if (with_text[mid] < g) lo = mid + 1; else hi = mid - 1
  }
  return ""
}

function header(i, n_anc, n_desc) {
  const d = nodes.data, u = unit_of(i), p = d.pos[i]
  const where = []
  if (units.data.unit_layer[u] >= 0) where.push(`layer ${units.data.unit_layer[u]}`)
  if (units.data.unit_head[u] >= 0) where.push(`head ${units.data.unit_head[u]}`)
  where.push(p >= 0 ? `position ${p} (${esc(meta.tokens[p])})` : "every position (a parameter)")
  const stats = ["norm", "mean", "std", "min", "max"].map((s) => `<td>${s}</td><td>${fmt(d[s][i])}</td>`)
  const top = text_of(lens, i), direct = text_of(dla, i)
  const label = `<span class="g2g-label">${esc(units.data.lens_label[u])}</span>`
  const lens_line = top ? `<div class="g2g-lens">${label} ${esc(top)}</div>` : ""
  const effect = direct ? `<div class="g2g-lens">${esc(direct)}</div>` : ""
  const table = `<tr>${stats.slice(0, 3).join("")}</tr><tr>${stats.slice(3).join("")}</tr>`
  return `<div class="g2g-node"><div class="g2g-id">${esc(id_of(i))}</div>` +
    `<div>${esc(units.data.unit_kind[u])} · shape ${esc(units.data.unit_shape[u])} · ${where.join(" · ")}</div>` +
    `<table class="g2g-stats">${table}</table>${lens_line}${effect}` +
    `<div class="g2g-trace"><span class="g2g-swatch" style="border-color:${meta.colors.ancestor}"></span>` +
    `${n_anc} nodes it is computed from · <span class="g2g-swatch" style="border-color:${meta.colors.descendant}">` +
    `</span>${n_desc} nodes computed from it</div></div>`
}

function panel_index(i) {
  const k = meta.node_panel_keys.indexOf(global_of(i))
  return k >= 0 ? meta.node_panel_values[k] : meta.unit_panel[unit_of(i)]
}

function show_head(L, h) {
  // the patterns of the view's heads only (m cells each): another head shows empty
  const m = heat.data.q.length, li = meta.heat_layers.indexOf(L), hi = meta.heat_heads.indexOf(h)
  if (li < 0 || hi < 0) {
    heat.data = {...heat.data, prob: new Float32Array(m).fill(NaN)}
    heat_title.text = `Attention pattern · layer ${L}, head ${h}: not in this view`
    return
  }
  const off = (li * meta.heat_heads.length + hi) * m
  // a copy, not a view: on a Bokeh server the change is sent back, and a view would carry its whole buffer
  const prob = new Float32Array(patterns.buffer, patterns.byteOffset + 4 * off, m).slice()
  heat.data = {...heat.data, prob: prob}
  heat_title.text = `Attention pattern · layer ${L}, head ${h}`
}

function focus_row(p) {
  const c = Math.floor(p / meta.heat_cell)  // the cell holding lane p (one lane per cell when short)
  focus.data = p < 0 ? {x: [], y: [], w: []} : {x: [c / 2], y: [c], w: [c + 1]}
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

function clear_selection() {
  anc_filter.indices = []
  desc_filter.indices = []
  link_source.data = {x0: [], y0: [], x1: [], y1: [], color: []}
  panel.text = meta.intro
  focus_row(-1)
}

function select_node() {
  const sel = nodes.selected.indices
  if (sel.length == 0) {
    clear_selection()
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
  const head = meta.head_panels.length && units.data.unit_head[u] >= 0 ?
    meta.head_panels[units.data.unit_layer[u] * H + units.data.unit_head[u]] : ""
  panel.text = header(i, anc.length, desc.length) + head + meta.panels[panel_index(i)]
  if (units.data.unit_head[u] >= 0) {  // a head's vector or weight: open its attention pattern
    layer_w.value = units.data.unit_layer[u]
    head_w.value = units.data.unit_head[u]
    show_head(layer_w.value, head_w.value)
  }
  focus_row(units.data.unit_head[u] >= 0 ? pos_of(i) : -1)
}

// ---- the window ----------------------------------------------------------------------------------------
function float16(bits) {
  const e = (bits >> 10) & 31, f = bits & 1023, s = bits >> 15 ? -1 : 1
  if (e == 0) return s * f * 2 ** -24
  if (e == 31) return f ? NaN : s * Infinity
  return s * (1 + f / 1024) * 2 ** (e - 15)
}

// per-unit colour with per-node exceptions (window.by_unit), for the node at index g of the whole run
function by_unit(name, u, g) {
  const exceptions = meta[`${name}_index`]
  let lo = 0, hi = exceptions.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (exceptions[mid] == g) return meta[`${name}_value`][mid]
    if (exceptions[mid] < g) lo = mid + 1; else hi = mid - 1
  }
  return meta[`${name}_unit`][u]
}

function set_window(first) {
  first = Math.max(0, Math.min(n - W, first))
  if (first == start()) return
  meta.window[0] = first
  const old = nodes.data, P = old.x.length - G * W  // parameters: their rows stay as they are
  const data = {}
  for (const [name, column] of Object.entries(old)) {
    data[name] = new column.constructor(column.length)
    for (let r = G * W; r < G * W + P; r++) data[name][r] = column[r]
  }
  const stats = ["norm", "mean", "std", "min", "max"]
  const analysis = Object.keys(old).filter((c) => c.startsWith("c_") && c != "c_norm" && c != "c_mean")
  for (let u = 0; u < G; u++) {
    for (let k = 0; k < W; k++) {
      const r = u * W + k, p = first + k, g = u * n + p
      data.x[r] = meta.gx[u]; data.w[r] = meta.gw[u]; data.h[r] = meta.gh[u]
      data.y[r] = meta.lane_y[p] + meta.gdy[u]
      data.unit[r] = u; data.pos[r] = meta.positions[p]; data.cat[r] = old.cat[u * W]
      for (const s of stats) data[s][r] = float16(meta[`s_${s}`][g])
      data.c_norm[r] = meta.q_c_norm[g]  // colour levels 0..255
      data.c_mean[r] = meta.q_c_mean[g]
      for (const c of analysis) data[c][r] = by_unit(c, u, g)
    }
  }
  // the same-position edges of every lane of the window, from one lane's pairs of groups
  const e = {x0: [], y0: [], x1: [], y1: []}
  for (let k = 0; k < W; k++) {
    const y = meta.lane_y[first + k]
    for (let j = 0; j < meta.edge_src.length; j++) {
      const a = meta.edge_src[j], b = meta.edge_dst[j]
      e.x0.push(meta.gx[a] + meta.gw[a] / 2); e.y0.push(y + meta.gdy[a])
      e.x1.push(meta.gx[b] - meta.gw[b] / 2); e.y1.push(y + meta.gdy[b])
    }
  }
  nodes.selected.indices = []
  clear_selection()
  nodes.data = data
  edges.data = e
  if (window_w.value != first) window_w.value = first
}

function zoom_to_window(first) {
  // the lanes of the window in view (lane p at y = lane_y[p], descending), the x range as it is
  const pad = meta.lane_pitch / 2
  y_range.setv({start: meta.lane_y[first + W - 1] - pad, end: meta.lane_y[first] + pad})
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
  if (detail) {  // the window follows the view: its first lane is the top one in view
    const top = Math.ceil(-(y_range.end - meta.lane_pitch / 2) / meta.lane_pitch)
    set_window(top)
  }
  for (const r of detail_renderers) r.visible = detail
  overview_r.visible = !detail
}

if (cb_obj === nodes.selected) select_node()
else if (overview != null && cb_obj === overview.selected) zoom_to_overview()
else if (cb_obj === layer_w || cb_obj === head_w) show_head(layer_w.value, head_w.value)
else if (cb_obj === color_w) recolor()
else if (window_w != null && cb_obj === window_w) { set_window(window_w.value); zoom_to_window(start()) }
else level_of_detail()
