/**
 * Thread tracks: per CPU thread, its scope rows (scopes.ts) and a row of its launch-API calls
 * (cudaLaunchKernel, cudaMemcpyAsync: GET /launches, one bucket per pixel, every call counted), and the flow
 * arrow from a selected kernel's launch call to the kernel — as Perfetto and Nsight Systems draw them.
 * Pure functions: the loader fetches, draw.ts calls these to paint.
 */
import type { LaunchBucket, LaunchTimeline } from '../api/launches';
import { nameColor } from '../lib/color';
import type { ScopeTracks } from './scopes';
import { tToX, type Viewport } from './viewport';

export const LAUNCH_KEY = 'launch:';
export const LAUNCH_ROW_H = 14;

/** A row of the thread tracks, top to bottom: a scope row (labelled), or a thread's launch-call row. */
export type ThreadRow = { kind: 'scope'; label: string } | { kind: 'launch'; label: string; thread: number };

/** Threads in id order; each one's scope rows (as `scopeLabels` lists them, track by track), then its call row.
 * A thread with calls and no scopes gets a call row of its own. */
export function threadRows(scopes: ScopeTracks, scopeLabels: string[], launchThreads: number[]): ThreadRow[] {
  const byThread = new Map<number, string[]>();
  let i = 0;
  for (const t of scopes.threads) {
    byThread.set(t.threadId, scopeLabels.slice(i, i + t.rows));
    i += t.rows;
  }
  const calls = new Set(launchThreads);
  const ids = [...new Set([...byThread.keys(), ...calls])].sort((a, b) => a - b);
  const out: ThreadRow[] = [];
  for (const id of ids) {
    const labels = byThread.get(id) ?? [];
    for (const label of labels) out.push({ kind: 'scope', label });
    if (calls.has(id)) out.push({ kind: 'launch', label: labels.length ? '    launch API calls' : `API calls · thread ${id}`, thread: id });
  }
  // scope rows held in place before the tracks are known (scopeLabels without scope tracks)
  if (!scopes.threads.length) out.unshift(...scopeLabels.map((label) => ({ kind: 'scope' as const, label })));
  return out;
}

/** Threads that made calls in `t` (the track list grows, never shrinks: rows don't jump while panning). */
export function launchThreadsWith(prev: number[], t: LaunchTimeline): number[] {
  const have = new Set(prev);
  let grew = false;
  for (const b of t.buckets)
    if (!have.has(b.thread)) {
      have.add(b.thread);
      grew = true;
    }
  return grew ? [...have].sort((a, b) => a - b) : prev;
}

export interface CallRect {
  b: LaunchBucket;
  x: number;
  w: number;
}

/** The calls of one thread to draw over `W` px: each bucket's longest call, skipping those whose pixel is
 * already painted. `inView` counts every call (bucket counts) overlapping the window. */
export function callRects(t: LaunchTimeline, thread: number, vp: Viewport, W: number): { rects: CallRect[]; inView: number } {
  const rects: CallRect[] = [];
  let inView = 0;
  let lastX = -1;
  for (const b of t.buckets) {
    if (b.thread !== thread) continue;
    const end = Math.max(b.longest.end, b.t + t.bucketNs);
    if (end < vp.t0 || b.t > vp.t1) continue;
    inView += b.count;
    const x = tToX(b.longest.start, vp, W);
    const w = Math.max(1, tToX(b.longest.end, vp, W) - x);
    if (w < 1.5 && Math.floor(x) <= lastX) continue;
    lastX = Math.floor(x + w);
    rects.push({ b, x, w });
  }
  return { rects, inView };
}

/** The call bucket under plot x `px` on `thread`'s row (nearest longest call within `tol` px). */
export function callAt(t: LaunchTimeline | null | undefined, thread: number, vp: Viewport, W: number, px: number, tol = 4): LaunchBucket | null {
  if (!t) return null;
  let best: LaunchBucket | null = null;
  let bestD = Infinity;
  for (const b of t.buckets) {
    if (b.thread !== thread) continue;
    const x0 = tToX(b.longest.start, vp, W);
    const x1 = Math.max(x0 + 1, tToX(b.longest.end, vp, W));
    const d = px < x0 ? x0 - px : px > x1 ? px - x1 : 0;
    if (d <= tol && d < bestD) {
      bestD = d;
      best = b;
    }
  }
  return best;
}

/** Colour of a call: the colour of what it launched, darker (a kernel's name hue; copies grey-blue). */
export function callColor(b: LaunchBucket): string {
  return b.longest.kind === 'kernel' ? nameColor(b.longest.name, 42) : '#5c7b99';
}

/** The flow arrow's end points (plot px): from the launch call's exit on its thread row to the kernel's start
 * on its lane; null when either row is not drawn. */
export function flowPoints(
  call: { start: number; end: number },
  kernelStart: number,
  callRow: { y: number; h: number } | undefined,
  laneRow: { y: number; h: number } | undefined,
  vp: Viewport,
  W: number,
): { x0: number; y0: number; x1: number; y1: number } | null {
  if (!callRow || !laneRow) return null;
  const down = laneRow.y > callRow.y;
  return {
    x0: tToX(call.end, vp, W),
    y0: down ? callRow.y + callRow.h - 2 : callRow.y + 2,
    x1: tToX(kernelStart, vp, W),
    y1: down ? laneRow.y + 3 : laneRow.y + laneRow.h - 3,
  };
}

/** Draw the flow arrow (a curve with a head at the kernel) in plot coordinates. */
export function drawFlow(ctx: CanvasRenderingContext2D, p: { x0: number; y0: number; x1: number; y1: number }): void {
  const my = (p.y0 + p.y1) / 2;
  ctx.strokeStyle = '#ffd166';
  ctx.fillStyle = '#ffd166';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(p.x0, p.y0);
  ctx.bezierCurveTo(p.x0, my, p.x1, my, p.x1, p.y1);
  ctx.stroke();
  const dir = p.y1 > p.y0 ? 1 : -1;
  ctx.beginPath();
  ctx.moveTo(p.x1, p.y1);
  ctx.lineTo(p.x1 - 4, p.y1 - 7 * dir);
  ctx.lineTo(p.x1 + 4, p.y1 - 7 * dir);
  ctx.closePath();
  ctx.fill();
  // the call end of the flow
  ctx.beginPath();
  ctx.arc(p.x0, p.y0, 2.5, 0, 2 * Math.PI);
  ctx.fill();
}
