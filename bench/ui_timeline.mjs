#!/usr/bin/env node
// bench/ui_timeline: time to first paint of the Kernels tab and frame time while panning, on a session of
// ~1M kernels made by tiling a committed H100 capture with shifted timestamps, in Debian's headless Chromium.
//
//   cd frontend && npm ci && node ../bench/ui_timeline.mjs [--capture DIR] [--kernels N] [--json OUT]
//
// The session is built from the capture's device stream: session_start and dict records once, then the
// capture's kernel/memcpy/memset records repeated with every timestamp shifted by k × (capture span + 1 ms)
// and seq renumbered, then one session_end; POSTed to a real gpufl-backend (temp data dir) as NDJSON.
import { writeFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { apiJson, buildTiledSession, buildUi, captureDirs, createKey, deviceRecords, launchBrowser, log, startBackend } from '../frontend/e2e/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const TARGET = Number(opt('kernels', '1000000'));
const capture = opt('capture', null) ?? pickCapture();
const jsonOut = opt('json', null);

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
  buildUi();
  backend = await startBackend();
  const tiled = await buildTiledSession(backend, capture, TARGET);
  const token = await createKey(backend, 'read', 'bench');
  const detail = await apiJson(backend, token, `/sessions/${tiled.sid}`);
  log(`backend reports ${detail.totals.kernels} kernels in ${tiled.sid}`);
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
  const clickAt = await page.evaluate(() => performance.now());
  await page.click(`tr[data-session="${tiled.sid}"]`);
  await page.waitForFunction(() => window.__gpuflTimeline?.firstDataPaint != null, null, { timeout: 120_000 });
  const inApp = (await page.evaluate(() => window.__gpuflTimeline.firstDataPaint)) - clickAt;
  log(`in-app open (click on the session row → first full frame): ${round(inApp)} ms`);
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
  const cpu = (await import('node:os')).cpus();
  const result = {
    capture: basename(capture),
    session: tiled.sid,
    kernels: detail.totals.kernels,
    span_s: round(tiled.spanNs / 1e9, 2),
    copies: tiled.copies,
    densest_kernels_per_20ms: tiled.densePerS,
    first_paint_ms: { in_app_open_cold_backend: round(inApp), page_load_first: round(firstPaint[0]), page_load_reloads: firstPaint.slice(1).map((x) => round(x)) },
    loads,
    pan,
    machine: `${cpu.length}× ${cpu[0]?.model ?? '?'}, Chromium ${browser.ctx.browser()?.version() ?? ''} headless, --disable-gpu`,
  };
  console.log(JSON.stringify(result, null, 2));
  if (jsonOut) writeFileSync(resolve(jsonOut), JSON.stringify(result, null, 2));
} finally {
  await browser?.close();
  await backend?.stop();
}
