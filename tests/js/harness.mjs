// harness.mjs -- what the browser tests share: the test/assert helpers and counters, a model
// (QKV_TEST_MODEL, else the built-in model, else a small random checkpoint), a `qkv serve` on a
// free port, Debian's chromium through playwright-core, and one page that records script errors.
// Importing it starts all of that (top-level await); call cleanup() and finish() at the end.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.QKV_BIN || path.join(ROOT, 'build', 'qkv');
const SHOTS = path.join(ROOT, process.env.QKV_BUILD ? path.relative(ROOT, process.env.QKV_BUILD) : 'build', 'screenshots');
const CHROMIUM = process.env.QKV_CHROMIUM || '/usr/bin/chromium';
let passed = 0, failed = 0, skipped = 0;

function finish(code) {
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(code ?? (failed ? 1 : 0));
}
function skipAll(why, n = 1) { console.log(`skip  playground: ${why}`); skipped += n; finish(0); }

async function test(name, fn) {
  try { await fn(); passed++; console.log(`ok    ${name}`); }
  catch (e) { failed++; console.log(`FAIL  ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join('\n      ') : e}`); }
}
function assert(c, msg) { if (!c) throw new Error(msg || 'assertion failed'); }
function close(a, b, tol, what) { if (!(Math.abs(a - b) <= tol)) throw new Error(`${what}: ${a} vs ${b} (tol ${tol})`); }

// ---- prerequisites
if (!existsSync(CHROMIUM)) skipAll(`no chromium at ${CHROMIUM} (tools/setup.sh --test installs it)`);
if (!existsSync(BIN)) skipAll(`no qkv binary at ${BIN}`);
let chromium;
try { ({ chromium } = await import(path.join(ROOT, 'tests', 'node_modules', 'playwright-core', 'index.mjs'))); }
catch (e) { skipAll('playwright-core is not installed in tests/node_modules (tools/setup.sh --test)'); }

// ---- a model: QKV_TEST_MODEL, else the built-in model, else a small random checkpoint
let modelDir = process.env.QKV_TEST_MODEL, tmp = null;
// the built-in model when it is there (real words make the screenshots worth looking at)
for (const m of ['qkv-lessons', 'qkv-brown']) if (!modelDir && existsSync(path.join(ROOT, 'models', m, 'model.safetensors'))) modelDir = path.join(ROOT, 'models', m);
if (!modelDir) {
  tmp = mkdtempSync(path.join(tmpdir(), 'qkv-js-'));
  modelDir = path.join(tmp, 'model');
  const r = spawnSync('/usr/bin/python3', [path.join(ROOT, 'tests', 'py', 'checkpoint.py'), modelDir,
    '--layers', '2', '--heads', '4', '--embd', '64', '--ctx', '128'], { encoding: 'utf8' });
  if (r.status !== 0) skipAll(`cannot write a test checkpoint (tests/py/checkpoint.py): ${(r.stderr || '').slice(-300)}`);
}

// ---- the server, on a free port
const srv = spawn(BIN, ['serve', '--model', modelDir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
let srvErr = '';
srv.stderr.on('data', (d) => { srvErr += d; });
const base = await new Promise((resolve) => {
  let out = '';
  const t = setTimeout(() => resolve(null), 30000);
  srv.stdout.on('data', (d) => { out += d; const m = out.match(/http:\/\/127\.0\.0\.1:(\d+)\//); if (m) { clearTimeout(t); resolve(`http://127.0.0.1:${m[1]}`); } });
  srv.on('exit', () => { clearTimeout(t); resolve(null); });
});
function cleanup() {
  try { srv.kill('SIGTERM'); } catch (e) { /* gone */ }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
if (!base) { console.log(`FAIL  server did not start: ${srvErr.slice(-500)}`); failed++; cleanup(); finish(1); }

async function post(p, body) {
  const r = await fetch(base + p, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return r.json();
}
function softmax(s, i, T, causal) {
  const n = causal ? i + 1 : s.length, w = new Array(s.length).fill(0);
  let m = -Infinity; for (let j = 0; j < n; j++) m = Math.max(m, s[j] / T);
  let z = 0; for (let j = 0; j < n; j++) { w[j] = Math.exp(s[j] / T - m); z += w[j]; }
  return w.map((x, j) => (j < n ? x / z : 0));
}

mkdirSync(SHOTS, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
const page = await browser.newPage({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1 });
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });

export { ROOT, BIN, SHOTS, CHROMIUM, test, assert, close, finish, skipAll, base, browser, page, pageErrors,
  post, softmax, cleanup, modelDir };
