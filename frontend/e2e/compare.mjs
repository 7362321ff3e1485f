// Browser test of the Compare view (#21): two committed captures diffed, instances on both sides, two linked
// timelines. An entry of tests.mjs's ordered list (apart from it to keep each file small).
import assert from 'node:assert/strict';
import { basename, join } from 'node:path';
import { log, REPO, segmentFiles } from './harness.mjs';
import { api, T } from './steps.mjs';

export const compare = {
  name: 'Compare diff_base → diff_layer_removed: per-layer kernels faster by ~1/6, instances on both sides, two linked timelines',
  async run(ctx) {
    const { page, backend, shot } = ctx;
    const sid = (dir) => basename(segmentFiles(join(REPO, 'examples/captures', dir))[0]).split('.')[2];
    const [base, target] = [sid('diff_base'), sid('diff_layer_removed')];
    const stored = new Set(ctx.sessions.map((s) => s.session_id));
    if (!stored.has(base) || !stored.has(target)) {
      assert.ok(process.env.GPUFL_E2E_CAPTURES, 'diff_base and diff_layer_removed are committed captures: they must be loaded');
      log('skip: GPUFL_E2E_CAPTURES leaves out diff_base / diff_layer_removed');
      return;
    }
    const want = await api(ctx, `/diff?base=${base}&target=${target}`);
    // pick them in the selector: the first ticked is the base
    await page.goto(`${backend.url}/#/`);
    await page.waitForSelector('[data-testid="sessions"] tbody tr', { timeout: T });
    await page.check(`input[aria-label="Pick ${base} for comparison"]`);
    await page.check(`input[aria-label="Pick ${target} for comparison"]`);
    assert.equal((await page.textContent(`tr[data-session="${base}"] .chip.role`)).trim(), 'base');
    assert.equal((await page.textContent(`tr[data-session="${target}"] .chip.role`)).trim(), 'target');
    await shot('12-compare-pick');
    await page.click('button:has-text("Compare base → target")');
    await page.waitForSelector('[data-testid="diff-rows"] tbody tr', { timeout: T });
    assert.equal(new URL(page.url()).hash, `#/compare/${base}/${target}`);
    const scale = await page.textContent('[data-testid="diff-scale"]');
    assert.ok(scale.includes(`per step (${want.base.steps} vs ${want.target.steps} steps)`), scale);
    const reading = await page.textContent('.compare-reading');
    assert.ok(reading.includes(`z_crit ${want.noise.z_crit}`) && reading.includes(want.noise.test) && reading.includes('min_effect 5%'), reading);
    const counts = await page.$$eval('[data-testid="diff-counts"] .count-chip', (cs) => cs.map((c) => c.textContent.trim().split(/\s+/)));
    assert.deepEqual(Object.fromEntries(counts.map(([l, n]) => [l, Number(n)])), want.counts);
    // the totals and rows the API answers, in its order (by impact), with its labels
    const totals = await page.$$eval('[data-testid="diff-totals"] tbody tr', (trs) => trs.map((tr) => [tr.dataset.metric, tr.querySelector('.chip').textContent]));
    assert.deepEqual(totals, want.totals.map((t) => [t.metric, t.label]));
    const readRows = () =>
      page.$$eval('[data-testid="diff-rows"] tbody tr', (trs) =>
        trs.map((tr) => ({ id: tr.dataset.row, label: tr.dataset.label, rel: tr.querySelector('[data-testid=rel]').textContent, counts: tr.querySelector('[data-testid=counts]').textContent })),
      );
    const shown = await readRows();
    assert.deepEqual(shown.map((r) => r.id), want.rows.map((r) => `${r.kind}:${r.key}`));
    assert.equal(want.rows.length, want.rows_total, 'this pair fits in one page: no cut note expected');
    assert.equal(await page.$('[data-testid="diff-cut"]'), null);
    // the removed layer: kernels launched 6 times per step in the base and 5 in the target, faster by ~16.7%
    const perLayer = want.rows.filter((r) => r.kind === 'kernel' && r.base.n * 5 === r.target.n * 6 && r.label === 'faster');
    assert.ok(perLayer.length >= 10, `per-layer kernels found faster: ${perLayer.length}`);
    const pcts = perLayer.map((r) => {
      const row = shown.find((x) => x.id === `kernel:${r.key}`);
      assert.equal(row.label, 'faster', r.key);
      assert.equal(row.rel, `\u2212${Math.abs(r.rel * 100).toFixed(1)}%`, r.key);
      assert.equal(row.counts, `${r.base.n_value} → ${r.target.n_value}`, r.key);
      return Number(row.rel.replace('\u2212', '-').replace('%', ''));
    });
    pcts.sort((a, b) => a - b);
    const median = pcts[Math.floor(pcts.length / 2)];
    assert.ok(Math.abs(median + 16.7) < 1, `median per-layer change ${median}% (want about −16.7%)`);
    // filter by label: exactly the API's faster rows
    await page.click('.diff-filters button[data-label="faster"]');
    const fasterShown = await readRows();
    assert.equal(fasterShown.length, want.counts.faster);
    assert.ok(fasterShown.every((r) => r.label === 'faster'));
    await page.click('.diff-filters button[data-label="faster"]');
    // both timelines paint, at one scale
    await page.waitForFunction(
      () => [...document.querySelectorAll('canvas[data-testid="timeline"]')].filter((c) => c.dataset.painted === '1' && c.dataset.pending === '0' && Number(c.dataset.lanes) > 0).length === 2,
      null,
      { timeout: T },
    );
    const windows = () => page.$$eval('canvas[data-testid="timeline"]', (cs) => cs.map((c) => c.dataset.window));
    const [w0, w1] = await windows();
    assert.equal(w0, w1, 'both timelines start on the same window');
    // a zoom on the top timeline moves the bottom one
    // (the canvas scrolled into view and measured right before each wheel: under load the page's tables could
    // still move it, and a wheel outside the canvas zooms nothing; one more wheel only zooms further in)
    const linkedZoom = (w) => {
      const ws = [...document.querySelectorAll('canvas[data-testid="timeline"]')].map((c) => c.dataset.window);
      return ws[0] !== w && ws[0] === ws[1];
    };
    let zoomed = false;
    for (let attempt = 0; attempt < 3 && !zoomed; attempt++) {
      const top = (await page.$$('canvas[data-testid="timeline"]'))[0];
      await top.scrollIntoViewIfNeeded();
      const box = await top.boundingBox();
      await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2);
      await page.mouse.wheel(0, -600);
      zoomed = await page.waitForFunction(linkedZoom, w0, { timeout: T / 3 }).then(() => true, () => false);
    }
    assert.ok(zoomed, 'a wheel zoom on the top timeline moves both timelines to one window');
    const [z0, z1] = (await windows()).map((w) => w.split(':').map(Number));
    assert.deepEqual(z0, z1);
    const [a0, a1] = w0.split(':').map(Number);
    assert.ok(z0[1] - z0[0] < (a1 - a0) / 2, `zoomed in: ${z0} from ${a0}:${a1}`);
    // a row's instances on both sides, as /sessions/{id}/kernels lists them
    const r = perLayer[0];
    await page.click(`[data-testid="diff-rows"] tr[data-row="${`kernel:${r.key}`.replace(/["\\]/g, '\\$&')}"]`);
    await page.waitForSelector('[data-testid="diff-instances"] [data-side="target"] table.instances tbody tr', { timeout: T });
    const firsts = {};
    for (const [role, id, side] of [['base', base, r.base], ['target', target, r.target]]) {
      const detail = await api(ctx, `/sessions/${id}`);
      const start = BigInt(detail.header.start_ns);
      const lastNs = detail.streams.reduce((m, x) => (x.last_ns !== null && BigInt(x.last_ns) > m ? BigInt(x.last_ns) : m), start);
      const ks = await api(ctx, `/sessions/${id}/kernels?start_ns=${start}&end_ns=${lastNs + 2n}&name=${encodeURIComponent(r.key)}&limit=12`);
      firsts[role] = Number(BigInt(ks.items[0].start_ns) - start);
      const sel = `[data-testid="diff-instances"] [data-side="${role}"]`;
      assert.equal((await page.textContent(`${sel} [data-testid="instances-listed"]`)).trim(), `first ${ks.items.length} of ${side.n}`);
      assert.equal((await page.textContent(`${sel} [data-testid="instance-count"]`)).trim(), `${side.n_value}/step (${side.n})`);
      const hrefs = await page.$$eval(`${sel} table.instances tbody tr a`, (as) => as.map((a) => a.getAttribute('href')));
      assert.deepEqual(hrefs.map((h) => new URLSearchParams(h.split('?')[1]).get('k')), ks.items.map((k) => k.id));
    }
    assert.ok(new URL(page.url()).hash.includes('row=kernel'), 'the selected row is in the URL');
    // a click on instance 1 aligns both timelines at it: same span, each window starting where its own
    // instance 1 does (less the same margin)
    await page.click('[data-testid="diff-instances"] [data-side="base"] table.instances tbody tr');
    await page.waitForFunction(() => {
      const ws = [...document.querySelectorAll('canvas[data-testid="timeline"]')].map((c) => c.dataset.window.split(':').map(Number));
      return ws[0][1] - ws[0][0] <= 200_000 && Math.abs(ws[0][1] - ws[0][0] - (ws[1][1] - ws[1][0])) <= 1;
    }, null, { timeout: T });
    const [al0, al1] = (await windows()).map((w) => w.split(':').map(Number));
    assert.ok(Math.abs(firsts.base - al0[0] - (firsts.target - al1[0])) <= 2, `aligned: ${al0} / ${al1}, instance 1 at ${firsts.base} / ${firsts.target}`);
    assert.match(await page.textContent('[data-testid="timelines-alignment"]'), /Aligned at instance #1/);
    // both timelines load what the aligned windows need
    await page.waitForFunction(
      () => [...document.querySelectorAll('canvas[data-testid="timeline"]')].every((c) => c.dataset.pending === '0') && !/Loading/.test(document.querySelector('.compare-timelines').textContent),
      null,
      { timeout: T },
    );
    await shot('13-compare');
  },
};
