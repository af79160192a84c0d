/* export.js -- export PNG, SVG, JSON. */
import { R, S, altCurrent, dialsMoved, heads, panelList, panelWeights, source } from './state.js';
import { $, SVGNS, el, sv } from './util.js';

/* ---------------------------------------------------------------- export */
export function download(name, blob) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 5000);
}
/* One standalone SVG of the current view: caption, the lens panels, the matrix, the legend. */
export function exportSVG() {
  const panels = [...document.querySelectorAll('#panels .lens-svg')], heat = document.querySelector('#heatmap svg');
  const legend = document.querySelector('#legend svg');
  let x = 16, rowH = 0;
  const parts = [];
  for (const p of panels) {
    const w = Number(p.getAttribute('width')), h = Number(p.getAttribute('height'));
    parts.push({ node: p, x, y: 70, title: p.closest('.panel').querySelector('h3').textContent });
    x += w + 16; rowH = Math.max(rowH, h);
  }
  const hy = 70 + rowH + 30, hw = heat ? Number(heat.getAttribute('width')) : 0, hh = heat ? Number(heat.getAttribute('height')) : 0;
  const W = Math.max(x, hw + 32, 420), H = hy + hh + 60;
  const root = sv('svg', { xmlns: SVGNS, width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'font-family': 'DejaVu Sans, sans-serif' });
  root.append(sv('rect', { width: W, height: H, fill: '#151a23' }));
  root.append(sv('text', { x: 16, y: 26, fill: '#e8ecf3', 'font-size': 16 }, `qkv · ${R.model.name} · “${R.base._text}”`));
  root.append(sv('text', { x: 16, y: 48, fill: '#ffd166', 'font-size': 13 }, $('lens-caption').textContent));
  for (const p of parts) {
    root.append(sv('text', { x: p.x, y: p.y - 6, fill: '#c9d1df', 'font-size': 12 }, p.title));
    const c = p.node.cloneNode(true); c.setAttribute('x', p.x); c.setAttribute('y', p.y); root.append(c);
  }
  if (heat) {
    root.append(sv('text', { x: 16, y: hy - 8, fill: '#c9d1df', 'font-size': 12 }, $('heat-title').textContent));
    const c = heat.cloneNode(true); c.setAttribute('x', 16); c.setAttribute('y', hy); root.append(c);
  }
  if (legend) { const c = legend.cloneNode(true); c.setAttribute('x', 16); c.setAttribute('y', H - 44); root.append(c); }
  return new XMLSerializer().serializeToString(root);
}
export function exportName(ext) { return `qkv-L${S.layer}-q${S.q}.${ext}`; }
export function exportPNG() {
  const svgText = exportSVG(), img = new Image(), url = URL.createObjectURL(new Blob([svgText], { type: 'image/svg+xml' }));
  img.onload = () => {
    const c = el('canvas', { width: String(img.width * 2), height: String(img.height * 2) }), ctx = c.getContext('2d');
    ctx.scale(2, 2); ctx.drawImage(img, 0, 0);
    URL.revokeObjectURL(url);
    c.toBlob((b) => download(exportName('png'), b), 'image/png');
  };
  img.src = url;
}
export function exportData() {
  const N = R.base.n_tokens, out = {
    model: R.model, text: R.base._text, tokens: R.base.tokens, bytes: R.base.bytes, ids: R.base.ids, query: S.q, layer: S.layer, heads: heads(),
    temperature: S.T, causal: S.causal, ignore_first_token: S.sink, weights_from: source(), panels: {}, top: R.base.top,
    top_at_dials: dialsMoved() && altCurrent() ? R.alt.top : null, link: location.href,
  };
  for (const p of panelList()) out.panels[p.key === 'avg' ? 'average' : `head_${p.key}`] = [...Array(N).keys()].map((i) => panelWeights(S.layer, p.key, i));
  return JSON.stringify(out, null, 1);
}
