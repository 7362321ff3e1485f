#!/usr/bin/env node
// End-to-end tests: real gpufl-backend + real capture files + Debian's headless Chromium (playwright-core).
// Every expected value is read from the backend's API during the run; nothing is hard-coded.
// Screenshots go to ../test-artifacts/e2e/ (gitignored).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiJson, buildUi, captureDirs, createKey, launchBrowser, loadCaptures, log, REPO, startBackend } from './harness.mjs';
import { runArchiveTests } from './archive.mjs';
import { runRemoteTests } from './remote.mjs';
import { runStoreTests } from './stores.mjs';
import { tests } from './tests.mjs';

const ART = join(REPO, 'test-artifacts', 'e2e');
mkdirSync(ART, { recursive: true });

const dirs = captureDirs();
if (!dirs.length) {
  console.error('e2e: no capture folders (examples/captures/<name>/ or GPUFL_E2E_CAPTURES): nothing to test against.');
  process.exit(1);
}

let backend;
let browser;
let failed = 0;
try {
  buildUi();
  backend = await startBackend();
  await loadCaptures(backend, dirs);
  const readKey = await createKey(backend, 'read', 'e2e-read');
  const ingestKey = await createKey(backend, 'ingest', 'e2e-ingest');
  const sessions = (await apiJson(backend, readKey, '/sessions?limit=1000')).items;
  log(`${sessions.length} session(s) stored: ${sessions.map((s) => `${s.app}@${s.host} (${s.kernels} kernels)`).join(', ')}`);
  browser = await launchBrowser();
  const page = await browser.ctx.newPage();
  const consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const ctx = { backend, readKey, ingestKey, page, sessions, art: ART, shot: (n) => page.screenshot({ path: join(ART, `${n}.png`), fullPage: true }), state: {} };
  for (const t of tests) {
    const t0 = Date.now();
    try {
      await t.run(ctx);
      log(`PASS ${t.name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      log(`FAIL ${t.name}: ${e?.stack ?? e}`);
      await page.screenshot({ path: join(ART, `FAIL-${t.name.replace(/\W+/g, '_')}.png`), fullPage: true }).catch(() => {});
      if (t.critical) break;
    }
  }
  // the Archive view: its own S3 server and backend (skipped where radosgw is absent, except in CI)
  failed += await runArchiveTests({ dirs, sessions, mainBackend: backend, mainReadKey: readKey, page, shot: ctx.shot });
  // remote capture (#22): its own backends (DuckDB, PostgreSQL), agent and client session
  failed += await runRemoteTests({ page, shot: ctx.shot });
  // the GPM (#20) and deep-engine (#19) views again on PostgreSQL
  failed += await runStoreTests({ page, shot: ctx.shot });
  const unexpected = consoleErrors.filter((m) => !/401|403|Unauthorized|Forbidden/.test(m));
  if (unexpected.length) {
    failed++;
    log(`FAIL browser console errors:\n  ${unexpected.join('\n  ')}`);
  }
} catch (e) {
  failed++;
  log(`FAIL setup: ${e?.stack ?? e}`);
} finally {
  await browser?.close();
  await backend?.stop();
}
log(failed ? `${failed} failure(s); screenshots in ${ART}` : `all e2e tests passed; screenshots in ${ART}`);
process.exit(failed ? 1 : 0);
