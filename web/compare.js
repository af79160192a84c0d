/* compare.js -- one word, two meanings: POST /api/compare. */
import { api } from './api.js';
import { bars } from './bars.js';
import { col } from './colours.js';
import { S, heads } from './state.js';
import { $, clear, el, tokInto } from './util.js';

/* ---------------------------------------------------------------- two sentences */
export async function runCompare() {
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
