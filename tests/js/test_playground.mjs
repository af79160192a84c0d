// test_playground.mjs -- the playground end to end in a real browser (Debian's chromium,
// driven by playwright-core from tests/node_modules): type a sentence, click a token, change
// heads, layer, temperature, mask and the sink switch, and check that what is drawn (data-w
// on the lines and cells) equals the API's numbers. Screenshots of each main view go to
// build/screenshots/. Starts and stops its own server on a free port.
//
//   node tests/js/test_playground.mjs          (QKV_BIN: the qkv binary; QKV_TEST_MODEL: a
//                                               model folder, else models/qkv-lessons or qkv-brown, else a
//                                               small random checkpoint from checkpoint.py)
import path from 'node:path';
import { SHOTS, test, assert, close, finish, base, browser, page, pageErrors, post, softmax, cleanup } from './harness.mjs';

const SENT = 'The bank of the river was steep.';
// drawn lines of one lens panel: {k: weight}
async function drawnLines(panel) {
  return page.$$eval(`#panels .lens-svg[data-panel="${panel}"] path.att-line`, (ls) => ls.map((l) => [Number(l.dataset.k), Number(l.dataset.w), Number(l.dataset.q)]));
}
async function waitIdle() { await page.waitForFunction(() => window.qkv && window.qkv.base && document.querySelector('#status').textContent.includes('tokens')); await page.waitForTimeout(150); }

try {
  await test('default lens is chosen by data: the three sharpest heads for the query', async () => {
    await page.goto(base + '/');
    await page.waitForFunction(() => document.querySelector('#model-info').textContent.includes('layers'));
    await waitIdle();
    const txt = await page.inputValue('#text');
    const api = await post('/api/attend', { text: txt });
    const N = api.n_tokens, q = N - 1;
    await page.click(`#tokens .tok[data-i="${q}"]`);
    await page.waitForTimeout(150);
    const st = await page.evaluate(() => ({ auto: window.qkv.state.auto, l: window.qkv.state.layer, h: [...window.qkv.state.heads] }));
    assert(st.auto, 'auto lens on by default');
    // recompute the choice from the API's weights with the page's documented rule
    let best = null;
    for (let l = 0; l < api.n_layer; l++) {
      const sc = [];
      for (let h = 0; h < api.n_head; h++) sc.push([await page.evaluate(([w, qq]) => window.qkv.sharpness(w, qq), [api.attention[l][h][q], q]), h]);
      sc.sort((a, b) => b[0] - a[0]);
      const top = sc.slice(0, 3), m = top.reduce((a, c) => a + c[0], 0) / top.length;
      if (!best || m > best.m + 1e-9) best = { m, l, h: top.map((x) => x[1]).sort((a, b) => a - b) };
    }
    assert(st.l === best.l && st.h.join(',') === best.h.join(','), `auto lens ${JSON.stringify(st)} vs recomputed ${JSON.stringify(best)}`);
    // the chosen heads are sharper than the layer's others, and not near-uniform
    const panels = await page.$$eval('#panels .panel', (ps) => ps.map((p) => p.dataset.panel));
    assert(panels.join(',') === best.h.join(',') + ',avg', 'three heads + average: ' + panels);
    const cap = await page.$eval('#lens-caption', (e) => e.textContent);
    assert(cap.includes('chosen by data'), 'caption says how the heads were chosen: ' + cap);
    // head tags in the grid come from GET /api/heads (the engine's probe), not from the page
    const hi = await (await fetch(base + '/api/heads')).json();
    assert(hi.heads.length === api.n_layer * api.n_head, 'one entry per head');
    const shown = await page.$$eval('#grid .thumb', (ts) => ts.map((t) => [Number(t.dataset.layer), Number(t.dataset.head), t.querySelector('.tag') ? t.querySelector('.tag').textContent : '']));
    const SHORT = { 'previous-token': 'prev', induction: 'induction', 'first-token sink': 'sink', self: 'self', punctuation: 'punct', uniform: 'uniform' };
    for (const [l, h, tag] of shown) {
      const want = hi.heads[l * api.n_head + h].tags.map((t) => SHORT[t]).join(' ');
      assert(tag === want, `grid tag L${l} H${h}: '${tag}' vs API '${want}'`);
    }
  });

  await test('page loads with model info and no script errors', async () => {
    await page.goto(base + '/#l=0&h=0,1,2');
    await page.waitForFunction(() => document.querySelector('#model-info').textContent.includes('layers'));
    await waitIdle();
    assert(pageErrors.length === 0, 'page errors: ' + pageErrors.join('; '));
  });

  await test('typing a sentence shows its real tokens', async () => {
    await page.fill('#text', SENT);
    await page.waitForFunction((s) => window.qkv.base && window.qkv.base._text === s, SENT);
    await page.waitForTimeout(200);
    const api = await post('/api/attend', { text: SENT });
    const shown = await page.$$eval('#tokens .tok', (bs) => bs.map((b) => b.getAttribute('aria-label')));
    assert(shown.length === api.tokens.length, `${shown.length} token buttons, API has ${api.tokens.length}`);
    api.tokens.forEach((t, i) => assert(shown[i] === `token ${i}: ${t.replace(/ /g, '␣')}`, `token ${i}: ${shown[i]} vs ${t}`));
  });

  await test('clicking a token draws its attention: lines equal the API (3 heads + average)', async () => {
    const api = await post('/api/attend', { text: SENT });
    const q = 3;
    await page.click(`#tokens .tok[data-i="${q}"]`);
    await page.waitForTimeout(100);
    const panels = await page.$$eval('#panels .panel', (ps) => ps.map((p) => p.dataset.panel));
    assert(panels.join(',') === '0,1,2,avg', 'default lens is three heads + average, got ' + panels);
    for (const h of [0, 1, 2]) {
      const lines = await drawnLines(h), row = api.attention[0][h][q];
      assert(lines.length === q + 1, `head ${h}: ${lines.length} lines for query ${q} (causal: ${q + 1})`);
      for (const [k, w, qq] of lines) { assert(qq === q, 'line from the query'); close(w, row[k], 2e-6, `L0 H${h} q${q} k${k}`); }
    }
    const avg = await drawnLines('avg');
    for (const [k, w] of avg) close(w, (api.attention[0][0][q][k] + api.attention[0][1][q][k] + api.attention[0][2][q][k]) / 3, 3e-6, `avg k${k}`);
    // line width and colour both grow with the weight
    const styles = await page.$$eval('#panels .lens-svg[data-panel="0"] path.att-line', (ls) => ls.map((l) => [Number(l.dataset.w), Number(l.getAttribute('stroke-width')), l.getAttribute('stroke')]));
    styles.sort((a, b) => a[0] - b[0]);
    if (styles.length > 1 && styles[styles.length - 1][0] - styles[0][0] > 0.05) {
      assert(styles[styles.length - 1][1] > styles[0][1], 'thicker for more weight');
      assert(styles[styles.length - 1][2] !== styles[0][2], 'different colour for more weight');
    }
  });

  await test('heatmap cells equal the API and the query row is highlighted', async () => {
    const api = await post('/api/attend', { text: SENT });
    await page.click('#panels .panel[data-panel="1"]');
    await page.waitForTimeout(100);
    const cells = await page.$$eval('#heatmap rect.cell', (cs) => cs.map((c) => [Number(c.dataset.i), Number(c.dataset.j), Number(c.dataset.w)]));
    const N = api.n_tokens;
    assert(cells.length === N * N, `${cells.length} cells, want ${N * N}`);
    for (const [i, j, w] of cells) close(w, api.attention[0][1][i][j], 2e-6, `cell ${i},${j}`);
    const qrow = await page.$eval('#heatmap rect.qrow', (r) => Number(r.getAttribute('y')));
    const cellY = await page.$eval('#heatmap rect.cell[data-i="3"][data-j="0"]', (r) => Number(r.getAttribute('y')));
    close(qrow, cellY - 1, 0.01, 'query row outline');
    // the rollout across layers is a distribution over the tokens the query can see
    const roll = await page.$$eval('#rollout .tok', (ts) => ts.map((t) => Number(t.dataset.w)));
    assert(roll.length === N, 'rollout over every token');
    close(roll.reduce((a, b) => a + b, 0), 1, 1e-5, 'rollout sums to 1');
    assert(roll.slice(4).every((x) => x === 0), 'rollout: nothing from the future');
  });

  await test('direction "who attends to this token": lines equal the API column', async () => {
    const api = await post('/api/attend', { text: SENT });
    await page.check('input[name=dir][value=in]');
    await page.waitForTimeout(100);
    const lines = await drawnLines(2), N = api.n_tokens;
    assert(lines.length === N - 3, `${lines.length} lines into token 3 (want ${N - 3})`);
    for (const [k, w, q] of lines) { assert(k === 3 && q >= 3, 'lines end at the token'); close(w, api.attention[0][2][q][3], 2e-6, `into 3 from ${q}`); }
    await page.locator('#lens').screenshot({ path: path.join(SHOTS, 'lens-into.png') });
    await page.check('input[name=dir][value=out]');
  });

  await test('keyboard: Tab to a token, arrows move the query; hover previews', async () => {
    await page.focus('#tokens .tok[data-i="1"]');
    await page.keyboard.press('Enter');
    await page.waitForTimeout(50);
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await page.waitForTimeout(100);
    let q = await page.evaluate(() => window.qkv.state.q);
    assert(q === 3, 'query after Enter + 2 x ArrowRight: ' + q);
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.dataset.i);
    assert(focused === '3', 'focus follows the query');
    await page.hover('#tokens .tok[data-i="5"]');
    await page.waitForTimeout(100);
    const cap = await page.$eval('#lens-caption', (e) => e.textContent);
    assert(cap.includes('preview') && cap.includes('token 5'), 'hover preview: ' + cap);
    await page.mouse.move(5, 5);
    await page.waitForTimeout(100);
    q = await page.evaluate(() => window.qkv.state.q);
    assert(q === 3, 'hover does not change the pinned query');
    // every form control has a label
    const unlabeled = await page.$$eval('input, select, textarea, button', (es) => es.filter((e) => {
      if (e.type === 'hidden') return false;
      const lab = e.labels && e.labels.length > 0, aria = e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
      const text = e.tagName === 'BUTTON' && e.textContent.trim().length > 0;
      return !(lab || aria || text);
    }).map((e) => e.outerHTML.slice(0, 80)));
    assert(unlabeled.length === 0, 'controls without a label: ' + unlabeled.join(' | '));
  });

  await test('changing layer and heads redraws from that layer', async () => {
    const api = await post('/api/attend', { text: SENT });
    const L = api.n_layer, l = L - 1, H = api.n_head, h = H - 1;
    await page.selectOption('#layer', String(l));
    await page.click('#heads-all');
    await page.waitForTimeout(100);
    const n = await page.$$eval('#panels .panel', (ps) => ps.length);
    assert(n === H + 1, `all ${H} heads + average, got ${n} panels`);
    const lines = await drawnLines(h);
    for (const [k, w] of lines) close(w, api.attention[l][h][3][k], 2e-6, `L${l} H${h} k${k}`);
    await page.click('#lens-default');
  });

  await test('temperature: same-scores view equals softmax(scores/T); whole-model view equals the API at T', async () => {
    const T = 0.5;
    const api = await post('/api/attend', { text: SENT, scores: true });
    await page.$eval('#temp', (e, v) => { e.value = String(v); e.dispatchEvent(new Event('input')); }, Math.log10(T));
    await page.waitForTimeout(150);
    const l = await page.$eval('#layer', (e) => Number(e.value));
    let lines = await drawnLines(0);
    const want = softmax(api.scores[l][0][3], 3, T, true);
    for (const [k, w] of lines) close(w, want[k], 3e-6, `client T=${T} k${k}`);
    const ent = await page.$eval('#panels .panel[data-panel="0"] .ent', (e) => e.textContent);
    assert(/entropy [0-9.]+ of [0-9.]+ bits/.test(ent), 'entropy shown: ' + ent);
    await page.check('input[name=tmode][value=server]');
    await page.waitForFunction((t) => window.qkv.alt && window.qkv.alt._T === t && window.qkv.source() === 'server', T);
    await page.waitForTimeout(100);
    const apiT = await post('/api/attend', { text: SENT, temperature: T });
    lines = await drawnLines(0);
    for (const [k, w] of lines) close(w, apiT.attention[l][0][3][k], 2e-6, `server T=${T} k${k}`);
    const preds = await page.$$eval('#predictions h3', (hs) => hs.map((h) => h.textContent));
    assert(preds.some((p) => p.includes('T=0.50')), 'predictions at T shown: ' + preds);
    await page.screenshot({ path: path.join(SHOTS, 'lens-temperature.png'), fullPage: false });
  });

  await test('mask off and ignore-first-token switches', async () => {
    await page.$eval('#temp', (e) => { e.value = '0'; e.dispatchEvent(new Event('input')); });
    await page.uncheck('#causal');
    await page.waitForFunction(() => window.qkv.alt && window.qkv.alt._causal === false && window.qkv.alt._T === 1);
    await page.waitForTimeout(100);
    const apiNM = await post('/api/attend', { text: SENT, causal: false });
    const l = await page.$eval('#layer', (e) => Number(e.value));
    const N = apiNM.n_tokens;
    let lines = await drawnLines(0);
    assert(lines.length === N, `no mask: a line to every token (${lines.length} of ${N})`);
    for (const [k, w] of lines) close(w, apiNM.attention[l][0][3][k], 2e-6, `no mask k${k}`);
    await page.check('#causal');
    await page.check('#sink');
    await page.waitForTimeout(150);
    const api = await post('/api/attend', { text: SENT });
    const row = api.attention[l][0][3], z = row.slice(1).reduce((a, b) => a + b, 0);
    lines = await drawnLines(0);
    for (const [k, w] of lines) close(w, k === 0 ? 0 : row[k] / z, 3e-6, `sink k${k}`);
    await page.uncheck('#sink');
    await page.check('input[name=tmode][value=client]');
  });

  await test('the URL carries the state and reopens the same view', async () => {
    const url = page.url();
    assert(url.includes('text=') && url.includes('q=3'), 'hash state: ' + url);
    const p2 = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    await p2.goto(url);
    await p2.waitForFunction(() => window.qkv && window.qkv.base && document.querySelectorAll('#panels .panel').length > 0);
    const st = await p2.evaluate(() => ({ q: window.qkv.state.q, text: window.qkv.state.text, heads: window.qkv.state.heads.join(',') }));
    assert(st.q === 3 && st.text === SENT, 'reopened state: ' + JSON.stringify(st));
    await p2.close();
  });

  await test('mechanism view: bars, weights summing to 1, blend matches the engine', async () => {
    await page.click('#tokens .tok[data-i="3"]');
    await page.waitForFunction(() => window.qkv.detail && document.querySelector('#mech-values svg'));
    const wsum = await page.$$eval('#mech-weights rect.bar', (rs) => rs.reduce((a, r) => a + Number(r.dataset.v), 0));
    close(wsum, 1, 1e-5, 'softmax weights sum');
    // the mechanism's weights (recomputed in the page from q and k) equal the focused head's lines
    await page.click('#panels .panel[data-panel="1"]');
    await page.waitForFunction(() => window.qkv.detail && window.qkv.detail.head === 1 && document.querySelector('#mech-weights rect.bar'));
    const mech = await page.$$eval('#mech-weights rect.bar', (rs) => rs.map((r) => Number(r.dataset.v)));
    const lens = (await drawnLines(1)).sort((a, b) => a[0] - b[0]).map((x) => x[1]);
    assert(mech.length === lens.length, `${mech.length} bars vs ${lens.length} lines`);
    mech.forEach((w, j) => close(w, lens[j], 2e-5, `mechanism vs lens, key ${j}`));
    const nq = await page.$$eval('#mech-geo circle.geo-q', (c) => c.length), nk = await page.$$eval('#mech-geo rect.geo-k', (c) => c.length);
    const ntok = await page.evaluate(() => window.qkv.base.n_tokens);
    assert(nq === ntok && nk === ntok, `q/k projection: ${nq} queries, ${nk} keys for ${ntok} tokens`);
    const note = await page.$eval('#mech-values', (e) => e.textContent);
    assert(note.includes('✓'), 'page blend equals the engine output: ' + note.slice(-120));
    const scaled = await page.$$eval('#mech-scores rect.bar', (rs) => rs.map((r) => Math.abs(Number(r.dataset.v))));
    await page.check('#unscaled');
    const unscaled = await page.$$eval('#mech-scores rect.bar', (rs) => rs.map((r) => Math.abs(Number(r.dataset.v))));
    assert(Math.max(...unscaled) > Math.max(...scaled), 'unscaled scores are larger');
    // the whole model without the scale = temperature 1/sqrt(d) everywhere
    await page.waitForFunction(() => document.querySelectorAll('#mech-unscaled svg').length === 2);
    const scale = await page.evaluate(() => window.qkv.detail.scale);
    const apiU = await post('/api/attend', { text: SENT, temperature: scale, attention: false, top_k: 5 });
    const shown = await page.$$eval('#mech-unscaled .pred-cmp > div:nth-child(2) rect.bar', (rs) => rs.map((r) => Number(r.dataset.v)));
    assert(shown.length === 5, 'five predictions without the scale');
    shown.forEach((p, k) => close(p, apiU.top[k].prob, 1e-6, `unscaled prediction ${k}`));
    await page.locator('#mechanism').screenshot({ path: path.join(SHOTS, 'mechanism-unscaled.png') });
    await page.uncheck('#unscaled');
    await page.locator('#mechanism').screenshot({ path: path.join(SHOTS, 'mechanism.png') });
  });

  await test('overview grid has every layer x head and opens one on click', async () => {
    const api = await post('/api/attend', { text: SENT });
    const n = await page.$$eval('#grid .thumb', (t) => t.length);
    assert(n === api.n_layer * api.n_head, `${n} thumbnails`);
    await page.click(`#grid .thumb[data-layer="0"][data-head="${api.n_head - 1}"]`);
    await page.waitForTimeout(100);
    const st = await page.evaluate(() => ({ l: window.qkv.state.layer, h: window.qkv.state.heads.join(',') }));
    assert(st.l === 0 && st.h === String(api.n_head - 1), 'opened: ' + JSON.stringify(st));
    await page.mouse.move(1350, 5);
    await page.waitForTimeout(50);
    await page.locator('#overview').screenshot({ path: path.join(SHOTS, 'overview.png') });
    await page.click('#lens-default');
  });

  await test('token text is rendered as text, never as HTML', async () => {
    const evil = '<img src=x onerror="window.__pwned=1"> <b>bold</b>';
    await page.fill('#text', evil);
    await page.waitForFunction((s) => window.qkv.base && window.qkv.base._text === s, evil);
    await page.waitForTimeout(200);
    const pwned = await page.evaluate(() => window.__pwned === 1 || document.querySelectorAll('main img, #tokens b, #panels b').length > 0);
    assert(!pwned, 'markup from the text was interpreted');
  });

  await test('partial UTF-8 pieces are shown safely with their bytes', async () => {
    const txt = 'emoji 🤗 and 日本語';
    await page.fill('#text', txt);
    await page.waitForFunction((s) => window.qkv.base && window.qkv.base._text === s, txt);
    const api = await post('/api/attend', { text: txt });
    const labels = await page.$$eval('#tokens .tok', (bs) => bs.map((b) => b.textContent));
    api.partial.forEach((p, i) => { if (p) assert(labels[i].includes(api.bytes[i].slice(0, 2)), `partial piece ${i} shows its bytes: ${labels[i]}`); });
    assert(!labels.join('').includes('\ufffd') || api.partial.every((p) => !p), 'no replacement characters drawn for partial pieces');
  });

  await test('predict-the-blank, two sentences and quiz work', async () => {
    await page.fill('#text', SENT);
    await page.waitForFunction((s) => window.qkv.base && window.qkv.base._text === s, SENT);
    await page.click('#ex-tokens .tok[data-i="1"]');
    await page.check('input[name=ex-guess][value=" were"]');
    await page.click('#ex-reveal');
    const res = await page.$eval('#ex-result', (e) => e.textContent);
    assert(/were/.test(res) && /%/.test(res), 'exercise result: ' + res.slice(0, 200));
    // the heads that look back at "keys" from the blank: the three largest in the API's maps
    const ex = await post('/api/attend', { text: 'The keys to the cabinet' });
    const kIdx = [], lastI = ex.n_tokens - 1;  // the tokens that spell "keys" (chars 4..7)
    ex.tokens.reduce((pos, t, i) => { if (pos < 8 && pos + t.length > 4) kIdx.push(i); return pos + t.length; }, 0);
    const ph = [];
    for (let l = 0; l < ex.n_layer; l++) for (let h = 0; h < ex.n_head; h++) ph.push([kIdx.reduce((a, j) => a + ex.attention[l][h][lastI][j], 0), l, h]);
    ph.sort((a, b) => b[0] - a[0]);
    const lookers = await page.$$eval('#ex-result .lookers b', (bs) => bs.map((b) => [Number(b.dataset.w), Number(b.dataset.layer), Number(b.dataset.head)]));
    assert(lookers.length === 3, 'three heads named');
    lookers.forEach(([w, l, h], k) => { assert(l === ph[k][1] && h === ph[k][2], `looker ${k}: L${l} H${h} vs L${ph[k][1]} H${ph[k][2]}`); close(w, ph[k][0], 1e-5, 'looker weight'); });
    await page.click('#cmp-run');
    await page.waitForFunction(() => document.querySelectorAll('#cmp-sim rect.bar').length > 0);
    const api = await post('/api/compare', { a: await page.inputValue('#cmp-a'), b: await page.inputValue('#cmp-b'), word: 'bank' });
    const sims = await page.$$eval('#cmp-sim rect.bar', (rs) => rs.map((r) => Number(r.dataset.v)));
    assert(sims.length === api.similarity.length, 'one bar per layer');
    sims.forEach((s, k) => close(s, api.similarity[k], 1e-6, `similarity ${k}`));
    await page.locator('#predict').screenshot({ path: path.join(SHOTS, 'predict.png') });
    // appending a predicted token re-runs on the longer text
    const before = await page.evaluate(() => window.qkv.base._text);
    const id = Number(await page.getAttribute('#predictions .small-append', 'data-id'));
    const tok = await page.evaluate((i) => window.qkv.base.top.find((t) => t.id === i).token, id);
    await page.click('#predictions .small-append');
    await page.waitForFunction((t) => window.qkv.base._text === t, before + tok);
    assert(await page.inputValue('#text') === before + tok, 'the predicted token was appended to the text');
    await page.locator('#compare').screenshot({ path: path.join(SHOTS, 'compare.png') });
    // answer the quiz with the right answers (value 0 is right in every question)
    const nq = await page.$$eval('#quiz-form fieldset', (f) => f.length);
    for (let k = 0; k < nq; k++) await page.check(`input[name=quiz-${k}][value="0"]`);
    await page.click('#quiz-check');
    const score = await page.$eval('#quiz-score', (e) => e.getAttribute('data-score'));
    assert(Number(score) === nq, `quiz score ${score} / ${nq}`);
    await page.locator('#quiz').screenshot({ path: path.join(SHOTS, 'quiz.png') });
  });

  await test('exports: SVG and JSON of the current view', async () => {
    const svg = await page.evaluate(() => window.qkv.exportSVG());
    assert(svg.startsWith('<svg') && svg.includes('att-line'), 'svg export');
    const data = JSON.parse(await page.evaluate(() => window.qkv.exportData()));
    assert(data.panels.average && data.panels.average.length === data.tokens.length, 'json export has the matrices');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
    assert(/\.png$/.test(dl.suggestedFilename()), 'png download');
  });

  await test('screenshots of the main view', async () => {
    const txt = 'We walked along the river and sat down on the bank';
    await page.fill('#text', txt);
    await page.waitForFunction((s) => window.qkv.base && window.qkv.base._text === s, txt);
    await page.waitForTimeout(200);
    const n = await page.evaluate(() => window.qkv.base.n_tokens);
    await page.click(`#tokens .tok[data-i="${n - 1}"]`);
    const L = await page.evaluate(() => window.qkv.base.n_layer);
    await page.selectOption('#layer', String(Math.min(2, L - 1)));
    await page.mouse.move(1350, 890);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(SHOTS, 'playground-top.png'), fullPage: false });
    const bottom = await page.evaluate(() => { const r = document.querySelector('#panels').getBoundingClientRect(); return r.bottom + window.scrollY + 16; });
    await page.screenshot({ path: path.join(SHOTS, 'playground.png'), fullPage: true, clip: { x: 0, y: 0, width: 1360, height: Math.min(bottom, 1500) } });
    await page.locator('#lens').screenshot({ path: path.join(SHOTS, 'lens.png') });
    await page.screenshot({ path: path.join(SHOTS, 'playground-full.png'), fullPage: true });
    assert(pageErrors.length === 0, 'page errors: ' + pageErrors.join('; '));
  });
} finally {
  await browser.close();
  cleanup();
}
finish();
