/* heads.js -- what each head does (GET /api/heads tags) and the data-chosen "sharpest heads" lens. */
import { R, S, layerLoaded } from './state.js';
import { $, fmt } from './util.js';

/* What a head does, from GET /api/heads: the engine scores every head on a probe set (prose,
 * and a random sequence shown twice) and tags it; the same numbers as `qkv heads`. */
export const TAG_SHORT = { 'previous-token': 'prev', induction: 'induction', 'first-token sink': 'sink', self: 'self', punctuation: 'punct', uniform: 'uniform' };
export function headEntry(l, h) { return R.headInfo && R.headInfo.heads[l * R.headInfo.n_head + h]; }
export function headTags(l, h) { const e = headEntry(l, h); return e ? e.tags.map((t) => TAG_SHORT[t] || t) : []; }
export function headTip(l, h) {
  const e = headEntry(l, h);
  if (!e) return '';
  const s = e.scores;
  return `\nprobe scores: prev ${fmt(s.prev, 2)} · induction ${fmt(s.induction, 2)} · sink ${fmt(s.sink, 2)} · self ${fmt(s.self, 2)} · punct ${fmt(s.punctuation, 2)} · uniformity ${fmt(s.uniformity, 2)}`;
}

/* The lens chosen by data: for the query, the three heads whose attention from it is
 * sharpest (1 - entropy / log n, first token dropped and the row renormalised so attention
 * sinks do not count), in the layer where the three are sharpest together. Uses the model
 * as trained (base), whatever the dials say. */
export function sharpness(w, q) {
  const lo = q >= 2 ? 1 : 0;
  let z = 0; for (let j = lo; j <= q; j++) z += w[j];
  if (!(z > 0) || q - lo < 1) return 0;
  let H = 0; for (let j = lo; j <= q; j++) { const p = w[j] / z; if (p > 0) H -= p * Math.log(p); }
  return 1 - H / Math.log(q - lo + 1);
}
export function autoLens() {
  if (!S.auto || !R.base || S.q < 1) return;
  let best = null;
  for (let l = 0; l < R.model.n_layer; l++) {
    if (!layerLoaded(R.base, l)) continue;
    const sc = [];
    for (let h = 0; h < R.model.n_head; h++) sc.push([sharpness(R.base.attention[l][h][S.q], S.q), h]);
    sc.sort((a, b) => b[0] - a[0]);
    const top = sc.slice(0, Math.min(3, sc.length)), m = top.reduce((a, c) => a + c[0], 0) / top.length;
    if (!best || m > best.m) best = { m, l, heads: top.map((x) => x[1]).sort((a, b) => a - b), sc: top };
  }
  if (!best) return;
  S.layer = best.l; S.heads = best.heads; S.focus = 'avg';
  S.autoScores = Object.fromEntries(best.sc.map(([v, h]) => [h, v]));
  $('layer').value = String(S.layer);
}
