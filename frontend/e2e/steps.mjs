// Helpers the browser tests share: API calls with the read key, URL hash parameters, waits on the timeline.
import assert from 'node:assert/strict';
import { apiJson } from './harness.mjs';

export const T = 30_000;

export async function api(ctx, path) {
  return apiJson(ctx.backend, ctx.readKey, path);
}

export function hashParams(url) {
  const h = new URL(url).hash;
  const i = h.indexOf('?');
  return new URLSearchParams(i >= 0 ? h.slice(i + 1) : '');
}

/** The scope lane shows what /scopes/instances returns for the query the timeline made (same window and
 * min_dur_ns, read back from the timeline's hook): the same number loaded, and as many in view as the API's
 * instances overlapping the visible window. Returns the API's instances (for picking one to zoom into). */
export async function checkScopeLane(ctx, page, origin) {
  const s = ctx.state.session;
  // wait for the scope query that serves the current window (it runs after the kernel tiles)
  await page.waitForFunction((o) => {
    const tl = window.__gpuflTimeline;
    const q = tl.scopes();
    if (!q || tl.pending() !== 0) return false;
    const v = tl.viewport();
    const perPx = (v.t1 - v.t0) / (tl.plotX(v.t1) - tl.plotX(v.t0));
    const a = Number(BigInt(q.startNs) - BigInt(o));
    const b = Number(BigInt(q.endNs) - BigInt(o));
    return a <= v.t0 && b >= v.t1 && q.minDurNs <= perPx;
  }, origin.toString(), { timeout: T });
  const q = await page.evaluate(() => window.__gpuflTimeline.scopes());
  const r = await api(ctx, `/sessions/${s.session_id}/scopes/instances?start_ns=${q.startNs}&end_ns=${q.endNs}&min_dur_ns=${q.minDurNs}&limit=5000`);
  assert.equal(q.loaded, r.items.length, 'scope instances loaded vs the API for the same window');
  assert.equal(q.truncated, r.next_cursor !== null);
  const vp = await page.evaluate(() => window.__gpuflTimeline.viewport());
  const rel = (v) => Number(BigInt(v) - origin);
  const inView = r.items.filter((i) => rel(i.start_ns) < vp.t1 && (i.end_ns === null || rel(i.end_ns) > vp.t0)).length;
  await page.waitForFunction((n) => document.querySelector('canvas[data-testid="timeline"]').dataset.scopes === String(n), inView, { timeout: T }).catch(() => {});
  const drawn = Number(await page.getAttribute('canvas[data-testid="timeline"]', 'data-scopes'));
  assert.equal(drawn, inView, `scope instances in view: drawn ${drawn}, API ${inView} (of ${r.items.length})`);
  return { items: r.items, vp, rel };
}

/** The URL (and the page's idea of the window) follows the timeline 250 ms after it rests: wait for it. */
export async function urlFollowsWindow(page) {
  await page.waitForFunction(() => {
    const v = window.__gpuflTimeline.viewport();
    const q = new URLSearchParams(location.hash.slice(location.hash.indexOf('?') + 1));
    return Math.abs(Number(q.get('t0')) - v.t0) <= 2 && Math.abs(Number(q.get('t1')) - v.t1) <= 2;
  }, null, { timeout: T });
}

export async function waitPainted(page) {
  await page.waitForSelector('canvas[data-testid="timeline"][data-painted="1"]', { timeout: T });
  await page.waitForFunction(() => window.__gpuflTimeline && window.__gpuflTimeline.pending() === 0, null, { timeout: T });
}

/** Painted, and the side data (scope instances, copies, launch calls, activity) in for the window. */
export async function waitSettled(page) {
  await waitPainted(page);
  await page.waitForFunction(() => window.__gpuflTimeline.settled(), null, { timeout: T });
}
