// Shared by e2e/run.mjs and bench/ui_timeline.mjs: a real gpufl-backend on a free loopback port with a temp
// data dir, capture files loaded into it (through gpufl-agent, or POSTed as NDJSON when the agent is absent),
// a read key, and Debian's headless Chromium driven by playwright-core.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

export const FRONTEND = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = resolve(FRONTEND, '..');
export const PYTHON = process.env.GPUFL_PYTHON ?? resolve(FRONTEND, '../.venv/bin/python');
export const CHROMIUM = process.env.GPUFL_CHROMIUM ?? '/usr/bin/chromium';

export function log(...a) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
}

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Build the UI into src/gpufl/backend/static (what the backend serves at /). */
export function buildUi() {
  if (process.env.GPUFL_E2E_SKIP_BUILD) return;
  const r = spawnSync(process.execPath, [resolve(FRONTEND, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], {
    cwd: FRONTEND,
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error('vite build failed');
}

/** env: extra settings for this backend (GPUFL_* variables, e.g. the archive's in e2e/archive.mjs). */
/** `dataDir`: serve that store (kept at stop), e.g. a tiled session built by an earlier bench run. */
export async function startBackend(env = {}, { dataDir: keep = null } = {}) {
  const port = await freePort();
  const dataDir = keep ?? mkdtempSync(join(tmpdir(), 'gpufl-e2e-'));
  const adminToken = 'e2e-admin-' + randomBytes(12).toString('hex');
  const proc = spawn(PYTHON, ['-m', 'gpufl.backend.cli', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir, '--log-level', 'warning'], {
    env: { ...process.env, ...env, GPUFL_ADMIN_TOKEN: adminToken },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gpufl-backend exited with ${proc.exitCode}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error('gpufl-backend did not become healthy in 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  log(`backend up at ${url} (data dir ${dataDir})`);
  return {
    url,
    api: `${url}/api/v1`,
    adminToken,
    dataDir,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => {
          const t = setTimeout(() => {
            proc.kill('SIGKILL');
            r();
          }, 10_000);
          proc.once('exit', () => {
            clearTimeout(t);
            r();
          });
        });
      }
      if (!keep) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function apiJson(backend, token, path, init = {}) {
  const r = await fetch(`${backend.api}${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...(init.headers ?? {}) },
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${r.status} ${text.slice(0, 300)}`);
  return text ? parseExact(text) : null;
}

/** JSON.parse that returns integers of 16+ digits as strings (exact int64 ns; use BigInt() on them). */
export function parseExact(text) {
  return JSON.parse(text.replace(/([:[,]\s*)(-?\d{16,})(?=\s*[,\]}])/g, '$1"$2"'));
}

/** Capture folders: GPUFL_E2E_CAPTURES (colon-separated) or every folder under examples/captures/. */
export function captureDirs() {
  if (process.env.GPUFL_E2E_CAPTURES) return process.env.GPUFL_E2E_CAPTURES.split(':').filter(Boolean);
  const root = resolve(REPO, 'examples/captures');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((n) => join(root, n))
    .filter((p) => statSync(p).isDirectory() && segmentFiles(p).length > 0);
}

const SEGMENT = /^[^.]+\.[^.]+\.[^.]+\.(device|scope|system)\.\d{6,}\.log(\.gz)?$/;

export function segmentFiles(dir) {
  return readdirSync(dir)
    .filter((n) => SEGMENT.test(n))
    .sort()
    .map((n) => join(dir, n));
}

function agentAvailable() {
  if (process.env.GPUFL_E2E_LOADER === 'post') return false;
  const r = spawnSync(PYTHON, ['-c', 'import gpufl.agent.cli'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Load capture folders into the backend: the agent when available (the real path), else POST NDJSON. */
export async function loadCaptures(backend, dirs) {
  const useAgent = agentAvailable() && dirs.every((d) => !segmentFiles(d).some((f) => f.endsWith('.gz')));
  for (const dir of dirs) {
    const t0 = Date.now();
    if (useAgent) {
      const cursorDir = mkdtempSync(join(tmpdir(), 'gpufl-agent-'));
      const r = spawnSync(
        PYTHON,
        ['-m', 'gpufl.agent.cli', '--folder', dir, '--type', 'http', '--url', `${backend.api}/events/`, '--exit-when-idle', '--cursor-file', join(cursorDir, 'cursor')],
        // The token in the environment, not the arguments (visible to every local user in ps).
        { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000, env: { ...process.env, GPUFL_AGENT_TOKEN: backend.adminToken } },
      );
      rmSync(cursorDir, { recursive: true, force: true });
      if (r.status !== 0) throw new Error(`gpufl-agent exited with ${r.status} for ${dir}`);
      log(`loaded ${basename(dir)} with gpufl-agent in ${Date.now() - t0} ms`);
    } else {
      let n = 0;
      for (const f of segmentFiles(dir)) n += await postSegment(backend, f);
      log(`loaded ${basename(dir)} by POST (${n} records) in ${Date.now() - t0} ms`);
    }
  }
}

/** POST one segment file's lines as NDJSON to /events/{stream} (stream = 4th dot-separated part of the name). */
export async function postSegment(backend, file, transform) {
  const stream = basename(file).split('.')[3];
  let text = file.endsWith('.gz') ? gunzipSync(readFileSync(file)).toString('utf8') : readFileSync(file, 'utf8');
  let lines = text.split('\n').filter((l) => l.trim());
  text = '';
  if (transform) lines = lines.map(transform);
  let total = 0;
  for (let i = 0; i < lines.length; i += 20000) {
    const body = lines.slice(i, i + 20000).join('\n') + '\n';
    const r = await fetch(`${backend.api}/events/${stream}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${backend.adminToken}`, 'Content-Type': 'application/x-ndjson' },
      body,
    });
    const res = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`POST /events/${stream} (${basename(file)}): ${r.status} ${JSON.stringify(res).slice(0, 300)}`);
    if (res.rejected?.length) throw new Error(`${basename(file)}: ${res.rejected.length} records rejected, first: ${JSON.stringify(res.rejected[0])}`);
    total += res.stored + res.duplicates;
  }
  return total;
}

export async function createKey(backend, role, name) {
  const k = await apiJson(backend, backend.adminToken, '/keys', { method: 'POST', body: JSON.stringify({ role, name }) });
  return k.token;
}

export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  const userDataDir = mkdtempSync(join(tmpdir(), 'gpufl-chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1600, height: 1000 },
  });
  return {
    ctx,
    async close() {
      await ctx.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** A capture folder's device-stream records, int64 time fields exact (BigInt). */
export function deviceRecords(dir) {
  const out = [];
  for (const f of segmentFiles(dir).filter((f) => basename(f).split('.')[3] === 'device')) {
    const raw = f.endsWith('.gz') ? gunzipSync(readFileSync(f)).toString('utf8') : readFileSync(f, 'utf8');
    for (const line of raw.split('\n')) if (line.trim()) out.push(parseExactLine(line));
  }
  return out;
}

// Records as objects with int64 fields kept exact (BigInt) for the *_ns fields we shift.
const NS_FIELDS = ['start_ns', 'end_ns', 'api_start_ns'];
function parseExactLine(line) {
  const o = JSON.parse(line.replace(/("(?:start_ns|end_ns|api_start_ns|ts_ns|measured_at_ns|first_ns|last_ns)"\s*:\s*)(-?\d+)/g, '$1"$2"'));
  for (const k of ['start_ns', 'end_ns', 'api_start_ns', 'ts_ns', 'first_ns', 'last_ns']) if (typeof o[k] === 'string') o[k] = BigInt(o[k]);
  if (o.clock && typeof o.clock.measured_at_ns === 'string') o.clock.measured_at_ns = BigInt(o.clock.measured_at_ns);
  return o;
}
function toLine(o) {
  return JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? `__BIG__${v}__` : v)).replace(/"__BIG__(-?\d+)__"/g, '$1');
}

/**
 * A session made by tiling a real capture: its device stream's session_start and dicts once, then its
 * kernel/memcpy/memset records repeated enough times for ~`target` kernels, every timestamp shifted by
 * k × (capture span + 1 ms) and seq renumbered, then one session_end. Its app is the capture's with "-tiled"
 * appended, so it is labelled as such wherever it is listed. `tilePlan` works out the session (nothing is
 * sent); `tiledLines` yields its NDJSON lines; `buildTiledSession` POSTs them. bench/tile_session.py is the
 * same generator in Python (byte for byte: tests/test_tile_session.py compares them through
 * bench/tile_lines.mjs), for sessions whose ingest from here would take most of an hour.
 */
/** `overlay`: the copies are not shifted but laid over each other (same timestamps, seq renumbered), so every
 * kernel has twins starting at the same nanosecond (session id and app say "-overlaid"). */
export function tilePlan(capture, target, { overlay = false } = {}) {
  const recs = deviceRecords(capture);
  const start = recs.find((r) => r.type === 'session_start');
  if (!start) throw new Error(`${capture}: no session_start in the device stream`);
  const dicts = recs.filter((r) => r.type === 'dict');
  const work = recs.filter((r) => r.type === 'kernel' || r.type === 'memcpy' || r.type === 'memset');
  const kernelsPer = work.filter((r) => r.type === 'kernel').length;
  if (!kernelsPer) throw new Error(`${capture}: no kernels`);
  let first = work[0].start_ns;
  let last = work[0].end_ns;
  for (const r of work) {
    if (r.start_ns < first) first = r.start_ns;
    if (r.end_ns > last) last = r.end_ns;
  }
  const period = overlay ? 0n : last - first + 1_000_000n;
  // The densest 20 ms of the capture (offset from `first`), where the zoomed-in pans are placed.
  const starts = work.filter((r) => r.type === 'kernel').map((r) => Number(r.start_ns - first)).sort((a, b) => a - b);
  let dense = 0;
  let bestN = 0;
  for (let i = 0, j = 0; i < starts.length; i++) {
    while (starts[i] - starts[j] > 20e6) j++;
    if (i - j + 1 > bestN) {
      bestN = i - j + 1;
      dense = starts[j];
    }
  }
  const copies = Math.ceil(target / kernelsPer);
  const tag = overlay ? 'overlaid' : 'tiled';
  const sid = `${String(start.session_id).slice(0, 40)}-${tag}${copies}`;
  const base = start.start_ns < first ? start.start_ns : first;
  // relative to the session start: the densest 20 ms of the middle copy
  const denseT = Number(first - base) + Number(period) * Math.floor(copies / 2) + dense;
  const end = last + period * BigInt(copies - 1);
  // records: every line tiledLines yields (session_start, dicts, the copies, session_end)
  const made = { sid, kernels: kernelsPer * copies, copies, spanNs: Number(end - base), denseT, densePerS: bestN, records: 2 + dicts.length + work.length * copies };
  return { made, start, dicts, work, period, base, end, tag, dense, bestN, kernelsPer };
}

/** The tiled session's NDJSON lines (no newline), in the order they are sent: generated as they are consumed. */
export function* tiledLines(plan) {
  const { made, start, dicts, work, period, base, end, tag } = plan;
  const sid = made.sid;
  let seq = 0;
  const stamp = (o) => ({ ...o, session_id: sid, seq: seq++ });
  yield toLine(stamp({ ...start, app: `${start.app}-${tag}`, start_ns: base }));
  for (const d of dicts) yield toLine(stamp(d));
  for (let c = 0; c < made.copies; c++) {
    const shift = period * BigInt(c);
    for (const r of work) {
      const o = { ...r };
      for (const k of NS_FIELDS) if (typeof o[k] === 'bigint') o[k] += shift;
      yield toLine(stamp(o));
    }
  }
  yield toLine({ type: 'session_end', session_id: sid, stream: 'device', seq, end_ns: end, records: seq + 1 });
}

/** Tile `capture` to ~`target` kernels (tilePlan) and POST the session to the backend, unless it is stored already. */
export async function buildTiledSession(backend, capture, target, { overlay = false } = {}) {
  const plan = tilePlan(capture, target, { overlay });
  const { made } = plan;
  const sid = made.sid;
  const stored = await fetch(`${backend.api}/sessions/${encodeURIComponent(sid)}`, { headers: { Authorization: `Bearer ${backend.adminToken}` } });
  if (stored.ok) {
    log(`session ${sid} is already in the store: not ingested again`);
    return made;
  }
  log(`tiling ${basename(capture)}: ${plan.kernelsPer} kernels × ${made.copies} copies, period ${Number(plan.period) / 1e6} ms → session ${sid}`);
  let batch = [];
  let ingested = 0;
  const flush = async () => {
    if (!batch.length) return;
    const body = batch.join('\n') + '\n';
    // A 503 (the ingest memory budget is held) or a connection the backend closed early: wait and send the
    // batch again, as the agent does (duplicates are counted, not stored twice).
    let r;
    for (let attempt = 1; ; attempt++) {
      try {
        r = await fetch(`${backend.api}/events/device`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${backend.adminToken}`, 'Content-Type': 'application/x-ndjson' },
          body,
        });
        if (r.status !== 503 || attempt >= 8) break;
        log(`ingest: 503, retry ${attempt} after ${r.headers.get('retry-after') ?? 1} s`);
        await r.text();
      } catch (e) {
        if (attempt >= 8) throw e;
        log(`ingest: ${e.cause?.code ?? e.message}, retry ${attempt}`);
      }
      await new Promise((res) => setTimeout(res, 1000 * attempt));
    }
    const res = await r.json();
    if (!r.ok || res.rejected?.length) throw new Error(`ingest: ${r.status} ${JSON.stringify(res).slice(0, 300)}`);
    ingested += res.stored + res.duplicates;
    batch = [];
  };
  const t0 = Date.now();
  for (const line of tiledLines(plan)) {
    batch.push(line);
    if (batch.length >= 20000) await flush();
  }
  await flush();
  log(`ingested ${ingested} records in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  log(`densest 20 ms of the capture: ${plan.bestN} kernels at +${(plan.dense / 1e9).toFixed(3)} s; pans zoom in at ${(made.denseT / 1e9).toFixed(3)} s`);
  return made;
}
