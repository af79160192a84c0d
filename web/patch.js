/* patch.js -- activation patching between two sentences of the same length: POST /api/patch.
 * One head's output (every position), or the residual stream entering a layer at one
 * position, is copied from the source run into the run on the other text; each cell is the
 * fraction of the difference in the target it restores (1 = all of it). Engine numbers. */
import { api } from './api.js';
import { tokenField } from './ablate.js';
import { signedGrid } from './grids.js';
import { $, clear, el, fmt, shortLabel, tokLabel } from './util.js';

export const PA = { data: null, seq: 0 };
const tl = (t) => (t ? tokLabel({ tokens: [t.token], partial: [false], bytes: [t.bytes] }, 0) : '');

export async function runPatch() {
  const err = $('pch-error'); err.hidden = true;
  const body = { source: $('pch-source').value, text: $('pch-text').value };
  if ($('pch-target').value) body.target = tokenField($('pch-target').value);
  if ($('pch-vs').value) body.vs = tokenField($('pch-vs').value);
  const my = ++PA.seq;
  $('pch-status').textContent = 'computing…';
  let d;
  try { d = await api('/api/patch', body); } catch (e) {
    if (my === PA.seq) { err.hidden = false; err.textContent = e.message; $('pch-status').textContent = ''; }
    return;
  }
  if (my !== PA.seq) return;
  PA.data = d;
  $('pch-status').textContent = `${d.n_layer * (d.n_head + d.n_tokens)} patched runs: ${fmt(d.ms, 1)} ms in the engine`;
  renderPatch();
}

export function renderPatch() {
  const d = PA.data;
  if (!d) return;
  const who = d.vs ? `log P(${tl(d.target)}) − log P(${tl(d.vs)})` : `log P(${tl(d.target)})`;
  $('pch-caption').textContent = `${who}: ${fmt(d.source_metric, 3)} in the source, ${fmt(d.dest_metric, 3)} in the other text`;
  const tip = (what) => (r, c, v) => `${what(r, c)}\nrestores ${v === null ? '–' : Number(v).toFixed(4)} of the difference` +
    `\n${who} = ${Number((what === headWhat ? d.head_metric : d.pos_metric)[r][c]).toFixed(4)}`;
  const headWhat = (l, h) => `layer ${l}, head ${h}: its output from the source`;
  const posWhat = (l, i) => `the stream entering layer ${l} at ${tokLabel(d.dest, i)} (token ${i}) from the source`;
  clear($('pch-heads')).append(el('h3', {}, 'One head\'s output, every position (layer × head)'), signedGrid(d.head_restored, {
    rowLabels: d.head_restored.map((_, l) => `L${l}`), colLabels: d.head_restored[0].map((_, h) => `H${h}`), cls: 'pch-head', scale: 1,
    aria: 'fraction restored by patching each head', tip: tip(headWhat) }));
  clear($('pch-pos')).append(el('h3', {}, 'The residual stream at one position (layer × position)'), signedGrid(d.pos_restored, {
    rowLabels: d.pos_restored.map((_, l) => `L${l}`), colLabels: d.dest.ids.map((_, i) => shortLabel(d.dest, i, 8)), cls: 'pch-pos', scale: 1,
    aria: 'fraction restored by patching the residual stream at each layer and position', tip: tip(posWhat) }));
}
