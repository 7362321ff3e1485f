// Browser tests of the Kernels timeline's tracks (#24, #20): launch-API calls on each thread's track and the
// flow arrow from a kernel's call to the kernel; copies per stream, their tooltip and inspector; tooltips that
// follow the view; the resizable height; the SM-activity rows. Entries of tests.mjs's ordered list: they run
// after "click a kernel" (ctx.state.kernel is the kernel it selected). Expected values come from the API.
import assert from 'node:assert/strict';
import { basename, join } from 'node:path';
import { REPO, segmentFiles } from './harness.mjs';
import { api, T, waitPainted, waitSettled } from './steps.mjs';

const sid = (dir) => basename(segmentFiles(join(REPO, 'examples/captures', dir))[0]).split('.')[2];

const rel = (ns, origin) => Number(BigInt(ns) - origin);

/** Set the window and wait until everything it needs, side data included, is in. */
async function view(page, t0, t1) {
  await page.evaluate(([a, b]) => window.__gpuflTimeline.setViewport({ t0: a, t1: b }), [t0, t1]);
  await waitSettled(page);
}

async function canvasBox(page) {
  return page.locator('canvas[data-testid="timeline"]').boundingBox();
}

export const launchCalls = {
  name: 'launch-API calls on each thread\'s track, counted as /launches counts them; a flow arrow from the selected kernel\'s call to it (#24)',
  async run(ctx) {
    const { page, shot } = ctx;
    const s = ctx.state.session;
    ctx.state.beforeTracks = page.url(); // restored after these tests: the later ones expect its window and kernel
    const origin = BigInt(ctx.state.detail.header.start_ns);
    const end = ctx.state.detail.streams.reduce((m, x) => (x.last_ns !== null && BigInt(x.last_ns) > m ? BigInt(x.last_ns) : m), origin);
    // the whole session: a call row per thread that made calls, every call counted
    await view(page, 0, Number(end - origin));
    const all = await api(ctx, `/sessions/${s.session_id}/launches?start_ns=${origin}&end_ns=${end + 1n}&resolution_ns=${(end - origin) / 1000n + 1n}`);
    assert.ok(all.total > 0, 'the session has launch calls with their API timing');
    const threads = [...new Set(all.buckets.map((b) => b.thread_id))].sort((a, b) => a - b);
    await page.waitForFunction((n) => window.__gpuflTimeline.launchThreads().length === n, threads.length, { timeout: T }).catch(() => {});
    assert.deepEqual(await page.evaluate(() => window.__gpuflTimeline.launchThreads()), threads);
    const rows = await page.evaluate(() => window.__gpuflTimeline.rows());
    for (const t of threads) assert.ok(rows.some((r) => r.kind === 'launch' && r.key === `launch:${t}`), `no call row for thread ${t}`);
    // a thread's call row sits in its track: under its scope rows, above the memory and GPU lanes
    const firstLane = rows.find((r) => r.kind === 'kernel' || r.kind === 'memcpy');
    assert.ok(rows.filter((r) => r.kind === 'launch').every((r) => r.y < firstLane.y), 'call rows above the GPU lanes');
    await page.waitForFunction((n) => window.__gpuflTimeline.calls() === n, all.total, { timeout: T }).catch(() => {});
    assert.equal(await page.evaluate(() => window.__gpuflTimeline.calls()), all.total, 'calls counted in the whole-session view vs /launches');
    const label = rows.find((r) => r.kind === 'launch').label;
    assert.ok(label.length > 0);

    // the selected kernel (from the inspector test): its call and the arrow to it
    const k = ctx.state.kernel;
    assert.ok(k, 'a kernel was selected by the test before');
    if (k.api_start_ns === null || k.thread_id === null) return; // nothing to draw: said by the inspector
    const a0 = rel(k.api_start_ns, origin);
    const k1 = rel(k.end_ns, origin);
    const pad = Math.max(2000, (k1 - a0) * 0.3);
    await view(page, a0 - pad, k1 + pad);
    await page.waitForFunction(() => window.__gpuflTimeline.flow(), null, { timeout: T });
    await shot('04b-launch-flow');
    // a click on the call selects the kernel it launched (the same one, found by the call's correlation)
    const win = await page.evaluate(() => window.__gpuflTimeline.viewport());
    const calls = await api(ctx, `/sessions/${s.session_id}/launches?start_ns=${origin + BigInt(Math.floor(win.t0))}&end_ns=${origin + BigInt(Math.ceil(win.t1))}&resolution_ns=1000`);
    const mine = calls.buckets.find((b) => b.longest.kind === 'kernel' && b.longest.id === k.id);
    assert.ok(mine, `the kernel's call is in /launches for the window (corr ${k.corr_id})`);
    assert.equal(mine.longest.corr_id, k.corr_id);
    // close the inspector (no kernel, no arrow), then a click on the call selects its kernel again
    await page.click('[data-testid="inspector"] button[aria-label="Close inspector"]');
    await page.waitForFunction(() => !window.__gpuflTimeline.flow(), null, { timeout: T });
    const pos = await page.evaluate(([c0, c1, t]) => {
      const tl = window.__gpuflTimeline;
      const row = tl.rows().find((r) => r.key === tl.launchKey(t));
      return { x: (tl.plotX(c0) + tl.plotX(c1)) / 2, y: row.y + row.h / 2 };
    }, [rel(mine.longest.start_ns, origin), rel(mine.longest.end_ns, origin), k.thread_id]);
    const box = await canvasBox(page);
    await page.mouse.move(box.x + pos.x, box.y + pos.y);
    const tip = await page.evaluate(() => window.__gpuflTimeline.tooltip());
    assert.match(tip ?? '', new RegExp(`correlation ${k.corr_id}`), `call tooltip: ${tip}`);
    await page.mouse.click(box.x + pos.x, box.y + pos.y);
    await page.waitForFunction((id) => new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1)).get('k') === id, k.id, { timeout: T });
    await page.waitForFunction(() => window.__gpuflTimeline.flow(), null, { timeout: T });
  },
};

export const copies = {
  name: 'copies (gpt_stacks: three streams copy): one lane per stream, a tooltip with throughput and memory kinds, a click opens the copy inspector as /memcpy says (#24)',
  async run(ctx) {
    const { page, shot, backend } = ctx;
    const s = { session_id: sid('gpt_stacks') };
    const detail = await api(ctx, `/sessions/${s.session_id}`);
    assert.ok(detail.totals.memcpys > 0, 'gpt_stacks has copies');
    await page.goto(`${backend.url}/#/s/${s.session_id}/kernels`);
    await waitPainted(page);
    const origin = BigInt(detail.header.start_ns);
    const items = (await api(ctx, `/sessions/${s.session_id}/memcpy?limit=1000`)).items;
    const sets = (await api(ctx, `/sessions/${s.session_id}/memsets?limit=1000`)).items;
    const streams = [...new Set([...items, ...sets].map((m) => `memcpy:${m.device_id}:${m.stream_id}`))].sort();
    await view(page, 0, Number(BigInt(detail.streams.reduce((m, x) => (x.last_ns !== null && BigInt(x.last_ns) > m ? BigInt(x.last_ns) : m), origin)) - origin));
    await page.waitForFunction((n) => window.__gpuflTimeline.memRows().length === n, streams.length, { timeout: T }).catch(() => {});
    assert.deepEqual((await page.evaluate(() => window.__gpuflTimeline.memRows())).sort(), streams, 'one memory lane per (GPU, stream) that copied');
    // the longest copy: zoom to it, hover, click
    const c = items.reduce((a, b) => (b.dur_ns > a.dur_ns ? b : a));
    const c0 = rel(c.start_ns, origin);
    const c1 = rel(c.end_ns, origin);
    await view(page, c0 - (c1 - c0), c1 + (c1 - c0));
    const pos = await page.evaluate(([a, b, key]) => {
      const tl = window.__gpuflTimeline;
      const row = tl.rows().find((r) => r.key === key);
      return { x: (tl.plotX(a) + tl.plotX(b)) / 2, y: row.y + row.h / 2 };
    }, [c0, c1, `memcpy:${c.device_id}:${c.stream_id}`]);
    const box = await canvasBox(page);
    await page.mouse.move(box.x + pos.x, box.y + pos.y);
    const tip = await page.evaluate(() => window.__gpuflTimeline.tooltip());
    const gbps = c.throughput_gbps === null ? 'throughput not reported' : `${c.throughput_gbps.toFixed(2)} GB/s`;
    assert.ok(tip?.startsWith(c.copy_kind) && tip.includes(gbps) && tip.includes(`${c.src_kind} → ${c.dst_kind}`), `copy tooltip: ${tip}`);
    await page.mouse.click(box.x + pos.x, box.y + pos.y);
    await page.waitForSelector('[data-testid="copy-inspector"] [data-field="direction"]', { timeout: T });
    const field = async (f) => (await page.textContent(`[data-testid="copy-inspector"] [data-field="${f}"] dd`)).trim();
    assert.ok((await field('direction')).startsWith(c.copy_kind));
    assert.ok((await field('bytes')).includes(`${c.bytes.toLocaleString('en-US')} B`));
    assert.equal(await field('throughput'), gbps);
    assert.ok((await field('memory')).startsWith(`${c.src_kind} → ${c.dst_kind}`));
    assert.ok((await field('mode')).startsWith(c.mode ?? 'not reported'));
    assert.ok((await field('stream')).includes(`stream ${c.stream_id}`));
    assert.equal(await field('corr'), String(c.corr_id));
    assert.equal(await field('thread'), c.thread_id === null ? 'not reported' : String(c.thread_id));
    // the tooltip went when the inspector opened (it would describe a pointer the user has moved on from)
    assert.equal(await page.evaluate(() => window.__gpuflTimeline.tooltip()), null);
    await shot('04c-copy-inspector');
    // the selected copy is in the URL (id @ start, ns from the session start): a link reopens it, and brings it
    // into view from a window elsewhere (the session's first µs here)
    const copyParam = () => new URLSearchParams(page.url().slice(page.url().indexOf('?') + 1)).get('copy');
    await page.waitForFunction((want) => new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1)).get('copy') === want, `${c.id}@${c0}`, { timeout: T });
    const link = `${backend.url}/#/s/${s.session_id}/kernels?t0=0&t1=1000&copy=${encodeURIComponent(copyParam())}`;
    await page.goto(link);
    await page.reload();
    await page.waitForSelector('[data-testid="copy-inspector"] [data-field="corr"]', { timeout: T });
    assert.equal(await field('corr'), String(c.corr_id), 'the link reopened the copy');
    assert.ok((await field('bytes')).includes(`${c.bytes.toLocaleString('en-US')} B`));
    await page.waitForFunction(([a, b]) => {
      const v = window.__gpuflTimeline?.viewport();
      return v && v.t0 <= a && v.t1 >= b;
    }, [c0, c1], { timeout: T });
    await page.click('[data-testid="copy-inspector"] button[aria-label="Close inspector"]');
    await page.waitForSelector('[data-testid="inspector"]', { timeout: T });
    await page.waitForFunction(() => !/[?&]copy=/.test(location.hash), null, { timeout: T });
  },
};

export const tooltip = {
  name: 'the tooltip follows a keyboard zoom (#24)',
  async run(ctx) {
    const { page } = ctx;
    const origin = BigInt(ctx.state.detail.header.start_ns);
    const k = ctx.state.kernel;
    const k0 = rel(k.start_ns, origin);
    const k1 = rel(k.end_ns, origin);
    await view(page, k0 - (k1 - k0), k1 + (k1 - k0));
    const pos = await page.evaluate(([a, b, lane]) => {
      const tl = window.__gpuflTimeline;
      const row = tl.rows().find((r) => r.key === lane);
      return { x: (tl.plotX(a) + tl.plotX(b)) / 2, y: row.y + row.h / 2 };
    }, [k0, k1, `${k.device_id}:${k.stream_id}`]);
    const box = await canvasBox(page);
    await page.mouse.move(box.x + pos.x, box.y + pos.y);
    const before = await page.evaluate(() => window.__gpuflTimeline.tooltip());
    assert.ok(before, 'a tooltip over the kernel');
    for (let i = 0; i < 30; i++) await page.keyboard.press('s'); // zoom out around the pointer, far
    await waitPainted(page);
    const afterKeys = await page.evaluate(() => window.__gpuflTimeline.tooltip());
    // what a fresh pointer move there shows is what the tooltip must already show
    await page.mouse.move(box.x + pos.x + 1, box.y + pos.y);
    await page.mouse.move(box.x + pos.x, box.y + pos.y);
    const fresh = await page.evaluate(() => window.__gpuflTimeline.tooltip());
    assert.notEqual(fresh, before, 'zoomed out 30 steps, something else is under the pointer');
    assert.equal(afterKeys, fresh, 'the tooltip after the keyboard zoom is stale');
    assert.equal(await page.textContent('.timeline .tooltip'), fresh);
  },
};

export const height = {
  name: 'the timeline\'s height is resizable (gpt_stacks, after the copies test), scrolls when short, kept across reloads (#24)',
  async run(ctx) {
    const { page, backend } = ctx;
    try {
      // a fresh document: a hash-only goto keeps the mounted timeline, whose debounced URL write (250 ms) can put
      // the copies test's narrow window back into the URL before the reload (copies out of it: rows missing)
      await page.goto('about:blank');
      await page.goto(`${backend.url}/#/s/${sid('gpt_stacks')}/kernels`);
      await resize(page);
    } finally {
      // back to the page the tests before these left (its window and kernel), whatever happened here
      await page.goto(ctx.state.beforeTracks);
      await page.reload();
      await waitPainted(page);
    }
  },
};

/** Drag the handle down 150 px: it stays after a reload; a double-click fits every row again; dragged shorter
 * than the rows, the timeline scrolls. */
async function resize(page) {
  const scroll = page.locator('[data-testid="timeline-scroll"]');
  const fits = () =>
    page.evaluate(() => {
      const el = document.querySelector('[data-testid="timeline-scroll"]');
      return el.style.height === '' && el.scrollHeight <= el.clientHeight + 1;
    });
  await waitSettled(page);
  // the thread tracks and copy lanes come with side data after the first frame: wait until the height holds
  let h0 = -1;
  for (let same = 0, t = Date.now(); same < 3 && Date.now() - t < T; await page.waitForTimeout(200)) {
    const h = (await scroll.boundingBox()).height;
    same = h === h0 ? same + 1 : 0;
    h0 = h;
  }
  assert.ok(await fits(), 'by default the timeline is as tall as its rows');
  const drag = async (dy) => {
    const hb = await page.locator('[data-testid="timeline-resize"]').boundingBox();
    await page.mouse.move(hb.x + hb.width / 2, hb.y + hb.height / 2);
    await page.mouse.down();
    await page.mouse.move(hb.x + hb.width / 2, hb.y + hb.height / 2 + dy, { steps: 5 });
    await page.mouse.up();
  };
  await drag(150);
  const h1 = (await scroll.boundingBox()).height;
  assert.ok(Math.abs(h1 - (h0 + 150)) <= 2, `height ${h0} → ${h1}, dragged 150 px down`);
  await page.reload();
  await waitSettled(page);
  assert.match(await page.textContent('[data-testid="session-title"]'), /gpt_stacks/);
  const h2 = (await page.locator('[data-testid="timeline-scroll"]').boundingBox()).height;
  assert.ok(Math.abs(h2 - h1) <= 1, `height after reload ${h2}, was ${h1}`);
  await page.dblclick('[data-testid="timeline-resize"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="timeline-scroll"]').style.height === '', null, { timeout: T });
  assert.ok(await fits(), 'a double-click fits every row');
  const rowKinds = async () => (await page.evaluate(() => window.__gpuflTimeline.rows())).map((r) => `${r.kind}:${r.h}`).join(' ');
  assert.ok(h0 > 140, `gpt_stacks' rows are ${h0} px tall (${await rowKinds()}, window ${page.url()}): more than the 130 px dragged to`);
  const rowsH = await page.evaluate(() => document.querySelector('canvas[data-testid="timeline"]').getBoundingClientRect().height);
  await drag(-(rowsH - 130));
  const sizes = await page.evaluate(() => {
    const el = document.querySelector('[data-testid="timeline-scroll"]');
    const c = document.querySelector('canvas[data-testid="timeline"]').getBoundingClientRect().height;
    return { scroll: el.scrollHeight, client: el.clientHeight, style: el.style.height, canvas: c };
  });
  assert.ok(sizes.scroll > sizes.client, `a short timeline scrolls: ${JSON.stringify(sizes)}, rows ${rowsH} px before`);
  await page.dblclick('[data-testid="timeline-resize"]');
}

export const smActivity = {
  name: 'SM activity under the kernel lanes (GPM capture): the points /system answers, NVML utilisation beside; a session without GPM says "not recorded" (#20)',
  async run(ctx) {
    const { page, shot, backend, sessions } = ctx;
    const gpm = sessions.find((x) => x.session_id === sid('gpu_activity'));
    const old = sessions.find((x) => x.session_id === sid('gpt_train'));
    assert.ok(gpm && old, 'the gpu_activity and gpt_train captures are loaded');
    await page.goto(`${backend.url}/#/s/${gpm.session_id}/kernels`);
    await waitPainted(page);
    await page.check('[data-testid="activity-toggle"]');
    await page.waitForFunction(() => window.__gpuflTimeline.activityQuery() !== null, null, { timeout: T });
    await waitPainted(page);
    const q = await page.evaluate(() => window.__gpuflTimeline.activityQuery());
    const got = await page.evaluate(() => window.__gpuflTimeline.activity());
    const sys = await api(ctx, `/sessions/${gpm.session_id}/system?metric=sm_active_pct&start_ns=${q.startNs}&end_ns=${q.endNs}&points=${q.points}`);
    const util = await api(ctx, `/sessions/${gpm.session_id}/system?metric=util_gpu_pct&start_ns=${q.startNs}&end_ns=${q.endNs}&points=${q.points}`);
    assert.equal(got.length, sys.series.length, 'one row per GPU');
    for (const [i, series] of sys.series.entries()) {
      assert.equal(got[i].label, `SM active · GPU ${series.device}`);
      assert.deepEqual(got[i].smMean, series.points.map((p) => p.mean), 'SM active points as /system answers');
      assert.equal(got[i].utilPoints, util.series.find((u) => u.device === series.device).points.length);
      assert.ok(Math.max(...got[i].smMean) > 50, 'the capture\'s GEMM phase reads SM active > 50 %');
    }
    const rows = await page.evaluate(() => window.__gpuflTimeline.rows());
    const lanes = rows.filter((r) => r.kind === 'kernel');
    assert.ok(rows.filter((r) => r.kind === 'activity').every((r) => r.y > lanes[lanes.length - 1].y), 'activity rows under the kernel lanes');
    const box = await canvasBox(page);
    const row = rows.find((r) => r.kind === 'activity');
    await page.mouse.move(box.x + box.width * 0.6, box.y + row.y + row.h / 2);
    assert.match((await page.evaluate(() => window.__gpuflTimeline.tooltip())) ?? '', /SM active \(GPM\) [\d.]+ % · NVML GPU utilisation [\d.]+ %/);
    await shot('12b-sm-activity');
    // the toggle is kept; a session without GPM says so in the row's label
    await page.goto(`${backend.url}/#/s/${old.session_id}/kernels`);
    await waitPainted(page);
    assert.ok(await page.isChecked('[data-testid="activity-toggle"]'));
    await page.waitForFunction(() => window.__gpuflTimeline.activity().length > 0, null, { timeout: T });
    const labels = (await page.evaluate(() => window.__gpuflTimeline.activity())).map((a) => a.label);
    assert.ok(labels.every((l) => l.endsWith('not recorded')), `labels ${labels}`);
    await page.uncheck('[data-testid="activity-toggle"]');
    await page.waitForFunction(() => !window.__gpuflTimeline.rows().some((r) => r.kind === 'activity'), null, { timeout: T });
  },
};
