/* bars.js -- horizontal bar charts shared by the views. */
import { R } from './state.js';
import { fmt, shortLabel, sv } from './util.js';

/* A horizontal bar chart. items: {label (token index or text), value, tip, color}. Signed
 * values grow left/right of a zero line. */
export function bars(items, o = {}) {
  const rowH = o.rowH || 18, labW = o.labW || 110, W = o.width || 420, valW = 64;
  const vals = items.map((it) => it.value).filter((v) => isFinite(v));
  const lo = Math.min(0, o.min !== undefined ? o.min : Math.min(...vals, 0)), hi = Math.max(o.max !== undefined ? o.max : Math.max(...vals, 0), 1e-9);
  const plotW = W - labW - valW, x0 = labW + plotW * (-lo / (hi - lo || 1));
  const s = sv('svg', { width: W, height: items.length * rowH + 6, role: 'img', 'aria-label': o.aria || 'bar chart',
    'font-family': 'DejaVu Sans Mono, monospace', 'font-size': 11.5 });
  items.forEach((it, k) => {
    const y = 3 + k * rowH, lab = typeof it.label === 'number' ? shortLabel(R.base, it.label, 13) : it.label;
    s.append(sv('text', { x: labW - 6, y: y + rowH - 5, 'text-anchor': 'end', fill: it.dim ? '#5b6477' : '#c9d1df' }, lab));
    if (it.masked) {
      s.append(sv('text', { x: labW + 4, y: y + rowH - 5, fill: '#5b6477', 'data-tip': it.tip || 'masked' }, 'masked (−∞)'));
      return;
    }
    const v = it.value, x1 = labW + plotW * ((v - lo) / (hi - lo || 1));
    s.append(sv('rect', { x: Math.min(x0, x1), y: y + 2, width: Math.max(1, Math.abs(x1 - x0)), height: rowH - 5, rx: 2,
      fill: it.color || (v < 0 ? '#5aa0ff' : '#ffa94d'), class: 'bar', 'data-v': String(v), 'data-tip': it.tip || `${lab}: ${v}` }));
    s.append(sv('text', { x: W - 4, y: y + rowH - 5, 'text-anchor': 'end', fill: '#e8ecf3' }, o.fmt ? o.fmt(v) : fmt(v, 3)));
  });
  if (lo < 0) s.append(sv('line', { x1: x0, x2: x0, y1: 0, y2: items.length * rowH + 6, stroke: '#6f7a90' }));
  return s;
}

export function dot(a, b) { let s = 0; for (let e = 0; e < a.length; e++) s += a[e] * b[e]; return s; }
