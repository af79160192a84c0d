/* state.js -- view state (S), the data the views draw (R), the weights as drawn, and the URL fragment. */
import { $, clamp } from './util.js';

/* ---------------------------------------------------------------- state */
export const S = {
  text: '', q: -1, layer: 0, heads: [0, 1, 2], focus: 'avg', T: 1, tmode: 'client',
  causal: true, sink: false, unscaled: false, mechHead: -1, sqrt: true, dir: 'out', auto: true,
};
/* What the views draw, filled by the requests (data.js) and shared by every module (an
 * object, because modules cannot assign each other's bindings). */
export const R = {
  model: null,     // GET /api/model
  headInfo: null,  // GET /api/heads: probe scores and tags, computed by the engine
  base: null,      // attend at T=1 with the mask, with raw scores: the reference
  alt: null,       // attend at (T, causal) as set: the whole model re-run
  detail: null,    // q, k, v, out of one head
  hoverQ: null,    // query previewed by hover
  rowMemo: new Map(), // rowWeights, memoised for one render pass
  baseTimer: null, altTimer: null, renderQueued: false,
  unscaledRun: null, // the whole model without the 1/sqrt(d) scale (mechanism.js)
  exData: null, exPick: null, // predict-the-blank (predict.js)
};
export const seq = { base: 0, alt: 0, detail: 0 };

export function heads() { return S.heads.filter((h) => h < R.model.n_head); }
export function layerLoaded(d, l) { return d && d.attention && d.attention[l]; }
export function defaultHeads() { return [0, 1, 2].filter((h) => h < R.model.n_head); }
export function panelList() {
  const hs = heads(), out = hs.map((h) => ({ key: h, title: `head ${h}` }));
  if (hs.length > 1) out.push({ key: 'avg', title: `average of ${hs.length} heads` });
  return out;
}
export function focusKey() {
  const ps = panelList();
  return ps.some((p) => p.key === S.focus) ? S.focus : ps.length ? ps[ps.length - 1].key : 0;
}
/* Requests that complement base use base's text (S.text runs ahead while the user types). */
export function baseText() { return R.base ? R.base._text : S.text; }
export function altCurrent() { return R.alt && R.base && R.alt._text === R.base._text && R.alt._T === S.T && R.alt._causal === S.causal; }
export function dialsMoved() { return S.T !== 1 || !S.causal; }

/* Softmax of one row of raw scores (q.k/sqrt(d)) at temperature T, with or without the mask.
 * The page's one client-side computation of weights: the focus dial's "same scores, re-softmaxed in this page"
 * mode (labelled so in the dial and the lens caption); the "whole model re-run" mode and every
 * other number come from the engine. */
export function softmaxRow(s, i, T, causal) {
  const n = causal ? i + 1 : s.length, w = new Array(s.length).fill(0);
  let m = -Infinity;
  for (let j = 0; j < n; j++) m = Math.max(m, s[j] / T);
  let z = 0;
  for (let j = 0; j < n; j++) { w[j] = Math.exp(s[j] / T - m); z += w[j]; }
  for (let j = 0; j < n; j++) w[j] /= z;
  return w;
}
export function dropFirst(w) {
  const out = w.slice(); out[0] = 0;
  const z = out.reduce((a, b) => a + b, 0);
  if (z > 0) for (let j = 0; j < out.length; j++) out[j] /= z;
  return z > 0 ? out : w.slice();
}
/* Where the drawn weights come from, for labels. */
export function source() {
  if (!dialsMoved()) return 'model';
  if (S.tmode === 'server' && altCurrent()) return 'server';
  if (R.base && R.base.scores && R.base.scores[S.layer]) return 'client';
  return altCurrent() ? 'server' : 'model';
}
/* The weights query i gives in layer l, head h, as drawn (dials and sink switch applied).
 * Memoised for one render pass (renderAll clears it): the views ask for the same rows. */
export function rowWeights(l, h, i, src) {
  src = src || source();
  const key = `${src}|${l}|${h}|${i}`;
  let w = R.rowMemo.get(key);
  if (w) return w;
  w = rowWeightsUncached(l, h, i, src);
  R.rowMemo.set(key, w);
  return w;
}
export function rowWeightsUncached(l, h, i, src) {
  let w;
  if (src === 'server' && altCurrent() && layerLoaded(R.alt, l)) w = R.alt.attention[l][h][i].slice();
  else if (src !== 'model' && R.base.scores && R.base.scores[l]) w = softmaxRow(R.base.scores[l][h][i], i, S.T, S.causal);
  else w = R.base.attention[l][h][i].slice();
  return S.sink && i > 0 ? dropFirst(w) : w;
}
export function panelWeights(l, key, i, src) {
  if (key !== 'avg') return rowWeights(l, key, i, src);
  const hs = heads(), acc = new Array(R.base.n_tokens).fill(0);
  for (const h of hs) { const w = rowWeights(l, h, i, src); for (let j = 0; j < w.length; j++) acc[j] += w[j] / hs.length; }
  return acc;
}
export function entropy(w, i) {
  let H = 0;
  for (const x of w) if (x > 0) H -= x * Math.log2(x);
  const n = S.causal ? i + 1 - (S.sink && i > 0 ? 1 : 0) : w.length - (S.sink && i > 0 ? 1 : 0);
  return { H, max: Math.log2(Math.max(1, n)), eff: Math.pow(2, H) };
}
export function visible(i, j) { return !S.causal || j <= i; }

/* ---------------------------------------------------------------- URL state */
export function writeHash() {
  const p = new URLSearchParams();
  p.set('text', baseText()); p.set('q', S.q); p.set('l', S.layer); p.set('h', heads().join(','));
  p.set('f', String(S.focus)); p.set('t', String(S.T)); p.set('m', S.tmode);
  p.set('a', S.auto ? '1' : '0');
  p.set('c', S.causal ? '1' : '0'); p.set('s', S.sink ? '1' : '0'); p.set('cs', S.sqrt ? 'sqrt' : 'linear'); p.set('d', S.dir);
  history.replaceState(null, '', '#' + p.toString());
}
export function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has('text')) S.text = p.get('text');
  const num = (k, lo, hi) => { const v = Number(p.get(k)); return p.has(k) && isFinite(v) ? clamp(v, lo, hi) : null; };
  const q = num('q', 0, 1e6); if (q !== null) S.q = Math.floor(q);
  const l = num('l', 0, R.model.n_layer - 1); if (l !== null) S.layer = Math.floor(l);
  if (p.has('h') || p.has('l')) S.auto = p.get('a') === '1';
  if (p.has('h')) {
    const hs = p.get('h').split(',').map(Number).filter((h) => Number.isInteger(h) && h >= 0 && h < R.model.n_head);
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
export function syncControls() {
  $('text').value = S.text;
  $('layer').value = String(S.layer);
  $('temp').value = String(Math.log10(S.T));
  $('temp-val').textContent = `T = ${S.T.toFixed(2)}`;
  $('cscale').value = S.sqrt ? 'sqrt' : 'linear';
  $('causal').checked = S.causal; $('sink').checked = S.sink; $('unscaled').checked = S.unscaled;
  for (const r of document.querySelectorAll('input[name=tmode]')) r.checked = r.value === S.tmode;
  for (const r of document.querySelectorAll('input[name=dir]')) r.checked = r.value === S.dir;
}
