// The views whose issues ask for both stores — the System tab's GPU activity from the real GPM capture (#20) and
// the Scopes tab's deep-engine figures from the real deep capture (#19) — again against a backend on PostgreSQL,
// loaded the same way (the agent ships the committed captures). The main run checks them on DuckDB; the expected
// values are read from this backend's API, so the two stores are held to the same page. Needs
// GPUFL_TEST_PG_DSN (CI sets it; elsewhere the run says it skipped). Run alone: `node e2e/stores.mjs` (after a build).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiJson, createKey, launchBrowser, loadCaptures, log, REPO, startBackend } from './harness.mjs';
import { pgSchema, signIn } from './remote.mjs';
import { tests } from './tests.mjs';

/** The captures those views need: the GPM and deep ones, and a session recorded before GPM ("not recorded"). */
const CAPTURES = ['gpu_activity', 'gpt_train', 'deep_truth'];
/** The tests run again on PostgreSQL, by the start of their names. */
const AGAIN = ['System tab on the GPM capture', 'Scopes tab on the deep capture'];

export async function runStoreTests({ page, shot }) {
  if (!process.env.GPUFL_TEST_PG_DSN) {
    if (process.env.CI === 'true') {
      log('FAIL the PostgreSQL run of the GPM and deep views: GPUFL_TEST_PG_DSN is not set in CI');
      return 1;
    }
    log('SKIP the PostgreSQL run of the GPM and deep views: GPUFL_TEST_PG_DSN not set');
    return 0;
  }
  const schema = `e2e_${randomBytes(6).toString('hex')}`;
  let backend;
  let failed = 0;
  try {
    backend = await startBackend({ GPUFL_DATABASE: pgSchema('create', schema) });
    await loadCaptures(backend, CAPTURES.map((c) => join(REPO, 'examples/captures', c)).filter((d) => existsSync(d)));
    const readKey = await createKey(backend, 'read', 'e2e-read-pg');
    const sessions = (await apiJson(backend, readKey, '/sessions?limit=1000')).items;
    await signIn(page, backend.url, readKey);
    const ctx = { backend, readKey, page, sessions, shot: (n) => shot(`pg-${n}`), state: {} };
    const chosen = tests.filter((t) => AGAIN.some((a) => t.name.startsWith(a)));
    if (chosen.length !== AGAIN.length) throw new Error(`tests to run again not found: ${AGAIN.join('; ')}`);
    for (const t of chosen) {
      const t0 = Date.now();
      try {
        await t.run(ctx);
        log(`PASS on PostgreSQL: ${t.name} (${Date.now() - t0} ms)`);
      } catch (e) {
        failed++;
        log(`FAIL on PostgreSQL: ${t.name}: ${e?.stack ?? e}`);
        await shot(`FAIL-pg-${t.name.replace(/\W+/g, '_')}`).catch(() => {});
      }
    }
  } catch (e) {
    failed++;
    log(`FAIL the PostgreSQL run of the GPM and deep views: ${e?.stack ?? e}`);
  } finally {
    await backend?.stop();
    pgSchema('drop', schema);
  }
  return failed;
}

if (process.argv[1] && process.argv[1].endsWith('stores.mjs')) {
  const art = join(REPO, 'test-artifacts', 'e2e');
  mkdirSync(art, { recursive: true });
  const browser = await launchBrowser();
  const page = await browser.ctx.newPage();
  const failed = await runStoreTests({ page, shot: (n) => page.screenshot({ path: join(art, `${n}.png`), fullPage: true }) });
  await browser.close();
  log(failed ? `${failed} failure(s)` : 'all passed');
  process.exit(failed ? 1 : 0);
}
