/* lens.js -- the attention lens (panels of heads + average), the matrix, row statistics, rollout. */
import { col } from './colours.js';
import { fetchDetail } from './data.js';
import { headTags } from './heads.js';
import { renderAll, setQuery } from './render.js';
import { R, S, altCurrent, dialsMoved, entropy, focusKey, heads, layerLoaded, panelList, panelWeights, rowWeights, source, visible } from './state.js';
import { $, clamp, clear, el, fmt, shortLabel, sv, tokInto, tokLabel } from './util.js';

/* One lens panel: tokens on both sides, a line from the query (left) to each key (right). */
/* One lens panel: tokens on both sides, queries left and keys right. Direction "out" (the
 * default): lines from the query to every key it sees. Direction "in": lines into the chosen
 * token (as a key) from every query that sees it. */
export function panelSVG(p, qi) {
  // long texts: rows shrink to fit ~720 px and only the chosen token and the 8 strongest
  // others keep their labels (every line is still drawn; hover any for its weight)
  const N = R.base.n_tokens, dense = N > 40, rowH = dense ? clamp(Math.floor(720 / N), 3, 14) : 19;
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
  const topk = order.filter((o) => wt[o] > 0).slice(0, 3).map((o) => `${tokLabel(R.base, o)} ${fmt(wt[o], 2)}`);
  s.setAttribute('aria-label', into ? `${p.title}, layer ${S.layer}: the tokens that attend most to ${tokLabel(R.base, qi)} are ${topk.join(', ')}`
    : `${p.title}, layer ${S.layer}: query ${tokLabel(R.base, qi)} attends most to ${topk.join(', ')}`);
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
      'data-tip': `${p.title}: ${tokLabel(R.base, qq)} → ${tokLabel(R.base, kk)}  weight ${wt[o].toFixed(4)}`,
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
      'data-tip': into ? (vis(i) ? `${tokLabel(R.base, i)} gives ${tokLabel(R.base, qi)} weight ${wt[i].toFixed(4)} · click: choose it` : `${tokLabel(R.base, i)} comes before ${tokLabel(R.base, qi)}: cannot see it`)
        : `make ${tokLabel(R.base, i)} the query (token ${i})`, style: 'cursor:pointer' }, shortLabel(R.base, i));
    t.addEventListener('click', (ev) => { ev.stopPropagation(); setQuery(i); });
    s.append(t);
    s.append(sv('text', { x: xr, y: y(i) + 4, fill: isQ && into ? '#000' : rightDim ? '#5b6477' : (!into && wt[i] >= 0.5 ? '#fde725' : '#e8ecf3'),
      'font-weight': isQ && into ? 'bold' : 'normal',
      'data-tip': into ? `${tokLabel(R.base, i)} (key)` : vis(i) ? `${tokLabel(R.base, i)}: weight ${wt[i].toFixed(4)}` : `${tokLabel(R.base, i)}: masked (in the query's future)` },
      shortLabel(R.base, i, 9)));
    if (vis(i) && wt[i] >= 0.05) {
      s.append(sv('text', into ? { x: 2, y: y(i) + 4, fill: col(Math.max(wt[i], 0.35)), 'font-size': 10 }
        : { x: W - 2, y: y(i) + 4, 'text-anchor': 'end', fill: col(Math.max(wt[i], 0.35)), 'font-size': 10 }, wt[i].toFixed(2)));
    }
  }
  return { svg: s, w, wt };
}

export function renderLens() {
  const box = clear($('panels')), qi = R.hoverQ !== null ? R.hoverQ : S.q, fk = focusKey();
  const src = source();
  const srcText = src === 'server' ? `whole model re-run at T=${S.T.toFixed(2)}${S.causal ? '' : ', no mask'}` :
    src === 'client' ? `same scores, re-softmaxed in this page at T=${S.T.toFixed(2)}${S.causal ? '' : ', no mask'}` : 'the model as trained';
  const autoText = S.auto && S.autoScores ? ' · chosen by data: the 3 sharpest heads for this query' : '';
  const KV = R.model.n_kv_head || R.model.n_head, per = R.model.n_head / KV;
  const hs = heads(), groups = [...new Set(hs.map((h) => Math.floor(h / per)))];
  const kvText = KV < R.model.n_head ? ` · ${R.model.attention}: heads ${hs.join(', ')} read key/value head${groups.length > 1 ? 's' : ''} ${groups.join(', ')}` +
    (groups.length < hs.length ? ' (same keys and values, different queries)' : '') : '';
  $('lens-caption').textContent = `layer ${S.layer}${autoText} · ${S.dir === 'in' ? 'who attends to' : 'query'} ${tokLabel(R.base, qi)} (token ${qi})${R.hoverQ !== null ? ' · preview' : ''} · ${srcText}${S.sink ? ' · first token ignored' : ''}${kvText}`;
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

export function heatSVG(key, opts = {}) {
  const N = R.base.n_tokens, c = opts.cell || clamp(Math.floor(520 / N), 5, 26), lab = c >= 9 && !opts.noLabels;
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
        'data-tip': vis ? `${title}: ${tokLabel(R.base, i)} → ${tokLabel(R.base, j)}  ${w[j].toFixed(4)}` : `${tokLabel(R.base, i)} → ${tokLabel(R.base, j)}: masked` }));
    }
    if (lab) {
      s.append(sv('text', { x: mL - 4, y: mT + i * c + c / 2 + 4, 'text-anchor': 'end', fill: i === S.q ? '#ffd166' : '#c9d1df', class: 'rowlab', 'data-i': String(i) }, shortLabel(R.base, i, 11)));
      s.append(sv('text', { x: 0, y: 0, transform: `translate(${mL + i * c + c / 2 + 4},${mT - 4}) rotate(-90)`, fill: '#c9d1df' }, shortLabel(R.base, i, 11)));
    }
  }
  s.append(sv('rect', { x: mL - 1, y: mT + S.q * c - 1, width: N * c + 2, height: c + 2, fill: 'none', stroke: '#ffd166', 'stroke-width': 2, class: 'qrow' }));
  if (S.dir === 'in') s.append(sv('rect', { x: mL + S.q * c - 1, y: mT - 1, width: c + 2, height: N * c + 2, fill: 'none', stroke: '#5ec8ff', 'stroke-width': 2, class: 'kcol' }));
  s.addEventListener('click', (ev) => { const i = ev.target.getAttribute && ev.target.getAttribute('data-i'); if (i !== null && i !== undefined) setQuery(Number(i)); });
  return s;
}

/* Long texts: the matrix on a canvas (an SVG of 65k cells is slow); hover reads the cell
 * under the pointer, click picks the query. */
export function heatCanvas(key) {
  const N = R.base.n_tokens, c = clamp(Math.floor(768 / N), 2, 8), W = N * c;
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
    cv.setAttribute('data-tip', visible(i, j) ? `${tokLabel(R.base, i)} → ${tokLabel(R.base, j)}  ${rows[i][j].toFixed(4)}` : `${tokLabel(R.base, i)} → ${tokLabel(R.base, j)}: masked`);
  });
  cv.addEventListener('click', (ev) => { const [i] = cell(ev); if (i >= 0 && i < N) setQuery(i); });
  return cv;
}

export function renderHeatmap() {
  const key = focusKey();
  $('heat-title').textContent = `Attention matrix · layer ${S.layer} · ${key === 'avg' ? 'average of heads ' + heads().join(', ') : 'head ' + key}`;
  clear($('heatmap')).append(R.base.n_tokens > 96 ? heatCanvas(key) : heatSVG(key));
  renderRowStats(key);
}

export function renderRowStats(key) {
  const qi = S.q, w = panelWeights(S.layer, key, qi), e = entropy(w, qi), box = clear($('row-stats'));
  box.append(el('h3', {}, `Query ${tokLabel(R.base, qi)}: how focused?`));
  box.append(el('div', { class: 'big' }, `${fmt(e.H, 2)} bits`));
  box.append(el('div', {}, `entropy, out of ${fmt(e.max, 2)} for uniform · ≈ ${fmt(e.eff, 1)} tokens in effect · max weight ${fmt(Math.max(...w), 3)}`));
  if (dialsMoved() && R.base.scores && R.base.scores[S.layer]) {
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
    tokInto(td, R.base, j);
    tr.append(td, el('td', {}, w[j].toFixed(4)));
    t.append(tr);
  });
  box.append(t);
  renderRollout(box, qi);
}

/* Attention rollout (Abnar & Zuidema 2020): how much each token reaches the query through
 * every layer, each layer's heads averaged and the residual counted as half: row qi of
 * (A_{L-1}/2 + I/2) ... (A_0/2 + I/2). A rough map, not an explanation. */
export function renderRollout(box, qi) {
  const L = R.base.n_layer, H = R.base.n_head, N = R.base.n_tokens;
  for (let l = 0; l < L; l++) if (!layerLoaded(R.base, l)) return;
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
    const t = el('span', { class: 'tok' + (j === qi ? ' query' : ''), 'data-w': String(v[j]), 'data-tip': `rollout ${tokLabel(R.base, qi)} ← ${tokLabel(R.base, j)}: ${v[j].toFixed(4)}` });
    if (j !== qi) {
      if (!visible(qi, j)) t.style.opacity = '0.4';
      else { t.style.background = col(v[j]); t.style.color = (S.sqrt ? Math.sqrt(v[j]) : v[j]) > 0.55 ? '#000' : '#fff'; }
    }
    tokInto(t, R.base, j);
    row.append(t);
  }
  box.append(row);
}
