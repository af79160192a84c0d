/* data.js -- requests that keep R.base (the model as trained), R.alt (the dials re-run) and R.detail (one head) current. */
import { api } from './api.js';
import { autoLens } from './heads.js';
import { renderMech } from './mechanism.js';
import { renderAll } from './render.js';
import { R, S, altCurrent, baseText, dialsMoved, focusKey, heads, seq, syncControls } from './state.js';
import { $, fmt } from './util.js';

/* ---------------------------------------------------------------- fetching */
export function scheduleBase(delay = 300) { clearTimeout(R.baseTimer); R.baseTimer = setTimeout(fetchBase, delay); }

export function showError(msg) { const e = $('error'); e.hidden = !msg; e.textContent = msg || ''; }

export async function fetchBase() {
  const text = S.text, my = ++seq.base;
  if (!text.trim()) { showError('Type a sentence first.'); return; }
  $('status').textContent = 'computing…';
  let d;
  try {
    try {
      // raw scores for every layer when small (the dials then act on every view), else
      // only for the layer on view
      const estN = Math.max(1, Math.ceil(text.length / 3));
      const few = R.model.n_layer * R.model.n_head * estN * estN > 400000;
      d = await api('/api/attend', { text, scores: few ? [S.layer] : true, top_k: 10 });
    } catch (e) {
      if (e.status !== 413) throw e; // long text: only the layer on view
      try {
        d = await api('/api/attend', { text, scores: true, top_k: 10, layers: [S.layer] });
      } catch (e2) {
        if (e2.status !== 413) throw e2; // very long: no raw scores (the dials then re-run the model)
        d = await api('/api/attend', { text, top_k: 10, layers: [S.layer] });
        S.tmode = 'server'; syncControls();
      }
      d._partial = true;
    }
  } catch (e) {
    if (my === seq.base) { showError(e.message); $('status').textContent = ''; }
    return;
  }
  if (my !== seq.base) return;
  showError('');
  d._text = text;
  R.base = d;
  if (S.q < 0 || S.q >= d.n_tokens) S.q = d.n_tokens - 1;
  autoLens();
  $('status').textContent = `${d.n_tokens} tokens · forward ${fmt(d.forward_ms, 1)} ms`;
  R.detail = null;
  renderAll();
  fetchAlt(); fetchDetail();
}

export function scheduleAlt() { clearTimeout(R.altTimer); R.altTimer = setTimeout(fetchAlt, 120); }
export async function fetchAlt() {
  if (!R.base || !dialsMoved()) return;
  if (altCurrent()) return;
  const my = ++seq.alt, body = { text: baseText(), temperature: S.T, causal: S.causal, top_k: 10 };
  if (R.base._partial) body.layers = [S.layer];
  try {
    const d = await api('/api/attend', body);
    if (my !== seq.alt) return;
    d._text = body.text; d._T = body.temperature; d._causal = body.causal;
    R.alt = d;
    renderAll();
  } catch (e) { if (my === seq.alt) showError('whole-model re-run: ' + e.message); }
}

export function mechHead() {
  if (S.mechHead >= 0 && S.mechHead < R.model.n_head) return S.mechHead;
  const f = focusKey();
  return f === 'avg' ? (heads()[0] || 0) : f;
}
export async function fetchDetail() {
  if (!R.base) return;
  const h = mechHead(), l = S.layer;
  const text = baseText();
  if (R.detail && R.detail._text === text && R.detail.layer === l && R.detail.head === h) return;
  const my = ++seq.detail;
  try {
    const d = await api('/api/attend', { text, attention: false, top_k: 0, detail: { layer: l, head: h } });
    if (my !== seq.detail) return;
    R.detail = d.detail; R.detail._text = text;
    renderMech();
  } catch (e) { if (my === seq.detail) $('mech-caption').textContent = e.message; }
}
