/* mechanism.js -- inside one head: scores, softmax, blend of values, q/k geometry. */
import { api } from './api.js';
import { bars, dot } from './bars.js';
import { col, dmap } from './colours.js';
import { mechHead } from './data.js';
import { predList } from './predict.js';
import { R, S, dialsMoved, entropy, softmaxRow, visible } from './state.js';
import { $, clamp, clear, el, fmt, pct, shortLabel, sv, tip, tokLabel } from './util.js';

export function renderMech() {
  if (!R.base) return;
  const h = mechHead(), qi = S.q, N = R.base.n_tokens;
  $('mech-caption').textContent = `layer ${S.layer} · head ${h} · query ${tokLabel(R.base, qi)} · T = ${S.T.toFixed(2)}${S.causal ? '' : ' · no mask'}`;
  if (!R.detail || R.detail._text !== R.base._text || R.detail.layer !== S.layer || R.detail.head !== h) {
    for (const id of ['mech-scores', 'mech-weights', 'mech-values']) clear($(id)).append(el('p', { class: 'explain' }, 'loading…'));
    return;
  }
  const d = R.detail.head_dim, scale = R.detail.scale, q = R.detail.q[qi];
  if (!q || R.detail.k.length !== N) return; // detail of another text: a fresh one is on its way
  $('scale-label').textContent = S.unscaled ? '(unscaled!)' : `× 1/√${d} = ${fmt(scale, 4)}`;
  const raw = R.detail.k.map((k) => dot(q, k)), sc = raw.map((x) => x * (S.unscaled ? 1 : scale));
  // keys in the query's future are summarised in one row (they are all masked)
  const idx = [...Array(N).keys()].filter((j) => visible(qi, j)), hidden = N - idx.length;
  const maskedRow = hidden ? [{ label: `+${hidden} later`, value: 0, masked: true, tip: `${hidden} tokens after the query: masked (−∞ before the softmax, weight 0)` }] : [];
  clear($('mech-scores')).append(bars([...idx.map((j) => ({
    label: j, value: sc[j], masked: !visible(qi, j),
    tip: `q·k(${tokLabel(R.base, j)}) = ${raw[j].toFixed(4)}${S.unscaled ? '' : `, × ${scale.toFixed(4)} = ${sc[j].toFixed(4)}`}`,
  })), ...maskedRow], { aria: 'scores of the query against each key' }));
  const w = softmaxRow(sc, qi, S.T, S.causal), e = entropy(w, qi);
  let other = '';
  if (S.unscaled) other = ` (with the scale: ${fmt(entropy(softmaxRow(raw.map((x) => x * scale), qi, S.T, S.causal), qi).H, 2)} bits) — without it the softmax saturates toward one-hot, and its gradients vanish`;
  $('mech-entropy').textContent = `Entropy ${fmt(e.H, 2)} of ${fmt(e.max, 2)} bits${other}.`;
  clear($('mech-weights')).append(bars([...idx.map((j) => ({
    label: j, value: w[j], masked: !visible(qi, j), color: col(w[j]),
    tip: `softmax weight of ${tokLabel(R.base, j)}: ${w[j].toFixed(4)}`,
  })), ...maskedRow], { min: 0, max: 1, aria: 'softmax weights' }));
  renderUnscaledModel();
  renderGeometry(qi, w);
  // blend: rows a_j * v_j, the sum, and the engine's own output
  const vis = idx, contrib = vis.map((j) => R.detail.v[j].map((x) => x * w[j]));
  const sum = new Array(d).fill(0);
  for (const c of contrib) for (let e2 = 0; e2 < d; e2++) sum[e2] += c[e2];
  let amax = 1e-9;
  for (const r of [...contrib, sum]) for (const x of r) amax = Math.max(amax, Math.abs(x));
  const cw = clamp(Math.floor(560 / d), 3, 14), rowH = 16, labW = 120, normW = 120;
  const rows = [...vis.map((j, k) => ({ label: shortLabel(R.base, j, 13), vals: contrib[k], tip: `${tokLabel(R.base, j)}: weight ${w[j].toFixed(4)} × v`, j })),
    { label: 'Σ = output', vals: sum, tip: 'the head\'s output for the query (weighted blend)', out: true }];
  const engine = !dialsMoved() && !S.unscaled ? R.detail.out[qi] : null;
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
export async function renderUnscaledModel() {
  const box = clear($('mech-unscaled'));
  if (!S.unscaled || !R.detail) return;
  const T = Math.max(0.01, R.detail.scale), key = `${R.base._text}|${T}`;
  if (!R.unscaledRun || R.unscaledRun._key !== key) {
    box.append(el('p', { class: 'explain' }, 'running the whole model without the scale…'));
    try {
      const d = await api('/api/attend', { text: R.base._text, temperature: T, attention: false, top_k: 5 });
      d._key = key;
      R.unscaledRun = d;
    } catch (e) { clear(box).append(el('p', { class: 'error' }, e.message)); return; }
    if (!S.unscaled) { clear(box); return; }
  }
  clear(box);
  box.append(el('h3', {}, 'Every layer without the scale: the model\'s next token'));
  box.append(el('p', { class: 'explain' }, `Same as temperature 1/√${R.detail.head_dim} = ${fmt(T, 3)} in every head of every layer.`));
  const wrap = el('div', { class: 'pred-cmp' });
  wrap.append(predList({ ...R.base, top: R.base.top.slice(0, 5) }, 'with the scale (as trained)', 280), predList(R.unscaledRun, 'without it', 280));
  box.append(wrap);
}

/* Top-2 principal directions of the rows of X (n x d) by power iteration with deflation. */
export function pca2(X) {
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

export function renderGeometry(qi, w) {
  const box = clear($('mech-geo'));
  const N = R.base.n_tokens, { proj, explained } = pca2([...R.detail.q, ...R.detail.k]);
  $('geo-d').textContent = String(R.detail.head_dim);
  $('geo-var').textContent = `These two directions hold ${pct(explained[0] + explained[1])} of the spread.`;
  const W = 460, H = 320, pad = 28;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of proj) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const sx = (x) => pad + (x - x0) / ((x1 - x0) || 1) * (W - 2 * pad), sy = (y) => H - pad - (y - y0) / ((y1 - y0) || 1) * (H - 2 * pad);
  const s = sv('svg', { width: W, height: H, role: 'img', class: 'geo-svg', 'aria-label': `query and key vectors of head ${R.detail.head}, projected to 2-D`,
    'font-family': 'DejaVu Sans Mono, monospace', 'font-size': 10.5 });
  s.append(sv('rect', { x: 0.5, y: 0.5, width: W - 1, height: H - 1, fill: '#10141c', stroke: '#2a3244' }));
  const [qx, qy] = proj[qi];
  for (let j = 0; j < N; j++) {
    if (!visible(qi, j) || !(w[j] > 0)) continue;
    const [kx, ky] = proj[N + j];
    s.append(sv('line', { x1: sx(qx), y1: sy(qy), x2: sx(kx), y2: sy(ky), stroke: col(w[j]), 'stroke-width': (0.5 + 6 * w[j]).toFixed(2),
      'data-tip': `${tokLabel(R.base, qi)} → key ${tokLabel(R.base, j)}: weight ${w[j].toFixed(4)}` }));
  }
  for (let i = 0; i < 2 * N; i++) {
    const isK = i >= N, t = isK ? i - N : i, [x, y] = proj[i], hi = t === qi && !isK;
    const tip = `${isK ? 'key' : 'query'} of ${tokLabel(R.base, t)}` + (isK && visible(qi, t) ? `: weight ${w[t].toFixed(4)}` : '');
    if (isK) s.append(sv('rect', { x: sx(x) - 4, y: sy(y) - 4, width: 8, height: 8, fill: '#5ec8ff', class: 'geo-k', 'data-tip': tip, opacity: visible(qi, t) ? 1 : 0.35 }));
    else s.append(sv('circle', { cx: sx(x), cy: sy(y), r: hi ? 7 : 4, fill: hi ? '#ffd166' : '#ffa94d', class: 'geo-q', 'data-tip': tip, opacity: hi ? 1 : 0.55 }));
    if (isK || hi) s.append(sv('text', { x: sx(x) + 7, y: sy(y) - 5, fill: hi ? '#ffd166' : '#a3adbf' }, shortLabel(R.base, t, 10)));
  }
  box.append(s);
}
