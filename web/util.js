/* util.js -- small DOM helpers, number formats, token labels, the tooltip. */

/* ---------------------------------------------------------------- small helpers */
export const $ = (id) => document.getElementById(id);
export const SVGNS = 'http://www.w3.org/2000/svg';

export function el(tag, attrs, text) {
  const e = document.createElement(tag);
  if (attrs) for (const k in attrs) {
    if (k === 'class') e.className = attrs[k];
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), attrs[k]);
    else e.setAttribute(k, attrs[k]);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}
export function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
export function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
export const fmt = (x, d = 3) => (x === null || x === undefined || !isFinite(x)) ? '–' : Number(x).toFixed(d);
export const clamp = (x, a, b) => Math.max(a, Math.min(b, x));
export const pct = (v) => (!isFinite(v) ? '–' : v >= 0.001 ? (100 * v).toFixed(1) + '%' : (100 * v).toPrecision(2) + '%');
/* A token as display text: spaces become ␣, newlines ↵, tabs ⇥; a piece that is not whole
 * UTF-8 on its own (byte-level BPE splits characters) is shown by its bytes. */
export function tokLabel(d, i) {
  if (d.partial && d.partial[i]) return '‹' + (d.bytes[i].match(/../g) || []).join(' ') + '›';
  return d.tokens[i].replace(/ /g, '␣').replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/\r/g, '␍');
}
export function shortLabel(d, i, n = 12) { const s = tokLabel(d, i); return [...s].length > n ? [...s].slice(0, n - 1).join('') + '…' : s; }
/* HTML for a token: text nodes only, the visible-space glyphs dimmed. */
export function tokInto(node, d, i) {
  const s = tokLabel(d, i);
  if (d.partial && d.partial[i]) { node.append(el('span', { class: 'bytes' }, s)); return node; }
  for (const part of s.split(/([␣↵⇥␍])/)) {
    if (!part) continue;
    if ('␣↵⇥␍'.includes(part)) node.append(el('span', { class: 'vis-space' }, part));
    else node.append(document.createTextNode(part));
  }
  return node;
}
export function quote(d, i) { return '“' + tokLabel(d, i) + '”'; }

/* ---------------------------------------------------------------- tooltip */
export const tip = $('tip');
export function showTip(text, x, y) {
  tip.textContent = text; tip.hidden = false;
  const w = tip.offsetWidth, h = tip.offsetHeight;
  tip.style.left = Math.min(x + 14, window.innerWidth - w - 6) + 'px';
  tip.style.top = Math.min(y + 14, window.innerHeight - h - 6) + 'px';
}
document.addEventListener('mousemove', (ev) => {
  const t = ev.target && ev.target.closest ? ev.target.closest('[data-tip]') : null;
  if (t) showTip(t.getAttribute('data-tip'), ev.clientX, ev.clientY); else tip.hidden = true;
});
