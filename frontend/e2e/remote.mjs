// Browser test of remote capture (#22) through the whole path: an operator asks on the Captures page → the
// backend → the real agent (its command line, long poll) → the control file → a real client session in its own
// process (tests/agent/remote_client.py: its capture controller switches the native tracing engine, whose CUPTI
// side — the only stand-in, no GPU here — replays a recorded H100 activity buffer while the window is open) →
// its capture_request answer, kernels and capture_window record → the agent's ingest → the
// backend → the page's per-session status, and the link to the session's window on the Kernels timeline, where
// the capture line and bands say what was recorded. Its own backend, on DuckDB, on PostgreSQL when
// GPUFL_TEST_PG_DSN is set, and with the agent shipping over Kafka (the control topic) when
// GPUFL_TEST_KAFKA_BROKERS is set, one after the other. Run alone: `node e2e/remote.mjs` (after a build).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { apiJson, createKey, launchBrowser, log, PYTHON, REPO, startBackend } from './harness.mjs';
import { T, waitPainted } from './steps.mjs';

const CLIENT = join(REPO, 'tests', 'agent', 'remote_client.py');

function firstLine(proc) {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout });
    rl.once('line', (l) => resolve(l));
    proc.once('exit', (c) => reject(new Error(`client exited with ${c}`)));
  });
}

async function until(what, check, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function signIn(page, url, key) {
  await page.goto(url + '/');
  const out = page.locator('header button:has-text("Sign out")');
  if (await out.count()) await out.click();
  await page.fill('#apikey', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid="sessions"], .state.empty', { timeout: T });
}

/** A fresh schema on the test PostgreSQL (so the store starts empty), as a DSN whose search_path is it. */
export function pgSchema(verb, schema) {
  const dsn = process.env.GPUFL_TEST_PG_DSN;
  const sql = verb === 'create' ? `CREATE SCHEMA ${schema}` : `DROP SCHEMA ${schema} CASCADE`;
  const r = spawnSync(PYTHON, ['-c', 'import psycopg, sys; psycopg.connect(sys.argv[1], autocommit=True).execute(sys.argv[2])', dsn, sql], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${sql} failed`);
  return `${dsn}${dsn.includes('?') ? '&' : '?'}options=-csearch_path%3D${schema}`;
}

/** One store (and transport: the agent ships over HTTP, or over Kafka with `kafka` brokers): the failures. */
async function runOn(store, page, shot, kafka = null) {
  const schema = `e2e_${randomBytes(6).toString('hex')}`;
  const prefix = `e2e${randomBytes(4).toString('hex')}`;
  const env = store === 'postgresql' ? { GPUFL_DATABASE: pgSchema('create', schema) } : {};
  if (kafka) Object.assign(env, { GPUFL_KAFKA_BROKERS: kafka, GPUFL_KAFKA_TOPIC_PREFIX: prefix });
  const over = kafka ? `${store} over Kafka` : store;
  const work = mkdtempSync(join(tmpdir(), 'gpufl-e2e-remote-'));
  const logs = join(work, 'logs');
  const stop = join(work, 'stop');
  let backend, agent, client;
  try {
    backend = await startBackend(env);
    const operator = await createKey(backend, 'operator', 'e2e-operator');
    const ingest = await createKey(backend, 'ingest', 'e2e-agent');
    const app = `e2e_remote_${store}`;
    mkdirSync(logs);
    client = spawn(PYTHON, [CLIENT, logs, app, stop], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env } });
    const [, sid, mode] = (await firstLine(client)).split(' ');
    const agentLog = join(work, 'agent.log');
    writeFileSync(agentLog, '');
    const ships = kafka ? ['--type=kafka', `--brokers=${kafka}`, `--topic-prefix=${prefix}`] : ['--type=http', `--url=${backend.url}/api/v1/events/`, `--token=${ingest}`];
    agent = spawn(PYTHON, ['-m', 'gpufl.agent.cli', `--folder=${logs}`, ...ships, '--poll-interval=0.1'], {
      stdio: ['ignore', 'ignore', openSync(agentLog, 'a')],
    });
    await until("the agent's remote-capture poller", () => readFileSync(agentLog, 'utf8').includes('remote capture: handing'));

    await signIn(page, backend.url, operator);
    await page.click('header a:has-text("Captures")');
    await page.waitForSelector('form.capture-form', { timeout: T });
    await page.fill('input[name=app]', app);
    await page.fill('input[name=seconds]', '3'); // the replayed buffer's kernels span 2.9 s
    await shot(`remote-${over.replace(/ /g, '-')}-1-form`);
    await page.click('form.capture-form button[type=submit]');
    const article = page.locator('article.capture-request').first();
    await article.waitFor({ timeout: T });
    const rid = await article.getAttribute('data-capture');
    // the page follows the request until its session is done
    const row = page.locator(`article[data-capture="${rid}"] tr[data-session="${sid}"]`);
    await until('the session done on the page', async () => (await row.count()) && (await row.getAttribute('data-status')) === 'done');
    const api = await apiJson(backend, operator, `/captures/${rid}`);
    assert.equal(api.status, 'done');
    const s = api.sessions.find((x) => x.session_id === sid);
    assert.equal(s.answer.outcome, 'opened');
    assert.equal(s.window.trigger.request_id, rid);
    assert.deepEqual(s.window.engines, ['tracing']);
    assert.equal(await article.locator('.capture-status').getAttribute('data-status'), 'done');
    await shot(`remote-${over.replace(/ /g, '-')}-2-done`);
    // its window on the Kernels timeline
    await row.locator('button:has-text("Open on the timeline")').click();
    await page.waitForURL((u) => u.hash.startsWith(`#/s/${sid}/kernels`), { timeout: T });
    const q = new URLSearchParams(new URL(page.url()).hash.split('?')[1]);
    const origin = BigInt(s.start_ns);
    assert.equal(Number(q.get('t0')), Number(BigInt(s.window.start_ns) - origin));
    assert.equal(Number(q.get('t1')), Number(BigInt(s.window.end_ns) - origin));
    await waitPainted(page);
    await page.waitForSelector('[data-testid="capture-line"]', { timeout: T });
    const line = await page.textContent('[data-testid="capture-line"]');
    assert.match(line, /on-demand · 1 window/, line);
    if (mode === 'replaying') {
      // the kernels CUPTI's stand-in delivered while the window was open (a recorded H100 buffer): all inside it
      const detail = await until('the kernels', async () => {
        const d = await apiJson(backend, operator, `/sessions/${sid}`);
        return d.totals.kernels === 739 ? d : null;
      });
      const ks = (await apiJson(backend, operator, `/sessions/${sid}/kernels?limit=1000`)).items;
      assert.equal(ks.length, detail.totals.kernels);
      assert.ok(ks.every((k) => BigInt(k.start_ns) >= BigInt(s.window.start_ns) && BigInt(k.end_ns) <= BigInt(s.window.end_ns)));
      await page.reload();
      await waitPainted(page);
      await page.waitForSelector('text=739 kernels', { timeout: T });
    } else log('remote capture: the client records no kernels (gpufl.client._native not built here)');
    await shot(`remote-${over.replace(/ /g, '-')}-3-window`);
    log(`PASS remote capture on ${over}: request ${rid} → agent → ${sid} opened and closed its window; the page says done and links it`);
    return 0;
  } catch (e) {
    log(`FAIL remote capture on ${over}: ${e?.stack ?? e}`);
    await shot(`FAIL-remote-${over.replace(/ /g, '-')}`).catch(() => {});
    return 1;
  } finally {
    writeFileSync(stop, '');
    if (client && client.exitCode === null) await new Promise((r) => client.once('exit', r));
    agent?.kill('SIGTERM');
    if (agent && agent.exitCode === null) await new Promise((r) => agent.once('exit', r));
    await backend?.stop();
    if (store === 'postgresql') pgSchema('drop', schema);
    rmSync(work, { recursive: true, force: true });
  }
}

export async function runRemoteTests({ page, shot }) {
  let failed = await runOn('duckdb', page, shot);
  if (process.env.GPUFL_TEST_PG_DSN) failed += await runOn('postgresql', page, shot);
  else if (process.env.CI === 'true') {
    log('FAIL remote capture on postgresql: GPUFL_TEST_PG_DSN is not set in CI');
    failed++;
  } else log('SKIP remote capture on postgresql: GPUFL_TEST_PG_DSN not set');
  const kafka = process.env.GPUFL_TEST_KAFKA_BROKERS;
  if (kafka) failed += await runOn('duckdb', page, shot, kafka);
  else if (process.env.CI === 'true') {
    log('FAIL remote capture over Kafka: GPUFL_TEST_KAFKA_BROKERS is not set in CI');
    failed++;
  } else log('SKIP remote capture over Kafka: GPUFL_TEST_KAFKA_BROKERS not set');
  return failed;
}

if (process.argv[1] && process.argv[1].endsWith('remote.mjs')) {
  const art = join(REPO, 'test-artifacts', 'e2e');
  mkdirSync(art, { recursive: true });
  const browser = await launchBrowser();
  const page = await browser.ctx.newPage();
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  let failed = await runRemoteTests({ page, shot: (n) => page.screenshot({ path: join(art, `${n}.png`), fullPage: true }) });
  await browser.close();
  const unexpected = consoleErrors.filter((m) => !/401|403|Unauthorized|Forbidden/.test(m));
  if (unexpected.length) {
    failed++;
    log(`FAIL browser console errors:\n  ${unexpected.join('\n  ')}`);
  }
  process.exit(failed ? 1 : 0);
}
