#!/usr/bin/env node
// The Kernels tab's screenshots in docs/img/, made from the committed captures by the e2e harness: a real
// gpufl-backend (temporary data dir) with examples/captures/* loaded, Debian's headless Chromium at 1600×1000.
//
//   cd frontend && GPUFL_PYTHON=../.venv/bin/python node scripts/screenshots.mjs
//
// Each PNG is the timeline column and the inspector beside it (clipped to what they show), kept small.
import { statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { apiJson, buildUi, captureDirs, createKey, launchBrowser, loadCaptures, log, REPO, segmentFiles, startBackend } from '../e2e/harness.mjs';

const OUT = join(REPO, 'docs', 'img');
const MAX_BYTES = 300 * 1024;
const sid = (dir) => basename(segmentFiles(join(REPO, 'examples/captures', dir))[0]).split('.')[2];

async function settled(page) {
  await page.waitForSelector('canvas[data-testid="timeline"][data-painted="1"]', { timeout: 60_000 });
  await page.waitForFunction(() => window.__gpuflTimeline?.settled(), null, { timeout: 60_000 });
}

async function shoot(page, name) {
  const top = await page.locator('.kernels-top').boundingBox();
  const path = join(OUT, `${name}.png`);
  await page.screenshot({ path, clip: { x: top.x, y: Math.max(0, top.y - 8), width: top.width, height: Math.min(top.height + 16, 900) } });
  const size = statSync(path).size;
  log(`${path}: ${Math.round(size / 1024)} KiB`);
  if (size > MAX_BYTES) throw new Error(`${name}.png is ${size} bytes, over ${MAX_BYTES}`);
}

let backend;
let browser;
try {
  buildUi();
  backend = await startBackend();
  await loadCaptures(backend, captureDirs());
  const token = await createKey(backend, 'read', 'screenshots');
  browser = await launchBrowser();
  const page = await browser.ctx.newPage();
  await page.addInitScript((t) => {
    sessionStorage.setItem('gpufl.token', t);
    localStorage.setItem('gpufl.timeline.activity', '0');
  }, token);

  // 1. gpt_stacks (GPT training step, call stacks on, H100): thread tracks with scopes and launch calls, copies
  //    per stream, and a kernel selected: the flow from its launch call, the inspector with its call stack.
  const stacks = sid('gpt_stacks');
  const kernels = (await apiJson(backend, token, `/sessions/${stacks}/kernels?limit=2000`)).items;
  const pick = kernels.filter((k) => k.stack_id !== null && k.thread_id !== null).reduce((a, b) => (b.dur_ns > a.dur_ns ? b : a));
  const detail = await apiJson(backend, token, `/sessions/${stacks}`);
  const origin = BigInt(detail.header.start_ns);
  const k = await apiJson(backend, token, `/sessions/${stacks}/kernels/${pick.id}`);
  await page.goto(`${backend.url}/#/s/${stacks}/kernels`);
  await settled(page);
  await shoot(page, 'kernels-timeline');
  const a0 = Number(BigInt(k.api_start_ns) - origin);
  const k1 = Number(BigInt(k.end_ns) - origin);
  const pad = (k1 - a0) * 0.6;
  await page.goto(`${backend.url}/#/s/${stacks}/kernels?t0=${Math.round(a0 - pad)}&t1=${Math.round(k1 + pad)}&k=${k.id}`);
  await page.waitForSelector('[data-testid="inspector"] [data-field="name"]', { timeout: 60_000 });
  await page.waitForFunction(() => window.__gpuflTimeline?.flow(), null, { timeout: 60_000 });
  await settled(page);
  await shoot(page, 'kernels-launch-flow');

  // 2. A copy clicked: the copy inspector (the longest copy of gpt_stacks).
  const copies = (await apiJson(backend, token, `/sessions/${stacks}/memcpy?limit=1000`)).items;
  const c = copies.reduce((a, b) => (b.dur_ns > a.dur_ns ? b : a));
  const c0 = Number(BigInt(c.start_ns) - origin);
  const c1 = Number(BigInt(c.end_ns) - origin);
  await page.goto(`${backend.url}/#/s/${stacks}/kernels?t0=${Math.round(c0 - 2 * (c1 - c0))}&t1=${Math.round(c1 + 2 * (c1 - c0))}`);
  await settled(page);
  const pos = await page.evaluate(([a, b, key]) => {
    const tl = window.__gpuflTimeline;
    const row = tl.rows().find((r) => r.key === key);
    return { x: (tl.plotX(a) + tl.plotX(b)) / 2, y: row.y + row.h / 2 };
  }, [c0, c1, `memcpy:${c.device_id}:${c.stream_id}`]);
  const box = await page.locator('canvas[data-testid="timeline"]').boundingBox();
  await page.mouse.click(box.x + pos.x, box.y + pos.y);
  await page.waitForSelector('[data-testid="copy-inspector"] [data-field="throughput"]', { timeout: 60_000 });
  await page.mouse.move(box.x + pos.x, box.y + pos.y + 1); // the tooltip, with throughput and memory kinds
  await shoot(page, 'kernels-copy-inspector');

  // 3. gpu_activity (H100, NVML GPM): SM activity under the kernel lanes, NVML utilisation beside it.
  const gpm = sid('gpu_activity');
  await page.goto(`${backend.url}/#/s/${gpm}/kernels`);
  await settled(page);
  await page.check('[data-testid="activity-toggle"]');
  await page.waitForFunction(() => window.__gpuflTimeline.activityQuery() !== null, null, { timeout: 60_000 });
  await settled(page);
  await shoot(page, 'kernels-sm-activity');
} finally {
  await browser?.close();
  await backend?.stop();
}
