/* generate.js -- the attention of every generated token: POST /api/generate streams the
 * tokens as the engine makes them (newline-delimited JSON; Stop closes the request, which
 * cancels the generation on the server), then every step's attention. Scrub through the steps
 * to see what each token's choice looked at: step t is the query that chose token t, over
 * every token before it, for one head or the average of all heads (numbers from the engine;
 * the average is taken here, as labelled). */
import { col } from './colours.js';
import { $, clear, el, fmt, tokInto, tokLabel } from './util.js';

export const GE = { prompt: null, steps: [], done: null, step: 0, ctrl: null, bytes: 0 };

export async function runGenerate() {
  if (GE.ctrl) GE.ctrl.abort();
  const ctrl = new AbortController();
  GE.ctrl = ctrl;
  const body = { prompt: $('gen-prompt').value, max_tokens: Number($('gen-max').value) || 16,
    temperature: Number($('gen-temp').value) || 0, seed: 1 };
  Object.assign(GE, { prompt: null, steps: [], done: null, step: 0, bytes: 0, _body: body });
  $('gen-error').hidden = true;
  $('gen-status').textContent = 'generating…';
  $('gen-stop').disabled = false;
  renderGenerate();
  try {
    const r = await fetch('/api/generate', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body), signal: ctrl.signal });
    if (!r.ok) { let j = null; try { j = await r.json(); } catch (e) { /* not JSON */ } throw new Error(j && j.error ? j.error : `HTTP ${r.status}`); }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      GE.bytes += value.length;
      buf += dec.decode(value, { stream: true });
      let k;
      while ((k = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, k);
        buf = buf.slice(k + 1);
        if (line && GE.ctrl === ctrl) onLine(JSON.parse(line));
      }
    }
  } catch (e) {
    if (GE.ctrl !== ctrl) return; // a newer run took over
    if (e.name === 'AbortError') $('gen-status').textContent = `stopped after ${GE.steps.length} tokens (the server cancelled the rest)`;
    else { $('gen-error').hidden = false; $('gen-error').textContent = e.message; $('gen-status').textContent = ''; }
  } finally {
    if (GE.ctrl === ctrl) { GE.ctrl = null; $('gen-stop').disabled = true; }
  }
}

export function stopGenerate() { if (GE.ctrl) GE.ctrl.abort(); }

function onLine(j) {
  if (j.done) {
    GE.done = j;
    if (j.error) { $('gen-error').hidden = false; $('gen-error').textContent = j.error; }
    const n = GE.steps.length;
    const numbers = j.attention ? j.attention.reduce((a, s) => a + s.reduce((b, r) => b + r.length, 0), 0) : 0;
    $('gen-status').textContent = `${n} tokens (${j.stopped}) in ${fmt(j.generate_ms, 0)} ms · attention of ${n} steps × ` +
      `${j.heads ? j.heads.length : 0} heads: ${numbers} numbers, ${(GE.bytes / 1024).toFixed(1)} KB streamed`;
    GE.step = Math.max(0, n - 1);
    setupScrub();
  } else if ('step' in j) {
    GE.steps.push(j);
  } else {
    GE.prompt = j;
  }
  renderGenerate();
}

function setupScrub() {
  const d = GE.done, sc = $('gen-scrub'), hs = clear($('gen-head'));
  sc.max = String(Math.max(0, GE.steps.length - 1));
  sc.value = String(GE.step);
  sc.disabled = !d || !d.attention;
  hs.append(el('option', { value: 'avg' }, 'average of the heads (taken here)'));
  if (d && d.heads) d.heads.forEach(([l, h], k) => hs.append(el('option', { value: String(k) }, `layer ${l} · head ${h}`)));
}

/* The weights drawn for step t: one head's row, or the mean of all returned rows. */
export function stepWeights(t, key) {
  const rows = GE.done.attention[t];
  if (key !== 'avg') return rows[Number(key)].slice();
  const acc = new Array(rows[0].length).fill(0);
  for (const r of rows) for (let j = 0; j < r.length; j++) acc[j] += r[j] / rows.length;
  return acc;
}

export function renderGenerate() {
  const box = clear($('gen-tokens'));
  if (!GE.prompt) return;
  const P = GE.prompt, n = P.ids.length, T = GE.steps.length, d = GE.done;
  const scrub = d && d.attention && T > 0;
  const t = scrub ? Math.min(GE.step, T - 1) : -1, key = $('gen-head').value || 'avg';
  const w = scrub ? stepWeights(t, key) : null;
  // the sequence: prompt, then the generated tokens; for step t the keys are 0 .. n - 1 + t
  const seq = { tokens: [...P.tokens, ...GE.steps.map((s) => s.token)], partial: [...P.partial, ...GE.steps.map(() => false)],
    bytes: [...P.bytes, ...GE.steps.map((s) => s.bytes)] };
  for (let i = 0; i < n + T; i++) {
    const gen = i >= n, chosen = scrub && i === n + t, key_ = scrub && i < n + t;
    const tip = chosen ? `step ${t}: the token chosen here` : key_ ? `step ${t} → ${tokLabel(seq, i)}: weight ${w[i].toFixed(4)}`
      : gen ? `generated at step ${i - n}` : 'prompt';
    const s = el('span', { class: 'tok' + (gen ? ' gen' : '') + (chosen ? ' query' : '') + (key_ ? ' gen-key' : ''),
      'data-i': String(i), 'data-tip': tip });
    if (key_) { s.setAttribute('data-w', String(w[i])); s.style.background = col(w[i]); s.style.color = Math.sqrt(w[i]) > 0.55 ? '#000' : '#fff'; }
    else if (scrub && i > n + t) s.style.opacity = '0.35';
    tokInto(s, seq, i);
    if (gen) s.addEventListener('click', () => { if (d && d.attention) { GE.step = i - n; $('gen-scrub').value = String(GE.step); renderGenerate(); } });
    box.append(s);
  }
  $('gen-step').textContent = scrub ? `step ${t + 1} of ${T}: choosing ${tokLabel(seq, n + t)} after ${tokLabel(seq, n + t - 1)}` +
    ` · ${key === 'avg' ? 'average of ' + d.heads.length + ' heads' : 'layer ' + d.heads[Number(key)][0] + ', head ' + d.heads[Number(key)][1]}` : '';
}
