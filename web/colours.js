/* colours.js -- colour scales: viridis for weights (√ or linear, state S.sqrt), diverging for signed values. */
import { S } from './state.js';
import { clamp } from './util.js';

/* Viridis (perceptually uniform, colour-blind safe): dark purple = 0, bright yellow = 1.
 * On the dark background, brighter = more attention. */
export const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
export function cmap(t) {
  t = clamp(isFinite(t) ? t : 0, 0, 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return `rgb(${Math.round(a[0] + f * (b[0] - a[0]))},${Math.round(a[1] + f * (b[1] - a[1]))},${Math.round(a[2] + f * (b[2] - a[2]))})`;
}
/* 1024-step lookup tables (thumbnails and long texts colour tens of thousands of cells). */
export const LUT_N = 1024, LUT_STR = [], LUT_RGB = [];
for (let k = 0; k < LUT_N; k++) { const c = cmap(k / (LUT_N - 1)); LUT_STR.push(c); LUT_RGB.push(c.slice(4, -1).split(',').map(Number)); }
/* The colour of a weight: on the √ scale (the default) small weights stay visible; the
 * legend is labelled to match. */
export function lutIndex(w) { w = isFinite(w) ? clamp(w, 0, 1) : 0; return Math.round((S.sqrt ? Math.sqrt(w) : w) * (LUT_N - 1)); }
export function col(w) { return LUT_STR[lutIndex(w)]; }
export function colRGB(w) { return LUT_RGB[lutIndex(w)]; }
/* Diverging blue (-) / dark (0) / orange (+) for signed vectors. */
export function dmap(t) {
  t = clamp(isFinite(t) ? t : 0, -1, 1);
  const z = [32, 38, 52], n = [80, 160, 255], p = [255, 160, 60], c = t < 0 ? n : p, a = Math.abs(t);
  return `rgb(${Math.round(z[0] + a * (c[0] - z[0]))},${Math.round(z[1] + a * (c[1] - z[1]))},${Math.round(z[2] + a * (c[2] - z[2]))})`;
}
