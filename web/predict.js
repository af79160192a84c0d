/* predict.js -- next-token predictions and the predict-the-blank exercise. */
import { api } from './api.js';
import { bars } from './bars.js';
import { col } from './colours.js';
import { fetchBase } from './data.js';
import { headTags } from './heads.js';
import { R, S, altCurrent, dialsMoved } from './state.js';
import { $, clear, el, pct, quote, tokInto, tokLabel } from './util.js';

export function predList(d, title, width) {
  const wrap = el('div');
  wrap.append(el('h3', {}, title));
  const items = d.top.map((t) => ({ label: tokLabel({ tokens: [t.token], partial: [t.partial], bytes: [t.bytes] }, 0), value: t.prob, color: '#5ec8ff',
    tip: `${t.token} (id ${t.id}): ${t.prob}` }));
  wrap.append(bars(items, { min: 0, max: Math.max(...d.top.map((t) => t.prob), 1e-6), labW: width ? 90 : 130, width: width || 420, aria: title, fmt: pct }));
  return wrap;
}
export function renderPredictions() {
  const box = clear($('predictions'));
  box.append(predList(R.base, 'the model as trained'));
  // let the model write: a click appends a predicted token to the text and re-runs
  const row = el('div', { class: 'append-row', role: 'group', 'aria-label': 'Append a predicted token to the text' });
  row.append(el('span', { class: 'explain' }, 'Append one: '));
  for (const t of R.base.top.slice(0, 6)) {
    if (t.partial) continue;
    const b = el('button', { type: 'button', class: 'tok small-append', 'data-id': String(t.id), 'data-tip': `append ${t.token} (${pct(t.prob)}) and re-run` });
    tokInto(b, { tokens: [t.token], partial: [false] }, 0);
    b.addEventListener('click', () => { S.text = S.text + t.token; $('text').value = S.text; S.q = -1; fetchBase(); });
    row.append(b);
  }
  box.append(row);
  if (dialsMoved() && altCurrent()) box.append(predList(R.alt, `whole model at T=${S.T.toFixed(2)}${S.causal ? '' : ', no mask'}`));
  $('pred-note').textContent = dialsMoved() ? 'The dials change every layer\'s attention, so the predictions move too.' : 'Turn the focus dial or the mask off to see them move.';
}

/* ---------------------------------------------------------------- predict-the-blank */
export const EX_TEXT = 'The keys to the cabinet';
export async function initExercise() {
  try {
    R.exData = await api('/api/attend', { text: EX_TEXT, probe: [' were', ' was', ' is', ' are'], top_k: 8 });
  } catch (e) { $('ex-result').textContent = e.message; return; }
  const box = clear($('ex-tokens'));
  for (let i = 0; i < R.exData.n_tokens; i++) {
    const b = el('button', { type: 'button', class: 'tok', 'data-i': String(i), 'aria-pressed': 'false' });
    tokInto(b, R.exData, i);
    b.addEventListener('click', () => {
      R.exPick = i;
      for (const x of box.children) { x.classList.toggle('picked', x === b); x.setAttribute('aria-pressed', x === b ? 'true' : 'false'); }
    });
    box.append(b);
  }
}
export function revealExercise() {
  const out = clear($('ex-result'));
  if (!R.exData) return;
  const guess = document.querySelector('input[name=ex-guess]:checked');
  if (R.exPick === null || !guess) { out.append(el('p', {}, 'First pick a word and make a guess: thinking before looking is the point.')); return; }
  const pr = Object.fromEntries(R.exData.probe.map((p) => [p.text, p.prob || 0]));
  const were = pr[' were'], was = pr[' was'], model_choice = were >= was ? ' were' : ' was';
  const p1 = el('p');
  p1.append(`Model: “were” ${pct(were)} vs “was” ${pct(was)} (of the two: “were” ${pct(were / (were + was || 1))}) → it prefers “${model_choice.trim()}”. `);
  const right = el('span', { class: guess.value === ' were' ? 'good' : 'bad' },
    guess.value === ' were' ? 'You chose “were”: grammatically right (the subject is “keys”, plural).' : 'You chose “was”: the verb must agree with “keys” (plural), not “cabinet”.');
  p1.append(right);
  out.append(p1);
  // attention of the last token, every layer, averaged over heads
  const N = R.exData.n_tokens, last = N - 1, L = R.exData.n_layer, H = R.exData.n_head;
  // the tokens that spell "keys" (the vocabulary may split it into pieces)
  const at = EX_TEXT.indexOf('keys'), keysIdx = [];
  let pos = 0;
  R.exData.bytes.forEach((hex, i) => { const n = hex.length / 2; if (pos < at + 4 && pos + n > at) keysIdx.push(i); pos += n; });
  const pick = el('p');
  pick.append('You said the prediction depends on ');
  pick.append(tokInto(el('b'), R.exData, R.exPick));
  pick.append(keysIdx.includes(R.exPick) ? ' — yes: “keys” decides the verb.' : ' — the word that decides it is “keys”.');
  const keyShare = [];
  for (let l = 0; l < L; l++) {
    let s = 0;
    for (let h = 0; h < H; h++) for (const j of keysIdx) s += R.exData.attention[l][h][last][j] / H;
    keyShare.push(s);
  }
  pick.append(` The last token puts ${keyShare.map((s, l) => `L${l} ${pct(s)}`).join(', ')} of its attention on “keys” (average over heads; uniform would be ${pct(keysIdx.length / N)}).`);
  out.append(pick);
  // the heads that look back at "keys" from the blank: the ones to watch
  const perHead = [];
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
    let s = 0; for (const j of keysIdx) s += R.exData.attention[l][h][last][j];
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
  out.append(el('p', { class: 'explain' }, `Where the last token ${quote(R.exData, last)} looks, per layer (average of its ${H} heads; brighter = more):`));
  for (let l = 0; l < L; l++) {
    const acc = new Array(N).fill(0);
    for (let h = 0; h < H; h++) for (let j = 0; j < N; j++) acc[j] += R.exData.attention[l][h][last][j] / H;
    const row = el('div', { class: 'att-row', 'aria-label': `layer ${l}` });
    row.append(el('span', { class: 'caption' }, `L${l}`));
    for (let j = 0; j < N; j++) {
      const t = el('span', { class: 'tok', 'data-tip': `layer ${l}: ${acc[j].toFixed(4)}` });
      t.style.background = col(acc[j]); t.style.color = (S.sqrt ? Math.sqrt(acc[j]) : acc[j]) > 0.55 ? '#000' : '#fff';
      if (j === R.exPick) t.classList.add('picked');
      tokInto(t, R.exData, j);
      row.append(t);
    }
    out.append(row);
  }
  out.append(el('p', { class: 'explain' }, 'A small model may not get this right; big ones learn agreement across the intervening words. Whichever it does, these are its real weights.'));
}
