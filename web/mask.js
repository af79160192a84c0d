/* mask.js -- the causal mask triangle and the weights with and without it. */
import { bars } from './bars.js';
import { col } from './colours.js';
import { R, S, altCurrent, focusKey, heads, softmaxRow } from './state.js';
import { $, clamp, clear, el, sv, tokLabel } from './util.js';

export function renderMask() {
  const N = R.base.n_tokens, c = clamp(Math.floor(300 / N), 4, 16), s = sv('svg', { width: N * c + 4, height: N * c + 4, role: 'img',
    'aria-label': `causal mask: ${N} by ${N}, lower triangle allowed` });
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) {
    const ok = j <= i;
    s.append(sv('rect', { x: 2 + j * c + 1, y: 2 + i * c + 1, width: c - 2, height: c - 2, fill: ok ? (i === S.q ? '#ffd166' : '#5ec8ff') : 'none',
      stroke: ok ? 'none' : '#3a4458', 'data-tip': `${tokLabel(R.base, i)} → ${tokLabel(R.base, j)}: ${ok ? 'allowed' : 'masked (−∞ before softmax)'}` }));
  }
  clear($('mask-tri')).append(s);
  const key = focusKey(), qi = S.q, box = clear($('mask-cmp'));
  const h = key === 'avg' ? heads() : [key];
  if (!R.base.scores || !R.base.scores[S.layer]) { box.append(el('p', { class: 'explain' }, 'needs the raw scores (shorter text)')); return; }
  const avgRow = (causal) => {
    const acc = new Array(N).fill(0);
    for (const hh of h) { const w = softmaxRow(R.base.scores[S.layer][hh][qi], qi, S.T, causal); for (let j = 0; j < N; j++) acc[j] += w[j] / h.length; }
    return acc;
  };
  const withM = avgRow(true), without = avgRow(false);
  $('mask-cmp-title').textContent = `Query ${tokLabel(R.base, qi)}, ${key === 'avg' ? 'average' : 'head ' + key}: with the mask / without (same scores)`;
  const items = [];
  for (let j = 0; j < N; j++) {
    items.push({ label: j, value: withM[j], color: col(withM[j]), tip: `with mask: ${withM[j].toFixed(4)}` });
    items.push({ label: '  no mask', value: without[j], color: '#8fa3c7', dim: true, tip: `without mask: ${without[j].toFixed(4)}` });
  }
  box.append(bars(items, { min: 0, max: 1, rowH: 15, aria: 'weights with and without the causal mask' }));
  if (qi === N - 1) box.append(el('p', { class: 'explain' }, 'The last token already sees every token, so the mask changes nothing for it: pick an earlier token to see the difference.'));
  if (!S.causal && altCurrent()) box.append(el('p', { class: 'explain' }, 'The mask is off: the lens shows the weights without it, and the predictions below show what the whole model does then.'));
}
