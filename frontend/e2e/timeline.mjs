// Browser tests of the Kernels timeline's navigation (#24): range selection, search, and truth at scale on a
// tiled capture. Each is an entry of tests.mjs's ordered list (they rely on the page state before them).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildTiledSession, deviceRecords, REPO } from './harness.mjs';
import { api, T, urlFollowsWindow, waitPainted, waitSettled } from './steps.mjs';

export const rangeSelection = {
  name: 'drag on the time axis selects a range: the timeline zooms to it and /range statistics show (#24)',
  async run(ctx) {
    const { page, shot } = ctx;
    const s = ctx.state.session;
    const origin = BigInt(ctx.state.detail.header.start_ns);
    const whole = await page.evaluate(() => window.__gpuflTimeline.viewport());
    const box = await page.locator('canvas[data-testid="timeline"]').boundingBox();
    const gutter = await page.evaluate(() => window.__gpuflTimeline.gutter);
    const W = box.width - gutter;
    // the busiest part of the session: where the API's LOD puts most kernels (gpt_train runs at its end)
    const lod = await api(ctx, `/sessions/${s.session_id}/kernels?start_ns=${origin}&end_ns=${origin + BigInt(Math.ceil(whole.t1))}&resolution_ns=${2 ** 28}`);
    const busiest = lod.buckets.reduce((a, b) => (b.count > a.count ? b : a));
    const centre = Number(BigInt(busiest.t_ns) - origin) + 2 ** 27;
    const xOf = (t) => box.x + gutter + ((t - whole.t0) / (whole.t1 - whole.t0)) * W;
    const half = (whole.t1 - whole.t0) * 0.04;
    const [xa, xb] = [Math.max(box.x + gutter + 2, xOf(centre - half)), Math.min(box.x + box.width - 2, xOf(centre + half))];
    await page.mouse.move(xa, box.y + 8);
    await page.mouse.down();
    await page.mouse.move((xa + xb) / 2, box.y + 8, { steps: 4 });
    await page.mouse.move(xb, box.y + 8, { steps: 4 });
    await page.mouse.up();
    await page.waitForSelector('[data-testid="range-stats"] [data-testid="range-kernels"]', { timeout: T });
    const startNs = BigInt(await page.getAttribute('[data-testid="range-stats"]', 'data-start-ns'));
    const endNs = BigInt(await page.getAttribute('[data-testid="range-stats"]', 'data-end-ns'));
    assert.ok(endNs > startNs);
    // the view is the range
    await waitPainted(page);
    const vp = await page.evaluate(() => window.__gpuflTimeline.viewport());
    assert.ok(Math.abs(vp.t0 - Number(startNs - origin)) <= 1 && Math.abs(vp.t1 - Number(endNs - origin)) <= Math.max(1, 1000 - Number(endNs - startNs)), `viewport ${JSON.stringify(vp)} vs ${startNs - origin}..${endNs - origin}`);
    // the tables are the backend's aggregates of that range
    const r = await api(ctx, `/sessions/${s.session_id}/range?start_ns=${startNs}&end_ns=${endNs}&limit=200`);
    assert.ok(r.kernels.length > 0, 'the selected range has kernels');
    const rows = await page.$$eval('[data-testid="range-kernels"] tbody tr', (trs) => trs.map((tr) => [tr.getAttribute('data-name'), Number(tr.children[1].textContent.replace(/,/g, ''))]));
    assert.deepEqual(rows, r.kernels.map((k) => [k.name ?? '', k.count]));
    const kinds = await page.$$eval('[data-testid="range-copies"] tbody tr', (trs) => trs.map((tr) => [tr.getAttribute('data-kind'), Number(tr.children[1].textContent.replace(/,/g, ''))]));
    assert.deepEqual(kinds, r.copies.map((c) => [c.kind, c.count]));
    const paths = await page.$$eval('[data-testid="range-scopes"] tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-path')));
    assert.deepEqual(paths, r.scopes.map((x) => x.path));
    const cap = await page.textContent('[data-testid="range-kernels"] caption');
    assert.ok(cap.includes(r.kernels_total.toLocaleString('en-US')), `caption ${cap}`);
    await shot('03c-range-selection');
    // shift-drag on a lane selects too (a plain drag there still pans)
    const lane = await page.evaluate(() => window.__gpuflTimeline.rows().find((r) => r.kind === 'kernel'));
    await page.keyboard.down('Shift');
    await page.mouse.move(box.x + gutter + W * 0.25, box.y + lane.y + lane.h / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + gutter + W * 0.75, box.y + lane.y + lane.h / 2, { steps: 5 });
    await page.mouse.up();
    await page.keyboard.up('Shift');
    await page.waitForFunction((a) => document.querySelector('[data-testid="range-stats"]')?.getAttribute('data-start-ns') !== a, String(startNs), { timeout: T });
    const vp2 = await page.evaluate(() => window.__gpuflTimeline.viewport());
    assert.ok(vp2.t1 - vp2.t0 < (vp.t1 - vp.t0) * 0.6, 'shift-drag zoomed to half the window');
    await page.click('[data-testid="range-stats"] button[aria-label="Clear the selected range"]');
    await page.waitForSelector('[data-testid="range-stats"]', { state: 'detached', timeout: T });
    await page.evaluate((v) => window.__gpuflTimeline.setViewport(v), whole);
    await waitPainted(page);
    await urlFollowsWindow(page); // the next tests read the window from the URL
  },
};

export const search = {
  name: 'search across lanes: next / previous instance of a name, each zoomed to (#24)',
  async run(ctx) {
    const { page, shot } = ctx;
    const s = ctx.state.session;
    const origin = BigInt(ctx.state.detail.header.start_ns);
    const sum = await api(ctx, `/sessions/${s.session_id}/kernels/summary?sort=count&limit=1000`);
    // a substring of a frequent kernel's name, in other case (the search ignores case)
    const name = sum.items.find((r) => r.name && r.count >= 3).name;
    const words = name.split(/[^A-Za-z0-9_]+/).filter((w) => w.length >= 6);
    const q = (words[words.length - 1] ?? name.slice(0, 8)).toUpperCase();
    await page.evaluate(() => window.__gpuflTimeline.setViewport({ t0: 0, t1: 1e6 }));
    await waitPainted(page);
    await urlFollowsWindow(page);
    const t0 = (await page.evaluate(() => window.__gpuflTimeline.viewport())).t0;
    await page.fill('input[aria-label="Search the timeline"]', q);
    const visit = async (key, at, direction) => {
      const want = await api(ctx, `/sessions/${s.session_id}/search?text=${encodeURIComponent(q)}&at_ns=${at}&direction=${direction}`);
      assert.ok(want.match, `no ${direction} match for ${q}`);
      await page.press('input[aria-label="Search the timeline"]', key);
      const m = want.match;
      const a = Number(BigInt(m.start_ns) - origin);
      const b = m.end_ns === null ? a : Number(BigInt(m.end_ns) - origin);
      await page.waitForFunction(([a, b]) => {
        const v = window.__gpuflTimeline.viewport();
        return v.t0 <= a && v.t1 >= b && v.t1 - v.t0 <= Math.max(3 * (b - a), 10_000) + 2;
      }, [a, b], { timeout: T });
      const status = await page.textContent('[data-testid="search-status"]');
      assert.ok(status.includes(`${want.kernels.toLocaleString('en-US')} kernel`) && status.includes(`${want.scopes.toLocaleString('en-US')} scope`), `status ${status} vs ${JSON.stringify(want)}`);
      if (m.kind === 'kernel') {
        await page.waitForFunction((id) => new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1)).get('k') === id, m.id, { timeout: T });
        await page.waitForFunction((id) => document.querySelector('[data-testid="inspector"] [data-field="id"] dd')?.textContent.trim() === id, m.id, { timeout: T });
      }
      return m;
    };
    const first = await visit('Enter', origin + BigInt(Math.round(t0)) - 1n, 'next');
    const second = await visit('Enter', first.start_ns, 'next');
    assert.ok(BigInt(second.start_ns) > BigInt(first.start_ns));
    await waitPainted(page);
    await shot('03d-search');
    const back = await visit('Shift+Enter', second.start_ns, 'prev');
    assert.equal(back.id, first.id);
    // nothing matches: said so, the view stays
    const before = await page.evaluate(() => window.__gpuflTimeline.viewport());
    await page.fill('input[aria-label="Search the timeline"]', 'no kernel is called this');
    await page.press('input[aria-label="Search the timeline"]', 'Enter');
    await page.waitForFunction(() => /0 kernels, 0 scope instances match/.test(document.querySelector('[data-testid="search-status"]').textContent), null, { timeout: T });
    assert.deepEqual(await page.evaluate(() => window.__gpuflTimeline.viewport()), before);
  },
};

export const searchTies = {
  name: 'search steps through instances that start at the same ns one by one (gpt_train overlaid on itself, app "-overlaid") (#24)',
  async run(ctx) {
    const { page, backend } = ctx;
    // two copies of the capture's device records at the same timestamps: every kernel has a twin
    const cap = join(REPO, 'examples/captures/gpt_train');
    const twins = await buildTiledSession(backend, cap, 2 * deviceRecords(cap).filter((r) => r.type === 'kernel').length, { overlay: true });
    assert.equal(twins.copies, 2);
    const sid = encodeURIComponent(twins.sid);
    const detail = await api(ctx, `/sessions/${sid}`);
    assert.ok(detail.header.app.endsWith('-overlaid'));
    const q = 'forward';
    // the backend's walk, each step from the match before it (its start, kind and id)
    const want = [];
    let at = `at_ns=${BigInt(detail.header.start_ns) - 1n}`;
    for (let i = 0; i < 6; i++) {
      const r = await api(ctx, `/sessions/${sid}/search?text=${q}&direction=next&${at}`);
      assert.ok(r.match, `match ${i}`);
      want.push(r.match);
      at = `at_ns=${r.match.start_ns}&at_kind=${r.match.kind}&at_id=${r.match.id}`;
    }
    assert.equal(new Set(want.map((m) => m.id)).size, want.length, 'every step a new instance');
    for (let i = 0; i < want.length; i += 2) assert.equal(want[i].start_ns, want[i + 1].start_ns, `match ${i} and its twin start together`);
    await page.goto(`${backend.url}/#/s/${sid}/kernels`);
    await waitPainted(page);
    await page.fill('input[aria-label="Search the timeline"]', q);
    const selected = (id) => page.waitForFunction((id) => new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1)).get('k') === id, id, { timeout: T });
    for (const m of want) {
      await page.press('input[aria-label="Search the timeline"]', 'Enter');
      await selected(m.id);
    }
    for (const m of want.slice(0, -1).reverse()) {
      await page.press('input[aria-label="Search the timeline"]', 'Shift+Enter');
      await selected(m.id);
    }
  },
};

export const atScale = {
  name: 'at scale (gpt_train tiled to ~40k kernels, app "-tiled"): the memory lane and a highlight count every copy and instance (#24)',
  async run(ctx) {
    const { page, shot, backend } = ctx;
    const tiled = await buildTiledSession(backend, join(REPO, 'examples/captures/gpt_train'), 40_000);
    const detail = await api(ctx, `/sessions/${encodeURIComponent(tiled.sid)}`);
    assert.ok(detail.header.app.endsWith('-tiled'));
    const mem = detail.totals.memcpys + detail.totals.memsets;
    assert.ok(mem > 4000, `tiled session has ${mem} copies and memsets: too few to pass the lane's 2,000 per kind`);
    // the most frequent kernel name: more instances than the old highlight cap of 5,000
    const sum = await api(ctx, `/sessions/${encodeURIComponent(tiled.sid)}/kernels/summary?sort=count&limit=1`);
    const top = sum.items[0];
    assert.ok(top.count > 5000, `top name has ${top.count} instances`);
    await page.goto(`${backend.url}/#/s/${encodeURIComponent(tiled.sid)}/kernels?name=${encodeURIComponent(top.name)}`);
    await waitPainted(page);
    await page.waitForFunction((n) => window.__gpuflTimeline.memcpyCount() === n, mem, { timeout: T }).catch(() => {});
    assert.equal(await page.evaluate(() => window.__gpuflTimeline.memcpyCount()), mem, 'copies and memsets counted in the whole-session view');
    await page.waitForFunction((n) => window.__gpuflTimeline.highlightCount() === n, top.count, { timeout: T }).catch(() => {});
    assert.equal(await page.evaluate(() => window.__gpuflTimeline.highlightCount()), top.count, 'highlighted instances');
    // hovering the memory lane where it is busiest names a bucket's count and bytes (rows read once all are in)
    await waitSettled(page);
    const lanes = await page.evaluate(() => window.__gpuflTimeline.rows().filter((r) => r.kind === 'memcpy'));
    const box = await page.locator('canvas[data-testid="timeline"]').boundingBox();
    let tip = '';
    for (const lane of lanes)
      for (let x = box.width - 4; x > 210 && !/ here — /.test(tip); x -= 3) {
        await page.mouse.move(box.x + x, box.y + lane.y + lane.h / 2);
        tip = (await page.textContent('.timeline .tooltip')) ?? '';
      }
    assert.match(tip, /^[\d,]+ (HtoD|DtoH|DtoD|PtoP|HtoH|memset) here — .* · longest /, `memory lane tooltip: ${tip}`);
    await shot('11-tiled-memory-lane');
  },
};
