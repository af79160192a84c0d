/* api.js -- the JSON API client: every number drawn comes from here. */

/* ---------------------------------------------------------------- API */
export async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  let j = null;
  try { j = await r.json(); } catch (e) { throw new Error(`${path}: HTTP ${r.status}, not JSON`); }
  if (!r.ok) { const e = new Error(j && j.error ? j.error : `HTTP ${r.status}`); e.status = r.status; throw e; }
  return j;
}
