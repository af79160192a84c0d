/* api.js -- the JSON API client: every number drawn comes from here. */

/* ---------------------------------------------------------------- API */
export async function api(path, body) {
  if (path === '/api/attend') return attend(body);
  const r = await fetch(path, body === undefined ? {} : {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  let j = null;
  try { j = await r.json(); } catch (e) { throw new Error(`${path}: HTTP ${r.status}, not JSON`); }
  if (!r.ok) { const e = new Error(j && j.error ? j.error : `HTTP ${r.status}`); e.status = r.status; throw e; }
  return j;
}

/* POST /api/attend in the binary form (docs/HTTP.md, "Binary form"): the maps come as float32
   (a quarter of the JSON's bytes for long texts, and no number parsing), rebuilt here into the
   nested arrays [L][H][N][N] (null for layers not asked for) the views read. Errors are JSON. */
async function attend(body) {
  const r = await fetch('/api/attend?format=bin', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!(r.headers.get('Content-Type') || '').startsWith('application/octet-stream')) {
    let j = null;
    try { j = await r.json(); } catch (e) { throw new Error(`/api/attend: HTTP ${r.status}, not JSON`); }
    const e = new Error(j && j.error ? j.error : `HTTP ${r.status}`); e.status = r.status; throw e;
  }
  const buf = await r.arrayBuffer();
  const magic = new TextDecoder().decode(new Uint8Array(buf, 0, 8));
  if (magic !== 'QKVATTN1') throw new Error('/api/attend: not the binary form');
  const J = new DataView(buf).getUint32(8, true);
  const d = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 12, J)));
  for (const name of ['attention', 'scores']) {
    const a = d[name];
    if (!a) continue;
    const [, H, N] = a.shape, f = new Float32Array(buf, 12 + J + a.offset, a.bytes / 4);
    const maps = new Array(d.n_layer).fill(null);
    a.layers.forEach((l, k) => {
      maps[l] = [];
      for (let h = 0; h < H; h++) {
        const rows = [];
        for (let i = 0; i < N; i++) { const at = ((k * H + h) * N + i) * N; rows.push(Array.from(f.subarray(at, at + N))); }
        maps[l].push(rows);
      }
    });
    d[name] = maps;
  }
  return d;
}
