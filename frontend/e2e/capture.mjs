// Browser test of the capture bands (#21): a session in a windows capture mode shows, on the Kernels timeline,
// hatched "not recorded" bands outside its capture windows and a line saying what was recorded when; a
// continuous session shows neither. The session is tests/fixtures/capture_windows_edited (a real capture with
// capture_window records added: no GPU run in a windows mode is committed yet; its README says what was edited).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { postSegment, REPO, segmentFiles } from './harness.mjs';
import { api, T, waitPainted } from './steps.mjs';

const FIXTURE = join(REPO, 'tests', 'fixtures', 'capture_windows_edited');
const SID = 'uijlrpwdb3l3capw';

export const captureBands = {
  name: 'capture windows: time not recorded is hatched and labelled, the Kernels tab says what was recorded (#21)',
  async run(ctx) {
    const { page, shot, backend } = ctx;
    for (const f of segmentFiles(FIXTURE)) await postSegment(backend, f);
    const detail = await api(ctx, `/sessions/${SID}`);
    const cw = await api(ctx, `/sessions/${SID}/capture-windows`);
    assert.equal(cw.mode, 'windows');
    assert.equal(cw.windows.length, 3);
    const origin = BigInt(detail.header.start_ns);
    const rel = (v) => Number(BigInt(v) - origin);
    const lasts = detail.streams.map((s) => BigInt(s.last_ns));
    const end = Number(lasts.reduce((a, b) => (b > a ? b : a)) - origin);
    // what the UI must find: the windows' union, the rest of [0, end] not recorded
    const wins = cw.windows.map((w) => [rel(w.start_ns), rel(w.end_ns)]).sort((a, b) => a[0] - b[0]);
    const gaps = [];
    let t = 0;
    for (const [a, b] of wins) {
      if (a > t) gaps.push([t, a]);
      t = Math.max(t, b);
    }
    if (t < end) gaps.push([t, end]);
    const recorded = wins.reduce((n, [a, b]) => n + (b - a), 0);

    await page.goto(`${backend.url}/#/s/${SID}/kernels`);
    await waitPainted(page);
    await page.waitForSelector('[data-testid="capture-line"]', { timeout: T });
    const line = await page.textContent('[data-testid="capture-line"]');
    assert.ok(line.includes('Capture: windows 100ms/250ms') && line.includes('3 windows'), line);
    assert.ok(line.includes(`(${((recorded / end) * 100).toFixed(1)}%)`), `recorded share in ${line}`);
    assert.ok(line.includes('not recorded, not idle'), line);
    // the whole session in view: one band per stretch not recorded, where the API's windows leave them
    await page.waitForFunction((n) => window.__gpuflTimeline.captureBands().length === n, gaps.length, { timeout: T });
    const bands = await page.evaluate(() => window.__gpuflTimeline.captureBands());
    const vp = await page.evaluate(() => window.__gpuflTimeline.viewport());
    const W = await page.evaluate(() => window.__gpuflTimeline.plotX(window.__gpuflTimeline.viewport().t1) - window.__gpuflTimeline.gutter);
    const px = (x) => ((x - vp.t0) / (vp.t1 - vp.t0)) * W;
    bands.forEach((b, i) => {
      assert.equal(b.label, 'not recorded (capture: windows 100ms/250ms)');
      assert.ok(Math.abs(b.x0 - Math.max(0, px(gaps[i][0]))) < 1.5 && Math.abs(b.x1 - Math.min(W, px(gaps[i][1]))) < 1.5, `band ${i}: ${JSON.stringify(b)} vs ${gaps[i]}`);
    });
    // the tooltip over a kernel lane inside a band says it was not recorded; scope rows are left alone
    const box = await page.locator('canvas[data-testid="timeline"]').boundingBox();
    const gutter = await page.evaluate(() => window.__gpuflTimeline.gutter);
    const rows = await page.evaluate(() => window.__gpuflTimeline.rows());
    const lane = rows.find((r) => r.kind === 'kernel');
    // a kernel under the pointer has the kernel's tooltip: try points across the band until one is free of them
    let tip = null;
    for (let i = 1; i < 10 && tip !== bands[0].label; i++) {
      await page.mouse.move(box.x + gutter + bands[0].x0 + ((bands[0].x1 - bands[0].x0) * i) / 10, box.y + lane.y + lane.h / 2);
      await page.waitForFunction(() => window.__gpuflTimeline.tooltip() !== null, null, { timeout: 2000 }).catch(() => {});
      tip = await page.evaluate(() => window.__gpuflTimeline.tooltip());
    }
    assert.equal(tip, bands[0].label, 'the tooltip over a band says it was not recorded');
    // scope rows are recorded in every mode: no band there
    const scopeRow = rows.find((r) => r.kind === 'scope');
    if (scopeRow) {
      await page.mouse.move(box.x + gutter + bands[0].x0 + 2, box.y + scopeRow.y + scopeRow.h / 2);
      const t2 = await page.evaluate(() => window.__gpuflTimeline.tooltip());
      assert.notEqual(t2, bands[0].label);
    }
    await shot('13-capture-bands');
    await page.mouse.move(box.x + 5, box.y + 5);

    // a continuous session (the capture this fixture was edited from): no bands, no line
    const plain = ctx.sessions.find((s) => s.app === 'multistream');
    if (plain) {
      await page.goto(`${backend.url}/#/s/${plain.session_id}/kernels`);
      await waitPainted(page);
      assert.equal(await page.locator('[data-testid="capture-line"]').count(), 0);
      assert.equal((await page.evaluate(() => window.__gpuflTimeline.captureBands())).length, 0);
    }
  },
};
