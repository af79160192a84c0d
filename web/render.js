/* render.js -- rendering: one pass over every view, model info, legend, tokens, head chips. */
import { VIRIDIS } from './colours.js';
import { fetchBase, fetchDetail } from './data.js';
import { renderGrid } from './grid.js';
import { autoLens } from './heads.js';
import { renderHeatmap, renderLens } from './lens.js';
import { renderMask } from './mask.js';
import { renderMech } from './mechanism.js';
import { renderPredictions } from './predict.js';
import { R, S, layerLoaded, writeHash } from './state.js';
import { $, clamp, clear, el, sv, tokInto, tokLabel } from './util.js';

/* ---------------------------------------------------------------- rendering */
/* Coalesces bursts (the dial fires an input event per step) into one render per frame. */
export function scheduleRender() {
  if (R.renderQueued) return;
  R.renderQueued = true;
  requestAnimationFrame(() => { R.renderQueued = false; renderAll(); });
}
export function renderAll() {
  R.rowMemo = new Map();
  if (!R.base) return;
  if (R.base._partial && !layerLoaded(R.base, S.layer)) { fetchBase(); return; }
  renderTokens(); renderHeadChips(); renderLens(); renderHeatmap(); renderGrid(); renderMech();
  renderMask(); renderPredictions(); writeHash();
}

export function renderModelInfo() {
  const m = R.model;
  const kv = m.n_kv_head && m.n_kv_head < m.n_head
    ? ` (${m.attention}: ${m.n_head / m.n_kv_head} query heads share each of ${m.n_kv_head} key/value heads)` : '';
  $('model-info').textContent = `model ${m.name}${m.family ? ' (' + m.family + ')' : ''} · ${m.n_layer} layers × ${m.n_head} heads${kv} · d = ${m.head_dim} · ` +
    `${m.n_ctx} tokens of context · vocab ${m.vocab_size} · ${(m.n_params / 1e6).toFixed(1)}M parameters`;
  const ls = clear($('layer'));
  for (let l = 0; l < m.n_layer; l++) ls.append(el('option', { value: String(l) }, `layer ${l}`));
  const mh = clear($('mech-head'));
  mh.append(el('option', { value: '-1' }, 'the focused head'));
  for (let h = 0; h < m.n_head; h++) mh.append(el('option', { value: String(h) }, `head ${h}`));
}

export function renderLegend() {
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

export function setQuery(i, focusButton) {
  if (!R.base) return;
  S.q = clamp(i, 0, R.base.n_tokens - 1);
  R.hoverQ = null;
  autoLens();
  renderAll();
  if (S.auto) fetchDetail();
  if (focusButton) { const b = $('tokens').children[S.q]; if (b) b.focus(); }
}

export function renderTokens() {
  const box = clear($('tokens'));
  for (let i = 0; i < R.base.n_tokens; i++) {
    const b = el('button', {
      type: 'button', class: 'tok' + (i === S.q ? ' query' : '') + (R.base.partial[i] ? ' partial' : ''),
      'data-i': String(i), 'aria-pressed': i === S.q ? 'true' : 'false',
      'data-tip': `token ${i} · id ${R.base.ids[i]} · bytes ${R.base.bytes[i]}` + (R.base.partial[i] ? ' (part of a UTF-8 character)' : ''),
      'aria-label': `token ${i}: ${tokLabel(R.base, i)}`,
    });
    tokInto(b, R.base, i);
    b.addEventListener('click', () => setQuery(i, true));
    b.addEventListener('mouseenter', () => { if (i !== S.q) { R.hoverQ = i; renderLens(); } });
    b.addEventListener('mouseleave', () => { if (R.hoverQ !== null) { R.hoverQ = null; renderLens(); } });
    b.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
        ev.preventDefault(); setQuery(S.q + (ev.key === 'ArrowRight' ? 1 : -1), true);
      } else if (ev.key === 'Home') { ev.preventDefault(); setQuery(0, true); }
      else if (ev.key === 'End') { ev.preventDefault(); setQuery(R.base.n_tokens - 1, true); }
    });
    box.append(b);
  }
}

export function renderHeadChips() {
  const box = clear($('heads'));
  for (let h = 0; h < R.model.n_head; h++) {
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
