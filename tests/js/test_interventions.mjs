// test_interventions.mjs -- the intervention views in a real browser (Debian's chromium, driven
// by playwright-core from tests/node_modules): which heads matter (the ablation grid, a clicked
// cell's pattern and new predictions), the patching maps and the logit lens. Each check reads
// what is drawn (data-v / data-w / data-p on the cells and bars) and compares it with the
// JSON API's numbers for the same request. Screenshots go to build/screenshots/ (ablate.png,
// patching.png, logit-lens.png, generate.png; docs/ keeps copies), and the streamed
// generation view (scrubbing through each step's attention, Stop). Starts and stops its own server.
//
//   node tests/js/test_interventions.mjs    (QKV_BIN, QKV_TEST_MODEL as test_playground.mjs)
import path from 'node:path';
import { SHOTS, test, assert, finish, base, browser, page, pageErrors, post, cleanup } from './harness.mjs';


const near = (a, b, tol = 1e-6) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
async function apiStatus(p, body) {
  const r = await fetch(base + p, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return [r.status, await r.json()];
}
async function fieldVal(id) { return page.$eval('#' + id, (e) => e.value); }
const tokenField = (s) => (/^id:\d+$/.test(s.trim()) ? Number(s.trim().slice(3)) : s);

try {
  await page.goto(base + '/');
  await page.waitForFunction(() => window.qkv && window.qkv.base && document.querySelector('#status').textContent.includes('tokens'));

  // a model whose vocabulary lacks " were" (the random fallback): use the default targets
  const [st0] = await apiStatus('/api/ablate', { text: await fieldVal('abl-text'), target: await fieldVal('abl-target'), vs: await fieldVal('abl-vs') });
  if (st0 !== 200) for (const id of ['abl-target', 'abl-vs', 'pch-target', 'pch-vs', 'll-target']) await page.fill('#' + id, '');
  const [st1] = await apiStatus('/api/patch', { source: await fieldVal('pch-source'), text: await fieldVal('pch-text') });
  if (st1 !== 200) { await page.fill('#pch-source', 'the cat sat on the mat'); await page.fill('#pch-text', 'the cat sat on a mat'); }

  async function ablBody() {
    const b = { text: await fieldVal('abl-text'), mode: await fieldVal('abl-mode'), top_k: 5 };
    const t = await fieldVal('abl-target'), v = await fieldVal('abl-vs');
    if (t) b.target = tokenField(t);
    if (v) b.vs = tokenField(v);
    return b;
  }
  async function drawnGrid(cls) {
    return page.$$eval(`.${cls}`, (cs) => cs.map((c) => [Number(c.dataset.r), Number(c.dataset.c), c.dataset.v === '' ? null : Number(c.dataset.v)]));
  }

  for (const mode of ['zero', 'uniform']) {
    await test(`which heads matter (${mode}): the drawn grid is the API's`, async () => {
      await page.selectOption('#abl-mode', mode);
      await page.evaluate(() => { window.qkv.ablation.data = null; });
      await page.click('#abl-run');
      await page.waitForFunction(() => window.qkv.ablation.data && document.querySelectorAll('.abl-cell').length > 0);
      const api = await post('/api/ablate', await ablBody());
      const cells = await drawnGrid('abl-cell');
      assert(cells.length === api.n_layer * api.n_head, `${cells.length} cells for ${api.n_layer} x ${api.n_head}`);
      for (const [l, h, v] of cells) assert(near(v, api.grid[l][h]), `cell ${l}.${h}: drawn ${v}, API ${api.grid[l][h]}`);
      const cap = await page.$eval('#abl-caption', (e) => e.textContent);
      assert(cap.includes(mode) && cap.includes(api.base.toFixed(3)), cap);
    });
  }

  await test('which heads matter: a clicked cell shows the ablated pattern and the new predictions', async () => {
    await page.selectOption('#abl-mode', 'zero');
    await page.click('#abl-run');
    await page.waitForFunction(() => window.qkv.ablation.data && window.qkv.ablation.data.mode === 'zero' && document.querySelectorAll('.abl-cell').length > 0);
    const d = await page.evaluate(() => window.qkv.ablation.data);
    // the head that matters most
    let best = [0, 0];
    for (let l = 0; l < d.n_layer; l++) for (let h = 0; h < d.n_head; h++) if (Math.abs(d.grid[l][h]) > Math.abs(d.grid[best[0]][best[1]])) best = [l, h];
    await page.click(`.abl-cell[data-r="${best[0]}"][data-c="${best[1]}"]`);
    await page.waitForFunction(() => document.querySelectorAll('.abl-att').length > 0);
    const api = await post('/api/ablate', { ...(await ablBody()), target: d.target.id, vs: d.vs ? d.vs.id : undefined, detail: { layer: best[0], head: best[1] } });
    const att = await page.$$eval('.abl-att', (cs) => cs.map((c) => [Number(c.dataset.i), Number(c.dataset.j), Number(c.dataset.w)]));
    assert(att.length === api.n_tokens * api.n_tokens);
    for (const [i, j, w] of att) assert(near(w, api.detail.attention[i][j]), `pattern ${i},${j}: ${w} vs ${api.detail.attention[i][j]}`);
    assert(near(api.detail.delta, d.grid[best[0]][best[1]], 1e-5), 'detail delta = grid cell');
    const drawn = await page.$$eval('.abl-top-ablated rect.bar', (bs) => bs.map((b) => Number(b.dataset.v)));
    assert(drawn.length === api.detail.top.length, 'ablated predictions drawn');
    drawn.forEach((p, k) => assert(near(p, api.detail.top[k].prob), `ablated prediction ${k}: ${p} vs ${api.detail.top[k].prob}`));
    const clean = await page.$$eval('.abl-top-clean rect.bar', (bs) => bs.map((b) => Number(b.dataset.v)));
    clean.forEach((p, k) => assert(near(p, api.top[k].prob), `clean prediction ${k}`));
    await page.mouse.move(1350, 890);
    await page.locator('#ablate').screenshot({ path: path.join(SHOTS, 'ablate.png') });
  });

  await test('which heads matter: a target of several tokens is refused with the API\'s message', async () => {
    const keep = await fieldVal('abl-target');
    await page.fill('#abl-target', 'zzqqxxjj');
    await page.click('#abl-run');
    await page.waitForFunction(() => !document.querySelector('#abl-error').hidden);
    const msg = await page.$eval('#abl-error', (e) => e.textContent);
    assert(msg.includes('tokens'), msg);
    await page.fill('#abl-target', keep);
    // the browser logs the refused request (400) as a console error: that one was wanted
    for (let k = pageErrors.length - 1; k >= 0; k--) if (pageErrors[k].includes('status of 400')) pageErrors.splice(k, 1);
  });

  await test('patching: both maps are the API\'s', async () => {
    await page.click('#pch-run');
    await page.waitForFunction(() => window.qkv.patching.data && document.querySelectorAll('.pch-pos').length > 0);
    const b = { source: await fieldVal('pch-source'), text: await fieldVal('pch-text') };
    const t = await fieldVal('pch-target'), v = await fieldVal('pch-vs');
    if (t) b.target = tokenField(t);
    if (v) b.vs = tokenField(v);
    const api = await post('/api/patch', b);
    const hs = await drawnGrid('pch-head'), ps = await drawnGrid('pch-pos');
    assert(hs.length === api.n_layer * api.n_head && ps.length === api.n_layer * api.n_tokens, 'map sizes');
    for (const [l, h, x] of hs) assert(x === null ? api.head_restored[l][h] === null : near(x, api.head_restored[l][h]), `head ${l}.${h}`);
    for (const [l, i, x] of ps) assert(x === null ? api.pos_restored[l][i] === null : near(x, api.pos_restored[l][i]), `position ${l},${i}`);
    await page.mouse.move(1350, 890);
    await page.locator('#patching').screenshot({ path: path.join(SHOTS, 'patching.png') });
  });

  await test('logit lens: every drawn cell is the API\'s top token and probability', async () => {
    await page.click('#ll-run');
    await page.waitForFunction(() => window.qkv.logitLens.data && document.querySelectorAll('.ll-cell').length > 0);
    const b = { text: await fieldVal('ll-text'), top_k: 3 };
    const t = await fieldVal('ll-target');
    if (t) b.target = tokenField(t);
    const api = await post('/api/lens', b);
    const cells = await page.$$eval('.ll-cell', (cs) => cs.map((c) => [Number(c.dataset.state), Number(c.dataset.pos), Number(c.dataset.id), Number(c.dataset.p), c.dataset.tp === undefined ? null : Number(c.dataset.tp)]));
    assert(cells.length === api.states.length * api.n_tokens, `${cells.length} cells`);
    for (const [s, i, id, p, tp] of cells) {
      const k = api.positions.indexOf(i), top = api.top[s][k][0];
      assert(id === top.id && near(p, top.prob), `state ${s} position ${i}: ${id} ${p} vs ${top.id} ${top.prob}`);
      if (api.target) assert(near(tp, api.target_probs[s][k]), `P(target) at ${s},${i}`);
    }
    await page.mouse.move(1350, 890);
    await page.locator('#logit-lens').screenshot({ path: path.join(SHOTS, 'logit-lens.png') });
    assert(pageErrors.length === 0, 'page errors: ' + pageErrors.join('; '));
  });

  await test('generate: tokens stream in, the scrubbed step draws the API\'s attention', async () => {
    await page.fill('#gen-prompt', 'The keys to the cabinet');
    await page.fill('#gen-max', '8');
    await page.fill('#gen-temp', '0');
    await page.click('#gen-run');
    await page.waitForFunction(() => window.qkv.generation.done && document.querySelectorAll('#gen-tokens .gen-key').length > 0);
    const g = await page.evaluate(() => ({ n: window.qkv.generation.prompt.ids.length, ids: window.qkv.generation.steps.map((s) => s.id) }));
    // the same request, read whole: greedy, so the same tokens and rows
    const r = await fetch(base + '/api/generate', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'The keys to the cabinet', max_tokens: 8, temperature: 0, seed: 1 }) });
    assert(r.headers.get('content-type').startsWith('application/x-ndjson'));
    const lines = (await r.text()).trim().split('\n').map((l) => JSON.parse(l)), done = lines[lines.length - 1];
    const ids = lines.slice(1, -1).map((x) => x.id);
    assert(JSON.stringify(ids) === JSON.stringify(g.ids), `tokens ${ids} vs ${g.ids}`);
    const T = ids.length, t = Math.min(3, T - 1);
    await page.$eval('#gen-scrub', (e, v) => { e.value = String(v); e.dispatchEvent(new Event('input')); }, t);
    for (const key of ['1', 'avg']) {
      await page.selectOption('#gen-head', key);
      const drawn = await page.$$eval('#gen-tokens .gen-key', (cs) => cs.map((c) => [Number(c.dataset.i), Number(c.dataset.w)]));
      assert(drawn.length === g.n + t, `${drawn.length} keys at step ${t}`);
      const rows = done.attention[t];
      for (const [i, w] of drawn) {
        const want = key === 'avg' ? rows.reduce((a, row) => a + row[i], 0) / rows.length : rows[Number(key)][i];
        assert(near(w, want, 1e-6), `step ${t} head ${key} key ${i}: ${w} vs ${want}`);
      }
    }
    const st = await page.$eval('#gen-status', (e) => e.textContent);
    assert(st.includes('KB streamed') && st.includes('numbers'), st);
    await page.mouse.move(1350, 890);
    await page.locator('#generate').screenshot({ path: path.join(SHOTS, 'generate.png') });
  });

  await test('generate: Stop cancels mid-stream and the page keeps working', async () => {
    await page.fill('#gen-max', '256');
    await page.fill('#gen-temp', '1');
    await page.click('#gen-run');
    // at once (no waiting for it to be enabled): on a quiet machine a small model's 256 tokens take ~0.1 s
    await page.evaluate(() => document.querySelector('#gen-stop').click());
    // stopped, or (if the engine was quicker than the click) finished: either way a clean state
    await page.waitForFunction(() => /stopped|tokens \(/.test(document.querySelector('#gen-status').textContent));
    assert(await page.$eval('#gen-stop', (e) => e.disabled), 'Stop is disabled again');
    const j = await (await fetch(base + '/api/model')).json();
    assert(j.n_layer >= 1, 'the server still answers');
    assert(pageErrors.length === 0, 'page errors: ' + pageErrors.join('; '));
  });
} finally {
  await browser.close();
  cleanup();
}
finish();
