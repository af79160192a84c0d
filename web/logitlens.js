/* logitlens.js -- the logit lens: POST /api/lens. The residual stream entering every layer (and
 * after the last) read out through the final LayerNorm and the unembedding, at every
 * position: where in the depth the answer appears. The last row is the model's output. */
import { api } from './api.js';
import { tokenField } from './ablate.js';
import { col } from './colours.js';
import { $, clear, el, fmt, pct, shortLabel, tokLabel } from './util.js';

export const LL = { data: null, seq: 0 };
const tl = (t) => tokLabel({ tokens: [t.token], partial: [false], bytes: [t.bytes] }, 0);

export async function runLens() {
  const err = $('ll-error'); err.hidden = true;
  const body = { text: $('ll-text').value, top_k: 3 };
  if ($('ll-target').value) body.target = tokenField($('ll-target').value);
  const my = ++LL.seq;
  let d;
  try { d = await api('/api/lens', body); } catch (e) {
    if (my === LL.seq) { err.hidden = false; err.textContent = e.message; }
    return;
  }
  if (my !== LL.seq) return;
  LL.data = d;
  renderLogitLens();
}

export function renderLogitLens() {
  const d = LL.data;
  if (!d) return;
  $('ll-caption').textContent = `${d.n_tokens} tokens · ${d.states.length} read-outs · ${fmt(d.ms, 1)} ms in the engine` +
    (d.target ? ` · [P(${tl(d.target)})] in brackets` : '');
  const t = el('table', { class: 'll-table' }), hr = el('tr');
  hr.append(el('th', {}, 'read out after'));
  for (const i of d.positions) hr.append(el('th', { 'data-tip': `token ${i}: ${tokLabel(d, i)}` }, shortLabel(d, i, 10)));
  t.append(hr);
  d.states.forEach((name, s) => {
    const tr = el('tr');
    tr.append(el('th', {}, name));
    d.positions.forEach((pos, k) => {
      const top = d.top[s][k], best = top[0];
      const td = el('td', { class: 'll-cell', 'data-state': String(s), 'data-pos': String(pos), 'data-id': String(best.id), 'data-p': String(best.prob),
        'data-tip': `after ${tokLabel(d, pos)}, ${name}:\n` + top.map((x) => `${tl(x)} ${pct(x.prob)}`).join('\n') +
          (d.target ? `\nP(${tl(d.target)}) = ${pct(d.target_probs[s][k])}` : '') });
      td.style.background = col(best.prob);
      td.style.color = Math.sqrt(best.prob) > 0.55 ? '#000' : '#fff';
      td.append(el('span', { class: 'll-tok' }, [...tl(best)].slice(0, 10).join('')), el('span', { class: 'll-p' }, ' ' + pct(best.prob)));
      if (d.target) { const tp = d.target_probs[s][k]; td.setAttribute('data-tp', String(tp)); td.append(el('span', { class: 'll-tp' }, ` [${pct(tp)}]`)); }
      tr.append(td);
    });
    t.append(tr);
  });
  clear($('ll-table')).append(t);
}
