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
export async function startBackend(env = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'gpufl-e2e-'));
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
      rmSync(dataDir, { recursive: true, force: true });
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
