/* grids.js -- heatmaps of signed numbers shared by the intervention views: the ablation's
 * layer x head grid and the patching maps (layer x head, layer x position). Blue < 0, dark 0,
 * orange > 0; the exact number is in each cell's data-v and tooltip. */
import { dmap } from './colours.js';
import { clamp, fmt, sv } from './util.js';

/* values: [rows][cols] (null allowed: drawn grey); o: rowLabels, colLabels, cls (cell class),
 * scale (|v| drawn at full colour; default the largest |v|), tip(r, c, v), onClick(r, c),
 * selected [r, c], aria. */
export function signedGrid(values, o) {
  const rows = values.length, cols = rows ? values[0].length : 0;
  const flat = values.flat().filter((v) => v !== null && isFinite(v));
  const scale = o.scale || Math.max(1e-9, ...flat.map(Math.abs));
  const cw = clamp(Math.floor(640 / Math.max(cols, 1)), 30, 56), ch = 24, mL = 62;
  const longCols = (o.colLabels || []).some((s) => [...s].length > 4);
  const mT = longCols ? 64 : 20, W = mL + cols * cw + 4, H = mT + rows * ch + 4;
  const s = sv('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'signed-grid',
    'aria-label': o.aria || 'grid', 'font-family': 'DejaVu Sans Mono, monospace', 'font-size': 11 });
  for (let c = 0; c < cols; c++) {
    const lab = o.colLabels ? o.colLabels[c] : String(c), x = mL + c * cw + cw / 2;
    s.append(longCols ? sv('text', { x: 0, y: 0, transform: `translate(${x + 4},${mT - 4}) rotate(-60)`, fill: '#c9d1df' }, lab)
      : sv('text', { x, y: mT - 6, 'text-anchor': 'middle', fill: '#c9d1df' }, lab));
  }
  for (let r = 0; r < rows; r++) {
    s.append(sv('text', { x: mL - 6, y: mT + r * ch + ch / 2 + 4, 'text-anchor': 'end', fill: '#c9d1df' }, o.rowLabels ? o.rowLabels[r] : String(r)));
    for (let c = 0; c < cols; c++) {
      const v = values[r][c], ok = v !== null && isFinite(v), sel = o.selected && o.selected[0] === r && o.selected[1] === c;
      const cell = sv('rect', { x: mL + c * cw + 1, y: mT + r * ch + 1, width: cw - 2, height: ch - 2, rx: 2,
        fill: ok ? dmap(v / scale) : '#2a3244', stroke: sel ? '#ffd166' : 'none', 'stroke-width': 2,
        class: o.cls || 'cell', 'data-r': String(r), 'data-c': String(c), 'data-v': ok ? String(v) : '',
        'data-tip': o.tip ? o.tip(r, c, v) : `${r}, ${c}: ${v}`, style: o.onClick ? 'cursor:pointer' : '' });
      if (o.onClick) cell.addEventListener('click', () => o.onClick(r, c));
      s.append(cell);
      if (ok && cw >= 34) {
        const t = sv('text', { x: mL + c * cw + cw / 2, y: mT + r * ch + ch / 2 + 4, 'text-anchor': 'middle', 'pointer-events': 'none',
          fill: Math.abs(v / scale) > 0.55 ? '#000' : '#e8ecf3', 'font-size': 10 }, fmt(v, Math.abs(v) >= 10 ? 1 : 2));
        s.append(t);
      }
    }
  }
  return s;
}

/* "0.5" -> 0.5 as a legend line: what full colour means. */
export function gridLegend(scale, what) {
  return `colour: blue < 0 < orange, full colour at |${what}| = ${fmt(scale, 3)}; hover a cell for its exact value`;
}
