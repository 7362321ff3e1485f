// The browser tests, in order (each builds on the page state the previous one left).
// Expected values always come from the backend API in the same run.
import assert from 'node:assert/strict';
import { basename, join } from 'node:path';
import { log, REPO, segmentFiles } from './harness.mjs';
import { api, checkScopeLane, hashParams, T, urlFollowsWindow, waitPainted } from './steps.mjs';
import { captureBands } from './capture.mjs';
import * as compareTests from './compare.mjs';
import * as deepTests from './deep.mjs';
import * as timelineTests from './timeline.mjs';
import * as trackTests from './tracks.mjs';

export const tests = [
  {
    name: 'sign-in rejects a bad key with a clear 401 message',
    critical: true,
    async run({ backend, page, shot }) {
      await page.goto(backend.url + '/');
      await page.fill('#apikey', 'not-a-real-key');
      await page.click('button[type=submit]');
      const msg = await page.textContent('[data-testid="signin-error"]', { timeout: T });
      assert.match(msg, /401/);
      // #25: one clear error, not a second box claiming the key was revoked (it was never signed in)
      await page.waitForTimeout(300);
      const boxes = await page.$$eval('.signin [role=alert]', (els) => els.map((e) => e.textContent));
      assert.equal(boxes.length, 1, `error boxes: ${JSON.stringify(boxes)}`);
      await shot('01-signin-401');
    },
  },
  {
    name: 'sign-in with a key lacking the read role shows 403',
    async run({ page, ingestKey }) {
      await page.fill('#apikey', ingestKey);
      await page.click('button[type=submit]');
      await page.waitForFunction(() => /403/.test(document.querySelector('[data-testid="signin-error"]')?.textContent ?? ''), null, { timeout: T });
    },
  },
  {
    name: 'sign in with a read key and list sessions newest first',
    critical: true,
    async run(ctx) {
      const { page, readKey, sessions, shot } = ctx;
      await page.fill('#apikey', readKey);
      await page.click('button[type=submit]');
      await page.waitForSelector('[data-testid="sessions"] tbody tr', { timeout: T });
      const ids = await page.$$eval('[data-testid="sessions"] tbody tr', (rows) => rows.map((r) => r.getAttribute('data-session')));
      const apiIds = (await api(ctx, '/sessions?limit=100')).items.map((s) => s.session_id);
      assert.deepEqual(ids, apiIds);
      // each row shows the GPU names and the kernel count the API reports
      for (const s of sessions) {
        const text = await page.textContent(`tr[data-session="${s.session_id}"]`);
        for (const g of s.gpus) assert.ok(text.includes(g), `row of ${s.session_id} lacks GPU ${g}`);
        assert.ok(text.includes(s.kernels.toLocaleString('en-US')), `row of ${s.session_id} lacks kernel count ${s.kernels}`);
      }
      // search filters rows
      const target = [...sessions].sort((a, b) => b.kernels - a.kernels)[0];
      await page.fill('input[aria-label="Search sessions"]', target.session_id);
      await page.waitForFunction((id) => {
        const rows = [...document.querySelectorAll('[data-testid="sessions"] tbody tr')];
        return rows.length >= 1 && rows.every((r) => r.getAttribute('data-session').includes(id) || r.textContent.includes(id));
      }, target.session_id, { timeout: T });
      await shot('02-sessions');
      ctx.state.session = target;
    },
  },
  {
    name: 'open the session: header and Kernels timeline paint',
    critical: true,
    async run(ctx) {
      const { page, shot } = ctx;
      const s = ctx.state.session;
      // every API request the page starts from here on, with when it started (resource timing lists a request
      // only once it has finished: one still running at the first frame would be missed)
      await page.evaluate(() => {
        const plain = window.fetch;
        window.__e2eFetches = [];
        window.__e2ePlainFetch = plain;
        window.fetch = (input, init) => {
          window.__e2eFetches.push([String(input instanceof Request ? input.url : input), performance.now()]);
          return plain(input, init);
        };
      });
      await page.click(`tr[data-session="${s.session_id}"]`);
      const title = await page.textContent('[data-testid="session-title"]', { timeout: T });
      assert.equal(title.trim(), `Session: ${s.app} [host: ${s.host}]`);
      await waitPainted(page);
      // #24: the first frame waits only for what it draws (the session detail and the kernel tiles); the deep
      // summary, the kernel table and the side data are asked for after it
      const before = await page.evaluate(() => {
        window.fetch = window.__e2ePlainFetch;
        const painted = window.__gpuflTimeline.firstDataPaint;
        return window.__e2eFetches
          .filter(([url, t]) => url.includes('/api/v1/sessions/') && t < painted)
          .map(([url]) => new URL(url, window.location.href).pathname.replace(/^\/api\/v1\/sessions\/[^/]+/, ''));
      });
      assert.ok(before.includes(''), `the session detail is asked for before the first frame: ${before}`);
      for (const path of before) assert.ok(['', '/kernels', '/capture-windows'].includes(path), `asked for before the first frame: ${path} (all: ${before})`);
      // one lane per (device, stream) the backend reports for the whole session
      const detail = await api(ctx, `/sessions/${s.session_id}`);
      ctx.state.detail = detail;
      const start = BigInt(detail.header.start_ns);
      const lastNs = detail.streams.reduce((m, x) => (x.last_ns !== null && BigInt(x.last_ns) > m ? BigInt(x.last_ns) : m), start);
      const lod = await api(ctx, `/sessions/${s.session_id}/kernels?start_ns=${start}&end_ns=${lastNs + 1n}&resolution_ns=${2 ** 32}`);
      const lanes = new Set(lod.buckets.map((b) => `${b.device_id}:${b.stream_id}`));
      const drawnLanes = await page.getAttribute('canvas[data-testid="timeline"]', 'data-lanes');
      assert.equal(Number(drawnLanes), lanes.size, 'lane count');
      const rects = await page.evaluate(() => window.__gpuflTimeline.rects);
      assert.ok(rects > 0, 'timeline drew nothing');
      // memory copies and memsets: one lane of their own, filled from /memcpy and /memsets
      const mem = detail.totals.memcpys + detail.totals.memsets;
      const hasMemcpyLane = await page.evaluate(() => window.__gpuflTimeline.rows().some((r) => r.kind === 'memcpy'));
      assert.equal(hasMemcpyLane, mem > 0, 'memory lane');
      if (mem > 0) {
        await page.waitForFunction(() => window.__gpuflTimeline.memcpyCount() > 0, null, { timeout: T });
        const n = await page.evaluate(() => window.__gpuflTimeline.memcpyCount());
        // #24: every copy and memset counted (one by one, or in per-pixel buckets past 2,000), none cut
        assert.equal(n, detail.totals.memcpys + detail.totals.memsets, 'copies and memsets loaded for the whole-session view');
      }
      await shot('03-kernels-timeline');
    },
  },
  {
    name: 'scope lane above the GPU lanes draws the instances /scopes/instances returns for the window',
    async run(ctx) {
      const { page, shot } = ctx;
      const detail = ctx.state.detail;
      const origin = BigInt(detail.header.start_ns);
      const rows = await page.evaluate(() => window.__gpuflTimeline.rows());
      if (detail.totals.scope_instances === 0) {
        assert.ok(!rows.some((r) => r.key.startsWith('scope:')), 'scope rows drawn for a session without scopes');
        return;
      }
      const firstGpu = rows.find((r) => r.kind === 'kernel');
      const scope0 = rows.find((r) => r.key === 'scope:0');
      assert.ok(scope0 && firstGpu && scope0.y < firstGpu.y, 'scope lane is not above the GPU lanes');
      const whole = await page.evaluate(() => window.__gpuflTimeline.viewport());
      const { items, rel } = await checkScopeLane(ctx, page, origin);
      assert.ok(items.length > 0, 'no scope instances for the whole-session window');
      const maxDepth = Math.max(...items.map((i) => i.depth));
      const nRows = Number(await page.getAttribute('canvas[data-testid="timeline"]', 'data-scope-rows'));
      assert.ok(nRows >= Math.min(6, maxDepth + 1), `scope rows ${nRows} for max depth ${maxDepth}`);
      // #24: one track per thread: every thread of the loaded instances has its rows, and no two closed
      // instances of one row overlap (ranges of different threads used to be painted over each other)
      const keys = await page.evaluate((its) => its.map((i) => window.__gpuflTimeline.scopeRowKey(i.thread_id, i.depth)), items.map((i) => ({ thread_id: i.thread_id, depth: i.depth })));
      assert.ok(keys.every((k) => k !== null), 'an instance without a row');
      const threads = new Set(items.map((i) => i.thread_id));
      assert.ok(nRows >= threads.size, `scope rows ${nRows} for ${threads.size} threads`);
      const byRow = new Map();
      items.forEach((i, n) => {
        if (i.depth >= 5 || i.end_ns === null) return; // depths past the sixth share a row
        if (!byRow.has(keys[n])) byRow.set(keys[n], []);
        byRow.get(keys[n]).push([rel(i.start_ns), rel(i.end_ns), i.thread_id]);
      });
      for (const [k, spans] of byRow) {
        spans.sort((a, b) => a[0] - b[0]);
        assert.equal(new Set(spans.map((x) => x[2])).size, 1, `row ${k} mixes threads`);
        for (let j = 1; j < spans.length; j++) assert.ok(spans[j][0] >= spans[j - 1][1], `row ${k}: overlapping instances at ${spans[j][0]}`);
      }
      // zoom onto a nested instance: a new query at the finer resolution, checked the same way
      const closed = items.filter((i) => i.end_ns !== null);
      const pick = closed.filter((i) => i.depth > 0).sort((a, b) => rel(b.end_ns) - rel(b.start_ns) - (rel(a.end_ns) - rel(a.start_ns)))[0] ?? closed[0];
      if (pick) {
        const a = rel(pick.start_ns);
        const b = rel(pick.end_ns);
        const pad = Math.max(1000, (b - a) * 0.25);
        await page.evaluate(([t0, t1]) => window.__gpuflTimeline.setViewport({ t0, t1 }), [a - pad, b + pad]);
        await waitPainted(page);
        await checkScopeLane(ctx, page, origin);
        // hovering it shows its path
        const { x, y } = await page.evaluate(([t0, t1, d, th]) => {
          const tl = window.__gpuflTimeline;
          const row = tl.rows().find((r) => r.key === tl.scopeRowKey(th, d));
          return { x: (tl.plotX(t0) + tl.plotX(t1)) / 2, y: row ? row.y + row.h / 2 : -1 };
        }, [a, b, pick.depth, pick.thread_id]);
        assert.ok(y > 0, 'row of the picked scope not drawn');
        await page.locator('canvas[data-testid="timeline"]').hover({ position: { x, y } });
        await page.waitForFunction((p) => (document.querySelector('.timeline .tooltip')?.textContent ?? '').includes(p), pick.path, { timeout: T });
        await shot('03b-scope-lane');
      }
      await page.evaluate((v) => window.__gpuflTimeline.setViewport(v), whole);
      await waitPainted(page);
    },
  },
  timelineTests.rangeSelection,
  {
    name: 'the minimap moves the window: a click at its middle centres the session',
    async run(ctx) {
      const { page } = ctx;
      await page.evaluate(() => {
        const v = window.__gpuflTimeline.viewport();
        window.__gpuflTimeline.setViewport({ t0: v.t0, t1: v.t0 + (v.t1 - v.t0) / 10 });
      });
      const box = await page.locator('canvas[data-testid="minimap"]').boundingBox();
      const gutter = await page.evaluate(() => window.__gpuflTimeline.gutter);
      await page.mouse.click(box.x + gutter + (box.width - gutter) / 2, box.y + box.height / 2);
      const detail = ctx.state.detail;
      const start = BigInt(detail.header.start_ns);
      const lastNs = detail.streams.reduce((m, x) => (x.last_ns !== null && BigInt(x.last_ns) > m ? BigInt(x.last_ns) : m), start);
      const range = Number(lastNs - start);
      const v = await page.evaluate(() => window.__gpuflTimeline.viewport());
      assert.ok(Math.abs((v.t0 + v.t1) / 2 - range / 2) < range * 0.02, `window ${JSON.stringify(v)} not centred on ${range / 2}`);
      await waitPainted(page);
    },
  },
  {
    name: 'zoom with the keyboard and the wheel updates the URL window',
    async run({ page }) {
      const before = hashParams(page.url());
      await page.locator('canvas[data-testid="timeline"]').hover({ position: { x: 700, y: 40 } });
      await page.keyboard.press('w');
      await page.keyboard.press('w');
      await page.mouse.wheel(0, -300);
      await page.waitForFunction((b) => {
        const h = window.location.hash;
        const q = new URLSearchParams(h.slice(h.indexOf('?') + 1));
        return q.get('t0') !== null && q.get('t1') !== null && Number(q.get('t1')) - Number(q.get('t0')) < b;
      }, Number(before.get('t1') ?? Infinity) - Number(before.get('t0') ?? 0), { timeout: T });
      await page.keyboard.press('d');
      await waitPainted(page);
    },
  },
  {
    name: 'click a kernel: the inspector shows what /kernels/{id} returns',
    critical: true,
    async run(ctx) {
      const { page, shot } = ctx;
      const s = ctx.state.session;
      const detail = ctx.state.detail;
      const start = BigInt(detail.header.start_ns);
      // a kernel with a call stack if the capture has one, else the longest of the first page
      const page1 = (await api(ctx, `/sessions/${s.session_id}/kernels?limit=2000`)).items;
      assert.ok(page1.length > 0, 'session has no kernels');
      const withStack = page1.filter((k) => k.stack_id !== null);
      const pick = (withStack.length ? withStack : page1).reduce((a, b) => (b.dur_ns > a.dur_ns ? b : a));
      const k0 = Number(BigInt(pick.start_ns) - start);
      const k1 = Number(BigInt(pick.end_ns) - start);
      const dur = Math.max(1000, k1 - k0);
      await page.evaluate(([a, b]) => window.__gpuflTimeline.setViewport({ t0: a, t1: b }), [k0 - dur, k1 + dur]);
      await waitPainted(page);
      const { x, y } = await page.evaluate(([a, b, lane]) => {
        const tl = window.__gpuflTimeline;
        const row = tl.rows().find((r) => r.key === lane);
        return { x: (tl.plotX(a) + tl.plotX(b)) / 2, y: row ? row.y + row.h / 2 : -1 };
      }, [k0, k1, `${pick.device_id}:${pick.stream_id}`]);
      assert.ok(y > 0, 'lane of the picked kernel not drawn');
      const widthBefore = await page.evaluate(() => document.querySelector('canvas[data-testid="timeline"]').getBoundingClientRect().width);
      await page.locator('canvas[data-testid="timeline"]').click({ position: { x, y } });
      await page.waitForFunction((id) => new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1)).get('k') === id, pick.id, { timeout: T });
      await page.waitForSelector('[data-testid="inspector"] [data-field="name"]', { timeout: T });
      const k = await api(ctx, `/sessions/${s.session_id}/kernels/${pick.id}`);
      const field = async (f) => (await page.textContent(`[data-testid="inspector"] [data-field="${f}"] dd`)).trim();
      // #24: the inspector's column was there before the click: the timeline keeps its width
      const widthAfter = await page.evaluate(() => document.querySelector('canvas[data-testid="timeline"]').getBoundingClientRect().width);
      assert.equal(widthAfter, widthBefore, 'the inspector reflowed the timeline');
      // #24: a short name (no return type, template arguments or parameters), the full one a click away
      const shown = await field('name');
      if (k.name === null) assert.equal(shown, '(name not yet known)');
      else {
        assert.ok(!shown.includes('<') && !shown.endsWith(')') && !shown.startsWith('void '), `short name ${shown} of ${k.name}`);
        assert.ok(k.name.replace(/<.*>/g, '').includes(shown.split('::').pop()), `short name ${shown} of ${k.name}`);
        if (shown !== k.name) assert.equal((await page.textContent('[data-testid="inspector"] [data-field="name-full"] code')).trim(), k.name);
      }
      // #24: start to the ns, from the absolute times the API gives
      const rel = BigInt(k.start_ns) - start;
      assert.equal(await field('start'), `+${rel / 1_000_000_000n}.${(rel % 1_000_000_000n).toString().padStart(9, '0')} s from session start`);
      if (k.api_start_ns !== null) assert.match(await field('api'), /before the kernel started/);
      assert.equal(await field('dur_ns'), String(k.dur_ns));
      assert.equal(await field('stream'), String(k.stream_id));
      assert.ok((await field('device')).startsWith(`GPU ${k.device_id}`));
      assert.equal(await field('id'), k.id);
      const L = k.launch ?? {};
      if (L.grid) assert.equal(await field('grid'), `(${L.grid.join(', ')})`);
      if (L.block) assert.equal(await field('block'), `(${L.block.join(', ')})`);
      if (L.num_regs !== undefined) assert.equal(await field('registers'), String(L.num_regs));
      for (const [f, key] of [['static_smem', 'static_shared_bytes'], ['dynamic_smem', 'dyn_shared_bytes'], ['local', 'local_bytes']]) {
        // absent = the contract default, 0
        if (k.launch) assert.ok((await field(f)).includes(`${L[key] ?? 0} B`), `${f}: ${await field(f)} vs ${L[key]}`);
      }
      if (typeof L.occupancy === 'number') assert.ok((await field('occupancy')).startsWith(`${(L.occupancy * 100).toFixed(1)}%`));
      if (L.limiting_resource && L.occupancy < 1) assert.ok((await field('occupancy')).includes('limited by'));
      if (L.occupancy >= 1) assert.ok(!(await field('occupancy')).includes('limited by'), 'full occupancy phrased as limited');
      if (k.scope?.path) assert.equal(await field('scope'), k.scope.path);
      if (k.stack?.length) {
        const frames = await page.$$eval('[data-testid="stack"] li', (li) => li.map((x) => x.textContent));
        assert.equal(frames.length, k.stack.length);
        k.stack.forEach((f, i) => assert.ok(frames[i].includes(f.function) && frames[i].includes(`${f.file}:${f.line}`), `frame ${i}`));
      }
      // #24: axis labels readable at this zoom: one unit, distinct, no "583000 µs"
      const ticks = await page.evaluate(() => window.__gpuflTimeline.ticks());
      assert.ok(ticks.length >= 2, `ticks ${ticks}`);
      assert.equal(new Set(ticks).size, ticks.length, `repeated tick labels ${ticks}`);
      for (const t of ticks) assert.match(t, /^-?\d{1,4}(\.\d+)? (ns|µs|ms|s)$/, `tick ${t}`);
      assert.equal(new Set(ticks.map((t) => t.split(' ')[1])).size, 1, `one unit per axis: ${ticks}`);
      ctx.state.kernel = k;
      await shot('04-inspector');
    },
  },
  trackTests.launchCalls,
  trackTests.tooltip,
  trackTests.copies,
  trackTests.height,
  {
    name: 'summary table: rows from /kernels/summary, sortable, row highlights its kernel',
    async run(ctx) {
      const { page, shot } = ctx;
      const s = ctx.state.session;
      const sum = await api(ctx, `/sessions/${s.session_id}/kernels/summary?sort=total&limit=1000`);
      await page.waitForSelector('[data-testid="summary"] tbody tr', { timeout: T });
      const names = await page.$$eval('[data-testid="summary"] tbody tr td.kname', (td) => td.map((x) => x.textContent.trim()));
      assert.deepEqual(names, sum.items.map((r) => r.name ?? '(unnamed)'));
      await page.click('[data-testid="summary"] th:has-text("Count")');
      const counts = await page.$$eval('[data-testid="summary"] tbody tr td:nth-child(2)', (td) => td.map((x) => Number(x.textContent.replace(/,/g, ''))));
      assert.deepEqual(counts, [...counts].sort((a, b) => b - a));
      assert.deepEqual([...counts].sort((a, b) => a - b), sum.items.map((r) => r.count).sort((a, b) => a - b));
      await page.click('[data-testid="summary"] tbody tr:first-child');
      await page.waitForFunction(() => new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1)).get('name') !== null, null, { timeout: T });
      await page.waitForSelector('[data-testid="summary"] tbody tr.selected', { timeout: T });
      // the selected row opens its duration histogram: the buckets /kernels/histogram counts in SQL
      const selName = hashParams(page.url()).get('name');
      const row = sum.items.find((r) => r.name === selName);
      await page.waitForSelector('[data-testid="histogram"]', { timeout: T });
      const drawn = JSON.parse(await page.getAttribute('[data-testid="histogram"]', 'data-counts'));
      const h = await api(ctx, `/sessions/${s.session_id}/kernels/histogram?name=${encodeURIComponent(selName)}`);
      assert.deepEqual(drawn, h.buckets.map((b) => b.count));
      assert.equal(drawn.reduce((a, b) => a + b, 0), row.count, 'histogram holds every launch');
      assert.match(await page.textContent('[data-testid="histogram"] figcaption'), /4 per doubling/);
      await shot('05-summary-highlight');
      // #24: the highlight marks every instance of the name (the backend's buckets), not the first 5,000
      {
        const o = BigInt(ctx.state.detail.header.start_ns);
        const last = ctx.state.detail.streams.reduce((m, x) => (x.last_ns !== null && BigInt(x.last_ns) > m ? BigInt(x.last_ns) : m), o);
        const before = await page.evaluate(() => window.__gpuflTimeline.viewport());
        await page.evaluate((end) => window.__gpuflTimeline.setViewport({ t0: 0, t1: end }), Number(last - o) + 1);
        await waitPainted(page);
        await page.waitForFunction((n) => window.__gpuflTimeline.highlightCount() === n, row.count, { timeout: T }).catch(() => {});
        assert.equal(await page.evaluate(() => window.__gpuflTimeline.highlightCount()), row.count, 'highlighted instances over the whole session');
        await page.evaluate((vp) => window.__gpuflTimeline.setViewport(vp), before); // the window the later tests expect
        await waitPainted(page);
      }
      // "visible range only": zoom the timeline to the middle tenth; the table shows /kernels/summary for that window
      const detail = ctx.state.detail;
      const origin = BigInt(detail.header.start_ns);
      const whole = await page.evaluate(() => window.__gpuflTimeline.viewport());
      const mid = (whole.t0 + whole.t1) / 2;
      const span = (whole.t1 - whole.t0) / 10;
      await page.evaluate(([a, b]) => window.__gpuflTimeline.setViewport({ t0: a, t1: b }), [mid - span / 2, mid + span / 2]);
      await waitPainted(page);
      await page.check('[data-testid="visible-only"]');
      await page.waitForFunction(() => /kernels overlapping/.test(document.querySelector('[data-testid="summary-scope"]').textContent) && !/updating/.test(document.querySelector('[data-testid="summary-scope"]').textContent), null, { timeout: T });
      const q = hashParams(page.url());
      const a = origin + BigInt(Math.max(0, Number(q.get('t0'))));
      const b = origin + BigInt(Number(q.get('t1')));
      const part = await api(ctx, `/sessions/${s.session_id}/kernels/summary?sort=total&limit=1000&start_ns=${a}&end_ns=${b}`);
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="summary"] tbody tr:not(.hist-row)').length === n || (n === 0 && document.querySelector('.summary .state.empty')), part.items.length, { timeout: T });
      const shown = await page.$$eval('[data-testid="summary"] tbody tr:not(.hist-row)', (trs) => trs.map((tr) => [tr.querySelector('td.kname').textContent.trim(), Number(tr.children[1].textContent.replace(/,/g, ''))]));
      const want = part.items.map((r) => [r.name ?? '(unnamed)', r.count]);
      assert.deepEqual(new Set(shown.map(String)), new Set(want.map(String)), 'visible-range summary vs the API');
      assert.ok(part.items.reduce((x, r) => x + r.count, 0) < sum.items.reduce((x, r) => x + r.count, 0), 'a tenth of the session has fewer kernels');
      await shot('05b-summary-visible-range');
      await page.uncheck('[data-testid="visible-only"]');
      await page.waitForFunction(() => /whole session/.test(document.querySelector('[data-testid="summary-scope"]').textContent), null, { timeout: T });
      await page.evaluate((v) => window.__gpuflTimeline.setViewport(v), whole);
      await waitPainted(page);
    },
  },
  timelineTests.search,
  {
    name: 'deep link restores tab, window and selected kernel after reload',
    async run(ctx) {
      const { page } = ctx;
      await urlFollowsWindow(page); // or the reload races the URL update
      const url = page.url();
      const q = hashParams(url);
      await page.reload();
      await page.waitForSelector('[data-testid="inspector"] [data-field="id"]', { timeout: T });
      assert.equal((await page.textContent('[data-testid="inspector"] [data-field="id"] dd')).trim(), q.get('k'));
      const vp = await page.evaluate(() => window.__gpuflTimeline.viewport());
      assert.ok(Math.abs(vp.t0 - Number(q.get('t0'))) <= 2 && Math.abs(vp.t1 - Number(q.get('t1'))) <= 2, `viewport ${JSON.stringify(vp)} vs ${q}`);
    },
  },
  {
    name: 'Scopes tab shows the tree /scopes returns',
    async run(ctx) {
      const { page, shot } = ctx;
      const s = ctx.state.session;
      const tree = await api(ctx, `/sessions/${s.session_id}/scopes`);
      await page.click('button[role=tab]:has-text("Scopes")');
      if (!tree.roots.length) {
        await page.waitForSelector('.state.empty', { timeout: T });
        await shot('06-scopes-empty');
        return;
      }
      await page.waitForSelector('[data-testid="scopes"] tbody tr', { timeout: T });
      for (const r of tree.roots) {
        const row = page.locator(`[data-testid="scopes"] tr[data-scope="${r.path}"]`);
        const cells = await row.locator('td').allTextContents();
        assert.equal(cells[1].trim(), r.calls.toLocaleString('en-US'), `calls of ${r.path}`);
        assert.equal(cells[6].trim(), r.kernels_total.toLocaleString('en-US'), `kernels of ${r.path}`);
      }
      // select the scope with the most direct kernels and see its kernels
      const all = [];
      const walk = (ns) => ns.forEach((n) => (all.push(n), walk(n.children)));
      walk(tree.roots);
      const best = all.reduce((a, b) => (b.kernels > a.kernels ? b : a));
      if (best.depth > 0 || !(await page.locator(`tr[data-scope="${best.path}"]`).count())) {
        await page.goto(page.url().replace(/\?.*$/, '') + `?scope=${best.scope_id}`);
      } else await page.click(`tr[data-scope="${best.path}"]`);
      if (best.kernels > 0) {
        await page.waitForSelector('[data-testid="scope-kernels"] tbody tr', { timeout: T });
        const n = await page.locator('[data-testid="scope-kernels"] tbody tr').count();
        assert.equal(n, Math.min(200, best.kernels));
      }
      await shot('06-scopes');
      // #25: each call of the scope links to the timeline, zoomed onto that call
      const calls = await api(ctx, `/sessions/${s.session_id}/scopes/instances?scope=${best.scope_id}&limit=200`);
      await page.waitForSelector('[data-testid="scope-calls"] tbody tr', { timeout: T });
      const listed = await page.$$eval('[data-testid="scope-calls"] tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-inst')));
      assert.deepEqual(listed, calls.items.map((c) => String(c.inst)));
      assert.equal(calls.items.length, Math.min(200, best.calls));
      const pickCall = calls.items.filter((c) => c.end_ns !== null).at(-1) ?? calls.items[0];
      await page.click(`[data-testid="scope-calls"] tr[data-inst="${pickCall.inst}"]`);
      await waitPainted(page);
      const origin = BigInt(ctx.state.detail.header.start_ns);
      const ca = Number(BigInt(pickCall.start_ns) - origin);
      const cb = pickCall.end_ns === null ? ca : Number(BigInt(pickCall.end_ns) - origin);
      const v = await page.evaluate(() => window.__gpuflTimeline.viewport());
      assert.ok(v.t0 <= ca && v.t1 >= cb, `timeline ${JSON.stringify(v)} does not show the call ${ca}..${cb}`);
      assert.ok(v.t1 - v.t0 <= (cb - ca) * 1.2 + 2000, `timeline ${JSON.stringify(v)} not zoomed onto the call ${ca}..${cb}`);
      assert.equal(hashParams(page.url()).get('k'), null, 'a selected kernel would pull the view away');
      await shot('06b-scope-call-on-timeline');
    },
  },
  {
    name: 'System tab: charts, stated totals, 0/1 throttle tracks and unreported metrics match /system',
    async run(ctx) {
      const { page, shot } = ctx;
      const s = ctx.state.session;
      const detail = ctx.state.detail;
      const start = BigInt(detail.header.start_ns);
      const lastNs = detail.streams.reduce((m, x) => (x.last_ns !== null && BigInt(x.last_ns) > m ? BigInt(x.last_ns) : m), start);
      const range = Number(lastNs - start);
      // the Kernels timeline's window comes along (the URL has t0/t1 from the scope call): the tab says so
      await page.click('button[role=tab]:has-text("System")');
      await page.waitForSelector('[data-testid="system-range"]', { timeout: T });
      if (hashParams(page.url()).get('t0') !== null) {
        assert.match(await page.textContent('[data-testid="system-range"]'), /visible range/);
        await page.click('[data-testid="system-range"] button:has-text("whole session")');
        await page.waitForFunction(() => /whole session/.test(document.querySelector('[data-testid="system-range"]')?.textContent ?? ''), null, { timeout: T });
      }
      const sys = await api(ctx, `/sessions/${s.session_id}/system?points=600`);
      const withPoints = sys.series.filter((x) => x.points.length > 0);
      if (!withPoints.length) {
        await page.waitForSelector('.state.empty', { timeout: T });
        return;
      }
      const FLAGS = new Set(['throttle_pwr', 'throttle_therm', 'throttle_reasons']);
      const CONSTANT = new Set(['mem_total_mib', 'ram_total_mib']);
      await page.waitForSelector('[data-testid="chart"] .chart-body[data-points]', { timeout: T });
      const charts = await page.$$eval('[data-testid="chart"]', (cs) => cs.map((c) => ({ metric: c.getAttribute('data-metric'), points: JSON.parse(c.querySelector('.chart-body').getAttribute('data-points')), style: c.querySelector('.chart-body').getAttribute('data-style'), canvas: !!c.querySelector('canvas') })));
      // GPU-activity (GPM) pipes at 0 in every sample are stated in one line, not charted
      const GPM = new Set(['gr_engine_active_pct', 'sm_active_pct', 'sm_occupancy_pct', 'tensor_active_pct', 'tensor_hmma_active_pct', 'tensor_imma_active_pct', 'tensor_dfma_active_pct', 'fp64_active_pct', 'fp32_active_pct', 'fp16_active_pct', 'int_active_pct', 'dram_bw_pct', 'pcie_rx_mibs', 'pcie_tx_mibs', 'nvlink_rx_mibs', 'nvlink_tx_mibs']);
      const IDLE = new Set([...GPM].filter((m) => { const ser = withPoints.filter((x) => x.metric === m); return ser.length > 0 && ser.every((x) => x.points.every((p) => p.max === 0)); }));
      if (IDLE.size) {
        const stated = await page.$$eval('[data-testid="system-idle"] [data-metric]', (ss) => ss.map((x) => x.getAttribute('data-metric')));
        assert.deepEqual(new Set(stated), IDLE, 'pipes at 0 in every sample are stated');
      }
      const chartMetrics = new Set(withPoints.map((x) => x.metric).filter((m) => !FLAGS.has(m) && !CONSTANT.has(m) && !IDLE.has(m)));
      assert.deepEqual(new Set(charts.map((c) => c.metric)), chartMetrics);
      const raw = withPoints.filter((x) => chartMetrics.has(x.metric)).every((x) => x.points.every((p) => p.n === 1));
      for (const c of charts) {
        const expected = withPoints.filter((x) => x.metric === c.metric).sort((a, b) => (a.device ?? -1) - (b.device ?? -1)).map((x) => x.points.length);
        assert.deepEqual(c.points, expected, `points of ${c.metric}`);
        assert.ok(c.canvas, `${c.metric} has no canvas`);
        // one sample per point: dots, no line implying values between them
        assert.equal(c.style, raw ? 'dots' : 'line', `${c.metric} drawn as ${c.style}`);
      }
      // the caption states the interval the samples show (median gap), not the bucket width
      const gaps = withPoints.filter((x) => chartMetrics.has(x.metric)).flatMap((x) => x.points.slice(1).map((p, i) => Number(BigInt(p.t_ns) - BigInt(x.points[i].t_ns)))).sort((a, b) => a - b);
      const caption = await page.textContent('[data-testid="system-caption"]');
      if (gaps.length) {
        const med = gaps[Math.floor((gaps.length - 1) / 2)];
        const secs = (med / 1e9).toFixed(2);
        assert.ok(caption.includes(`Sampled every ~${med >= 1e9 ? secs + ' s' : ''}`), `caption "${caption}" vs median gap ${med} ns`);
      }
      assert.ok(!/per \d+(\.\d+)? ?ms bucket/.test(caption) || !raw, `caption claims buckets for raw samples: ${caption}`);
      // totals that do not move are stated as numbers, not drawn
      for (const m of CONSTANT) {
        const ser = withPoints.filter((x) => x.metric === m);
        if (!ser.length) continue;
        const texts = await page.$$eval(`[data-testid="system-constants"] [data-metric="${m}"] dd`, (dd) => dd.map((d) => d.textContent));
        assert.equal(texts.length, ser.length, `${m} stated once per device`);
        const v = Math.round(ser[0].points[0].min);
        if (ser[0].points.every((p) => p.min === ser[0].points[0].min && p.max === p.min)) assert.ok(texts.some((t) => t.includes(v.toLocaleString('en-US'))), `${m}: ${texts} vs ${v}`);
      }
      // a GPU metric the GPU did not report is named, not silently missing
      const gpuMetrics = new Set(withPoints.filter((x) => x.device !== null).map((x) => x.metric));
      if (gpuMetrics.size && !gpuMetrics.has('fan_pct')) {
        assert.match(await page.textContent('[data-testid="system-missing"] [data-metric="fan_pct"]'), /not reported by this GPU/);
      }
      // throttle flags and the decoded NVML bitmask: one 0/1 track per flag and per reason that was on
      if (withPoints.some((x) => FLAGS.has(x.metric))) {
        const tracks = JSON.parse(await page.getAttribute('[data-testid="flags"] .chart-body', 'data-tracks'));
        const byKey = Object.fromEntries(tracks.map((t) => [t.key, t]));
        for (const x of withPoints.filter((y) => y.metric === 'throttle_pwr' || y.metric === 'throttle_therm')) {
          const t = byKey[`${x.metric}:${x.device}`];
          assert.ok(t, `track ${x.metric}`);
          assert.equal(t.on, x.points.filter((p) => p.max >= 0.5).length);
          assert.equal(t.on + t.off, x.points.length);
        }
        const NAMES = { 1: 'GpuIdle', 2: 'ApplicationsClocksSetting', 4: 'SwPowerCap', 8: 'HwSlowdown', 16: 'SyncBoost', 32: 'SwThermalSlowdown', 64: 'HwThermalSlowdown', 128: 'HwPowerBrakeSlowdown', 256: 'DisplayClockSetting' };
        for (const x of withPoints.filter((y) => y.metric === 'throttle_reasons')) {
          for (const [bit, name] of Object.entries(NAMES)) {
            const on = x.points.filter((p) => (p.bits & Number(bit)) !== 0).length;
            const t = byKey[`throttle_reasons:${x.device}:${name}`];
            if (on === 0) assert.ok(!t && (await page.textContent('[data-testid="flags-never"]')).includes(name), `${name} never on: no track, listed as never on`);
            else assert.equal(t?.on, on, `${name} on in ${on} samples`);
          }
        }
      }
      await shot('07-system');
      // drag across a chart: the time range for the charts and the Kernels timeline (linked through the URL)
      const box = await page.locator('[data-testid="chart"] .u-over').first().boundingBox();
      await page.mouse.move(box.x + box.width * 0.25, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2, { steps: 5 });
      await page.mouse.move(box.x + box.width * 0.75, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
      await page.waitForFunction(() => new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1)).get('t0') !== null, null, { timeout: T });
      const dq = hashParams(page.url());
      assert.ok(/\/system/.test(new URL(page.url()).hash), 'a drag stays on the System tab');
      assert.ok(Math.abs(Number(dq.get('t0')) - range * 0.25) < range * 0.03 && Math.abs(Number(dq.get('t1')) - range * 0.75) < range * 0.03, `dragged range ${dq.get('t0')}..${dq.get('t1')} vs ${range}`);
      await page.waitForFunction(() => /visible range/.test(document.querySelector('[data-testid="system-range"]')?.textContent ?? ''), null, { timeout: T });
      await shot('07b-system-range');
      await page.click('[data-testid="system-range"] button:has-text("whole session")');
      await page.waitForSelector('[data-testid="chart"] .chart-body[data-points]', { timeout: T });
      // a click on a chart opens the Kernels timeline there, even with a kernel selected (#25)
      // select the kernel the inspector test picked (a real id of this session)
      await page.evaluate((kid) => {
        const h = location.hash;
        const q = new URLSearchParams(h.slice(h.indexOf('?') + 1));
        q.set('k', kid);
        location.hash = h.slice(0, h.indexOf('?') < 0 ? h.length : h.indexOf('?')) + '?' + q.toString();
      }, ctx.state.kernel.id);
      await page.waitForSelector('[data-testid="chart"] .chart-body[data-points]', { timeout: T });
      const box2 = await page.locator('[data-testid="chart"] .u-over').first().boundingBox();
      await page.mouse.click(box2.x + box2.width / 2, box2.y + box2.height / 2);
      await page.waitForSelector('canvas[data-testid="timeline"]', { timeout: T });
      const q = hashParams(page.url());
      assert.equal(q.get('k'), null, 'the selected kernel is dropped: the clicked moment wins');
      const mid = (Number(q.get('t0')) + Number(q.get('t1'))) / 2;
      assert.ok(Math.abs(mid - range / 2) < range * 0.1, `jumped to ${mid}, expected about ${range / 2}`);
      await waitPainted(page);
      const v = await page.evaluate(() => window.__gpuflTimeline.viewport());
      assert.ok(Math.abs((v.t0 + v.t1) / 2 - mid) < (v.t1 - v.t0) * 0.01, `timeline at ${JSON.stringify(v)}, URL mid ${mid}`);
      await shot('08-jump-from-system');
    },
  },
  {
    name: 'System tab on the GPM capture: GPU activity (SM active, tensor pipes, DRAM) charted beside NVML utilisation; an older session says "not recorded" once',
    async run(ctx) {
      const { page, backend, shot } = ctx;
      const sid = basename(segmentFiles(join(REPO, 'examples/captures', 'gpu_activity'))[0]).split('.')[2];
      if (!ctx.sessions.some((s) => s.session_id === sid)) {
        assert.ok(process.env.GPUFL_E2E_CAPTURES, 'gpu_activity is a committed capture: it must be loaded');
        log('skip: GPUFL_E2E_CAPTURES leaves out gpu_activity');
        return;
      }
      const sys = await api(ctx, `/sessions/${sid}/system?points=600`);
      await page.goto(`${backend.url}/#/s/${encodeURIComponent(sid)}/system`);
      await page.waitForSelector('[data-testid="chart"] .chart-body[data-points]', { timeout: T });
      const order = await page.$$eval('[data-testid="chart"]', (cs) => cs.map((c) => c.getAttribute('data-metric')));
      for (const m of ['sm_active_pct', 'tensor_active_pct', 'dram_bw_pct']) {
        const ser = sys.series.filter((x) => x.metric === m && x.points.length);
        assert.ok(ser.length, `${m} recorded in the capture`);
        const pts = JSON.parse(await page.getAttribute(`[data-testid="chart"][data-metric="${m}"] .chart-body`, 'data-points'));
        assert.deepEqual(pts, ser.map((x) => x.points.length), `points of ${m}`);
        assert.ok(order.indexOf(m) === order.indexOf('util_gpu_pct') + 1 + ['sm_active_pct', 'tensor_active_pct', 'dram_bw_pct'].indexOf(m), `${m} right after NVML utilisation: ${order}`);
      }
      assert.match(await page.textContent('[data-testid="chart"][data-metric="sm_active_pct"]'), /SM active \(GPM\)/);
      // the GEMM phase: tensor pipes ≥ 80 % in the API's series, which is what the chart draws
      const tensorMax = Math.max(...sys.series.filter((x) => x.metric === 'tensor_active_pct').flatMap((x) => x.points.map((p) => p.max)));
      assert.ok(tensorMax >= 80, `tensor pipes max ${tensorMax}`);
      await shot('07c-system-gpm');
      // a session recorded before GPM: one line says GPU activity was not recorded, not sixteen
      const old = ctx.sessions.find((s) => s.app === 'gpt_train');
      if (old) {
        await page.goto(`${backend.url}/#/s/${encodeURIComponent(old.session_id)}/system`);
        await page.waitForSelector('[data-testid="system-missing"]', { timeout: T });
        assert.match(await page.textContent('[data-testid="system-missing"] [data-metric="gpm"]'), /not recorded/);
        assert.equal(await page.$('[data-testid="system-missing"] [data-metric="sm_active_pct"]'), null);
      }
    },
  },
  {
    name: 'Insights: the list badges and the tab show what /insights returns; a card opens the timeline at its range',
    async run(ctx) {
      const { page, backend, shot } = ctx;
      const s = ctx.state.session;
      // the session list: each row's badge counts the warnings and criticals /insights reports
      await page.goto(backend.url + '/#/');
      await page.waitForSelector('[data-testid="sessions"] tbody tr', { timeout: T });
      for (const id of await page.$$eval('[data-testid="sessions"] tbody tr', (rows) => rows.map((r) => r.getAttribute('data-session')))) {
        const c = (await api(ctx, `/sessions/${id}/insights`)).counts;
        const n = c.warning + c.critical;
        await page.waitForFunction(([sid, want]) => {
          const cell = document.querySelector(`tr[data-session="${sid}"] td:last-child`);
          const text = cell?.textContent ?? '';
          return want === 0 ? text === 'none' : text.startsWith(`${want} warning`);
        }, [id, n], { timeout: T });
      }
      await shot('09-sessions-insight-badges');
      // the tab: one card per insight, in the API's order, with its title and every fact's label
      const ins = await api(ctx, `/sessions/${s.session_id}/insights`);
      await page.goto(`${backend.url}/#/s/${encodeURIComponent(s.session_id)}/insights`);
      await page.waitForSelector('[data-testid="insights"]', { timeout: T });
      const cards = await page.$$eval('section.insight', (xs) => xs.map((x) => ({
        rule: x.getAttribute('data-rule'),
        title: x.querySelector('.insight-title').textContent,
        labels: [...x.querySelectorAll('dt')].map((d) => d.textContent),
      })));
      assert.deepEqual(cards.map((c) => c.rule), ins.items.map((i) => i.rule));
      assert.deepEqual(cards.map((c) => c.title), ins.items.map((i) => i.title));
      ins.items.forEach((i, n) => assert.deepEqual(cards[n].labels, i.facts.map((f) => f.label)));
      const notChecked = ins.rules.filter((r) => r.status === 'not_checked').map((r) => r.rule);
      if (notChecked.length) {
        const text = await page.textContent('[data-testid="not-checked"]');
        for (const r of notChecked) assert.ok(text.includes(r), `not-checked list lacks ${r}`);
      }
      await shot('10-insights');
      if (!ins.items.length) return;
      // the first card's link opens the Kernels tab at its time range (ns from the session start)
      const first = ins.items[0];
      const origin = BigInt(ctx.state.detail.header.start_ns);
      const t0 = Number(BigInt(first.start_ns) - origin);
      const t1 = Number(BigInt(first.end_ns) - origin);
      await page.click('section.insight >> nth=0 >> [data-testid="open-timeline"]');
      await page.waitForSelector('canvas[data-testid="timeline"]', { timeout: T });
      const q = hashParams(page.url());
      const pad = Math.max(0, 500_000 - (t1 - t0) / 2);
      assert.equal(Number(q.get('t0')), Math.max(0, Math.round(t0 - pad)));
      assert.equal(Number(q.get('t1')), Math.round(t1 + pad));
      await waitPainted(page);
      await shot('11-insight-timeline');
    },
  },
  compareTests.compare,
  timelineTests.atScale,
  timelineTests.searchTies,
  trackTests.smActivity,
  captureBands,
  deepTests.deep,
  deepTests.insights,
  {
    name: 'sign out returns to the sign-in screen',
    async run({ page }) {
      await page.click('button:has-text("Sign out")');
      await page.waitForSelector('#apikey', { timeout: T });
    },
  },
];
