/**
 * The scope lane above the GPU lanes: which scope instances to fetch for the visible window, and what to draw
 * of them (pure functions; Timeline.tsx fetches, draw.ts paints).
 *
 * Level of detail: the window is fetched widened by half a span on each side (so panning reuses it) with
 * `min_dur_ns` = one pixel's worth of ns, so the backend leaves out the instances too short to see.
 *
 * Tracks: one per thread (scopes and NVTX ranges of different threads overlap in time, as Perfetto and Nsight
 * Systems show them apart), in thread id order; inside a thread's track one row per nesting depth (depth 0 on
 * top), at most MAX_SCOPE_ROWS (deeper ones share the last row).
 */
import type { ScopeInstance } from '../api/client';
import { tToX, type Viewport } from './viewport';

export const SCOPE_ROW_H = 16;
export const MAX_SCOPE_ROWS = 6;
export const SCOPE_LIMIT = 5000;
export const SCOPE_KEY = 'scope:';

export interface ScopeFetch {
  /** Relative ns window asked for. */
  start: number;
  end: number;
  /** min_dur_ns asked for. */
  minDur: number;
}

export interface LoadedScopes extends ScopeFetch {
  /** The backend had more than SCOPE_LIMIT instances for the window (the lane shows the first ones). */
  truncated: boolean;
}

/** What to ask for to draw `vp` over `plotWidth` pixels. */
export function scopeFetchFor(vp: Viewport, plotWidth: number): ScopeFetch {
  const span = vp.t1 - vp.t0;
  const perPx = span / Math.max(1, plotWidth);
  return { start: Math.floor(vp.t0 - span / 2), end: Math.ceil(vp.t1 + span / 2), minDur: Math.floor(perPx) };
}

/**
 * Whether what is loaded still serves `vp`: it covers the window, it skipped nothing now ≥ 1 px wide (its
 * min duration is at most one pixel's ns), and, if it was cut at SCOPE_LIMIT, it was not asked for a much
 * wider window or a much finer resolution than the view now needs.
 */
export function scopeFetchCovers(have: LoadedScopes | null, vp: Viewport, plotWidth: number): boolean {
  if (!have) return false;
  const span = vp.t1 - vp.t0;
  const perPx = span / Math.max(1, plotWidth);
  if (have.start > vp.t0 || have.end < vp.t1 || have.minDur > perPx) return false;
  return !have.truncated || (have.end - have.start <= 4 * span && have.minDur * 4 >= Math.floor(perPx));
}

export function scopeRow(depth: number): number {
  return Math.min(MAX_SCOPE_ROWS - 1, Math.max(0, depth));
}

/** Rows needed for these instances (one per depth, capped). */
export function scopeRowsFor(items: ScopeInstance[]): number {
  let n = 0;
  for (const s of items) n = Math.max(n, scopeRow(s.depth) + 1);
  return n;
}

/** The scope tracks drawn: rows per thread, threads in id order. */
export interface ScopeTracks {
  threads: { threadId: number; rows: number }[];
}

export const NO_SCOPE_TRACKS: ScopeTracks = { threads: [] };

/** `prev` grown by what `items` need: a track per new thread, more rows where deeper instances came. Tracks
 * never shrink, so rows don't jump while panning. */
export function scopeTracksWith(prev: ScopeTracks, items: ScopeInstance[]): ScopeTracks {
  const rows = new Map(prev.threads.map((t) => [t.threadId, t.rows]));
  let grew = false;
  for (const s of items) {
    const need = scopeRow(s.depth) + 1;
    if ((rows.get(s.threadId) ?? 0) < need) {
      rows.set(s.threadId, need);
      grew = true;
    }
  }
  if (!grew) return prev;
  return { threads: [...rows].sort((a, b) => a[0] - b[0]).map(([threadId, n]) => ({ threadId, rows: n })) };
}

export function scopeRowCount(t: ScopeTracks): number {
  return t.threads.reduce((n, x) => n + x.rows, 0);
}

/** The row (top to bottom over all tracks) of an instance, or of (thread, depth). */
export function scopeRowOf(t: ScopeTracks, threadId: number, depth: number): number {
  let off = 0;
  for (const x of t.threads) {
    if (x.threadId === threadId) return off + Math.min(x.rows - 1, scopeRow(depth));
    off += x.rows;
  }
  return -1;
}

/** Labels of the scope rows: the thread on its track's first row, the depth below it. */
export function scopeRowLabels(t: ScopeTracks): string[] {
  const out: string[] = [];
  for (const x of t.threads) for (let d = 0; d < x.rows; d++) out.push(d === 0 ? `Scopes · thread ${x.threadId}` : `    depth ${d}`);
  return out;
}

/** The row function for drawing and hit-testing with `t` (the depth alone when no tracks are known). */
export function rowFunction(t: ScopeTracks | undefined): (s: ScopeInstance) => number {
  return t && t.threads.length ? (s) => scopeRowOf(t, s.threadId, s.depth) : (s) => scopeRow(s.depth);
}

/** Does the instance overlap the window? An open instance (end null) has no known end: like the API, it
 * overlaps every window from its start on (and is drawn to the window's right edge). */
export function scopeInView(s: ScopeInstance, vp: Viewport): boolean {
  return s.start < vp.t1 && (s.end === null || s.end > vp.t0);
}

function endOf(s: ScopeInstance, vp: Viewport): number {
  return s.end ?? Math.max(vp.t1, s.start);
}

export interface ScopeRect {
  row: number;
  x: number;
  w: number;
  s: ScopeInstance;
  label: string | null;
}

/**
 * Rects to paint (plot-relative px) for the instances in view, and how many instances are in view. Like the
 * kernel lanes, a sub-pixel instance whose pixel is already painted in its row is skipped (not drawn twice).
 * Labels go on rects wider than `minLabelPx`.
 */
export function scopeRects(
  items: ScopeInstance[],
  vp: Viewport,
  plotWidth: number,
  minLabelPx = 40,
  rowOf: (s: ScopeInstance) => number = (s) => scopeRow(s.depth),
): { rects: ScopeRect[]; inView: number } {
  const rects: ScopeRect[] = [];
  const lastX = new Map<number, number>();
  let inView = 0;
  for (const s of items) {
    if (!scopeInView(s, vp)) continue;
    inView++;
    const row = rowOf(s);
    const end = endOf(s, vp);
    const x0 = Math.max(-2, tToX(s.start, vp, plotWidth));
    const x1 = Math.min(plotWidth + 2, tToX(end, vp, plotWidth));
    const w = Math.max(1, x1 - x0);
    const last = lastX.get(row) ?? -Infinity;
    if (w < 1.5 && Math.floor(x0) <= last) continue;
    lastX.set(row, Math.max(last, Math.floor(x0 + w)));
    rects.push({ row, x: x0, w, s, label: w > minLabelPx ? s.name : null });
  }
  return { rects, inView };
}

/** The instance under plot-relative x in `row` (within `tol` px; the narrowest wins, then the latest). */
export function scopeAt(
  items: ScopeInstance[],
  vp: Viewport,
  plotWidth: number,
  row: number,
  px: number,
  tol = 3,
  rowOf: (s: ScopeInstance) => number = (s) => scopeRow(s.depth),
): ScopeInstance | null {
  let best: ScopeInstance | null = null;
  let bestD = Infinity;
  let bestW = Infinity;
  for (const s of items) {
    if (rowOf(s) !== row || !scopeInView(s, vp)) continue;
    const x0 = tToX(s.start, vp, plotWidth);
    const x1 = Math.max(x0 + 1, tToX(endOf(s, vp), vp, plotWidth));
    const d = px < x0 ? x0 - px : px > x1 ? px - x1 : 0;
    if (d > tol) continue;
    if (d < bestD || (d === bestD && x1 - x0 <= bestW)) {
      best = s;
      bestD = d;
      bestW = x1 - x0;
    }
  }
  return best;
}
