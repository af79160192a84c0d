/* main.js -- the qkv playground's entry point: wiring of the controls, start-up, window.qkv
 * for the tests. Every number drawn comes from the C engine through the JSON API
 * (docs/HTTP.md), except the focus dial's labelled client-side re-softmax (state.js). Token
 * text is untrusted: it only ever goes through textContent.
 *
 * One ES module per section, so each view's file is found from its name: api, state (S, R,
 * the URL), colours, util, data (requests), render, lens, heads (tags, the sharpest-heads
 * lens), grid (overview), bars, mechanism, mask, predict, compare, quiz, export, and the
 * interventions: ablate (which heads matter), patch (patching maps), logitlens, grids
 * (their signed heatmaps), generate (streamed generation, scrubbing through each step's
 * attention). */
import { AB, runAblate } from './ablate.js';
import { api } from './api.js';
import { runCompare } from './compare.js';
import { fetchBase, fetchDetail, scheduleAlt, scheduleBase } from './data.js';
import { download, exportData, exportName, exportPNG, exportSVG } from './export.js';
import { GE, renderGenerate, runGenerate, stopGenerate } from './generate.js';
import { autoLens, sharpness } from './heads.js';
import { LL, runLens } from './logitlens.js';
import { renderLens } from './lens.js';
import { renderMech } from './mechanism.js';
import { PA, runPatch } from './patch.js';
import { initExercise, revealExercise } from './predict.js';
import { checkQuiz, renderQuiz } from './quiz.js';
import { renderAll, renderLegend, renderModelInfo, scheduleRender } from './render.js';
import { R, S, defaultHeads, panelWeights, readHash, source, syncControls, writeHash } from './state.js';
import { $ } from './util.js';

/* ---------------------------------------------------------------- wiring */
export function wire() {
  $('text').addEventListener('input', () => { S.text = $('text').value; scheduleBase(); });
  $('preset').addEventListener('change', () => { if ($('preset').value) { S.text = $('preset').value; S.q = -1; $('text').value = S.text; fetchBase(); } $('preset').value = ''; });
  $('layer').addEventListener('change', () => {
    S.auto = false;
    S.layer = Number($('layer').value);
    if (R.base && R.base.scores && !R.base.scores[S.layer] && !R.base._partial) { fetchBase(); return; }
    renderAll(); fetchDetail();
  });
  $('temp').addEventListener('input', () => {
    S.T = Math.round(Math.pow(10, Number($('temp').value)) * 100) / 100;
    $('temp-val').textContent = `T = ${S.T.toFixed(2)}`;
    scheduleRender(); scheduleAlt();
  });
  for (const r of document.querySelectorAll('input[name=tmode]')) r.addEventListener('change', () => { S.tmode = r.value; renderAll(); scheduleAlt(); });
  for (const r of document.querySelectorAll('input[name=dir]')) r.addEventListener('change', () => { S.dir = r.value; renderLens(); writeHash(); });
  $('causal').addEventListener('change', () => { S.causal = $('causal').checked; renderAll(); scheduleAlt(); });
  $('sink').addEventListener('change', () => { S.sink = $('sink').checked; renderAll(); });
  $('cscale').addEventListener('change', () => { S.sqrt = $('cscale').value === 'sqrt'; renderLegend(); renderAll(); if (R.exData && $('ex-result').childNodes.length) revealExercise(); });
  $('unscaled').addEventListener('change', () => { S.unscaled = $('unscaled').checked; renderMech(); });
  $('mech-head').addEventListener('change', () => { S.mechHead = Number($('mech-head').value); renderMech(); fetchDetail(); });
  $('lens-default').addEventListener('click', () => { S.auto = false; S.heads = defaultHeads(); S.focus = 'avg'; renderAll(); fetchDetail(); });
  $('lens-auto').addEventListener('click', () => { S.auto = true; autoLens(); renderAll(); fetchDetail(); });
  $('heads-all').addEventListener('click', () => { S.auto = false; S.heads = [...Array(R.model.n_head).keys()]; S.focus = 'avg'; renderAll(); fetchDetail(); });
  $('export-svg').addEventListener('click', () => download(exportName('svg'), new Blob([exportSVG()], { type: 'image/svg+xml' })));
  $('export-png').addEventListener('click', exportPNG);
  $('export-json').addEventListener('click', () => download(exportName('json'), new Blob([exportData()], { type: 'application/json' })));
  $('copy-link').addEventListener('click', async () => {
    writeHash();
    try { await navigator.clipboard.writeText(location.href); $('status').textContent = 'link copied'; }
    catch (e) { $('status').textContent = 'copy this link from the address bar'; }
  });
  $('ex-reveal').addEventListener('click', revealExercise);
  $('cmp-run').addEventListener('click', runCompare);
  $('quiz-check').addEventListener('click', checkQuiz);
  $('abl-run').addEventListener('click', runAblate);
  $('pch-run').addEventListener('click', runPatch);
  $('ll-run').addEventListener('click', runLens);
  $('gen-run').addEventListener('click', runGenerate);
  $('gen-stop').addEventListener('click', stopGenerate);
  $('gen-scrub').addEventListener('input', () => { GE.step = Number($('gen-scrub').value); renderGenerate(); });
  $('gen-head').addEventListener('change', renderGenerate);
  $('gen-prompt').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') runGenerate(); });
  for (const [ids, run] of [[['abl-text', 'abl-target', 'abl-vs'], runAblate], [['pch-source', 'pch-text', 'pch-target', 'pch-vs'], runPatch], [['ll-text', 'll-target'], runLens]])
    for (const id of ids) $(id).addEventListener('keydown', (ev) => { if (ev.key === 'Enter') run(); });
  window.addEventListener('hashchange', () => { /* links pasted into the same tab */
    const before = S.text; readHash(); syncControls(); if (S.text !== before) fetchBase(); else renderAll();
  });
}

export async function main() {
  renderLegend(); renderQuiz();
  try { R.model = await api('/api/model'); } catch (e) { $('model-info').textContent = 'cannot reach the server: ' + e.message; return; }
  try { R.headInfo = await api('/api/heads'); } catch (e) { R.headInfo = null; /* tags are optional */ }
  renderModelInfo();
  S.text = $('text').value;
  S.heads = defaultHeads();
  S.layer = 0;
  readHash();
  syncControls();
  renderLegend();
  wire();
  await fetchBase();
  initExercise();
  runCompare();
}
window.qkv = { generation: GE, ablation: AB, patching: PA, logitLens: LL, state: S, get headInfo() { return R.headInfo; }, sharpness, get base() { return R.base; }, get alt() { return R.alt; }, get detail() { return R.detail; }, exportSVG, exportData, panelWeights, source };
main();
