// Browser test of the deep engines' views (#19) on the real capture examples/captures/deep_truth (SASS metrics
// and PC sampling on an H200): the Scopes tab's divergence per scope and per kernel, the stall-reason charts,
// a kernel's hot source lines in the API's order, what the ranges lost; the kernel inspector's deep figures;
// a session without deep data says so in one line. Expected values come from the API in the same run.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { log, REPO, segmentFiles } from './harness.mjs';
import { api, T } from './steps.mjs';

// GPUFL_E2E_DEEP: another deep capture folder (a local check before the real one is committed)
const DIR = process.env.GPUFL_E2E_DEEP ?? join(REPO, 'examples/captures', 'deep_truth');
const NO_DEEP = 'no deep-engine data: record with engines sass / pc_sampling';
const div = (d) => (d === null ? 'not reported' : `${d.toFixed(1)} / 32`);

export const deep = {
  name: 'Scopes tab on the deep capture: divergence and stall charts per scope and kernel, hot source lines, losses stated; the inspector shows a covered kernel (#19)',
  async run(ctx) {
    const { page, backend, shot } = ctx;
    if (!existsSync(DIR)) {
      assert.ok(!process.env.CI, 'CI runs with examples/captures/deep_truth committed');
      log('skip: examples/captures/deep_truth is not committed yet');
      return;
    }
    const sid = basename(segmentFiles(DIR)[0]).split('.')[2];
    if (!ctx.sessions.some((s) => s.session_id === sid)) {
      assert.ok(process.env.GPUFL_E2E_CAPTURES, 'deep_truth is a committed capture: it must be loaded');
      log('skip: GPUFL_E2E_CAPTURES leaves out deep_truth');
      return;
    }
    const sum = await api(ctx, `/sessions/${sid}/deep`);
    assert.ok(sum.has_data, 'the deep capture has deep-engine data');
    await page.goto(`${backend.url}/#/s/${encodeURIComponent(sid)}/scopes`);
    // the whole session: every kernel's divergence as the API states it
    await page.waitForSelector('[data-testid="deep-session"] [data-testid="deep-kernels"] tbody tr', { timeout: T });
    const rows = page.locator('[data-testid="deep-session"] [data-testid="deep-kernels"] tbody tr');
    assert.equal(await rows.count(), sum.kernels.length);
    for (let i = 0; i < sum.kernels.length; i++) {
      const k = sum.kernels[i];
      assert.equal(await rows.nth(i).getAttribute('data-kernel'), k.kernel ?? '');
      assert.equal((await rows.nth(i).locator('[data-field="divergence"]').textContent()).trim(), div(k.divergence), `divergence of ${k.kernel}`);
    }
    // every column in view without scrolling sideways (the top-stall column was cut off behind a 720 px box)
    const fits = await page.$eval('[data-testid="deep-session"] [data-testid="deep-kernels"]', (t) => {
      const box = t.parentElement.getBoundingClientRect();
      const last = t.querySelector('tbody tr td:last-child').getBoundingClientRect();
      return last.right <= box.right + 1 && t.parentElement.scrollWidth <= t.parentElement.clientWidth + 1;
    });
    assert.ok(fits, 'the deep kernel table shows its last column (top stall) without horizontal scrolling');
    // what the ranges lost is stated (or that nothing was)
    const losses = await page.textContent('[data-testid="deep-session"] [data-testid="deep-losses"]');
    const t = sum.range_totals;
    assert.ok(losses.includes(`${t.ranges.toLocaleString('en-US')} deep range`), losses);
    if (t.pc_dropped) assert.ok(losses.includes(`${t.pc_dropped.toLocaleString('en-US')} PC samples dropped`), losses);
    for (const e of sum.errors) assert.ok(losses.includes(e.error), `error ${e.error} not shown`);
    // the most-sampled kernel: its stall chart (the API's reasons, in order) and its hot lines in the API's order
    const hot = sum.kernels.find((k) => k.samples) ?? sum.kernels[0];
    await page.click(`[data-testid="deep-session"] [data-testid="deep-kernels"] tr[data-kernel="${hot.kernel}"]`);
    if (hot.samples) {
      const chart = page.locator(`[data-testid="deep-session"] [data-testid="stall-chart"][data-what="${hot.kernel}"]`);
      await chart.waitFor({ timeout: T });
      assert.deepEqual(JSON.parse(await chart.getAttribute('data-reasons')), hot.stalls.map((s) => [s.reason, s.samples]));
    }
    const lines = await api(ctx, `/sessions/${sid}/deep/lines?kernel=${encodeURIComponent(hot.kernel)}&limit=100`);
    await page.waitForSelector('[data-testid="deep-session"] [data-testid="deep-lines"] tbody tr', { timeout: T });
    const shown = await page.$$eval('[data-testid="deep-session"] [data-testid="deep-lines"] tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-line')));
    assert.deepEqual(shown, lines.items.map((l) => (l.source_line === null ? '' : String(l.source_line))));
    await shot('12-deep-session');
    // a deep scope: its row's divergence, and its own block
    const sc = sum.scopes.find((x) => !x.whole_session && x.scope_id !== null);
    if (sc) {
      await page.goto(`${backend.url}/#/s/${encodeURIComponent(sid)}/scopes?scope=${sc.scope_id}`);
      const cell = page.locator(`[data-testid="scopes"] tr[data-scope="${sc.path}"] [data-field="deep"]`);
      await cell.waitFor({ timeout: T });
      assert.ok((await cell.textContent()).startsWith(div(sc.divergence)), await cell.textContent());
      const block = page.locator(`.scope-detail [data-testid="deep-block"]`);
      await block.waitFor({ timeout: T });
      assert.equal((await block.locator('p [data-field="divergence"]').textContent()).trim(), div(sc.divergence));
      const inst = await api(ctx, `/sessions/${sid}/deep/scopes/${sc.scope_id}`);
      await page.waitForSelector('[data-testid="deep-instances"] tbody tr', { timeout: T });
      assert.equal(await page.locator('[data-testid="deep-instances"] tbody tr').count(), inst.instances.length);
      await shot('12b-deep-scope');
    }
    // the inspector: a traced launch of a deep-covered kernel shows its divergence and top stalls
    const covered = sum.kernels.find((k) => (k.divergence !== null || k.samples !== null) && k.kernel);
    assert.ok(covered, 'the deep capture covers a named kernel');
    const ks = await api(ctx, `/sessions/${sid}/kernels?name=${encodeURIComponent(covered.kernel)}&limit=1`);
    assert.ok(ks.items.length, `a traced launch of ${covered.kernel} (the capture traces too)`);
    await page.goto(`${backend.url}/#/s/${encodeURIComponent(sid)}/kernels?k=${ks.items[0].id}`);
    const d = page.locator('[data-testid="inspector-deep"] [data-field="divergence"] dd');
    await d.waitFor({ timeout: T });
    assert.equal((await d.textContent()).trim(), div(covered.divergence));
    const stalls = page.locator('[data-testid="inspector-deep"] [data-field="stall"] dt');
    assert.equal(await stalls.count(), Math.min(3, covered.stalls.length));
    if (covered.stalls.length) assert.equal(await stalls.first().getAttribute('title'), covered.stalls[0].reason);
    await shot('12c-deep-inspector');
    // a session without deep data says so in one line (not deep_sass, another deep capture: asked, not assumed)
    let plain = null;
    for (const s of ctx.sessions) {
      if (s.session_id !== sid && !(await api(ctx, `/sessions/${s.session_id}/deep`)).has_data) {
        plain = s;
        break;
      }
    }
    if (plain) {
      await page.goto(`${backend.url}/#/s/${encodeURIComponent(plain.session_id)}/scopes`);
      await page.waitForSelector('[data-testid="no-deep"]', { timeout: T });
      assert.equal((await page.textContent('[data-testid="no-deep"]')).trim(), NO_DEEP);
    }
  },
};

// The deep rules on the Insights tab (#27): divergence fires on deep_sass (H100 SASS metrics), the stall
// reason on deep_truth (H200 PC sampling); each card shows the API's title, facts and kernel / source-line /
// stall rows; the rule without its samples is listed as not checked.
const DEEP_RULES = { deep_sass: ['warp_divergence', 'stall_reason'], deep_truth: ['stall_reason', 'warp_divergence'] };

export const insights = {
  name: 'Insights tab on the deep captures: warp divergence (deep_sass) and the top stall reason (deep_truth) cards as /insights states them (#27)',
  async run(ctx) {
    const { page, backend, shot } = ctx;
    for (const [dir, [fires, unchecked]] of Object.entries(DEEP_RULES)) {
      const folder = join(REPO, 'examples/captures', dir);
      const sid = basename(segmentFiles(folder)[0]).split('.')[2];
      if (!ctx.sessions.some((s) => s.session_id === sid)) {
        assert.ok(process.env.GPUFL_E2E_CAPTURES, `${dir} is a committed capture: it must be loaded`);
        log(`skip: GPUFL_E2E_CAPTURES leaves out ${dir}`);
        continue;
      }
      const ins = await api(ctx, `/sessions/${sid}/insights`);
      const want = ins.items.filter((i) => i.rule === fires);
      assert.ok(want.length, `${fires} fires on ${dir}`);
      await page.goto(`${backend.url}/#/s/${encodeURIComponent(sid)}/insights`);
      await page.waitForSelector(`section.insight[data-rule="${fires}"]`, { timeout: T });
      const cards = await page.$$eval(`section.insight[data-rule="${fires}"]`, (xs) => xs.map((x) => ({
        title: x.querySelector('.insight-title').textContent,
        labels: [...x.querySelectorAll('dt')].map((d) => d.textContent),
        involved: [...x.querySelectorAll('table.involved tr')].map((tr) => [tr.children[0].textContent, tr.children[1].textContent]),
      })));
      assert.deepEqual(cards.map((c) => c.title), want.map((i) => i.title));
      want.forEach((i, n) => {
        assert.deepEqual(cards[n].labels, i.facts.map((f) => f.label));
        assert.deepEqual(cards[n].involved, i.involved.map((x) => [x.kind, x.name]));
      });
      const text = await page.textContent('[data-testid="not-checked"]');
      assert.ok(text.includes(unchecked), `${unchecked} is listed as not checked on ${dir}`);
      await shot(`12d-insights-${dir}`);
    }
  },
};
