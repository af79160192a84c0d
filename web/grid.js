/* grid.js -- the overview: a layer x head grid of thumbnails, the query heads that share a
 * key/value head (GQA, MQA) grouped under it. */
import { colRGB } from './colours.js';
import { fetchDetail } from './data.js';
import { headTags, headTip } from './heads.js';
import { renderAll } from './render.js';
import { R, S, heads, layerLoaded, rowWeights, visible } from './state.js';
import { $, clamp, clear, el } from './util.js';

export function renderGrid() {
  const L = R.model.n_layer, H = R.model.n_head, N = R.base.n_tokens, grid = clear($('grid'));
  const size = clamp(Math.floor(1060 / (H + 1)) - 8, 34, 84);
  grid.style.gridTemplateColumns = `48px repeat(${H}, ${size + 2}px)`;
  const KV = R.model.n_kv_head || H, per = H / KV;
  if (KV < H) { // one label over each group of query heads reading the same keys and values
    grid.append(el('div', { class: 'lab' }, 'K/V'));
    for (let g = 0; g < KV; g++)
      grid.append(el('div', { class: 'lab kvgroup', style: `grid-column: span ${per}` , 'data-kv': String(g),
        'data-tip': `query heads ${g * per}-${g * per + per - 1} share key/value head ${g}` }, `kv ${g}`));
  }
  grid.append(el('div'));
  for (let h = 0; h < H; h++) grid.append(el('div', { class: 'lab' + (KV < H && h % per === 0 ? ' grp' : '') }, `H${h}`));
  for (let l = 0; l < L; l++) {
    grid.append(el('div', { class: 'lab' }, `L${l}`));
    for (let h = 0; h < H; h++) {
      const b = el('button', { type: 'button', class: 'thumb' + (l === S.layer && heads().includes(h) ? ' sel' : ''),
        'data-layer': String(l), 'data-head': String(h) });
      if (!layerLoaded(R.base, l)) { b.append(el('span', { class: 'tag' }, '…')); grid.append(b); continue; }
      const cv = el('canvas', { width: String(size), height: String(size) }), small = el('canvas', { width: String(N), height: String(N) });
      const ctx = small.getContext('2d'), img = ctx.createImageData(N, N);
      for (let i = 0; i < N; i++) {
        const w = rowWeights(l, h, i);
        for (let j = 0; j < N; j++) {
          const o = (i * N + j) * 4, c = visible(i, j) ? colRGB(w[j]) : [24, 28, 38];
          img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
      const big = cv.getContext('2d');
      big.imageSmoothingEnabled = false;
      big.drawImage(small, 0, 0, size, size);
      // the query's row, so each thumbnail reads as "where this token looks"
      big.strokeStyle = 'rgba(255, 209, 102, 0.9)';
      big.lineWidth = 1;
      big.strokeRect(0.5, Math.floor(S.q * size / N) + 0.5, size - 1, Math.max(1, Math.round(size / N)));
      const tags = headTags(l, h);
      const shares = KV < H ? `\nreads key/value head ${Math.floor(h / per)}, shared with heads ${[...Array(per).keys()].map((k) => Math.floor(h / per) * per + k).filter((x) => x !== h).join(', ')}` : '';
      b.setAttribute('aria-label', `layer ${l} head ${h}${tags.length ? ' (' + tags.join(', ') + ')' : ''}: open`);
      b.setAttribute('data-tip', `layer ${l}, head ${h}${tags.length ? ' · ' + tags.join(', ') : ''}${headTip(l, h)}${shares}\nclick: open · shift-click: add to the lens`);
      if (KV < H && h % per === 0) b.classList.add('grp');
      b.append(cv);
      if (tags.length) b.append(el('span', { class: 'tag' }, tags.join(' ')));
      b.addEventListener('click', (ev) => {
        S.auto = false;
        if (ev.shiftKey && l === S.layer) S.heads = S.heads.includes(h) ? S.heads.filter((x) => x !== h) : [...S.heads, h].sort((a, c) => a - c);
        else { S.layer = l; S.heads = [h]; S.focus = h; }
        if (!S.heads.length) S.heads = [h];
        $('layer').value = String(S.layer);
        S.mechHead = -1; $('mech-head').value = '-1';
        renderAll(); fetchDetail();
        $('lens').scrollIntoView({ block: 'start' });
      });
      grid.append(b);
    }
  }
}
