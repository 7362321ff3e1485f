// The Archive view (#/archive, issue #23) end to end: a real S3 server (Ceph radosgw), a real capture archived
// into it by the real agent's archiver, a second gpufl-backend (empty store) started with the GPUFL_ARCHIVE_*
// settings, and the same Chromium. Expected values come from the APIs and the capture's files in the run; the
// restored session is checked against the main backend, which ingested the same capture directly.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { apiJson, createKey, log, PYTHON, REPO, segmentFiles, startBackend } from './harness.mjs';

const T = 30_000;
const RADOSGW = join(REPO, 'scripts', 'radosgw.sh');

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** The S3 server: the one .ci/run (scripts/services.sh) started, else a private radosgw for this run, else null. */
function startS3() {
  const e = process.env;
  if (e.GPUFL_TEST_S3_ENDPOINT) {
    return { endpoint: e.GPUFL_TEST_S3_ENDPOINT, accessKey: e.GPUFL_TEST_S3_ACCESS_KEY, secretKey: e.GPUFL_TEST_S3_SECRET_KEY, stop() {} };
  }
  if (!onPath('radosgw')) return null;
  const dir = mkdtempSync(join(tmpdir(), 'gpufl-e2e-rgw-'));
  const stop = () => {
    spawnSync('bash', [RADOSGW, 'stop', dir], { stdio: 'ignore', timeout: 60_000 });
    rmSync(dir, { recursive: true, force: true });
  };
  const t0 = Date.now();
  const r = spawnSync('bash', [RADOSGW, 'start', dir], { encoding: 'utf8', timeout: 180_000, env: { ...process.env, PY: PYTHON } });
  if (r.status !== 0) {
    stop();
    throw new Error(`radosgw did not start: ${(r.stderr ?? '').slice(-2000)}`);
  }
  const out = Object.fromEntries(r.stdout.split('\n').filter((l) => l.includes('=')).map((l) => l.split(/=(.*)/s).slice(0, 2)));
  log(`radosgw up at ${out.GPUFL_TEST_S3_ENDPOINT} in ${Date.now() - t0} ms`);
  return { endpoint: out.GPUFL_TEST_S3_ENDPOINT, accessKey: out.GPUFL_TEST_S3_ACCESS_KEY, secretKey: out.GPUFL_TEST_S3_SECRET_KEY, stop };
}

/** The capture to archive: the smallest of the run's folders whose session the main backend holds with kernels. */
function pickCapture(dirs, sessions) {
  const byId = new Map(sessions.map((s) => [s.session_id, s]));
  const cands = dirs
    .map((dir) => {
      const files = segmentFiles(dir);
      const [host, app, sessionId] = basename(files[0]).split('.');
      return { dir, files, host, app, sessionId, bytes: files.reduce((n, f) => n + readFileSync(f).length, 0), held: byId.get(sessionId) };
    })
    .filter((c) => c.held && c.held.kernels > 0 && c.files.every((f) => !f.endsWith('.gz')));
  cands.sort((a, b) => a.bytes - b.bytes);
  return cands[0] ?? null;
}

/** The real agent, archive only (--type=none), puts a copy of the capture into a new bucket under raw/. */
function archiveCapture(s3, capture, work) {
  const bucket = `gpufl-e2e-${Date.now().toString(36)}`;
  const env = { ...process.env, AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey };
  const mk = spawnSync(
    PYTHON,
    ['-c', 'import sys, boto3; boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(Bucket=sys.argv[2])', s3.endpoint, bucket],
    { stdio: ['ignore', 'inherit', 'inherit'], env, timeout: 60_000 },
  );
  if (mk.status !== 0) throw new Error(`could not create bucket ${bucket} on ${s3.endpoint}`);
  const folder = join(work, 'logs');
  cpSync(capture.dir, folder, { recursive: true });
  const t0 = Date.now();
  const r = spawnSync(
    PYTHON,
    ['-m', 'gpufl.agent.cli', `--folder=${folder}`, '--type=none', '--exit-when-idle', `--cursor-file=${join(work, 'cursor')}`, `--archiver-endpoint=${s3.endpoint}`, `--archiver-bucket=${bucket}`, '--archiver-prefix=raw'],
    { stdio: ['ignore', 'inherit', 'inherit'], env, timeout: 120_000 },
  );
  if (r.status !== 0) throw new Error(`gpufl-agent (archiver) exited with ${r.status}`);
  log(`archived ${basename(capture.dir)} (session ${capture.sessionId}) to s3://${bucket}/raw in ${Date.now() - t0} ms`);
  return bucket;
}

/** Flip one bit of the session's archived scope segment in S3, its stored sha256 kept ('alter'), or put the
 * original back ('restore'); the original waits in WORK/scope.orig. */
function tamper(ctx, how) {
  const code = `
import sys, boto3
endpoint, bucket, how, orig = sys.argv[1:5]
c = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
key = next(o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"] if ".scope." in o["Key"])
got = c.get_object(Bucket=bucket, Key=key)
if how == "alter":
    body = got["Body"].read()
    open(orig, "wb").write(body)
    body = bytearray(body); body[-1] ^= 1
    c.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=got["Metadata"])
else:
    c.put_object(Bucket=bucket, Key=key, Body=open(orig, "rb").read(), Metadata=got["Metadata"])
print(key)`;
  const r = spawnSync(PYTHON, ['-c', code, ctx.s3.endpoint, ctx.bucket, how, join(ctx.work, 'scope.orig')], {
    encoding: 'utf8',
    env: { ...process.env, AWS_ACCESS_KEY_ID: ctx.s3.accessKey, AWS_SECRET_ACCESS_KEY: ctx.s3.secretKey },
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`tamper ${how}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Start everything, run the tests, stop everything. Returns the number of failures. */
export async function runArchiveTests({ dirs, sessions, mainBackend, mainReadKey, page, shot }) {
  let s3;
  try {
    s3 = startS3();
  } catch (e) {
    log(`FAIL archive setup: ${e?.stack ?? e}`);
    return 1;
  }
  if (s3 === null) {
    if (process.env.CI === 'true') {
      log('FAIL archive: Ceph radosgw (S3) is required in CI (scripts/services.sh installs and starts it)');
      return 1;
    }
    log('SKIP archive view tests: radosgw is not installed (scripts/services.sh installs it; GPUFL_TEST_S3_* names a running one)');
    return 0;
  }
  const work = mkdtempSync(join(tmpdir(), 'gpufl-e2e-archive-'));
  let backend;
  let failed = 0;
  try {
    const capture = pickCapture(dirs, sessions);
    if (!capture) throw new Error('no capture folder whose session the main backend holds with kernels');
    const bucket = archiveCapture(s3, capture, work);
    const credentials = join(work, 'credentials');
    writeFileSync(credentials, `[default]\naws_access_key_id = ${s3.accessKey}\naws_secret_access_key = ${s3.secretKey}\n`, { mode: 0o600 });
    backend = await startBackend({
      GPUFL_ARCHIVE_URL: `s3://${bucket}/raw`,
      GPUFL_ARCHIVE_ENDPOINT: s3.endpoint,
      GPUFL_ARCHIVE_CREDENTIALS_FILE: credentials,
    });
    const ctx = {
      backend,
      capture,
      bucket,
      s3,
      work,
      page,
      shot,
      mainBackend,
      mainReadKey,
      readKey: await createKey(backend, 'read', 'e2e-archive-read'),
      adminKey: await createKey(backend, 'admin', 'e2e-archive-admin'),
    };
    for (const t of tests) {
      const t0 = Date.now();
      try {
        await t.run(ctx);
        log(`PASS ${t.name} (${Date.now() - t0} ms)`);
      } catch (e) {
        failed++;
        log(`FAIL ${t.name}: ${e?.stack ?? e}`);
        await shot(`FAIL-archive-${t.name.replace(/\W+/g, '_')}`).catch(() => {});
        break; // each test builds on the previous one's page
      }
    }
  } catch (e) {
    failed++;
    log(`FAIL archive setup: ${e?.stack ?? e}`);
  } finally {
    await backend?.stop();
    s3.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return failed;
}

async function signIn(page, url, key) {
  await page.goto(url + '/');
  // a key of an earlier test on this origin may still be signed in
  const out = page.locator('header button:has-text("Sign out")');
  if (await out.count()) await out.click();
  await page.fill('#apikey', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid="sessions"], .state.empty', { timeout: T });
  await page.click('header a:has-text("Archive")');
  await page.waitForSelector('.archive', { timeout: T });
}

function row(ctx) {
  return ctx.page.locator(`.archive-table tr[data-session="${ctx.capture.sessionId}"]`);
}

const tests = [
  {
    name: 'archive view lists the archived session as not in the store',
    async run(ctx) {
      const { page, backend, capture } = ctx;
      const listed = await apiJson(backend, ctx.readKey, '/archive/sessions?in_store=false');
      assert.equal(listed.configured, true);
      assert.deepEqual(
        listed.items.map((i) => [i.host, i.app, i.session_id, i.in_store, i.segments]),
        [[capture.host, capture.app, capture.sessionId, false, capture.files.length]],
        'the archive holds the capture, segment for segment, and the empty store does not',
      );
      await signIn(page, backend.url, ctx.readKey);
      const rows = await page.$$eval('.archive-table tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())));
      assert.equal(rows.length, 1, `rows: ${JSON.stringify(rows)}`);
      const [host, app, sid, segments, size] = rows[0];
      const item = listed.items[0];
      assert.deepEqual([host, app, sid, Number(segments.replace(/,/g, ''))], [item.host, item.app, item.session_id, item.segments]);
      assert.match(size, /^\d+(\.\d)? (B|KiB|MiB|GiB)$/);
      const intro = await page.textContent('.archive > p.muted');
      assert.ok(intro.includes(`s3://${ctx.bucket}/raw`), intro);
      assert.equal(intro.replace(/\s+/g, ' ').split('. A restore')[0], `1 session in s3://${ctx.bucket}/raw; 1 of them is not in the store and is listed here`);
      ctx.item = item;
    },
  },
  {
    name: 'archive view: a read key may not restore, and the page says why',
    async run(ctx) {
      const { page, shot } = ctx;
      const button = row(ctx).locator('button:has-text("Restore")');
      assert.equal(await button.isDisabled(), true, 'Restore is disabled for a read key');
      assert.equal(await button.getAttribute('title'), 'Needs an admin key');
      const note = await page.textContent('.archive [role=note]');
      assert.match(note, /needs an API key with the admin role/);
      // the API agrees: the same key is refused
      const r = await fetch(`${ctx.backend.api}/archive/sessions/${ctx.capture.sessionId}/restore`, { method: 'POST', headers: { Authorization: `Bearer ${ctx.readKey}` } });
      assert.equal(r.status, 403);
      await shot('30-archive-read-key');
    },
  },
  {
    name: 'archive view: an admin key restores; a restore that fails says why, a retry succeeds',
    async run(ctx) {
      const { page, shot, capture } = ctx;
      await signIn(page, ctx.backend.url, ctx.adminKey);
      assert.equal(await page.locator('.archive [role=note]').count(), 0, 'no "admin needed" note for an admin key');
      const button = row(ctx).locator('button:has-text("Restore")');
      assert.equal(await button.isEnabled(), true);
      assert.equal(await button.getAttribute('title'), 'Re-ingest this session from the archive');
      // record every state the job's status shows, with the button's (a small capture may finish before a poll)
      await page.evaluate((sid) => {
        const seen = (window.__archiveJob = []);
        const cell = document.querySelector(`.archive-table tr[data-session="${sid}"] td:last-child`);
        const note = () => {
          const t = cell.querySelector('.job')?.textContent;
          const b = cell.querySelector('button').disabled;
          if (t && (seen.length === 0 || seen[seen.length - 1][0] !== t)) seen.push([t, b]);
        };
        new MutationObserver(note).observe(cell, { subtree: true, childList: true, characterData: true, attributes: true });
      }, capture.sessionId);

      // 1. the archived bytes altered in S3 (their sha256 kept): the job fails and says why, in the row
      const key = tamper(ctx, 'alter');
      await button.click();
      const failed = row(ctx).locator('.job.failed[role=alert]');
      await failed.waitFor({ timeout: 120_000 });
      assert.equal(
        (await failed.textContent()).trim(),
        `Restore failed: s3://${ctx.bucket}/${key}: its bytes do not match the sha256 it was stored with. 0 records stored, 0 already held, 0 rejected before it stopped.`,
      );
      assert.equal(await button.isEnabled(), true, 'a failed restore may be retried');
      await shot('31-archive-restore-failed');

      // 2. the archive repaired: the retry runs, shows its progress, and restores every record of the capture
      tamper(ctx, 'restore');
      await page.evaluate(() => (window.__archiveJob.length = 0));
      await button.click();
      await row(ctx).locator('.job.done').waitFor({ timeout: 120_000 });
      // the failed job's text may show once more before the retry's answer replaces it
      const seen = (await page.evaluate(() => window.__archiveJob)).filter(([t], i, all) => !(t.startsWith('Restore failed') && all.slice(0, i).every(([u]) => u.startsWith('Restore failed'))));
      log(`restore job as shown: ${JSON.stringify(seen)}`);
      const [done, doneDisabled] = seen.pop();
      assert.ok(seen.length > 0, 'the running job shows before it is done');
      for (const [t, disabled] of seen) {
        assert.match(t, /^Restoring: (downloading|\d+ of \d+ segments); [\d,]+ records stored, [\d,]+ already held, [\d,]+ rejected$/);
        assert.equal(disabled, true, `Restore is disabled while "${t}"`);
      }
      assert.equal(doneDisabled, false);
      const lines = capture.files.reduce((n, f) => n + readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).length, 0);
      assert.equal(done, `Restored: ${capture.files.length} segments; ${lines.toLocaleString('en-US')} records stored, 0 already held, 0 rejected. Open the session`);
      const jobs = (await apiJson(ctx.backend, ctx.readKey, '/archive/jobs')).items;
      assert.deepEqual(
        jobs.map((j) => [j.session_id, j.status, j.segments, j.segments_done, j.stored, j.duplicates, j.rejected]),
        [
          [capture.sessionId, 'done', capture.files.length, capture.files.length, lines, 0, 0],
          [capture.sessionId, 'failed', 0, 0, 0, 0, 0],
        ],
      );
      await shot('32-archive-restored');
    },
  },
  {
    name: 'archive view: the link opens the restored session, its Kernels tab shows its kernels',
    async run(ctx) {
      const { page, shot, capture } = ctx;
      await row(ctx).locator('button:has-text("Open the session")').click();
      await page.waitForFunction((sid) => location.hash.startsWith(`#/s/${sid}/kernels`), capture.sessionId, { timeout: T });
      const title = await page.textContent('[data-testid="session-title"]', { timeout: T });
      assert.equal(title.trim(), `Session: ${capture.app} [host: ${capture.host}]`);
      await page.waitForSelector('canvas[data-testid="timeline"][data-painted="1"]', { timeout: T });
      await page.waitForSelector('[data-testid="summary"] tbody tr', { timeout: T });
      const shown = await page.$$eval('[data-testid="summary"] tbody tr', (trs) =>
        trs.map((tr) => [tr.querySelector('td.kname').textContent.trim(), Number(tr.querySelector('td:nth-child(2)').textContent.replace(/,/g, ''))]),
      );
      // what the main backend, which ingested the same capture directly, answers for the session
      const direct = await apiJson(ctx.mainBackend, ctx.mainReadKey, `/sessions/${capture.sessionId}/kernels/summary?sort=total&limit=1000`);
      const restored = await apiJson(ctx.backend, ctx.readKey, `/sessions/${capture.sessionId}/kernels/summary?sort=total&limit=1000`);
      assert.deepEqual(restored, direct, 'the restored session summarises as the directly ingested one');
      assert.ok(direct.items.length > 0, 'the capture has kernels: the comparison means something');
      assert.deepEqual(shown, direct.items.map((k) => [k.name ?? '(unnamed)', k.count]), 'the Kernels tab: one row per kernel name, its count');
      assert.equal(
        shown.reduce((n, [, c]) => n + c, 0),
        capture.held.kernels,
        'the Kernels tab counts every kernel the session has',
      );
      await shot('33-archive-restored-session');
      // and the archive lists it no more: the store holds it
      await page.click('header a:has-text("Archive")');
      await page.waitForSelector('.archive .state.empty', { timeout: T });
      assert.equal((await page.textContent('.archive .state.empty')).trim(), 'Every archived session is in the store.');
      assert.match(await page.textContent('.archive > p.muted'), /^1 session in \S+; 0 of them are not in the store/);
    },
  },
];
