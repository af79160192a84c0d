/* qkv playground: every number drawn here comes from the C engine through the JSON API
 * (docs/HTTP.md). Token text is untrusted: it only ever goes through textContent. */
'use strict';

/* ---------------------------------------------------------------- small helpers */
const $ = (id) => document.getElementById(id);
const SVGNS = 'http://www.w3.org/2000/svg';

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  if (attrs) for (const k in attrs) {
    if (k === 'class') e.className = attrs[k];
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), attrs[k]);
    else e.setAttribute(k, attrs[k]);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
const fmt = (x, d = 3) => (x === null || x === undefined || !isFinite(x)) ? '–' : Number(x).toFixed(d);
const clamp = (x, a, b) => Math.max(a, Math.min(b, x));
const pct = (v) => (!isFinite(v) ? '–' : v >= 0.001 ? (100 * v).toFixed(1) + '%' : (100 * v).toPrecision(2) + '%');

/* Viridis (perceptually uniform, colour-blind safe): dark purple = 0, bright yellow = 1.
 * On the dark background, brighter = more attention. */
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
function cmap(t) {
  t = clamp(isFinite(t) ? t : 0, 0, 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return `rgb(${Math.round(a[0] + f * (b[0] - a[0]))},${Math.round(a[1] + f * (b[1] - a[1]))},${Math.round(a[2] + f * (b[2] - a[2]))})`;
}
/* 1024-step lookup tables (thumbnails and long texts colour tens of thousands of cells). */
const LUT_N = 1024, LUT_STR = [], LUT_RGB = [];
for (let k = 0; k < LUT_N; k++) { const c = cmap(k / (LUT_N - 1)); LUT_STR.push(c); LUT_RGB.push(c.slice(4, -1).split(',').map(Number)); }
/* The colour of a weight: on the √ scale (the default) small weights stay visible; the
 * legend is labelled to match. */
function lutIndex(w) { w = isFinite(w) ? clamp(w, 0, 1) : 0; return Math.round((S.sqrt ? Math.sqrt(w) : w) * (LUT_N - 1)); }
function col(w) { return LUT_STR[lutIndex(w)]; }
function colRGB(w) { return LUT_RGB[lutIndex(w)]; }
/* Diverging blue (-) / dark (0) / orange (+) for signed vectors. */
function dmap(t) {
  t = clamp(isFinite(t) ? t : 0, -1, 1);
  const z = [32, 38, 52], n = [80, 160, 255], p = [255, 160, 60], c = t < 0 ? n : p, a = Math.abs(t);
  return `rgb(${Math.round(z[0] + a * (c[0] - z[0]))},${Math.round(z[1] + a * (c[1] - z[1]))},${Math.round(z[2] + a * (c[2] - z[2]))})`;
}

/* A token as display text: spaces become ␣, newlines ↵, tabs ⇥; a piece that is not whole
 * UTF-8 on its own (byte-level BPE splits characters) is shown by its bytes. */
function tokLabel(d, i) {
  if (d.partial && d.partial[i]) return '‹' + (d.bytes[i].match(/../g) || []).join(' ') + '›';
  return d.tokens[i].replace(/ /g, '␣').replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/\r/g, '␍');
}
function shortLabel(d, i, n = 12) { const s = tokLabel(d, i); return [...s].length > n ? [...s].slice(0, n - 1).join('') + '…' : s; }
/* HTML for a token: text nodes only, the visible-space glyphs dimmed. */
function tokInto(node, d, i) {
  const s = tokLabel(d, i);
  if (d.partial && d.partial[i]) { node.append(el('span', { class: 'bytes' }, s)); return node; }
  for (const part of s.split(/([␣↵⇥␍])/)) {
    if (!part) continue;
    if ('␣↵⇥␍'.includes(part)) node.append(el('span', { class: 'vis-space' }, part));
    else node.append(document.createTextNode(part));
  }
  return node;
}
function quote(d, i) { return '“' + tokLabel(d, i) + '”'; }

/* ---------------------------------------------------------------- tooltip */
const tip = $('tip');
function showTip(text, x, y) {
  tip.textContent = text; tip.hidden = false;
  const w = tip.offsetWidth, h = tip.offsetHeight;
  tip.style.left = Math.min(x + 14, window.innerWidth - w - 6) + 'px';
  tip.style.top = Math.min(y + 14, window.innerHeight - h - 6) + 'px';
}
document.addEventListener('mousemove', (ev) => {
  const t = ev.target && ev.target.closest ? ev.target.closest('[data-tip]') : null;
  if (t) showTip(t.getAttribute('data-tip'), ev.clientX, ev.clientY); else tip.hidden = true;
});

/* ---------------------------------------------------------------- API */
async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  let j = null;
  try { j = await r.json(); } catch (e) { throw new Error(`${path}: HTTP ${r.status}, not JSON`); }
  if (!r.ok) { const e = new Error(j && j.error ? j.error : `HTTP ${r.status}`); e.status = r.status; throw e; }
  return j;
}

/* ---------------------------------------------------------------- state */
const S = {
  text: '', q: -1, layer: 0, heads: [0, 1, 2], focus: 'avg', T: 1, tmode: 'client',
  causal: true, sink: false, unscaled: false, mechHead: -1, sqrt: true, dir: 'out', auto: true,
};
let model = null;   // GET /api/model
let headInfo = null; // GET /api/heads: probe scores and tags, computed by the engine
let base = null;    // attend at T=1 with the mask, with raw scores: the reference
let alt = null;     // attend at (T, causal) as set: the whole model re-run
let detail = null;  // q, k, v, out of one head
let hoverQ = null;  // query previewed by hover
const seq = { base: 0, alt: 0, detail: 0 };

function heads() { return S.heads.filter((h) => h < model.n_head); }
function layerLoaded(d, l) { return d && d.attention && d.attention[l]; }
function defaultHeads() { return [0, 1, 2].filter((h) => h < model.n_head); }
function panelList() {
  const hs = heads(), out = hs.map((h) => ({ key: h, title: `head ${h}` }));
  if (hs.length > 1) out.push({ key: 'avg', title: `average of ${hs.length} heads` });
  return out;
}
function focusKey() {
  const ps = panelList();
  return ps.some((p) => p.key === S.focus) ? S.focus : ps.length ? ps[ps.length - 1].key : 0;
}
/* Requests that complement base use base's text (S.text runs ahead while the user types). */
function baseText() { return base ? base._text : S.text; }
function altCurrent() { return alt && base && alt._text === base._text && alt._T === S.T && alt._causal === S.causal; }
function dialsMoved() { return S.T !== 1 || !S.causal; }

/* Softmax of one row of raw scores (q.k/sqrt(d)) at temperature T, with or without the mask. */
function softmaxRow(s, i, T, causal) {
  const n = causal ? i + 1 : s.length, w = new Array(s.length).fill(0);
  let m = -Infinity;
  for (let j = 0; j < n; j++) m = Math.max(m, s[j] / T);
  let z = 0;
  for (let j = 0; j < n; j++) { w[j] = Math.exp(s[j] / T - m); z += w[j]; }
  for (let j = 0; j < n; j++) w[j] /= z;
  return w;
}
function dropFirst(w) {
  const out = w.slice(); out[0] = 0;
  const z = out.reduce((a, b) => a + b, 0);
  if (z > 0) for (let j = 0; j < out.length; j++) out[j] /= z;
  return z > 0 ? out : w.slice();
}
/* Where the drawn weights come from, for labels. */
function source() {
  if (!dialsMoved()) return 'model';
  if (S.tmode === 'server' && altCurrent()) return 'server';
  if (base && base.scores && base.scores[S.layer]) return 'client';
  return altCurrent() ? 'server' : 'model';
}
/* The weights query i gives in layer l, head h, as drawn (dials and sink switch applied).
 * Memoised for one render pass (renderAll clears it): the views ask for the same rows. */
let rowMemo = new Map();
function rowWeights(l, h, i, src) {
  src = src || source();
  const key = `${src}|${l}|${h}|${i}`;
  let w = rowMemo.get(key);
  if (w) return w;
  w = rowWeightsUncached(l, h, i, src);
  rowMemo.set(key, w);
  return w;
}
function rowWeightsUncached(l, h, i, src) {
  let w;
  if (src === 'server' && altCurrent() && layerLoaded(alt, l)) w = alt.attention[l][h][i].slice();
  else if (src !== 'model' && base.scores && base.scores[l]) w = softmaxRow(base.scores[l][h][i], i, S.T, S.causal);
  else w = base.attention[l][h][i].slice();
  return S.sink && i > 0 ? dropFirst(w) : w;
}
function panelWeights(l, key, i, src) {
  if (key !== 'avg') return rowWeights(l, key, i, src);
  const hs = heads(), acc = new Array(base.n_tokens).fill(0);
  for (const h of hs) { const w = rowWeights(l, h, i, src); for (let j = 0; j < w.length; j++) acc[j] += w[j] / hs.length; }
  return acc;
}
function entropy(w, i) {
  let H = 0;
  for (const x of w) if (x > 0) H -= x * Math.log2(x);
  const n = S.causal ? i + 1 - (S.sink && i > 0 ? 1 : 0) : w.length - (S.sink && i > 0 ? 1 : 0);
  return { H, max: Math.log2(Math.max(1, n)), eff: Math.pow(2, H) };
}
function visible(i, j) { return !S.causal || j <= i; }

/* ---------------------------------------------------------------- URL state */
function writeHash() {
  const p = new URLSearchParams();
  p.set('text', baseText()); p.set('q', S.q); p.set('l', S.layer); p.set('h', heads().join(','));
  p.set('f', String(S.focus)); p.set('t', String(S.T)); p.set('m', S.tmode);
  p.set('a', S.auto ? '1' : '0');
  p.set('c', S.causal ? '1' : '0'); p.set('s', S.sink ? '1' : '0'); p.set('cs', S.sqrt ? 'sqrt' : 'linear'); p.set('d', S.dir);
  history.replaceState(null, '', '#' + p.toString());
}
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has('text')) S.text = p.get('text');
  const num = (k, lo, hi) => { const v = Number(p.get(k)); return p.has(k) && isFinite(v) ? clamp(v, lo, hi) : null; };
  const q = num('q', 0, 1e6); if (q !== null) S.q = Math.floor(q);
  const l = num('l', 0, model.n_layer - 1); if (l !== null) S.layer = Math.floor(l);
  if (p.has('h') || p.has('l')) S.auto = p.get('a') === '1';
  if (p.has('h')) {
    const hs = p.get('h').split(',').map(Number).filter((h) => Number.isInteger(h) && h >= 0 && h < model.n_head);
    if (hs.length) S.heads = [...new Set(hs)];
  }
  if (p.has('f')) S.focus = p.get('f') === 'avg' ? 'avg' : Number(p.get('f'));
  const t = num('t', 0.05, 20); if (t !== null) S.T = t;
  if (p.get('m') === 'server') S.tmode = 'server';
  if (p.get('c') === '0') S.causal = false;
  if (p.get('s') === '1') S.sink = true;
  if (p.get('cs') === 'linear') S.sqrt = false;
  if (p.get('d') === 'in') S.dir = 'in';
}
function syncControls() {
  $('text').value = S.text;
  $('layer').value = String(S.layer);
  $('temp').value = String(Math.log10(S.T));
  $('temp-val').textContent = `T = ${S.T.toFixed(2)}`;
  $('cscale').value = S.sqrt ? 'sqrt' : 'linear';
  $('causal').checked = S.causal; $('sink').checked = S.sink; $('unscaled').checked = S.unscaled;
  for (const r of document.querySelectorAll('input[name=tmode]')) r.checked = r.value === S.tmode;
  for (const r of document.querySelectorAll('input[name=dir]')) r.checked = r.value === S.dir;
}

/* ---------------------------------------------------------------- fetching */
let baseTimer = null;
function scheduleBase(delay = 300) { clearTimeout(baseTimer); baseTimer = setTimeout(fetchBase, delay); }

function showError(msg) { const e = $('error'); e.hidden = !msg; e.textContent = msg || ''; }

async function fetchBase() {
  const text = S.text, my = ++seq.base;
  if (!text.trim()) { showError('Type a sentence first.'); return; }
  $('status').textContent = 'computing…';
  let d;
  try {
    try {
      // raw scores for every layer when small (the dials then act on every view), else
      // only for the layer on view
      const estN = Math.max(1, Math.ceil(text.length / 3));
      const few = model.n_layer * model.n_head * estN * estN > 400000;
      d = await api('/api/attend', { text, scores: few ? [S.layer] : true, top_k: 10 });
    } catch (e) {
      if (e.status !== 413) throw e; // long text: only the layer on view
      try {
        d = await api('/api/attend', { text, scores: true, top_k: 10, layers: [S.layer] });
      } catch (e2) {
        if (e2.status !== 413) throw e2; // very long: no raw scores (the dials then re-run the model)
        d = await api('/api/attend', { text, top_k: 10, layers: [S.layer] });
        S.tmode = 'server'; syncControls();
      }
      d._partial = true;
    }
  } catch (e) {
    if (my === seq.base) { showError(e.message); $('status').textContent = ''; }
    return;
  }
  if (my !== seq.base) return;
  showError('');
  d._text = text;
  base = d;
  if (S.q < 0 || S.q >= d.n_tokens) S.q = d.n_tokens - 1;
  autoLens();
  $('status').textContent = `${d.n_tokens} tokens · forward ${fmt(d.forward_ms, 1)} ms`;
  detail = null;
  renderAll();
  fetchAlt(); fetchDetail();
}

let altTimer = null;
function scheduleAlt() { clearTimeout(altTimer); altTimer = setTimeout(fetchAlt, 120); }
async function fetchAlt() {
  if (!base || !dialsMoved()) return;
  if (altCurrent()) return;
  const my = ++seq.alt, body = { text: baseText(), temperature: S.T, causal: S.causal, top_k: 10 };
  if (base._partial) body.layers = [S.layer];
  try {
    const d = await api('/api/attend', body);
    if (my !== seq.alt) return;
    d._text = body.text; d._T = body.temperature; d._causal = body.causal;
    alt = d;
    renderAll();
  } catch (e) { if (my === seq.alt) showError('whole-model re-run: ' + e.message); }
}

function mechHead() {
  if (S.mechHead >= 0 && S.mechHead < model.n_head) return S.mechHead;
  const f = focusKey();
  return f === 'avg' ? (heads()[0] || 0) : f;
}
async function fetchDetail() {
  if (!base) return;
  const h = mechHead(), l = S.layer;
  const text = baseText();
  if (detail && detail._text === text && detail.layer === l && detail.head === h) return;
  const my = ++seq.detail;
  try {
    const d = await api('/api/attend', { text, attention: false, top_k: 0, detail: { layer: l, head: h } });
    if (my !== seq.detail) return;
    detail = d.detail; detail._text = text;
    renderMech();
  } catch (e) { if (my === seq.detail) $('mech-caption').textContent = e.message; }
}

/* ---------------------------------------------------------------- rendering */
let renderQueued = false;
/* Coalesces bursts (the dial fires an input event per step) into one render per frame. */
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; renderAll(); });
}
function renderAll() {
  rowMemo = new Map();
  if (!base) return;
  if (base._partial && !layerLoaded(base, S.layer)) { fetchBase(); return; }
  renderTokens(); renderHeadChips(); renderLens(); renderHeatmap(); renderGrid(); renderMech();
  renderMask(); renderPredictions(); writeHash();
}

function renderModelInfo() {
  const m = model;
  $('model-info').textContent = `model ${m.name} · ${m.n_layer} layers × ${m.n_head} heads · d = ${m.head_dim} · ` +
    `${m.n_ctx} tokens of context · vocab ${m.vocab_size} · ${(m.n_params / 1e6).toFixed(1)}M parameters`;
  const ls = clear($('layer'));
  for (let l = 0; l < m.n_layer; l++) ls.append(el('option', { value: String(l) }, `layer ${l}`));
  const mh = clear($('mech-head'));
  mh.append(el('option', { value: '-1' }, 'the focused head'));
  for (let h = 0; h < m.n_head; h++) mh.append(el('option', { value: String(h) }, `head ${h}`));
}

function renderLegend() {
  const W = 260, s = sv('svg', { width: W + 150, height: 34, role: 'img', 'aria-label': 'Colour scale: attention weight from 0 (dark purple, thin) to 1 (bright yellow, thick)' });
  const g = sv('defs'), lg = sv('linearGradient', { id: 'lg-viridis' });
  VIRIDIS.forEach((c, k) => lg.append(sv('stop', { offset: (k / (VIRIDIS.length - 1) * 100) + '%', 'stop-color': `rgb(${c})` })));
  g.append(lg); s.append(g);
  s.append(sv('rect', { x: 10, y: 4, width: W, height: 12, fill: 'url(#lg-viridis)', rx: 2 }));
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    s.append(sv('line', { x1: 10 + v * W, x2: 10 + v * W, y1: 16, y2: 20, stroke: '#a3adbf' }));
    s.append(sv('text', { x: 10 + v * W, y: 31, 'text-anchor': 'middle', fill: '#a3adbf', 'font-size': 11 }, S.sqrt ? String(Math.round(v * v * 1000) / 1000) : String(v)));
  }
  s.append(sv('text', { x: W + 18, y: 14, fill: '#a3adbf', 'font-size': 11 }, S.sqrt ? 'weight (√ scale)' : 'weight (linear)'));
  s.setAttribute('aria-label', `Colour scale, ${S.sqrt ? 'square-root' : 'linear'}: attention weight from 0 (dark purple) to 1 (bright yellow); lines are also thicker for more weight`);
  clear($('legend')).append(s);
}

function setQuery(i, focusButton) {
  if (!base) return;
  S.q = clamp(i, 0, base.n_tokens - 1);
  hoverQ = null;
  autoLens();
  renderAll();
  if (S.auto) fetchDetail();
  if (focusButton) { const b = $('tokens').children[S.q]; if (b) b.focus(); }
}

function renderTokens() {
  const box = clear($('tokens'));
  for (let i = 0; i < base.n_tokens; i++) {
    const b = el('button', {
      type: 'button', class: 'tok' + (i === S.q ? ' query' : '') + (base.partial[i] ? ' partial' : ''),
      'data-i': String(i), 'aria-pressed': i === S.q ? 'true' : 'false',
      'data-tip': `token ${i} · id ${base.ids[i]} · bytes ${base.bytes[i]}` + (base.partial[i] ? ' (part of a UTF-8 character)' : ''),
      'aria-label': `token ${i}: ${tokLabel(base, i)}`,
    });
    tokInto(b, base, i);
    b.addEventListener('click', () => setQuery(i, true));
    b.addEventListener('mouseenter', () => { if (i !== S.q) { hoverQ = i; renderLens(); } });
    b.addEventListener('mouseleave', () => { if (hoverQ !== null) { hoverQ = null; renderLens(); } });
    b.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
        ev.preventDefault(); setQuery(S.q + (ev.key === 'ArrowRight' ? 1 : -1), true);
      } else if (ev.key === 'Home') { ev.preventDefault(); setQuery(0, true); }
      else if (ev.key === 'End') { ev.preventDefault(); setQuery(base.n_tokens - 1, true); }
    });
    box.append(b);
  }
}

function renderHeadChips() {
  const box = clear($('heads'));
  for (let h = 0; h < model.n_head; h++) {
    const on = S.heads.includes(h);
    box.append(el('button', {
      type: 'button', class: 'chip', 'aria-pressed': on ? 'true' : 'false', 'data-head': String(h),
      onclick: () => {
        S.auto = false;
        S.heads = on ? S.heads.filter((x) => x !== h) : [...S.heads, h].sort((a, b) => a - b);
        if (!S.heads.length) S.heads = [h];
        renderAll(); fetchDetail();
      },
    }, `H${h}`));
  }
}

/* One lens panel: tokens on both sides, a line from the query (left) to each key (right). */
/* One lens panel: tokens on both sides, queries left and keys right. Direction "out" (the
 * default): lines from the query to every key it sees. Direction "in": lines into the chosen
 * token (as a key) from every query that sees it. */
function panelSVG(p, qi) {
  // long texts: rows shrink to fit ~720 px and only the chosen token and the 8 strongest
  // others keep their labels (every line is still drawn; hover any for its weight)
  const N = base.n_tokens, dense = N > 40, rowH = dense ? clamp(Math.floor(720 / N), 3, 14) : 19;
  const W = 280, xl = 98, xr = 182, top = 8, into = S.dir === 'in';
  const H = top * 2 + N * rowH, w = panelWeights(S.layer, p.key, qi);
  // wt[o]: weight between the chosen token and token o at the other end
  const wt = into ? [...Array(N).keys()].map((i) => (visible(i, qi) ? panelWeights(S.layer, p.key, i)[qi] : 0)) : w;
  const vis = (o) => (into ? visible(o, qi) : visible(qi, o));
  const s = sv('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'lens-svg', role: 'img',
    'font-family': 'DejaVu Sans Mono, monospace', 'font-size': dense ? clamp(rowH, 9, 10) : 12, 'data-panel': String(p.key),
    'data-query': String(qi), 'data-dir': into ? 'in' : 'out' });
  const order = [...wt.keys()].sort((a, b) => wt[b] - wt[a]);
  // greedy by weight: a label is kept if it does not overlap one already kept
  const labelled = new Set([qi]), keptY = [qi * rowH];
  for (const o of order.filter((oo) => vis(oo) && oo !== qi)) {
    if (labelled.size >= 9) break;
    if (keptY.every((yy) => Math.abs(yy - o * rowH) >= 11)) { labelled.add(o); keptY.push(o * rowH); }
  }
  const showLabel = (i) => !dense || rowH >= 10 || labelled.has(i);
  const topk = order.filter((o) => wt[o] > 0).slice(0, 3).map((o) => `${tokLabel(base, o)} ${fmt(wt[o], 2)}`);
  s.setAttribute('aria-label', into ? `${p.title}, layer ${S.layer}: the tokens that attend most to ${tokLabel(base, qi)} are ${topk.join(', ')}`
    : `${p.title}, layer ${S.layer}: query ${tokLabel(base, qi)} attends most to ${topk.join(', ')}`);
  const y = (i) => top + i * rowH + rowH / 2;
  // lines, weakest first so the strongest are on top
  const lines = sv('g', { class: 'lines' });
  for (const o of [...order].reverse()) {
    if (!vis(o) || wt[o] <= 0) continue;
    const qq = into ? o : qi, kk = into ? qi : o;
    lines.append(sv('path', {
      d: `M${xl + 4},${y(qq)} C${(xl + xr) / 2},${y(qq)} ${(xl + xr) / 2},${y(kk)} ${xr - 4},${y(kk)}`,
      fill: 'none', stroke: col(wt[o]), 'stroke-width': (0.6 + 9 * wt[o]).toFixed(2), 'stroke-linecap': 'round',
      class: 'att-line', 'data-q': String(qq), 'data-k': String(kk), 'data-w': String(wt[o]),
      'data-tip': `${p.title}: ${tokLabel(base, qq)} → ${tokLabel(base, kk)}  weight ${wt[o].toFixed(4)}`,
    }));
  }
  s.append(lines);
  for (let i = 0; i < N; i++) {
    const isQ = i === qi, yb = top + i * rowH + (rowH >= 10 ? 1 : rowH / 2 - 6), hb = Math.max(rowH - 2, 12);
    if (isQ) s.append(sv('rect', into ? { x: xr - 2, y: yb, width: W - xr - 30, height: hb, rx: 3, fill: '#ffd166' }
      : { x: 2, y: yb, width: xl, height: hb, rx: 3, fill: '#ffd166' }));
    if (!showLabel(i)) continue;
    const leftDim = into && !vis(i), rightDim = !into && !vis(i);
    const t = sv('text', { x: xl, y: y(i) + 4, 'text-anchor': 'end', fill: isQ && !into ? '#000' : leftDim ? '#5b6477' : '#c9d1df',
      'font-weight': isQ && !into ? 'bold' : 'normal', class: 'qtok', 'data-i': String(i),
      'data-tip': into ? (vis(i) ? `${tokLabel(base, i)} gives ${tokLabel(base, qi)} weight ${wt[i].toFixed(4)} · click: choose it` : `${tokLabel(base, i)} comes before ${tokLabel(base, qi)}: cannot see it`)
        : `make ${tokLabel(base, i)} the query (token ${i})`, style: 'cursor:pointer' }, shortLabel(base, i));
    t.addEventListener('click', (ev) => { ev.stopPropagation(); setQuery(i); });
    s.append(t);
    s.append(sv('text', { x: xr, y: y(i) + 4, fill: isQ && into ? '#000' : rightDim ? '#5b6477' : (!into && wt[i] >= 0.5 ? '#fde725' : '#e8ecf3'),
      'font-weight': isQ && into ? 'bold' : 'normal',
      'data-tip': into ? `${tokLabel(base, i)} (key)` : vis(i) ? `${tokLabel(base, i)}: weight ${wt[i].toFixed(4)}` : `${tokLabel(base, i)}: masked (in the query's future)` },
      shortLabel(base, i, 9)));
    if (vis(i) && wt[i] >= 0.05) {
      s.append(sv('text', into ? { x: 2, y: y(i) + 4, fill: col(Math.max(wt[i], 0.35)), 'font-size': 10 }
        : { x: W - 2, y: y(i) + 4, 'text-anchor': 'end', fill: col(Math.max(wt[i], 0.35)), 'font-size': 10 }, wt[i].toFixed(2)));
    }
  }
  return { svg: s, w, wt };
}

function renderLens() {
  const box = clear($('panels')), qi = hoverQ !== null ? hoverQ : S.q, fk = focusKey();
  const src = source();
  const srcText = src === 'server' ? `whole model re-run at T=${S.T.toFixed(2)}${S.causal ? '' : ', no mask'}` :
    src === 'client' ? `same scores, softmax at T=${S.T.toFixed(2)}${S.causal ? '' : ', no mask'}` : 'the model as trained';
  const autoText = S.auto && S.autoScores ? ' · chosen by data: the 3 sharpest heads for this query' : '';
  $('lens-caption').textContent = `layer ${S.layer}${autoText} · ${S.dir === 'in' ? 'who attends to' : 'query'} ${tokLabel(base, qi)} (token ${qi})${hoverQ !== null ? ' · preview' : ''} · ${srcText}${S.sink ? ' · first token ignored' : ''}`;
  for (const p of panelList()) {
    const { svg, w, wt } = panelSVG(p, qi), e = entropy(w, qi);
    const div = el('div', { class: 'panel' + (p.key === fk ? ' focus' : ''), tabindex: '0', role: 'button',
      'aria-label': `open ${p.title} in the matrix view`, 'data-panel': String(p.key) });
    const tags = p.key === 'avg' ? [] : headTags(S.layer, p.key);
    const sharp = S.auto && S.autoScores && p.key in S.autoScores ? ` · sharpness ${fmt(S.autoScores[p.key], 2)}` : '';
    div.append(el('h3', {}, `L${S.layer} · ${p.title}${tags.length ? ' · ' + tags.join(', ') : ''}${sharp}`), svg,
      el('div', { class: 'ent' }, S.dir === 'in' ? `received ${fmt(wt.reduce((a, c) => a + c, 0), 2)} from ${wt.filter((x, i) => visible(i, qi)).length} queries`
        : `entropy ${fmt(e.H, 2)} of ${fmt(e.max, 2)} bits · ≈${fmt(e.eff, 1)} tokens`));
    const open = () => { S.focus = p.key; S.mechHead = -1; $('mech-head').value = '-1'; renderAll(); fetchDetail(); };
    div.addEventListener('click', open);
    div.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); open(); } });
    box.append(div);
  }
}

function heatSVG(key, opts = {}) {
  const N = base.n_tokens, c = opts.cell || clamp(Math.floor(520 / N), 5, 26), lab = c >= 9 && !opts.noLabels;
  const mL = lab ? 96 : 8, mT = lab ? 96 : 8, W = mL + N * c + 8, H = mT + N * c + 8;
  const s = sv('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'heat-svg', role: 'img',
    'aria-label': `attention matrix of ${key === 'avg' ? 'the average' : 'head ' + key}, layer ${S.layer}, ${N} by ${N}`,
    'font-family': 'DejaVu Sans Mono, monospace', 'font-size': Math.min(12, c) });
  const defs = sv('defs'), pat = sv('pattern', { id: 'hatch', width: 4, height: 4, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
  pat.append(sv('rect', { width: 4, height: 4, fill: '#151a23' }), sv('line', { x1: 0, y1: 0, x2: 0, y2: 4, stroke: '#2f384b', 'stroke-width': 2 }));
  defs.append(pat); s.append(defs);
  const title = key === 'avg' ? 'average' : `head ${key}`;
  for (let i = 0; i < N; i++) {
    const w = panelWeights(S.layer, key, i);
    for (let j = 0; j < N; j++) {
      const vis = visible(i, j);
      s.append(sv('rect', { x: mL + j * c, y: mT + i * c, width: c, height: c, fill: vis ? col(w[j]) : 'url(#hatch)',
        class: 'cell', 'data-i': String(i), 'data-j': String(j), 'data-w': String(w[j]),
        'data-tip': vis ? `${title}: ${tokLabel(base, i)} → ${tokLabel(base, j)}  ${w[j].toFixed(4)}` : `${tokLabel(base, i)} → ${tokLabel(base, j)}: masked` }));
    }
    if (lab) {
      s.append(sv('text', { x: mL - 4, y: mT + i * c + c / 2 + 4, 'text-anchor': 'end', fill: i === S.q ? '#ffd166' : '#c9d1df', class: 'rowlab', 'data-i': String(i) }, shortLabel(base, i, 11)));
      s.append(sv('text', { x: 0, y: 0, transform: `translate(${mL + i * c + c / 2 + 4},${mT - 4}) rotate(-90)`, fill: '#c9d1df' }, shortLabel(base, i, 11)));
    }
  }
  s.append(sv('rect', { x: mL - 1, y: mT + S.q * c - 1, width: N * c + 2, height: c + 2, fill: 'none', stroke: '#ffd166', 'stroke-width': 2, class: 'qrow' }));
  if (S.dir === 'in') s.append(sv('rect', { x: mL + S.q * c - 1, y: mT - 1, width: c + 2, height: N * c + 2, fill: 'none', stroke: '#5ec8ff', 'stroke-width': 2, class: 'kcol' }));
  s.addEventListener('click', (ev) => { const i = ev.target.getAttribute && ev.target.getAttribute('data-i'); if (i !== null && i !== undefined) setQuery(Number(i)); });
  return s;
}

/* Long texts: the matrix on a canvas (an SVG of 65k cells is slow); hover reads the cell
 * under the pointer, click picks the query. */
function heatCanvas(key) {
  const N = base.n_tokens, c = clamp(Math.floor(768 / N), 2, 8), W = N * c;
  const cv = el('canvas', { width: String(W), height: String(W), class: 'heat-canvas', role: 'img',
    'aria-label': `attention matrix of ${key === 'avg' ? 'the average' : 'head ' + key}, layer ${S.layer}, ${N} by ${N}` });
  const ctx = cv.getContext('2d'), rows = [];
  for (let i = 0; i < N; i++) {
    const w = panelWeights(S.layer, key, i);
    rows.push(w);
    for (let j = 0; j < N; j++) { ctx.fillStyle = visible(i, j) ? col(w[j]) : '#1d2330'; ctx.fillRect(j * c, i * c, c, c); }
  }
  ctx.strokeStyle = '#ffd166'; ctx.lineWidth = 2; ctx.strokeRect(0, S.q * c, W, c);
  const cell = (ev) => { const r = cv.getBoundingClientRect(); return [Math.floor((ev.clientY - r.top) / c), Math.floor((ev.clientX - r.left) / c)]; };
  cv.addEventListener('mousemove', (ev) => {
    const [i, j] = cell(ev);
    if (i < 0 || j < 0 || i >= N || j >= N) return;
    cv.setAttribute('data-tip', visible(i, j) ? `${tokLabel(base, i)} → ${tokLabel(base, j)}  ${rows[i][j].toFixed(4)}` : `${tokLabel(base, i)} → ${tokLabel(base, j)}: masked`);
  });
  cv.addEventListener('click', (ev) => { const [i] = cell(ev); if (i >= 0 && i < N) setQuery(i); });
  return cv;
}

function renderHeatmap() {
  const key = focusKey();
  $('heat-title').textContent = `Attention matrix · layer ${S.layer} · ${key === 'avg' ? 'average of heads ' + heads().join(', ') : 'head ' + key}`;
  clear($('heatmap')).append(base.n_tokens > 96 ? heatCanvas(key) : heatSVG(key));
  renderRowStats(key);
}

function renderRowStats(key) {
  const qi = S.q, w = panelWeights(S.layer, key, qi), e = entropy(w, qi), box = clear($('row-stats'));
  box.append(el('h3', {}, `Query ${tokLabel(base, qi)}: how focused?`));
  box.append(el('div', { class: 'big' }, `${fmt(e.H, 2)} bits`));
  box.append(el('div', {}, `entropy, out of ${fmt(e.max, 2)} for uniform · ≈ ${fmt(e.eff, 1)} tokens in effect · max weight ${fmt(Math.max(...w), 3)}`));
  if (dialsMoved() && base.scores && base.scores[S.layer]) {
    const a = entropy(panelWeights(S.layer, key, qi, 'client'), qi);
    let line = `same scores at T=${S.T.toFixed(2)}: ${fmt(a.H, 2)} bits`;
    if (altCurrent()) line += ` · whole model re-run: ${fmt(entropy(panelWeights(S.layer, key, qi, 'server'), qi).H, 2)} bits`;
    box.append(el('p', { class: 'explain' }, line));
  }
  const t = el('table'), hr = el('tr');
  hr.append(el('th', {}, 'key'), el('th', {}, 'weight'));
  t.append(hr);
  [...w.keys()].sort((a, b) => w[b] - w[a]).slice(0, 6).forEach((j) => {
    if (w[j] <= 0) return;
    const tr = el('tr'), td = el('td');
    tokInto(td, base, j);
    tr.append(td, el('td', {}, w[j].toFixed(4)));
    t.append(tr);
  });
  box.append(t);
  renderRollout(box, qi);
}

/* Attention rollout (Abnar & Zuidema 2020): how much each token reaches the query through
 * every layer, each layer's heads averaged and the residual counted as half: row qi of
 * (A_{L-1}/2 + I/2) ... (A_0/2 + I/2). A rough map, not an explanation. */
function renderRollout(box, qi) {
  const L = base.n_layer, H = base.n_head, N = base.n_tokens;
  for (let l = 0; l < L; l++) if (!layerLoaded(base, l)) return;
  let v = new Array(N).fill(0);
  v[qi] = 1;
  for (let l = L - 1; l >= 0; l--) {
    const nv = new Array(N).fill(0);
    for (let i = 0; i < N; i++) {
      if (v[i] === 0) continue;
      nv[i] += 0.5 * v[i];
      for (let h = 0; h < H; h++) { const w = rowWeights(l, h, i); for (let j = 0; j < N; j++) nv[j] += 0.5 * v[i] * w[j] / H; }
    }
    v = nv;
  }
  box.append(el('h3', {}, `Through all ${L} layers (rollout)`));
  box.append(el('p', { class: 'explain' }, 'Every head averaged, the residual path counted as half, multiplied layer by layer: a rough picture of where the query\'s information comes from. Attention is not the whole explanation (the MLPs and the values matter too).'));
  const row = el('div', { class: 'att-row', id: 'rollout' });
  for (let j = 0; j < N; j++) {
    const t = el('span', { class: 'tok' + (j === qi ? ' query' : ''), 'data-w': String(v[j]), 'data-tip': `rollout ${tokLabel(base, qi)} ← ${tokLabel(base, j)}: ${v[j].toFixed(4)}` });
    if (j !== qi) {
      if (!visible(qi, j)) t.style.opacity = '0.4';
      else { t.style.background = col(v[j]); t.style.color = (S.sqrt ? Math.sqrt(v[j]) : v[j]) > 0.55 ? '#000' : '#fff'; }
    }
    tokInto(t, base, j);
    row.append(t);
  }
  box.append(row);
}

/* What a head does, from GET /api/heads: the engine scores every head on a probe set (prose,
 * and a random sequence shown twice) and tags it; the same numbers as `qkv heads`. */
const TAG_SHORT = { 'previous-token': 'prev', induction: 'induction', 'first-token sink': 'sink', self: 'self', punctuation: 'punct', uniform: 'uniform' };
function headEntry(l, h) { return headInfo && headInfo.heads[l * headInfo.n_head + h]; }
function headTags(l, h) { const e = headEntry(l, h); return e ? e.tags.map((t) => TAG_SHORT[t] || t) : []; }
function headTip(l, h) {
  const e = headEntry(l, h);
  if (!e) return '';
  const s = e.scores;
  return `\nprobe scores: prev ${fmt(s.prev, 2)} · induction ${fmt(s.induction, 2)} · sink ${fmt(s.sink, 2)} · self ${fmt(s.self, 2)} · punct ${fmt(s.punctuation, 2)} · uniformity ${fmt(s.uniformity, 2)}`;
}

/* The lens chosen by data: for the query, the three heads whose attention from it is
 * sharpest (1 - entropy / log n, first token dropped and the row renormalised so attention
 * sinks do not count), in the layer where the three are sharpest together. Uses the model
 * as trained (base), whatever the dials say. */
function sharpness(w, q) {
  const lo = q >= 2 ? 1 : 0;
  let z = 0; for (let j = lo; j <= q; j++) z += w[j];
  if (!(z > 0) || q - lo < 1) return 0;
  let H = 0; for (let j = lo; j <= q; j++) { const p = w[j] / z; if (p > 0) H -= p * Math.log(p); }
  return 1 - H / Math.log(q - lo + 1);
}
function autoLens() {
  if (!S.auto || !base || S.q < 1) return;
  let best = null;
  for (let l = 0; l < model.n_layer; l++) {
    if (!layerLoaded(base, l)) continue;
    const sc = [];
    for (let h = 0; h < model.n_head; h++) sc.push([sharpness(base.attention[l][h][S.q], S.q), h]);
    sc.sort((a, b) => b[0] - a[0]);
    const top = sc.slice(0, Math.min(3, sc.length)), m = top.reduce((a, c) => a + c[0], 0) / top.length;
    if (!best || m > best.m) best = { m, l, heads: top.map((x) => x[1]).sort((a, b) => a - b), sc: top };
  }
  if (!best) return;
  S.layer = best.l; S.heads = best.heads; S.focus = 'avg';
  S.autoScores = Object.fromEntries(best.sc.map(([v, h]) => [h, v]));
  $('layer').value = String(S.layer);
}

function renderGrid() {
  const L = model.n_layer, H = model.n_head, N = base.n_tokens, grid = clear($('grid'));
  const size = clamp(Math.floor(1060 / (H + 1)) - 8, 34, 84);
  grid.style.gridTemplateColumns = `48px repeat(${H}, ${size + 2}px)`;
  grid.append(el('div'));
  for (let h = 0; h < H; h++) grid.append(el('div', { class: 'lab' }, `H${h}`));
  for (let l = 0; l < L; l++) {
    grid.append(el('div', { class: 'lab' }, `L${l}`));
    for (let h = 0; h < H; h++) {
      const b = el('button', { type: 'button', class: 'thumb' + (l === S.layer && heads().includes(h) ? ' sel' : ''),
        'data-layer': String(l), 'data-head': String(h) });
      if (!layerLoaded(base, l)) { b.append(el('span', { class: 'tag' }, '…')); grid.append(b); continue; }
      const cv = el('canvas', { width: String(size), height: String(size) }), small = el('canvas', { width: String(N), height: String(N) });
      const ctx = small.getContext('2d'), img = ctx.createImageData(N, N);
      for (let i = 0; i < N; i++) {
        const w = rowWeights(l, h, i);
        for (let j = 0; j < N; j++) {
          const o = (i * N + j) * 4, c = visible(i, j) ? colRGB(w[j]) : [24, 28, 38];
          img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
      const big = cv.getContext('2d');
      big.imageSmoothingEnabled = false;
      big.drawImage(small, 0, 0, size, size);
      // the query's row, so each thumbnail reads as "where this token looks"
      big.strokeStyle = 'rgba(255, 209, 102, 0.9)';
      big.lineWidth = 1;
      big.strokeRect(0.5, Math.floor(S.q * size / N) + 0.5, size - 1, Math.max(1, Math.round(size / N)));
      const tags = headTags(l, h);
      b.setAttribute('aria-label', `layer ${l} head ${h}${tags.length ? ' (' + tags.join(', ') + ')' : ''}: open`);
      b.setAttribute('data-tip', `layer ${l}, head ${h}${tags.length ? ' · ' + tags.join(', ') : ''}${headTip(l, h)}\nclick: open · shift-click: add to the lens`);
      b.append(cv);
      if (tags.length) b.append(el('span', { class: 'tag' }, tags.join(' ')));
      b.addEventListener('click', (ev) => {
        S.auto = false;
        if (ev.shiftKey && l === S.layer) S.heads = S.heads.includes(h) ? S.heads.filter((x) => x !== h) : [...S.heads, h].sort((a, c) => a - c);
        else { S.layer = l; S.heads = [h]; S.focus = h; }
        if (!S.heads.length) S.heads = [h];
        $('layer').value = String(S.layer);
        S.mechHead = -1; $('mech-head').value = '-1';
        renderAll(); fetchDetail();
        $('lens').scrollIntoView({ block: 'start' });
      });
      grid.append(b);
    }
  }
}

/* A horizontal bar chart. items: {label (token index or text), value, tip, color}. Signed
 * values grow left/right of a zero line. */
function bars(items, o = {}) {
  const rowH = o.rowH || 18, labW = o.labW || 110, W = o.width || 420, valW = 64;
  const vals = items.map((it) => it.value).filter((v) => isFinite(v));
  const lo = Math.min(0, o.min !== undefined ? o.min : Math.min(...vals, 0)), hi = Math.max(o.max !== undefined ? o.max : Math.max(...vals, 0), 1e-9);
  const plotW = W - labW - valW, x0 = labW + plotW * (-lo / (hi - lo || 1));
  const s = sv('svg', { width: W, height: items.length * rowH + 6, role: 'img', 'aria-label': o.aria || 'bar chart',
    'font-family': 'DejaVu Sans Mono, monospace', 'font-size': 11.5 });
  items.forEach((it, k) => {
    const y = 3 + k * rowH, lab = typeof it.label === 'number' ? shortLabel(base, it.label, 13) : it.label;
    s.append(sv('text', { x: labW - 6, y: y + rowH - 5, 'text-anchor': 'end', fill: it.dim ? '#5b6477' : '#c9d1df' }, lab));
    if (it.masked) {
      s.append(sv('text', { x: labW + 4, y: y + rowH - 5, fill: '#5b6477', 'data-tip': it.tip || 'masked' }, 'masked (−∞)'));
      return;
    }
    const v = it.value, x1 = labW + plotW * ((v - lo) / (hi - lo || 1));
    s.append(sv('rect', { x: Math.min(x0, x1), y: y + 2, width: Math.max(1, Math.abs(x1 - x0)), height: rowH - 5, rx: 2,
      fill: it.color || (v < 0 ? '#5aa0ff' : '#ffa94d'), class: 'bar', 'data-v': String(v), 'data-tip': it.tip || `${lab}: ${v}` }));
    s.append(sv('text', { x: W - 4, y: y + rowH - 5, 'text-anchor': 'end', fill: '#e8ecf3' }, o.fmt ? o.fmt(v) : fmt(v, 3)));
  });
  if (lo < 0) s.append(sv('line', { x1: x0, x2: x0, y1: 0, y2: items.length * rowH + 6, stroke: '#6f7a90' }));
  return s;
}

function dot(a, b) { let s = 0; for (let e = 0; e < a.length; e++) s += a[e] * b[e]; return s; }

function renderMech() {
  if (!base) return;
  const h = mechHead(), qi = S.q, N = base.n_tokens;
  $('mech-caption').textContent = `layer ${S.layer} · head ${h} · query ${tokLabel(base, qi)} · T = ${S.T.toFixed(2)}${S.causal ? '' : ' · no mask'}`;
  if (!detail || detail._text !== base._text || detail.layer !== S.layer || detail.head !== h) {
    for (const id of ['mech-scores', 'mech-weights', 'mech-values']) clear($(id)).append(el('p', { class: 'explain' }, 'loading…'));
    return;
  }
  const d = detail.head_dim, scale = detail.scale, q = detail.q[qi];
  if (!q || detail.k.length !== N) return; // detail of another text: a fresh one is on its way
  $('scale-label').textContent = S.unscaled ? '(unscaled!)' : `× 1/√${d} = ${fmt(scale, 4)}`;
  const raw = detail.k.map((k) => dot(q, k)), sc = raw.map((x) => x * (S.unscaled ? 1 : scale));
  // keys in the query's future are summarised in one row (they are all masked)
  const idx = [...Array(N).keys()].filter((j) => visible(qi, j)), hidden = N - idx.length;
  const maskedRow = hidden ? [{ label: `+${hidden} later`, value: 0, masked: true, tip: `${hidden} tokens after the query: masked (−∞ before the softmax, weight 0)` }] : [];
  clear($('mech-scores')).append(bars([...idx.map((j) => ({
    label: j, value: sc[j], masked: !visible(qi, j),
    tip: `q·k(${tokLabel(base, j)}) = ${raw[j].toFixed(4)}${S.unscaled ? '' : `, × ${scale.toFixed(4)} = ${sc[j].toFixed(4)}`}`,
  })), ...maskedRow], { aria: 'scores of the query against each key' }));
  const w = softmaxRow(sc, qi, S.T, S.causal), e = entropy(w, qi);
  let other = '';
  if (S.unscaled) other = ` (with the scale: ${fmt(entropy(softmaxRow(raw.map((x) => x * scale), qi, S.T, S.causal), qi).H, 2)} bits) — without it the softmax saturates toward one-hot, and its gradients vanish`;
  $('mech-entropy').textContent = `Entropy ${fmt(e.H, 2)} of ${fmt(e.max, 2)} bits${other}.`;
  clear($('mech-weights')).append(bars([...idx.map((j) => ({
    label: j, value: w[j], masked: !visible(qi, j), color: col(w[j]),
    tip: `softmax weight of ${tokLabel(base, j)}: ${w[j].toFixed(4)}`,
  })), ...maskedRow], { min: 0, max: 1, aria: 'softmax weights' }));
  renderUnscaledModel();
  renderGeometry(qi, w);
  // blend: rows a_j * v_j, the sum, and the engine's own output
  const vis = idx, contrib = vis.map((j) => detail.v[j].map((x) => x * w[j]));
  const sum = new Array(d).fill(0);
  for (const c of contrib) for (let e2 = 0; e2 < d; e2++) sum[e2] += c[e2];
  let amax = 1e-9;
  for (const r of [...contrib, sum]) for (const x of r) amax = Math.max(amax, Math.abs(x));
  const cw = clamp(Math.floor(560 / d), 3, 14), rowH = 16, labW = 120, normW = 120;
  const rows = [...vis.map((j, k) => ({ label: shortLabel(base, j, 13), vals: contrib[k], tip: `${tokLabel(base, j)}: weight ${w[j].toFixed(4)} × v`, j })),
    { label: 'Σ = output', vals: sum, tip: 'the head\'s output for the query (weighted blend)', out: true }];
  const engine = !dialsMoved() && !S.unscaled ? detail.out[qi] : null;
  if (engine) rows.push({ label: 'engine output', vals: engine, tip: 'head_out as computed by the C engine', out: true });
  const W = labW + d * cw + normW + 10, s = sv('svg', { width: W, height: rows.length * rowH + 10, role: 'img',
    'aria-label': 'weighted value vectors and their sum', 'font-family': 'DejaVu Sans Mono, monospace', 'font-size': 11.5 });
  const norms = rows.map((r) => Math.sqrt(dot(r.vals, r.vals))), nmax = Math.max(...norms, 1e-9);
  rows.forEach((r, k) => {
    const y = 4 + k * rowH + (r.out ? 6 : 0);
    s.append(sv('text', { x: labW - 6, y: y + 12, 'text-anchor': 'end', fill: r.out ? '#ffd166' : '#c9d1df' }, r.label));
    r.vals.forEach((x, e2) => s.append(sv('rect', { x: labW + e2 * cw, y, width: cw - (cw > 4 ? 1 : 0), height: rowH - 2, fill: dmap(x / amax),
      'data-tip': `${r.tip}\ndimension ${e2}: ${x.toFixed(4)}` })));
    s.append(sv('rect', { x: labW + d * cw + 8, y: y + 3, width: Math.max(1, (normW - 50) * norms[k] / nmax), height: rowH - 8, fill: '#8fa3c7',
      'data-tip': `length of this row: ${norms[k].toFixed(4)}` }));
    s.append(sv('text', { x: W - 2, y: y + 12, 'text-anchor': 'end', fill: '#a3adbf', 'font-size': 10 }, fmt(norms[k], 2)));
  });
  const box = clear($('mech-values'));
  box.append(s);
  if (engine) {
    let md = 0;
    for (let e2 = 0; e2 < d; e2++) md = Math.max(md, Math.abs(engine[e2] - sum[e2]));
    box.append(el('p', { class: 'explain' }, `The page's blend and the engine's output differ by at most ${md.toExponential(1)} ${md < 1e-3 ? '✓' : '(!)'}.`));
  }
}

/* Dropping 1/sqrt(d) everywhere is the same as an attention temperature of 1/sqrt(d): the
 * whole model re-run that way shows what the scale is for, on the predictions. */
let unscaledRun = null;
async function renderUnscaledModel() {
  const box = clear($('mech-unscaled'));
  if (!S.unscaled || !detail) return;
  const T = Math.max(0.01, detail.scale), key = `${base._text}|${T}`;
  if (!unscaledRun || unscaledRun._key !== key) {
    box.append(el('p', { class: 'explain' }, 'running the whole model without the scale…'));
    try {
      const d = await api('/api/attend', { text: base._text, temperature: T, attention: false, top_k: 5 });
      d._key = key;
      unscaledRun = d;
    } catch (e) { clear(box).append(el('p', { class: 'error' }, e.message)); return; }
    if (!S.unscaled) { clear(box); return; }
  }
  clear(box);
  box.append(el('h3', {}, 'Every layer without the scale: the model\'s next token'));
  box.append(el('p', { class: 'explain' }, `Same as temperature 1/√${detail.head_dim} = ${fmt(T, 3)} in every head of every layer.`));
  const wrap = el('div', { class: 'pred-cmp' });
  wrap.append(predList({ ...base, top: base.top.slice(0, 5) }, 'with the scale (as trained)', 280), predList(unscaledRun, 'without it', 280));
  box.append(wrap);
}

/* Top-2 principal directions of the rows of X (n x d) by power iteration with deflation. */
function pca2(X) {
  const n = X.length, d = X[0].length, mean = new Array(d).fill(0);
  for (const r of X) for (let e = 0; e < d; e++) mean[e] += r[e] / n;
  const C = X.map((r) => r.map((x, e) => x - mean[e]));
  const dirs = [];
  let total = 0;
  for (const r of C) for (const x of r) total += x * x;
  const explained = [];
  for (let k = 0; k < 2; k++) {
    let v = new Array(d).fill(0).map((_, e) => Math.sin(e * 12.9898 + k * 78.233) + 0.01);
    let lambda = 0;
    for (let it = 0; it < 60; it++) {
      const Xv = C.map((r) => dot(r, v)), nv = new Array(d).fill(0);
      for (let i = 0; i < n; i++) for (let e = 0; e < d; e++) nv[e] += C[i][e] * Xv[i];
      for (const u of dirs) { const p = dot(nv, u); for (let e = 0; e < d; e++) nv[e] -= p * u[e]; }
      const norm = Math.sqrt(dot(nv, nv)) || 1;
      lambda = norm;
      v = nv.map((x) => x / norm);
    }
    dirs.push(v);
    explained.push(total > 0 ? lambda / total : 0);
  }
  return { proj: C.map((r) => [dot(r, dirs[0]), dot(r, dirs[1])]), explained };
}

function renderGeometry(qi, w) {
  const box = clear($('mech-geo'));
  const N = base.n_tokens, { proj, explained } = pca2([...detail.q, ...detail.k]);
  $('geo-d').textContent = String(detail.head_dim);
  $('geo-var').textContent = `These two directions hold ${pct(explained[0] + explained[1])} of the spread.`;
  const W = 460, H = 320, pad = 28;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of proj) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const sx = (x) => pad + (x - x0) / ((x1 - x0) || 1) * (W - 2 * pad), sy = (y) => H - pad - (y - y0) / ((y1 - y0) || 1) * (H - 2 * pad);
  const s = sv('svg', { width: W, height: H, role: 'img', class: 'geo-svg', 'aria-label': `query and key vectors of head ${detail.head}, projected to 2-D`,
    'font-family': 'DejaVu Sans Mono, monospace', 'font-size': 10.5 });
  s.append(sv('rect', { x: 0.5, y: 0.5, width: W - 1, height: H - 1, fill: '#10141c', stroke: '#2a3244' }));
  const [qx, qy] = proj[qi];
  for (let j = 0; j < N; j++) {
    if (!visible(qi, j) || !(w[j] > 0)) continue;
    const [kx, ky] = proj[N + j];
    s.append(sv('line', { x1: sx(qx), y1: sy(qy), x2: sx(kx), y2: sy(ky), stroke: col(w[j]), 'stroke-width': (0.5 + 6 * w[j]).toFixed(2),
      'data-tip': `${tokLabel(base, qi)} → key ${tokLabel(base, j)}: weight ${w[j].toFixed(4)}` }));
  }
  for (let i = 0; i < 2 * N; i++) {
    const isK = i >= N, t = isK ? i - N : i, [x, y] = proj[i], hi = t === qi && !isK;
    const tip = `${isK ? 'key' : 'query'} of ${tokLabel(base, t)}` + (isK && visible(qi, t) ? `: weight ${w[t].toFixed(4)}` : '');
    if (isK) s.append(sv('rect', { x: sx(x) - 4, y: sy(y) - 4, width: 8, height: 8, fill: '#5ec8ff', class: 'geo-k', 'data-tip': tip, opacity: visible(qi, t) ? 1 : 0.35 }));
    else s.append(sv('circle', { cx: sx(x), cy: sy(y), r: hi ? 7 : 4, fill: hi ? '#ffd166' : '#ffa94d', class: 'geo-q', 'data-tip': tip, opacity: hi ? 1 : 0.55 }));
    if (isK || hi) s.append(sv('text', { x: sx(x) + 7, y: sy(y) - 5, fill: hi ? '#ffd166' : '#a3adbf' }, shortLabel(base, t, 10)));
  }
  box.append(s);
}

function renderMask() {
  const N = base.n_tokens, c = clamp(Math.floor(300 / N), 4, 16), s = sv('svg', { width: N * c + 4, height: N * c + 4, role: 'img',
    'aria-label': `causal mask: ${N} by ${N}, lower triangle allowed` });
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) {
    const ok = j <= i;
    s.append(sv('rect', { x: 2 + j * c + 1, y: 2 + i * c + 1, width: c - 2, height: c - 2, fill: ok ? (i === S.q ? '#ffd166' : '#5ec8ff') : 'none',
      stroke: ok ? 'none' : '#3a4458', 'data-tip': `${tokLabel(base, i)} → ${tokLabel(base, j)}: ${ok ? 'allowed' : 'masked (−∞ before softmax)'}` }));
  }
  clear($('mask-tri')).append(s);
  const key = focusKey(), qi = S.q, box = clear($('mask-cmp'));
  const h = key === 'avg' ? heads() : [key];
  if (!base.scores || !base.scores[S.layer]) { box.append(el('p', { class: 'explain' }, 'needs the raw scores (shorter text)')); return; }
  const avgRow = (causal) => {
    const acc = new Array(N).fill(0);
    for (const hh of h) { const w = softmaxRow(base.scores[S.layer][hh][qi], qi, S.T, causal); for (let j = 0; j < N; j++) acc[j] += w[j] / h.length; }
    return acc;
  };
  const withM = avgRow(true), without = avgRow(false);
  $('mask-cmp-title').textContent = `Query ${tokLabel(base, qi)}, ${key === 'avg' ? 'average' : 'head ' + key}: with the mask / without (same scores)`;
  const items = [];
  for (let j = 0; j < N; j++) {
    items.push({ label: j, value: withM[j], color: col(withM[j]), tip: `with mask: ${withM[j].toFixed(4)}` });
    items.push({ label: '  no mask', value: without[j], color: '#8fa3c7', dim: true, tip: `without mask: ${without[j].toFixed(4)}` });
  }
  box.append(bars(items, { min: 0, max: 1, rowH: 15, aria: 'weights with and without the causal mask' }));
  if (qi === N - 1) box.append(el('p', { class: 'explain' }, 'The last token already sees every token, so the mask changes nothing for it: pick an earlier token to see the difference.'));
  if (!S.causal && altCurrent()) box.append(el('p', { class: 'explain' }, 'The mask is off: the lens shows the weights without it, and the predictions below show what the whole model does then.'));
}

function predList(d, title, width) {
  const wrap = el('div');
  wrap.append(el('h3', {}, title));
  const items = d.top.map((t) => ({ label: tokLabel({ tokens: [t.token], partial: [t.partial], bytes: [t.bytes] }, 0), value: t.prob, color: '#5ec8ff',
    tip: `${t.token} (id ${t.id}): ${t.prob}` }));
  wrap.append(bars(items, { min: 0, max: Math.max(...d.top.map((t) => t.prob), 1e-6), labW: width ? 90 : 130, width: width || 420, aria: title, fmt: pct }));
  return wrap;
}
function renderPredictions() {
  const box = clear($('predictions'));
  box.append(predList(base, 'the model as trained'));
  // let the model write: a click appends a predicted token to the text and re-runs
  const row = el('div', { class: 'append-row', role: 'group', 'aria-label': 'Append a predicted token to the text' });
  row.append(el('span', { class: 'explain' }, 'Append one: '));
  for (const t of base.top.slice(0, 6)) {
    if (t.partial) continue;
    const b = el('button', { type: 'button', class: 'tok small-append', 'data-id': String(t.id), 'data-tip': `append ${t.token} (${pct(t.prob)}) and re-run` });
    tokInto(b, { tokens: [t.token], partial: [false] }, 0);
    b.addEventListener('click', () => { S.text = S.text + t.token; $('text').value = S.text; S.q = -1; fetchBase(); });
    row.append(b);
  }
  box.append(row);
  if (dialsMoved() && altCurrent()) box.append(predList(alt, `whole model at T=${S.T.toFixed(2)}${S.causal ? '' : ', no mask'}`));
  $('pred-note').textContent = dialsMoved() ? 'The dials change every layer\'s attention, so the predictions move too.' : 'Turn the focus dial or the mask off to see them move.';
}

/* ---------------------------------------------------------------- predict-the-blank */
const EX_TEXT = 'The keys to the cabinet';
let exData = null, exPick = null;
async function initExercise() {
  try {
    exData = await api('/api/attend', { text: EX_TEXT, probe: [' were', ' was', ' is', ' are'], top_k: 8 });
  } catch (e) { $('ex-result').textContent = e.message; return; }
  const box = clear($('ex-tokens'));
  for (let i = 0; i < exData.n_tokens; i++) {
    const b = el('button', { type: 'button', class: 'tok', 'data-i': String(i), 'aria-pressed': 'false' });
    tokInto(b, exData, i);
    b.addEventListener('click', () => {
      exPick = i;
      for (const x of box.children) { x.classList.toggle('picked', x === b); x.setAttribute('aria-pressed', x === b ? 'true' : 'false'); }
    });
    box.append(b);
  }
}
function revealExercise() {
  const out = clear($('ex-result'));
  if (!exData) return;
  const guess = document.querySelector('input[name=ex-guess]:checked');
  if (exPick === null || !guess) { out.append(el('p', {}, 'First pick a word and make a guess: thinking before looking is the point.')); return; }
  const pr = Object.fromEntries(exData.probe.map((p) => [p.text, p.prob || 0]));
  const were = pr[' were'], was = pr[' was'], model_choice = were >= was ? ' were' : ' was';
  const p1 = el('p');
  p1.append(`Model: “were” ${pct(were)} vs “was” ${pct(was)} (of the two: “were” ${pct(were / (were + was || 1))}) → it prefers “${model_choice.trim()}”. `);
  const right = el('span', { class: guess.value === ' were' ? 'good' : 'bad' },
    guess.value === ' were' ? 'You chose “were”: grammatically right (the subject is “keys”, plural).' : 'You chose “was”: the verb must agree with “keys” (plural), not “cabinet”.');
  p1.append(right);
  out.append(p1);
  // attention of the last token, every layer, averaged over heads
  const N = exData.n_tokens, last = N - 1, L = exData.n_layer, H = exData.n_head;
  // the tokens that spell "keys" (the vocabulary may split it into pieces)
  const at = EX_TEXT.indexOf('keys'), keysIdx = [];
  let pos = 0;
  exData.bytes.forEach((hex, i) => { const n = hex.length / 2; if (pos < at + 4 && pos + n > at) keysIdx.push(i); pos += n; });
  const pick = el('p');
  pick.append('You said the prediction depends on ');
  pick.append(tokInto(el('b'), exData, exPick));
  pick.append(keysIdx.includes(exPick) ? ' — yes: “keys” decides the verb.' : ' — the word that decides it is “keys”.');
  const keyShare = [];
  for (let l = 0; l < L; l++) {
    let s = 0;
    for (let h = 0; h < H; h++) for (const j of keysIdx) s += exData.attention[l][h][last][j] / H;
    keyShare.push(s);
  }
  pick.append(` The last token puts ${keyShare.map((s, l) => `L${l} ${pct(s)}`).join(', ')} of its attention on “keys” (average over heads; uniform would be ${pct(keysIdx.length / N)}).`);
  out.append(pick);
  // the heads that look back at "keys" from the blank: the ones to watch
  const perHead = [];
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
    let s = 0; for (const j of keysIdx) s += exData.attention[l][h][last][j];
    perHead.push({ l, h, s });
  }
  perHead.sort((a, b) => b.s - a.s);
  const top = perHead.slice(0, 3), lookers = el('p', { class: 'lookers' });
  lookers.append('The heads that look back at “keys” when predicting the verb: ');
  top.forEach((x, i) => {
    const tags = headTags(x.l, x.h);
    lookers.append(el('b', { 'data-layer': String(x.l), 'data-head': String(x.h), 'data-w': String(x.s) },
      `L${x.l} H${x.h} ${pct(x.s)}${tags.length ? ' (' + tags.join(', ') + ')' : ''}`), i < top.length - 1 ? ', ' : '. ');
  });
  const show = el('button', { type: 'button', class: 'small', id: 'ex-show' }, `open L${top[0].l} in the lens`);
  show.addEventListener('click', () => {
    S.auto = false; S.text = EX_TEXT; $('text').value = EX_TEXT; S.q = last; S.layer = top[0].l;
    S.heads = [...new Set(top.filter((x) => x.l === top[0].l).map((x) => x.h))].sort((a, b) => a - b);
    S.focus = S.heads.length > 1 ? 'avg' : S.heads[0];
    $('layer').value = String(S.layer);
    fetchBase(); $('lens').scrollIntoView({ block: 'start' });
  });
  lookers.append(show);
  out.append(lookers);
  out.append(el('p', { class: 'explain' }, `Where the last token ${quote(exData, last)} looks, per layer (average of its ${H} heads; brighter = more):`));
  for (let l = 0; l < L; l++) {
    const acc = new Array(N).fill(0);
    for (let h = 0; h < H; h++) for (let j = 0; j < N; j++) acc[j] += exData.attention[l][h][last][j] / H;
    const row = el('div', { class: 'att-row', 'aria-label': `layer ${l}` });
    row.append(el('span', { class: 'caption' }, `L${l}`));
    for (let j = 0; j < N; j++) {
      const t = el('span', { class: 'tok', 'data-tip': `layer ${l}: ${acc[j].toFixed(4)}` });
      t.style.background = col(acc[j]); t.style.color = (S.sqrt ? Math.sqrt(acc[j]) : acc[j]) > 0.55 ? '#000' : '#fff';
      if (j === exPick) t.classList.add('picked');
      tokInto(t, exData, j);
      row.append(t);
    }
    out.append(row);
  }
  out.append(el('p', { class: 'explain' }, 'A small model may not get this right; big ones learn agreement across the intervening words. Whichever it does, these are its real weights.'));
}

/* ---------------------------------------------------------------- two sentences */
async function runCompare() {
  const err = $('cmp-error'); err.hidden = true;
  let d;
  try {
    d = await api('/api/compare', { a: $('cmp-a').value, b: $('cmp-b').value, word: $('cmp-word').value });
  } catch (e) { err.hidden = false; err.textContent = e.message; return; }
  const L = d.n_layer, items = d.similarity.map((v, l) => ({ label: l === 0 ? 'embedding' : `after layer ${l - 1}`, value: v, color: '#5ec8ff',
    tip: `cosine similarity ${l === 0 ? 'of the input embeddings' : 'after layer ' + (l - 1)}: ${v}` }));
  clear($('cmp-sim')).append(bars(items, { min: Math.min(0, ...d.similarity), max: 1, labW: 120, aria: 'similarity per layer' }));
  const box = clear($('cmp-att')), l = Math.min(S.layer, L - 1), hs = heads().filter((h) => h < d.n_head);
  $('cmp-att-title').textContent = `What the word attends to · layer ${l} · average of heads ${hs.join(', ')}`;
  for (const side of ['a', 'b']) {
    const x = d[side], N = x.tokens.length, acc = new Array(N).fill(0);
    for (const h of hs) for (let j = 0; j < N; j++) acc[j] += x.attention[l][h][j] / hs.length;
    const row = el('div', { class: 'att-row' });
    row.append(el('span', { class: 'caption' }, side.toUpperCase()));
    for (let j = 0; j < N; j++) {
      const future = j > x.index;
      const t = el('span', { class: 'tok' + (j === x.index ? ' query' : ''),
        'data-tip': j === x.index ? 'the word (query)' : future ? 'after the word: masked (it cannot see the future)' : `weight ${acc[j].toFixed(4)}` });
      if (future) t.style.opacity = '0.4';
      else if (j !== x.index) { t.style.background = col(acc[j]); t.style.color = (S.sqrt ? Math.sqrt(acc[j]) : acc[j]) > 0.55 ? '#000' : '#fff'; }
      tokInto(t, x, j);
      row.append(t);
    }
    box.append(row);
  }
}

/* ---------------------------------------------------------------- quiz */
const QUIZ = [
  { q: 'The attention weights of one query over the tokens it sees add up to…', a: ['1', '0', 'the number of tokens', 'it depends on the temperature'], ok: 0,
    why: 'Softmax makes them positive and normalises them to sum to 1 (check any row of the matrix).' },
  { q: 'Why is q·k divided by √d before the softmax?', a: ['so the softmax does not saturate into a one-hot as d grows', 'so the weights sum to 1', 'to hide future tokens', 'to make it faster'], ok: 0,
    why: 'Dot products of d-dimensional vectors grow like √d; unscaled, softmax turns nearly one-hot and its gradients vanish. Try “drop the 1/√d scale”.' },
  { q: 'In a GPT-style (causal) model, token 5 can attend to…', a: ['tokens 1 to 5', 'every token in the text', 'only token 4', 'only the tokens after it'], ok: 0,
    why: 'The causal mask sets the scores of future tokens to −∞, so each token sees itself and the past.' },
  { q: 'Turning the focus dial (attention temperature) down toward 0 makes the weights…', a: ['sharper, toward one-hot', 'more uniform', 'sum to more than 1', 'unchanged'], ok: 0,
    why: 'Dividing the scores by a small T magnifies their differences; a large T flattens them toward uniform.' },
  { q: 'What does one head output for a query?', a: ['a weighted blend of the value vectors', 'the key with the highest score', 'the query vector, unchanged', 'a probability for each word in the vocabulary'], ok: 0,
    why: 'Weights times values, summed: “score, soften into weights, blend”.' },
  { q: '“The keys to the cabinet ___”: which word decides between “were” and “was”?', a: ['keys', 'cabinet', 'the', 'to'], ok: 0,
    why: 'The verb agrees with the subject, “keys”, several words back: that is what attention lets a model reach.' },
  { q: 'Why does a model run several heads in each layer?', a: ['each can look for a different relation at the same time', 'to average away noise in one head', 'because one head cannot see the whole sentence', 'to store more tokens'], ok: 0,
    why: 'Different heads learn different patterns (previous token, subject–verb, …), all computed in parallel.' },
  { q: 'Many heads put most of their weight on the first token, whatever it is. What is that usually?', a: ['an “attention sink”: a place to park weight when nothing else is relevant', 'proof that the first word is the most important', 'a bug in the softmax', 'the causal mask at work'], ok: 0,
    why: 'Weights must sum to 1, so a head with nothing to look for dumps them on a token it can always see. Try “ignore first token & renormalize”.' },
  { q: 'The “average of heads” panel looks spread out while each head is sharp. Why?', a: ['the heads look at different tokens, and averaging blurs them', 'averaging raises the temperature', 'the average includes masked tokens', 'the heads are computed one after another'], ok: 0,
    why: 'An average of different sharp patterns is flat: this is why the lens shows each head next to the average.' },
];
function renderQuiz() {
  const f = clear($('quiz-form'));
  QUIZ.forEach((item, k) => {
    // a fixed shuffle so the right answer is not always first
    const order = item.a.map((_, i) => i).sort((x, y) => ((x * 7 + k * 3) % 5) - ((y * 7 + k * 3) % 5));
    const fs = el('fieldset'); fs.append(el('legend', {}, `${k + 1}. ${item.q}`));
    for (const i of order) {
      const lab = el('label');
      lab.append(el('input', { type: 'radio', name: `quiz-${k}`, value: String(i) }), ' ' + item.a[i]);
      fs.append(lab);
    }
    fs.append(el('div', { class: 'why', id: `why-${k}` }));
    f.append(fs);
  });
}
function checkQuiz() {
  let score = 0;
  QUIZ.forEach((item, k) => {
    const c = document.querySelector(`input[name=quiz-${k}]:checked`), why = $(`why-${k}`);
    const ok = c && Number(c.value) === item.ok;
    if (ok) score++;
    why.className = 'why ' + (ok ? 'good' : 'bad');
    why.textContent = (ok ? '✓ ' : c ? '✗ ' : '– not answered. ') + (ok ? '' : `Answer: ${item.a[item.ok]}. `) + item.why;
  });
  $('quiz-score').textContent = `Score: ${score} / ${QUIZ.length}`;
  $('quiz-score').setAttribute('data-score', String(score));
}

/* ---------------------------------------------------------------- export */
function download(name, blob) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 5000);
}
/* One standalone SVG of the current view: caption, the lens panels, the matrix, the legend. */
function exportSVG() {
  const panels = [...document.querySelectorAll('#panels .lens-svg')], heat = document.querySelector('#heatmap svg');
  const legend = document.querySelector('#legend svg');
  let x = 16, rowH = 0;
  const parts = [];
  for (const p of panels) {
    const w = Number(p.getAttribute('width')), h = Number(p.getAttribute('height'));
    parts.push({ node: p, x, y: 70, title: p.closest('.panel').querySelector('h3').textContent });
    x += w + 16; rowH = Math.max(rowH, h);
  }
  const hy = 70 + rowH + 30, hw = heat ? Number(heat.getAttribute('width')) : 0, hh = heat ? Number(heat.getAttribute('height')) : 0;
  const W = Math.max(x, hw + 32, 420), H = hy + hh + 60;
  const root = sv('svg', { xmlns: SVGNS, width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'font-family': 'DejaVu Sans, sans-serif' });
  root.append(sv('rect', { width: W, height: H, fill: '#151a23' }));
  root.append(sv('text', { x: 16, y: 26, fill: '#e8ecf3', 'font-size': 16 }, `qkv · ${model.name} · “${base._text}”`));
  root.append(sv('text', { x: 16, y: 48, fill: '#ffd166', 'font-size': 13 }, $('lens-caption').textContent));
  for (const p of parts) {
    root.append(sv('text', { x: p.x, y: p.y - 6, fill: '#c9d1df', 'font-size': 12 }, p.title));
    const c = p.node.cloneNode(true); c.setAttribute('x', p.x); c.setAttribute('y', p.y); root.append(c);
  }
  if (heat) {
    root.append(sv('text', { x: 16, y: hy - 8, fill: '#c9d1df', 'font-size': 12 }, $('heat-title').textContent));
    const c = heat.cloneNode(true); c.setAttribute('x', 16); c.setAttribute('y', hy); root.append(c);
  }
  if (legend) { const c = legend.cloneNode(true); c.setAttribute('x', 16); c.setAttribute('y', H - 44); root.append(c); }
  return new XMLSerializer().serializeToString(root);
}
function exportName(ext) { return `qkv-L${S.layer}-q${S.q}.${ext}`; }
function exportPNG() {
  const svgText = exportSVG(), img = new Image(), url = URL.createObjectURL(new Blob([svgText], { type: 'image/svg+xml' }));
  img.onload = () => {
    const c = el('canvas', { width: String(img.width * 2), height: String(img.height * 2) }), ctx = c.getContext('2d');
    ctx.scale(2, 2); ctx.drawImage(img, 0, 0);
    URL.revokeObjectURL(url);
    c.toBlob((b) => download(exportName('png'), b), 'image/png');
  };
  img.src = url;
}
function exportData() {
  const N = base.n_tokens, out = {
    model, text: base._text, tokens: base.tokens, bytes: base.bytes, ids: base.ids, query: S.q, layer: S.layer, heads: heads(),
    temperature: S.T, causal: S.causal, ignore_first_token: S.sink, weights_from: source(), panels: {}, top: base.top,
    top_at_dials: dialsMoved() && altCurrent() ? alt.top : null, link: location.href,
  };
  for (const p of panelList()) out.panels[p.key === 'avg' ? 'average' : `head_${p.key}`] = [...Array(N).keys()].map((i) => panelWeights(S.layer, p.key, i));
  return JSON.stringify(out, null, 1);
}

/* ---------------------------------------------------------------- wiring */
function wire() {
  $('text').addEventListener('input', () => { S.text = $('text').value; scheduleBase(); });
  $('preset').addEventListener('change', () => { if ($('preset').value) { S.text = $('preset').value; S.q = -1; $('text').value = S.text; fetchBase(); } $('preset').value = ''; });
  $('layer').addEventListener('change', () => {
    S.auto = false;
    S.layer = Number($('layer').value);
    if (base && base.scores && !base.scores[S.layer] && !base._partial) { fetchBase(); return; }
    renderAll(); fetchDetail();
  });
  $('temp').addEventListener('input', () => {
    S.T = Math.round(Math.pow(10, Number($('temp').value)) * 100) / 100;
    $('temp-val').textContent = `T = ${S.T.toFixed(2)}`;
    scheduleRender(); scheduleAlt();
  });
  for (const r of document.querySelectorAll('input[name=tmode]')) r.addEventListener('change', () => { S.tmode = r.value; renderAll(); scheduleAlt(); });
  for (const r of document.querySelectorAll('input[name=dir]')) r.addEventListener('change', () => { S.dir = r.value; renderLens(); writeHash(); });
  $('causal').addEventListener('change', () => { S.causal = $('causal').checked; renderAll(); scheduleAlt(); });
  $('sink').addEventListener('change', () => { S.sink = $('sink').checked; renderAll(); });
  $('cscale').addEventListener('change', () => { S.sqrt = $('cscale').value === 'sqrt'; renderLegend(); renderAll(); if (exData && $('ex-result').childNodes.length) revealExercise(); });
  $('unscaled').addEventListener('change', () => { S.unscaled = $('unscaled').checked; renderMech(); });
  $('mech-head').addEventListener('change', () => { S.mechHead = Number($('mech-head').value); renderMech(); fetchDetail(); });
  $('lens-default').addEventListener('click', () => { S.auto = false; S.heads = defaultHeads(); S.focus = 'avg'; renderAll(); fetchDetail(); });
  $('lens-auto').addEventListener('click', () => { S.auto = true; autoLens(); renderAll(); fetchDetail(); });
  $('heads-all').addEventListener('click', () => { S.auto = false; S.heads = [...Array(model.n_head).keys()]; S.focus = 'avg'; renderAll(); fetchDetail(); });
  $('export-svg').addEventListener('click', () => download(exportName('svg'), new Blob([exportSVG()], { type: 'image/svg+xml' })));
  $('export-png').addEventListener('click', exportPNG);
  $('export-json').addEventListener('click', () => download(exportName('json'), new Blob([exportData()], { type: 'application/json' })));
  $('copy-link').addEventListener('click', async () => {
    writeHash();
    try { await navigator.clipboard.writeText(location.href); $('status').textContent = 'link copied'; }
    catch (e) { $('status').textContent = 'copy this link from the address bar'; }
  });
  $('ex-reveal').addEventListener('click', revealExercise);
  $('cmp-run').addEventListener('click', runCompare);
  $('quiz-check').addEventListener('click', checkQuiz);
  window.addEventListener('hashchange', () => { /* links pasted into the same tab */
    const before = S.text; readHash(); syncControls(); if (S.text !== before) fetchBase(); else renderAll();
  });
}

async function main() {
  renderLegend(); renderQuiz();
  try { model = await api('/api/model'); } catch (e) { $('model-info').textContent = 'cannot reach the server: ' + e.message; return; }
  try { headInfo = await api('/api/heads'); } catch (e) { headInfo = null; /* tags are optional */ }
  renderModelInfo();
  S.text = $('text').value;
  S.heads = defaultHeads();
  S.layer = 0;
  readHash();
  syncControls();
  renderLegend();
  wire();
  await fetchBase();
  initExercise();
  runCompare();
}
window.qkv = { state: S, get headInfo() { return headInfo; }, sharpness, get base() { return base; }, get alt() { return alt; }, get detail() { return detail; }, exportSVG, exportData, panelWeights, source };
main();
