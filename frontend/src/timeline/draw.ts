/**
 * Synchronous canvas drawing of the Kernels timeline. Nothing here fetches: the component hands over what
 * is in the cache and this paints one frame (Perfetto's split between async data and sync rendering).
 */
import type { KernelRow, LodBucket, MemcpyRow, MemoryBucket, MemoryTimeline, ScopeInstance } from '../api/client';
import type { LaunchBucket, LaunchTimeline } from '../api/launches';
import { ACTIVITY_ROW_H, drawActivity, type ActivityLane } from './activity';
import { nameColor } from '../lib/color';
import { fmtTick } from '../lib/format';
import { density, laneKey, type Lane, type Tile } from './lod';
import { rowFunction, scopeAt, scopeRects, SCOPE_KEY, SCOPE_ROW_H, type ScopeTracks } from './scopes';
import { callAt, callColor, callRects, drawFlow, flowPoints, LAUNCH_KEY, LAUNCH_ROW_H, type ThreadRow } from './threads';
import { tickStep, tToX, type Viewport } from './viewport';

export const AXIS_H = 22;
export const LANE_H = 24;
export const GUTTER_W = 200;
export const MEMCPY_KEY = 'memcpy';

export interface Layout {
  width: number; // plot width (px), excluding gutter
  height: number;
  rows: {
    key: string;
    label: string;
    y: number;
    h: number;
    kind: 'memcpy' | 'kernel' | 'scope' | 'launch' | 'activity';
    lane?: Lane;
    depth?: number;
    /** launch rows: the thread; activity rows: the GPU. */
    thread?: number;
    device?: number;
    /** memcpy rows of one (GPU, stream); absent on the single row held before the streams are known. */
    mem?: { device: number; stream: number };
  }[];
}

/** A memory lane: the copies and memsets of one (GPU, stream). */
export interface MemLane {
  device: number;
  stream: number;
}

export function memKey(device: number, stream: number): string {
  return `${MEMCPY_KEY}:${device}:${stream}`;
}

/** Rows top to bottom: the thread tracks (scope rows — a count, one per depth; or their labels, from the
 * per-thread tracks — and launch-call rows), the memory lanes (copies and memsets, one per stream, or one row
 * while the streams are not known yet), the GPU lanes, and the GPU activity rows (SM active, when shown).
 * A scope row's `depth` is its index among the scope rows. */
export function layout(
  lanes: Lane[],
  mem: boolean | MemLane[],
  plotWidth: number,
  scopeRows: number | string[] | ThreadRow[] = 0,
  activity: ActivityLane[] = [],
): Layout {
  const rows: Layout['rows'] = [];
  let y = AXIS_H;
  const labels = typeof scopeRows === 'number' ? Array.from({ length: scopeRows }, (_, d) => (d === 0 ? 'Scopes' : `Scopes · depth ${d}`)) : scopeRows;
  let d = 0;
  for (const r of labels) {
    if (typeof r !== 'string' && r.kind === 'launch') {
      rows.push({ key: LAUNCH_KEY + r.thread, label: r.label, y, h: LAUNCH_ROW_H, kind: 'launch', thread: r.thread });
      y += LAUNCH_ROW_H;
      continue;
    }
    rows.push({ key: SCOPE_KEY + d, label: typeof r === 'string' ? r : r.label, y, h: SCOPE_ROW_H, kind: 'scope', depth: d });
    d++;
    y += SCOPE_ROW_H;
  }
  if (mem === true) {
    rows.push({ key: MEMCPY_KEY, label: 'Memory copies & sets', y, h: LANE_H, kind: 'memcpy' });
    y += LANE_H;
  } else if (Array.isArray(mem)) {
    for (const m of mem) {
      rows.push({ key: memKey(m.device, m.stream), label: `Copies & sets · GPU ${m.device} · stream ${m.stream}`, y, h: LANE_H, kind: 'memcpy', mem: m });
      y += LANE_H;
    }
  }
  for (const l of lanes) {
    rows.push({ key: l.key, label: l.label, y, h: LANE_H, kind: 'kernel', lane: l });
    y += LANE_H;
  }
  for (const a of activity) {
    rows.push({ key: `activity:${a.device}`, label: a.label, y, h: ACTIVITY_ROW_H, kind: 'activity', device: a.device });
    y += ACTIVITY_ROW_H;
  }
  return { width: plotWidth, height: y + 4, rows };
}

/** Buckets of a tile grouped per lane and sorted by time (done once when the tile arrives). */
export function groupByLane(buckets: LodBucket[]): Map<string, LodBucket[]> {
  const m = new Map<string, LodBucket[]>();
  for (const b of buckets) {
    const k = laneKey(b.device, b.stream);
    let a = m.get(k);
    if (!a) m.set(k, (a = []));
    a.push(b);
  }
  for (const a of m.values()) a.sort((x, y) => x.t - y.t);
  return m;
}

export interface DrawnTile extends Tile {
  byLane: Map<string, LodBucket[]>;
  /** Longest kernel per lane (ns): how far before the window a bucket may start and still show. */
  maxDur?: Map<string, number>;
}

export function maxDurByLane(byLane: Map<string, LodBucket[]>): Map<string, number> {
  const m = new Map<string, number>();
  for (const [k, bs] of byLane) {
    let d = 0;
    for (const b of bs) d = Math.max(d, b.longest.end - b.longest.start);
    m.set(k, d);
  }
  return m;
}

export interface FrameInput {
  vp: Viewport;
  layout: Layout;
  tiles: DrawnTile[];
  memcpy: MemcpyRow[];
  /** When set, the memory lane draws these buckets (each one's longest copy or memset) instead of `memcpy`. */
  memBuckets?: MemoryTimeline | null;
  selectedId: string | null;
  /** The selected kernel, and its launch call (thread, entry and exit) when recorded: the flow arrow. */
  selected: { start: number; end: number; device: number; stream: number; call?: { thread: number; start: number; end: number } | null } | null;
  /** The selected copy or memset (outlined in its memory lane). */
  selectedCopy?: { start: number; end: number; device: number; stream: number } | null;
  highlightName: string | null;
  highlights: { start: number; end: number; device: number; stream: number }[];
  /** Kernels running at the window's left edge that started before it (their LOD bucket is off-screen). */
  edge?: KernelRow[];
  hover: { x: number; y: number } | null;
  /** Scope instances loaded for (at least) the window, drawn in the scope rows. */
  scopes?: ScopeInstance[];
  scopesTruncated?: boolean;
  /** A range being selected (drag), drawn as a band over every row. */
  selection?: { t0: number; t1: number } | null;
  /** The per-thread scope tracks the rows belong to (absent: one row per depth). */
  scopeTracks?: ScopeTracks;
  /** Launch-API calls per thread and bucket (the launch rows). */
  launches?: LaunchTimeline | null;
  /** GPU activity per GPU (the SM-active rows). */
  activity?: ActivityLane[];
}

export interface FrameStats {
  rects: number;
  /** Launch calls overlapping the window (every one counted), and whether the flow arrow was drawn. */
  calls: number;
  flow: boolean;
  /** Scope instances overlapping the window (drawn, or covered by a painted pixel of their row). */
  scopes: number;
  /** The axis labels drawn, left to right. */
  ticks: string[];
}

export function drawFrame(ctx: CanvasRenderingContext2D, f: FrameInput, dpr: number): FrameStats {
  const { vp, layout: L } = f;
  const W = L.width;
  const total = W + GUTTER_W;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = '#14161b';
  ctx.fillRect(0, 0, total, L.height);
  let rects = 0;

  // Lane backgrounds and labels.
  ctx.font = '11px ui-sans-serif, system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  L.rows.forEach((r, i) => {
    ctx.fillStyle = i % 2 ? '#181b21' : '#1b1e25';
    ctx.fillRect(0, r.y, total, r.h);
  });

  // Plot area (clipped to the right of the gutter).
  ctx.save();
  ctx.beginPath();
  ctx.rect(GUTTER_W, 0, W, L.height);
  ctx.clip();
  ctx.translate(GUTTER_W, 0);

  // Grid + axis.
  const step = tickStep(vp.t1 - vp.t0, Math.max(2, Math.floor(W / 110)));
  ctx.strokeStyle = '#2a2e37';
  ctx.fillStyle = '#9aa3b2';
  ctx.lineWidth = 1;
  const ticks: string[] = [];
  for (let t = Math.ceil(vp.t0 / step) * step; t <= vp.t1; t += step) {
    const x = Math.round(tToX(t, vp, W)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, AXIS_H - 6);
    ctx.lineTo(x, L.height);
    ctx.stroke();
    const label = fmtTick(t, step, Math.max(Math.abs(vp.t0), Math.abs(vp.t1)));
    ticks.push(label);
    ctx.fillText(label, x + 3, AXIS_H / 2);
  }

  const rowByKey = new Map(L.rows.map((r) => [r.key, r]));
  const hl = f.highlightName;

  // Kernel lanes from LOD tiles: a faint density band per bucket, the bucket's longest kernel on top.
  // Rects are batched per (alpha, colour) into one path each: changing fillStyle per rect is what costs.
  const batch = new Batch();
  const labels: { x: number; y: number; w: number; h: number; text: string; dim: boolean }[] = [];
  for (const tile of f.tiles) {
    for (const [lk, buckets] of tile.byLane) {
      const r = rowByKey.get(lk);
      if (!r) continue;
      const y = r.y + 3;
      const h = r.h - 6;
      let lastBand = -1;
      let lastX = -1;
      for (let i = firstVisible(buckets, vp.t0 - tile.bucketNs - (tile.maxDur?.get(lk) ?? 0)); i < buckets.length; i++) {
        const b = buckets[i];
        if (b.t > vp.t1) break;
        if (b.longest.end < vp.t0 && b.t + tile.bucketNs < vp.t0) continue;
        const dim = hl !== null && b.longest.name !== hl;
        // density band (skip when its pixel is already painted)
        if (b.count > 1) {
          const bx0 = tToX(b.t, vp, W);
          const bx1 = tToX(b.t + tile.bucketNs, vp, W);
          if (Math.floor(bx1) > lastBand) {
            const a = Math.round(((dim ? 0.05 : 0.12) + (dim ? 0.1 : 0.35) * density(b, tile.bucketNs)) * 8) / 8;
            batch.add(a, nameColor(b.longest.name, 45), bx0, y + h - 5, Math.max(1, bx1 - bx0), 5);
            lastBand = Math.floor(bx1);
          }
        }
        const x0 = tToX(b.longest.start, vp, W);
        const x1 = tToX(b.longest.end, vp, W);
        const w = Math.max(1, x1 - x0);
        if (w < 1.5 && Math.floor(x0) <= lastX) continue;
        lastX = Math.floor(x0 + w);
        batch.add(dim ? 0.25 : 1, nameColor(b.longest.name), x0, y, w, h - 6);
        if (w > 50 && b.longest.name && labels.length < 300) {
          labels.push({ x: x0, y, w, h: h - 6, text: b.count > 1 ? `${b.longest.name} (+${b.count - 1})` : b.longest.name, dim });
        }
      }
    }
  }
  for (const k of f.edge ?? []) {
    const r = rowByKey.get(laneKey(k.device, k.stream));
    if (!r || k.end < vp.t0 || k.start > vp.t1) continue;
    const x0 = tToX(k.start, vp, W);
    const w = Math.max(1, tToX(k.end, vp, W) - x0);
    const dim = hl !== null && k.name !== hl;
    batch.add(dim ? 0.25 : 1, nameColor(k.name), x0, r.y + 3, w, r.h - 12);
    if (w > 50 && k.name) labels.push({ x: x0, y: r.y + 3, w, h: r.h - 12, text: k.name, dim });
  }
  rects += batch.flush(ctx);
  ctx.fillStyle = '#0d0f12';
  for (const l of labels) {
    ctx.globalAlpha = l.dim ? 0.4 : 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(Math.max(0, l.x), l.y, Math.min(l.w, W), l.h);
    ctx.clip();
    ctx.fillText(l.text, Math.max(0, l.x) + 3, l.y + l.h / 2);
    ctx.restore();
  }
  ctx.globalAlpha = 1;

  // Instances of the highlighted kernel (from the raw query by name), on top.
  if (f.highlights.length) {
    ctx.fillStyle = '#ffffff';
    for (const k of f.highlights) {
      const r = rowByKey.get(laneKey(k.device, k.stream));
      if (!r || k.end < vp.t0 || k.start > vp.t1) continue;
      const x0 = tToX(k.start, vp, W);
      const w = Math.max(2, tToX(k.end, vp, W) - x0);
      ctx.fillRect(x0, r.y + 1, w, 3);
      rects++;
    }
  }

  // Scope instances: one row per depth, coloured by path, labelled when wide enough.
  let scopesInView = 0;
  if (f.scopes?.length && L.rows.some((r) => r.kind === 'scope')) {
    const sr = scopeRects(f.scopes, vp, W, 40, rowFunction(f.scopeTracks));
    scopesInView = sr.inView;
    const sb = new Batch();
    const slabels: { x: number; y: number; w: number; h: number; text: string }[] = [];
    for (const r of sr.rects) {
      const row = rowByKey.get(SCOPE_KEY + r.row);
      if (!row) continue;
      // a 1 px gap at the end keeps back-to-back instances of one scope (same colour) apart
      sb.add(r.s.end === null ? 0.6 : 1, nameColor(r.s.path, 40), r.x, row.y + 2, r.w > 3 ? r.w - 1 : r.w, row.h - 3);
      if (r.label && slabels.length < 300) slabels.push({ x: r.x, y: row.y + 2, w: r.w, h: row.h - 3, text: r.s.end === null ? `${r.label} (open)` : r.label });
    }
    rects += sb.flush(ctx);
    ctx.fillStyle = '#f1f3f6';
    for (const l of slabels) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(Math.max(0, l.x), l.y, Math.min(l.w, W), l.h);
      ctx.clip();
      ctx.fillText(l.text, Math.max(0, l.x) + 3, l.y + l.h / 2);
      ctx.restore();
    }
  }

  // Memory copies and memsets, per stream lane (or all in the one row held before the streams are known).
  for (const mr of L.rows) {
    if (mr.kind !== 'memcpy') continue;
    const mine = (x: { device: number; stream: number }) => !mr.mem || (x.device === mr.mem.device && x.stream === mr.mem.stream);
    let lastX = -1;
    const items = f.memBuckets
      ? f.memBuckets.buckets.filter(mine).map((b) => ({ start: b.longest.start, end: Math.max(b.longest.end, b.t + f.memBuckets!.bucketNs), s: b.longest.start, e: b.longest.end, kind: b.kind }))
      : f.memcpy.filter(mine).map((m) => ({ start: m.start, end: m.end, s: m.start, e: m.end, kind: m.copyKind }));
    for (const m of items) {
      if (m.end < vp.t0 || m.start > vp.t1) continue;
      const x0 = tToX(m.s, vp, W);
      const w = Math.max(1, tToX(m.e, vp, W) - x0);
      if (w < 1.5 && Math.floor(x0) <= lastX) continue;
      lastX = Math.floor(x0 + w);
      ctx.fillStyle = MEMCPY_COLORS[m.kind] ?? '#8c8c8c';
      ctx.fillRect(x0, mr.y + 4, w, mr.h - 8);
      rects++;
    }
  }
  if (f.selectedCopy) {
    const c = f.selectedCopy;
    const r = L.rows.find((x) => x.kind === 'memcpy' && (!x.mem || (x.mem.device === c.device && x.mem.stream === c.stream)));
    if (r) {
      const x0 = tToX(c.start, vp, W);
      ctx.strokeStyle = '#ffd166';
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 - 1, r.y + 1, Math.max(3, tToX(c.end, vp, W) - x0) + 2, r.h - 2);
    }
  }

  // Launch-API calls on each thread's row.
  let calls = 0;
  const callsPerRow = new Map<string, number>();
  if (f.launches) {
    const lb = new Batch();
    for (const r of L.rows) {
      if (r.kind !== 'launch' || r.thread === undefined) continue;
      const cr = callRects(f.launches, r.thread, vp, W);
      calls += cr.inView;
      callsPerRow.set(r.key, cr.inView);
      for (const c of cr.rects) lb.add(1, callColor(c.b), c.x, r.y + 2, c.w, r.h - 4);
    }
    rects += lb.flush(ctx);
  }

  // GPU activity (SM active beside NVML's utilisation).
  for (const r of L.rows) {
    if (r.kind !== 'activity') continue;
    const a = f.activity?.find((x) => x.device === r.device);
    if (a) rects += drawActivity(ctx, a, vp, W, r.y, r.h);
  }

  // Selected kernel outline.
  if (f.selected) {
    const r = rowByKey.get(laneKey(f.selected.device, f.selected.stream));
    if (r) {
      const x0 = tToX(f.selected.start, vp, W);
      const w = Math.max(3, tToX(f.selected.end, vp, W) - x0);
      ctx.strokeStyle = '#ffd166';
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 - 1, r.y + 1, w + 2, r.h - 2);
    }
  }
  // The flow from the selected kernel's launch call to the kernel (CUPTI's correlation id links them).
  let flow = false;
  const call = f.selected?.call;
  if (f.selected && call) {
    const callRow = rowByKey.get(LAUNCH_KEY + call.thread);
    const p = flowPoints(call, f.selected.start, callRow, rowByKey.get(laneKey(f.selected.device, f.selected.stream)), vp, W);
    if (p && callRow && (Math.max(p.x0, p.x1) >= 0 || Math.min(p.x0, p.x1) <= W)) {
      const x0 = tToX(call.start, vp, W);
      ctx.strokeStyle = '#ffd166';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x0 - 1, callRow.y + 1, Math.max(2, tToX(call.end, vp, W) - x0) + 2, callRow.h - 2);
      drawFlow(ctx, p);
      flow = true;
    }
  }

  // Range being selected.
  if (f.selection) {
    const x0 = tToX(f.selection.t0, vp, W);
    const x1 = tToX(f.selection.t1, vp, W);
    ctx.fillStyle = 'rgba(255, 209, 102, 0.15)';
    ctx.fillRect(x0, 0, Math.max(1, x1 - x0), L.height);
    ctx.strokeStyle = '#ffd166';
    ctx.lineWidth = 1;
    ctx.strokeRect(Math.round(x0) + 0.5, 0.5, Math.max(1, Math.round(x1 - x0)), L.height - 1);
  }

  // Hover cursor line.
  if (f.hover && f.hover.x >= GUTTER_W) {
    ctx.strokeStyle = 'rgba(255,255,255,0.35)';
    ctx.lineWidth = 1;
    const x = Math.round(f.hover.x - GUTTER_W) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, AXIS_H);
    ctx.lineTo(x, L.height);
    ctx.stroke();
  }
  ctx.restore();

  // Gutter labels drawn last so they stay on top.
  ctx.fillStyle = '#14161b';
  ctx.fillRect(0, 0, GUTTER_W, AXIS_H);
  L.rows.forEach((r, i) => {
    ctx.fillStyle = i % 2 ? '#181b21' : '#1b1e25';
    ctx.fillRect(0, r.y, GUTTER_W, r.h);
    ctx.fillStyle = '#c9d1dc';
    // Memory copies are never cut (past 2,000 they come as buckets); scope instances may be: say so.
    // Launch rows: how many calls are in view (all counted, the longest per pixel drawn).
    const n = callsPerRow.get(r.key);
    const label =
      r.kind === 'scope' && r.depth === 0 && f.scopesTruncated
        ? `${r.label} (first ${f.scopes?.length ?? 0})`
        : n !== undefined
          ? `${r.label} · ${n.toLocaleString('en-US')}`
          : r.label;
    ctx.fillText(label, 8, r.y + r.h / 2, GUTTER_W - 14);
  });
  ctx.strokeStyle = '#2a2e37';
  ctx.beginPath();
  ctx.moveTo(GUTTER_W + 0.5, 0);
  ctx.lineTo(GUTTER_W + 0.5, L.height);
  ctx.stroke();
  return { rects, scopes: scopesInView, ticks, calls, flow };
}

/** Index of the first bucket with t ≥ t0 (buckets sorted by t). */
export function firstVisible(buckets: LodBucket[], t0: number): number {
  let lo = 0;
  let hi = buckets.length;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (buckets[m].t < t0) lo = m + 1;
    else hi = m;
  }
  return Math.max(0, lo - 1);
}

/** Rects grouped by (alpha, colour), each group filled as one path. */
export class Batch {
  private groups = new Map<string, { alpha: number; color: string; r: number[] }>();
  add(alpha: number, color: string, x: number, y: number, w: number, h: number): void {
    const key = alpha === 1 ? color : `${alpha}|${color}`;
    let g = this.groups.get(key);
    if (!g) this.groups.set(key, (g = { alpha, color, r: [] }));
    g.r.push(x, y, w, h);
  }
  flush(ctx: CanvasRenderingContext2D): number {
    let n = 0;
    for (const g of this.groups.values()) {
      ctx.globalAlpha = g.alpha;
      ctx.fillStyle = g.color;
      ctx.beginPath();
      const r = g.r;
      for (let i = 0; i < r.length; i += 4) ctx.rect(r[i], r[i + 1], r[i + 2], r[i + 3]);
      ctx.fill();
      n += r.length / 4;
    }
    ctx.globalAlpha = 1;
    this.groups.clear();
    return n;
  }
}

export const MEMCPY_COLORS: Record<string, string> = {
  HtoD: '#4cc9f0',
  DtoH: '#f72585',
  DtoD: '#b5179e',
  PtoP: '#7209b7',
  HtoH: '#8d99ae',
  memset: '#f4a261',
};

export type Hit =
  | { kind: 'kernel'; id: string; name: string | null; start: number; end: number; count: number; device: number; stream: number }
  | { kind: 'memcpy'; row: MemcpyRow }
  | { kind: 'memBucket'; bucket: MemoryBucket }
  | { kind: 'scope'; scope: ScopeInstance }
  | { kind: 'launch'; call: LaunchBucket }
  | { kind: 'activity'; lane: ActivityLane; t: number };

/** What is under (x, y) (canvas CSS pixels): the bucket whose longest kernel is nearest, within 4 px. */
export function hitTest(
  f: Pick<FrameInput, 'vp' | 'layout' | 'tiles' | 'memcpy' | 'edge' | 'scopes' | 'memBuckets' | 'scopeTracks' | 'launches' | 'activity'>,
  x: number,
  y: number,
): Hit | null {
  if (x < GUTTER_W) return null;
  const px = x - GUTTER_W;
  const W = f.layout.width;
  const row = f.layout.rows.find((r) => y >= r.y && y < r.y + r.h);
  if (!row) return null;
  if (row.kind === 'scope') {
    const sc = scopeAt(f.scopes ?? [], f.vp, W, row.depth ?? 0, px, 3, rowFunction(f.scopeTracks));
    return sc ? { kind: 'scope', scope: sc } : null;
  }
  if (row.kind === 'launch') {
    const c = callAt(f.launches, row.thread ?? -1, f.vp, W, px);
    return c ? { kind: 'launch', call: c } : null;
  }
  if (row.kind === 'activity') {
    const lane = f.activity?.find((a) => a.device === row.device);
    return lane ? { kind: 'activity', lane, t: f.vp.t0 + (px / W) * (f.vp.t1 - f.vp.t0) } : null;
  }
  const mine = (m: { device: number; stream: number }) => !row.mem || (m.device === row.mem.device && m.stream === row.mem.stream);
  const tol = 4;
  let best: Hit | null = null;
  let bestD = Infinity;
  if (row.kind === 'memcpy' && f.memBuckets) {
    for (const b of f.memBuckets.buckets) {
      if (!mine(b)) continue;
      const d = pxDistance(px, tToX(b.longest.start, f.vp, W), tToX(b.longest.end, f.vp, W));
      if (d <= tol && d < bestD) {
        bestD = d;
        best = { kind: 'memBucket', bucket: b };
      }
    }
    return best;
  }
  if (row.kind === 'memcpy') {
    for (const m of f.memcpy) {
      if (!mine(m)) continue;
      const d = pxDistance(px, tToX(m.start, f.vp, W), tToX(m.end, f.vp, W));
      if (d <= tol && d < bestD) {
        bestD = d;
        best = { kind: 'memcpy', row: m };
      }
    }
    return best;
  }
  for (const k of f.edge ?? []) {
    if (laneKey(k.device, k.stream) !== row.key) continue;
    const d = pxDistance(px, tToX(k.start, f.vp, W), tToX(k.end, f.vp, W));
    if (d <= tol && d < bestD) {
      bestD = d;
      best = { kind: 'kernel', id: k.id, name: k.name, start: k.start, end: k.end, count: 1, device: k.device, stream: k.stream };
    }
  }
  for (const tile of f.tiles) {
    const bs = tile.byLane.get(row.key);
    if (!bs) continue;
    for (const b of bs) {
      const d = pxDistance(px, tToX(b.longest.start, f.vp, W), tToX(b.longest.end, f.vp, W));
      if (d <= tol && (d < bestD || (d === bestD && best?.kind === 'kernel' && b.longest.end - b.longest.start > best.end - best.start))) {
        bestD = d;
        best = { kind: 'kernel', id: b.longest.id, name: b.longest.name, start: b.longest.start, end: b.longest.end, count: b.count, device: b.device, stream: b.stream };
      }
    }
  }
  return best;
}

function pxDistance(x: number, x0: number, x1: number): number {
  if (x1 - x0 < 1) x1 = x0 + 1;
  if (x < x0) return x0 - x;
  if (x > x1) return x - x1;
  return 0;
}

/** Minimap background: the whole session's density per lane (drawn once into an offscreen canvas). */
export function drawMinimap(
  ctx: CanvasRenderingContext2D,
  overview: DrawnTile | null,
  lanes: Lane[],
  range: { start: number; end: number },
  _vp: Viewport | null,
  width: number,
  height: number,
  dpr: number,
): void {
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = '#101216';
  ctx.fillRect(0, 0, width, height);
  const full: Viewport = { t0: range.start, t1: range.end };
  const W = width - GUTTER_W;
  ctx.fillStyle = '#9aa3b2';
  ctx.font = '11px ui-sans-serif, system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  ctx.fillText('Overview', 8, height / 2);
  if (overview && lanes.length) {
    const lh = Math.max(2, (height - 4) / lanes.length);
    const batch = new Batch();
    lanes.forEach((l, i) => {
      const bs = overview.byLane.get(l.key);
      if (!bs) return;
      let last = -1;
      for (const b of bs) {
        const x0 = GUTTER_W + tToX(b.t, full, W);
        const x1 = GUTTER_W + tToX(b.t + overview.bucketNs, full, W);
        if (Math.floor(x1) <= last) continue;
        last = Math.floor(x1);
        const a = Math.round((0.25 + 0.75 * density(b, overview.bucketNs)) * 4) / 4;
        batch.add(a, nameColor(b.longest.name), x0, 2 + i * lh, Math.max(1, x1 - x0), lh - 1);
      }
    });
    batch.flush(ctx);
  }
}

/** One minimap frame: the cached background, and the visible window as a box. */
export function drawMinimapFrame(
  ctx: CanvasRenderingContext2D,
  img: HTMLCanvasElement | null,
  range: { start: number; end: number },
  vp: Viewport,
  width: number,
  height: number,
  dpr: number,
): void {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  if (img && img.width > 0 && img.height > 0) ctx.drawImage(img, 0, 0);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const full: Viewport = { t0: range.start, t1: range.end };
  const W = width - GUTTER_W;
  const vx0 = GUTTER_W + tToX(vp.t0, full, W);
  const vx1 = GUTTER_W + tToX(vp.t1, full, W);
  ctx.fillStyle = 'rgba(255,255,255,0.10)';
  ctx.fillRect(vx0, 0, Math.max(2, vx1 - vx0), height);
  ctx.strokeStyle = '#ffd166';
  ctx.lineWidth = 1;
  ctx.strokeRect(vx0 + 0.5, 0.5, Math.max(2, vx1 - vx0) - 1, height - 1);
}
