#!/usr/bin/env node
// bench/ui_timeline: time to first paint of the Kernels tab, frame time while panning (setViewport every
// frame) and under real input (wheel, drag, keys: Playwright's mouse and CDP Input events), and the time to
// settle after each gesture, on a session of ~1M kernels made by tiling a committed H100 capture with shifted
// timestamps, in Debian's headless Chromium.
//
//   cd frontend && npm ci && node ../bench/ui_timeline.mjs [--capture DIR] [--kernels N] [--json OUT] [--store DIR]
//                                                         [--build js|python] [--build-only]
//
// --store DIR: the backend's data dir, kept afterwards; a tiled session already in it is not ingested again
// (so a 10M-kernel session is built once and measured again by freshly started backends).
// --build python (the default from 2M kernels): the session is POSTed by bench/tile_session.py (msgspec, two
// concurrent clients, 50,000-record batches), the same records byte for byte as the JS builder's
// (tests/test_tile_session.py); --build js: by buildTiledSession here (one connection, ~40k records/s: 10M
// kernels in ~4.5 min of ingest on 2 cores, 100M in ~50). Either way the run stops if the backend holds fewer
// device records than the session has (a store left by an interrupted build is completed by the Python build).
// --build-only: build (or find) the session in the store and stop, nothing measured: e.g.
//   nice -n 10 node ../bench/ui_timeline.mjs --kernels 100000000 --store /work/stores/s100m --build-only
// Python: $GPUFL_PYTHON, else ../.venv/bin/python (with gpufl, msgspec and httpx importable).
//
// The session is built from the capture's device stream: session_start and dict records once, then the
// capture's kernel/memcpy/memset records repeated with every timestamp shifted by k × (capture span + 1 ms)
// and seq renumbered, then one session_end; POSTed to a real gpufl-backend (temp data dir) as NDJSON.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { apiJson, buildTiledSession, buildUi, captureDirs, createKey, deviceRecords, launchBrowser, log, PYTHON, REPO, startBackend } from '../frontend/e2e/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const TARGET = Number(opt('kernels', '1000000'));
const capture = opt('capture', null) ?? pickCapture();
const jsonOut = opt('json', null);
const storeDir = opt('store', null);
const BUILD = opt('build', TARGET >= 2_000_000 ? 'python' : 'js');
const buildOnly = args.includes('--build-only');
if (BUILD !== 'js' && BUILD !== 'python') throw new Error(`--build ${BUILD}: js or python`);

/** bench/tile_session.py against this backend; resolves with its summary (the plan, ingest_s). */
function buildWithPython(backend) {
  return new Promise((res, rej) => {
    const p = spawn(PYTHON, [resolve(REPO, 'bench/tile_session.py'), '--url', backend.url, '--capture', capture, '--kernels', String(TARGET)], {
      // the token in the environment, not the arguments (visible to every local user in ps)
      env: { ...process.env, GPUFL_TOKEN: backend.adminToken },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('error', rej);
    p.on('exit', (code) => (code === 0 ? res(JSON.parse(out.trim().split('\n').pop())) : rej(new Error(`bench/tile_session.py exited with ${code}`))));
  });
}

function pickCapture() {
  // the capture with the most kernel records in its device stream
  let best = null;
  for (const d of captureDirs()) {
    const n = deviceRecords(d).filter((r) => r.type === 'kernel').length;
    if (!best || n > best.n) best = { d, n };
  }
  if (!best) throw new Error('no capture under examples/captures/ (or pass --capture DIR)');
  return best.d;
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))];
  return { n: s.length, mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length), p50: q(0.5), p95: q(0.95), max: s[s.length - 1] };
}

const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

let backend;
let browser;
try {
  if (!buildOnly) buildUi();
  if (storeDir) mkdirSync(storeDir, { recursive: true });
  backend = await startBackend({}, { dataDir: storeDir ? resolve(storeDir) : null });
  const built = BUILD === 'python' ? await buildWithPython(backend) : null;
  if (built) log(built.ingested ? `built by bench/tile_session.py: ${built.records} records in ${built.ingest_s} s` : `${built.sid}: in the store already`);
  const tiled = await buildTiledSession(backend, capture, TARGET);
  if (built && built.sid !== tiled.sid) throw new Error(`tile_session.py built ${built.sid}, the bench expects ${tiled.sid}`);
  const token = await createKey(backend, 'read', 'bench');
  const detail = await apiJson(backend, token, `/sessions/${tiled.sid}`);
  const received = detail.streams.find((s) => s.stream === 'device')?.received;
  log(`backend reports ${detail.totals.kernels} kernels, ${received} device records in ${tiled.sid}`);
  if (received !== tiled.records) throw new Error(`${tiled.sid}: the store holds ${received} of its ${tiled.records} device records (an interrupted build? --build python completes it)`);
  if (buildOnly) {
    // nothing else is started yet: stop the backend (the store is kept) and leave before the browser
    await backend.stop();
    process.exit(0);
  }
  browser = await launchBrowser();
  const page = await browser.ctx.newPage();
  await page.addInitScript((t) => sessionStorage.setItem('gpufl.token', t), token);
  const url = `${backend.url}/#/s/${encodeURIComponent(tiled.sid)}/kernels`;

  // 1. Time to first paint of the Kernels tab.
  //    (a) In the app, as a user gets there: signed in on the session list, click the session's row; time from
  //        the click to the first frame with every visible LOD tile drawn. The backend has not been asked
  //        anything about this session before (cold for it).
  await page.goto(`${backend.url}/#/`);
  await page.waitForSelector(`tr[data-session="${tiled.sid}"]`, { timeout: 60_000 });
  // When the click event itself reached the page (Playwright's click first scrolls, waits for the row to be
  // stable and hit-tests it: that time is counted in the open, as before, and reported apart).
  await page.evaluate(() => document.addEventListener('click', () => (window.__benchClickEvent = performance.now()), { capture: true, once: true }));
  const clickAt = await page.evaluate(() => performance.now());
  await page.click(`tr[data-session="${tiled.sid}"]`);
  await page.waitForFunction(() => window.__gpuflTimeline?.firstDataPaint != null, null, { timeout: 120_000 });
  const inApp = (await page.evaluate(() => window.__gpuflTimeline.firstDataPaint)) - clickAt;
  // The API requests the open made up to its first full frame (start after the click + duration): what it waited for.
  const inAppApi = await page.evaluate(
    ([t0, t1]) =>
      performance
        .getEntriesByType('resource')
        .filter((e) => e.name.includes('/api/v1/') && e.startTime >= t0 && e.startTime <= t1)
        .map((e) => `${e.name.replace(/^.*\/api\/v1\/sessions\/[^/?]+/, '').replace(/\?start_ns=.*resolution_ns=/, '?LOD res=')} ${Math.round(e.startTime - t0)}+${Math.round(e.duration)}ms`),
    [clickAt, clickAt + inApp],
  );
  const clickEvent = (await page.evaluate(() => window.__benchClickEvent)) - clickAt;
  log(`in-app open (click on the session row → first full frame): ${round(inApp)} ms (the click event reached the page at +${round(clickEvent)} ms); API ${inAppApi.join(', ')}`);
  //    (b) Full page loads of the deep link (navigation start → first full frame): the first in a second,
  //        fresh browser profile (nothing cached), then reloads.
  const firstPaint = [];
  const loads = [];
  const fresh = await launchBrowser();
  for (let i = 0; i < 4; i++) {
    let p = page;
    if (i === 0) {
      p = await fresh.ctx.newPage();
      await p.addInitScript((t) => sessionStorage.setItem('gpufl.token', t), token);
      await p.goto(url);
    } else await page.reload();
    await p.waitForFunction(() => window.__gpuflTimeline?.firstDataPaint != null, null, { timeout: 120_000 });
    firstPaint.push(await p.evaluate(() => window.__gpuflTimeline.firstDataPaint));
    loads.push(
      await p.evaluate(() => ({
        dcl: Math.round(performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd ?? 0),
        js: performance
          .getEntriesByType('resource')
          .filter((e) => e.name.includes('/assets/'))
          .map((e) => `${e.name.split('/').pop()} ${Math.round(e.startTime)}+${Math.round(e.duration)}`),
        api: performance
          .getEntriesByType('resource')
          .filter((e) => e.name.includes('/api/v1/'))
          .map((e) => `${e.name.replace(/^.*\/api\/v1\/sessions\/[^/?]+/, '').replace(/\?start_ns=.*resolution_ns=/, '?LOD res=')} ${Math.round(e.startTime)}+${Math.round(e.duration)}ms`),
      })),
    );
    if (i === 0) await fresh.close();
    log(`load ${i}: first paint ${round(firstPaint[i])} ms; DOMContentLoaded ${loads[i].dcl} ms; ${loads[i].js.join(', ')}; API ${loads[i].api.join(', ')}`);
  }
  log(`first paint (ms): in-app ${round(inApp)}; page load ${round(firstPaint[0])}, reloads ${firstPaint.slice(1).map((x) => round(x)).join(', ')}`);

  // 2. Panning: every animation frame moves the window by 1% of its span (a steady drag) for 4 s, at four
  //    zoom levels: the whole session, 60 s, 2 s and 20 ms windows; the zoomed ones drag back and forth
  //    (turning every 50 frames) around the densest 20 ms of a copy of the capture, which stays in view. Frame time = interval between rAF callbacks; draw = time spent painting
  //    (timeline + minimap); rects = rectangles painted per frame. Tiles load while panning, as for a user.
  const range = Number(BigInt(detail.streams.find((s) => s.stream === 'device').last_ns) - BigInt(detail.header.start_ns));
  const pan = {};
  for (const [label, spanNs, at] of [
    ['whole session', range, 0],
    ['60 s window', 60e9, tiled.denseT - 0.75 * 60e9],
    ['2 s window', 2e9, tiled.denseT - 0.75 * 2e9],
    ['20 ms window', 20e6, tiled.denseT - 0.75 * 20e6],
  ]) {
    const res = await page.evaluate(
      async ([spanNs, at, range]) => {
        const tl = window.__gpuflTimeline;
        tl.setViewport({ t0: at, t1: at + spanNs });
        await new Promise((r) => {
          const w = () => (tl.pending() === 0 ? r() : setTimeout(w, 20));
          w();
        });
        const drawStart = tl.drawMs.length;
        const intervals = [];
        let dir = 1;
        let n = 0;
        const whole = spanNs >= range;
        await new Promise((resolve) => {
          let prev = 0;
          const t0 = performance.now();
          const step = (now) => {
            if (prev) intervals.push(now - prev);
            prev = now;
            const v = tl.viewport();
            if (!whole && ++n % 50 === 0) dir = -dir;
            const d = (v.t1 - v.t0) * 0.01 * dir;
            if (v.t1 + d > range * 1.04 || v.t0 + d < -range * 0.04) dir = -dir;
            tl.setViewport({ t0: v.t0 + d, t1: v.t1 + d });
            if (now - t0 < 4000) requestAnimationFrame(step);
            else resolve();
          };
          requestAnimationFrame(step);
        });
        return { intervals, draw: tl.drawMs.slice(drawStart), rects: tl.rectsPerFrame.slice(drawStart) };
      },
      [spanNs, at, range],
    );
    const iv = stats(res.intervals);
    const dr = stats(res.draw);
    const rc = stats(res.rects);
    pan[label] = {
      fps: round(1000 / iv.mean),
      frame_ms_p50: round(iv.p50),
      frame_ms_p95: round(iv.p95),
      frame_ms_max: round(iv.max),
      draw_ms_p50: round(dr.p50, 2),
      draw_ms_p95: round(dr.p95, 2),
      rects_per_frame_p50: rc.p50,
      rects_per_frame_max: rc.max,
    };
    log(`pan @ ${label}: ${JSON.stringify(pan[label])}`);
  }
  // 3. Real input: the gestures a user makes, through the browser's input pipeline (Playwright's mouse, and
  //    CDP Input.dispatch* events as DevTools sends them), from the whole session. Frame time = rAF intervals
  //    while the gesture runs; settle = from the gesture's last event to every visible tile drawn and the side
  //    data (scopes, copies, launch calls) in (the hook's settled()).
  const input = {};
  const cdp = await page.context().newCDPSession(page);
  const box = await page.locator('canvas[data-testid="timeline"]').boundingBox();
  const gutter = await page.evaluate(() => window.__gpuflTimeline.gutter);
  const lane = (await page.evaluate(() => window.__gpuflTimeline.rows().find((r) => r.kind === 'kernel'))) ?? { y: 40, h: 24 };
  const y = box.y + lane.y + lane.h / 2;
  // the densest part of the session when it is in view, else the plot's middle (after a pan it may not be)
  const xDense = async () => {
    const x = box.x + (await page.evaluate((t) => window.__gpuflTimeline.plotX(t), tiled.denseT));
    return x > box.x + gutter + 2 && x < box.x + box.width - 2 ? x : box.x + gutter + (box.width - gutter) / 2;
  };
  const gestures = [
    ['wheel zoom in, 40 notches (mouse.wheel)', async () => {
      const x = await xDense();
      await page.mouse.move(x, y);
      for (let i = 0; i < 40; i++) await page.mouse.wheel(0, -120);
    }],
    ['drag pan, 30 moves of 15 px (mouse)', async () => {
      const x = box.x + gutter + (box.width - gutter) * 0.7;
      await page.mouse.move(x, y);
      await page.mouse.down();
      for (let i = 1; i <= 30; i++) await page.mouse.move(x - 15 * i, y);
      await page.mouse.up();
    }],
    ['wheel zoom out, 40 notches (CDP Input.dispatchMouseEvent)', async () => {
      const x = await xDense();
      for (let i = 0; i < 40; i++) await cdp.send('Input.dispatchMouseEvent', { type: 'mouseWheel', x, y, deltaX: 0, deltaY: 120 });
    }],
    ['W held: 30 zoom-in key presses (CDP Input.dispatchKeyEvent)', async () => {
      await cdp.send('Input.dispatchMouseEvent', { type: 'mouseMoved', x: await xDense(), y });
      for (let i = 0; i < 30; i++) {
        await cdp.send('Input.dispatchKeyEvent', { type: 'keyDown', key: 'w', code: 'KeyW', text: 'w', windowsVirtualKeyCode: 87 });
        await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key: 'w', code: 'KeyW', windowsVirtualKeyCode: 87 });
      }
    }],
    ['shift-drag a range selection (mouse)', async () => {
      const x = box.x + gutter + (box.width - gutter) * 0.3;
      await page.keyboard.down('Shift');
      await page.mouse.move(x, y);
      await page.mouse.down();
      for (let i = 1; i <= 20; i++) await page.mouse.move(x + 20 * i, y);
      await page.mouse.up();
      await page.keyboard.up('Shift');
    }],
  ];
  await page.evaluate((r) => window.__gpuflTimeline.setViewport({ t0: 0, t1: r }), range);
  await page.waitForFunction(() => window.__gpuflTimeline.settled(), null, { timeout: 120_000 });
  for (const [label, act] of gestures) {
    await page.evaluate(() => {
      const rec = (window.__benchRec = { iv: [], prev: 0, on: true, draw: window.__gpuflTimeline.drawMs.length });
      const f = (now) => {
        if (!rec.on) return;
        if (rec.prev) rec.iv.push(now - rec.prev);
        rec.prev = now;
        requestAnimationFrame(f);
      };
      requestAnimationFrame(f);
    });
    const t0 = await page.evaluate(() => performance.now());
    await act();
    const tLast = await page.evaluate(() => performance.now());
    await page.waitForFunction(() => window.__gpuflTimeline.settled(), null, { timeout: 120_000, polling: 10 });
    const tSettled = await page.evaluate(() => performance.now());
    const rec = await page.evaluate(() => {
      window.__benchRec.on = false;
      return { iv: window.__benchRec.iv, draw: window.__gpuflTimeline.drawMs.slice(window.__benchRec.draw) };
    });
    const iv = stats(rec.iv);
    const dr = stats(rec.draw);
    const vp = await page.evaluate(() => window.__gpuflTimeline.viewport());
    if (!rec.draw.length) throw new Error(`${label}: no frame was drawn, the input reached nothing`);
    input[label] = {
      gesture_ms: round(tLast - t0),
      settle_ms: round(tSettled - tLast),
      frames: iv.n,
      frame_ms_p50: round(iv.p50),
      frame_ms_p95: round(iv.p95),
      frame_ms_max: round(iv.max),
      draw_ms_p95: round(dr.p95, 2),
      window_after_ms: round((vp.t1 - vp.t0) / 1e6, 3),
    };
    log(`input @ ${label}: ${JSON.stringify(input[label])}`);
  }

  // 4. Truth at scale, in the whole-session view: the memory lane counts every copy and memset, and a
  //    highlighted name every instance (the backend's per-pixel buckets), as the session's totals say; and
  //    how long those queries took in the browser (resource timing of the last request of each).
  const top = (await apiJson(backend, token, `/sessions/${encodeURIComponent(tiled.sid)}/kernels/summary?sort=count&limit=1`)).items[0];
  await page.goto(`${url}?name=${encodeURIComponent(top.name)}`);
  await page.reload();
  await page.waitForFunction(() => window.__gpuflTimeline?.firstDataPaint != null, null, { timeout: 120_000 });
  await page.waitForFunction(() => window.__gpuflTimeline.settled(), null, { timeout: 300_000, polling: 50 });
  const seen = await page.evaluate(() => {
    const last = (re) => performance.getEntriesByType('resource').filter((e) => re.test(e.name)).pop();
    const ms = (e) => (e ? Math.round(e.duration) : null);
    return {
      memory: window.__gpuflTimeline.memcpyCount(),
      highlight: window.__gpuflTimeline.highlightCount(),
      memory_timeline_ms: ms(last(/\/memory\/timeline\?/)),
      highlight_ms: ms(last(/\/kernels\?.*name=/)),
      launches_ms: ms(last(/\/launches\?/)),
    };
  });
  const truth = {
    memory_lane: `${seen.memory} of ${detail.totals.memcpys + detail.totals.memsets} copies and memsets`,
    highlight: `${seen.highlight} of ${top.count} instances of the most frequent name`,
    memory_timeline_ms: seen.memory_timeline_ms,
    highlight_ms: seen.highlight_ms,
    launches_ms: seen.launches_ms,
  };
  log(`truth at scale (whole session): ${JSON.stringify(truth)}`);
  if (seen.memory !== detail.totals.memcpys + detail.totals.memsets || seen.highlight !== top.count) throw new Error(`something was cut: ${JSON.stringify(truth)}`);

  const cpu = (await import('node:os')).cpus();
  const result = {
    capture: basename(capture),
    session: tiled.sid,
    kernels: detail.totals.kernels,
    span_s: round(tiled.spanNs / 1e9, 2),
    copies: tiled.copies,
    densest_kernels_per_20ms: tiled.densePerS,
    first_paint_ms: { in_app_open_cold_backend: round(inApp), in_app_click_event_at: round(clickEvent), page_load_first: round(firstPaint[0]), page_load_reloads: firstPaint.slice(1).map((x) => round(x)) },
    in_app_api: inAppApi,
    loads,
    pan,
    input,
    truth,
    machine: `${cpu.length}× ${cpu[0]?.model ?? '?'}, Chromium ${browser.ctx.browser()?.version() ?? ''} headless, --disable-gpu`,
  };
  console.log(JSON.stringify(result, null, 2));
  if (jsonOut) writeFileSync(resolve(jsonOut), JSON.stringify(result, null, 2));
} finally {
  await browser?.close();
  await backend?.stop();
}
