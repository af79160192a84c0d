/* ablate.js -- which heads matter, found by knocking each out: POST /api/ablate. The grid is
 * the change in log P(target) (- log P(vs)) at the last position when one head alone is
 * ablated; clicking a cell asks the engine for that head's pattern and the new predictions.
 * Every number is the engine's. */
import { api } from './api.js';
import { bars } from './bars.js';
import { col } from './colours.js';
import { gridLegend, signedGrid } from './grids.js';
import { $, clamp, clear, el, fmt, pct, shortLabel, sv, tokLabel } from './util.js';

export const AB = { data: null, detail: null, sel: null, seq: 0 };

/* A token field: "id:N" is an id, anything else the token's text (" were": GPT-2's pieces
 * carry their leading space). */
export function tokenField(s) { return /^id:\d+$/.test(s.trim()) ? Number(s.trim().slice(3)) : s; }
const topLabel = (t) => tokLabel({ tokens: [t.token], partial: [false], bytes: [t.bytes] }, 0);

export async function runAblate() {
  const err = $('abl-error'); err.hidden = true;
  const body = { text: $('abl-text').value, mode: $('abl-mode').value, top_k: 5 };
  if ($('abl-target').value) body.target = tokenField($('abl-target').value);
  if ($('abl-vs').value) body.vs = tokenField($('abl-vs').value);
  const my = ++AB.seq;
  $('abl-status').textContent = 'computing…';
  let d;
  try { d = await api('/api/ablate', body); } catch (e) {
    if (my === AB.seq) { err.hidden = false; err.textContent = e.message; $('abl-status').textContent = ''; }
    return;
  }
  if (my !== AB.seq) return;
  d._body = body;
  AB.data = d; AB.detail = null; AB.sel = null;
  $('abl-status').textContent = `${d.n_layer * d.n_head} heads, each ablated alone: ${fmt(d.grid_ms, 1)} ms in the engine`;
  renderAblate();
}

async function openCell(l, h) {
  const d = AB.data;
  if (!d) return;
  AB.sel = [l, h];
  renderAblate();
  const my = ++AB.seq;
  let r;
  try { r = await api('/api/ablate', { ...d._body, target: d.target.id, vs: d.vs ? d.vs.id : undefined, detail: { layer: l, head: h } }); }
  catch (e) { if (my === AB.seq) { $('abl-error').hidden = false; $('abl-error').textContent = e.message; } return; }
  if (my !== AB.seq) return;
  AB.detail = r.detail;
  renderAblateDetail();
}

export function renderAblate() {
  const d = AB.data;
  if (!d) return;
  const who = d.vs ? `log P(${topLabel(d.target)}) − log P(${topLabel(d.vs)})` : `log P(${topLabel(d.target)})`;
  $('abl-caption').textContent = `“${d._body.text}” · ${d.mode} ablation · change in ${who} at the last token (unablated: ${fmt(d.base, 3)})`;
  const scale = Math.max(1e-9, ...d.grid.flat().map(Math.abs));
  const grid = signedGrid(d.grid, {
    rowLabels: d.grid.map((_, l) => `L${l}`), colLabels: d.grid[0].map((_, h) => `H${h}`), cls: 'abl-cell', scale,
    selected: AB.sel, aria: `change in ${who} when each head is ablated, ${d.n_layer} layers by ${d.n_head} heads`,
    tip: (l, h, v) => `layer ${l}, head ${h} ablated (${d.mode}): ${who} changes by ${Number(v).toFixed(4)}\nclick: its pattern and the new predictions`,
    onClick: openCell,
  });
  clear($('abl-grid')).append(grid, el('p', { class: 'explain' }, gridLegend(scale, 'change')));
  if (!AB.sel) clear($('abl-detail')).append(el('p', { class: 'explain' }, 'Click a cell: the ablated head\'s attention pattern and the model\'s new predictions.'));
  else renderAblateDetail();
}

function renderAblateDetail() {
  const d = AB.data, r = AB.detail, box = clear($('abl-detail'));
  if (!d || !AB.sel) return;
  const [l, h] = AB.sel;
  if (!r || r.layer !== l || r.head !== h) { box.append(el('p', { class: 'explain' }, 'loading…')); return; }
  box.append(el('h3', {}, `Layer ${l}, head ${h} ablated (${d.mode}): change ${fmt(r.delta, 4)}`));
  box.append(el('p', { class: 'explain' }, d.mode === 'uniform' ? 'Its pattern as run: uniform over every token each query sees.'
    : `Its pattern (the head still attends like this; its output is ${d.mode === 'zero' ? 'set to zero' : 'replaced by its mean over the sentence'} before the output projection).`));
  const N = d.n_tokens, c = clamp(Math.floor(300 / N), 8, 26), mL = 90;
  const s = sv('svg', { width: mL + N * c + 4, height: mL + N * c + 4, role: 'img', class: 'abl-pattern',
    'aria-label': `attention pattern of layer ${l} head ${h}`, 'font-family': 'DejaVu Sans Mono, monospace', 'font-size': Math.min(11, c) });
  for (let i = 0; i < N; i++) {
    s.append(sv('text', { x: mL - 4, y: mL + i * c + c / 2 + 4, 'text-anchor': 'end', fill: '#c9d1df' }, shortLabel(d, i, 10)));
    s.append(sv('text', { x: 0, y: 0, transform: `translate(${mL + i * c + c / 2 + 4},${mL - 4}) rotate(-90)`, fill: '#c9d1df' }, shortLabel(d, i, 10)));
    for (let j = 0; j < N; j++) {
      const w = r.attention[i][j], vis = j <= i;
      s.append(sv('rect', { x: mL + j * c, y: mL + i * c, width: c - 1, height: c - 1, fill: vis ? col(w) : '#1d2330', class: 'abl-att',
        'data-i': String(i), 'data-j': String(j), 'data-w': String(w), 'data-tip': `${tokLabel(d, i)} → ${tokLabel(d, j)}: ${w.toFixed(4)}` }));
    }
  }
  box.append(s);
  const wrap = el('div', { class: 'pred-cmp' });
  const list = (top, title, cls) => {
    const w = el('div', { class: cls });
    w.append(el('h3', {}, title), bars(top.map((t) => ({ label: topLabel(t), value: t.prob, color: '#5ec8ff', tip: `${t.token} (id ${t.id}): ${t.prob}` })),
      { min: 0, max: Math.max(...top.map((t) => t.prob), 1e-6), labW: 90, width: 300, aria: title, fmt: pct }));
    return w;
  };
  wrap.append(list(d.top.slice(0, r.top.length), 'next token: as trained', 'abl-top-clean'), list(r.top, `with L${l}.H${h} ablated`, 'abl-top-ablated'));
  box.append(wrap);
}
