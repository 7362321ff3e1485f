/**
 * Capture bands on the Kernels timeline (issue #21): time when kernels were not recorded (outside every capture
 * window, or in a capture gap) is hatched across the rows the device stream fills (kernels, copies, launch calls)
 * and labelled, so that an empty lane there reads "not recorded", never "idle". Scope rows and the GPU activity
 * rows are left alone: scopes and system sampling are recorded in every mode. Drawn over the frame draw.ts made.
 */
import type { CaptureModel } from '../lib/capture';
import { GUTTER_W, type Layout } from './draw';
import { tToX, type Viewport } from './viewport';

/** The rows that hold what the device stream records: shaded where it was not recorded. */
export const DEVICE_ROWS: ReadonlySet<string> = new Set(['kernel', 'memcpy', 'launch']);

export interface DrawnBand {
  label: string;
  x0: number;
  x1: number;
}

let hatch: CanvasPattern | null | undefined;

function hatchPattern(ctx: CanvasRenderingContext2D): CanvasPattern | string {
  if (hatch === undefined) {
    const c = typeof document !== 'undefined' ? document.createElement('canvas') : null;
    const g = c?.getContext('2d');
    hatch = null;
    if (c && g) {
      c.width = c.height = 8;
      g.fillStyle = 'rgba(120, 128, 145, 0.10)';
      g.fillRect(0, 0, 8, 8);
      g.strokeStyle = 'rgba(150, 158, 175, 0.28)';
      g.lineWidth = 1;
      g.beginPath();
      g.moveTo(0, 8);
      g.lineTo(8, 0);
      g.stroke();
      hatch = ctx.createPattern(c, 'repeat');
    }
  }
  return hatch ?? 'rgba(120, 128, 145, 0.18)';
}

/** The bands of `m` in view, in plot pixels (x from the plot's left edge), at least 1 px wide. */
export function bandsInView(m: CaptureModel | null, vp: Viewport, width: number): DrawnBand[] {
  if (!m) return [];
  const out: DrawnBand[] = [];
  for (const s of m.notRecorded) {
    if (s.end <= vp.t0 || s.start >= vp.t1) continue;
    const x0 = Math.max(0, tToX(s.start, vp, width));
    const x1 = Math.min(width, Math.max(x0 + 1, tToX(s.end, vp, width)));
    out.push({ label: s.label, x0, x1 });
  }
  return out;
}

/** Hatch the device rows where nothing was recorded, label each band once (where it is wide enough), and mark
 * the edges of the recorded stretches on the axis. Returns the bands drawn. */
export function drawCaptureBands(ctx: CanvasRenderingContext2D, m: CaptureModel | null, vp: Viewport, L: Layout, dpr: number): DrawnBand[] {
  const bands = bandsInView(m, vp, L.width);
  if (!m || !bands.length) return bands;
  const rows = L.rows.filter((r) => DEVICE_ROWS.has(r.kind));
  ctx.save();
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.beginPath();
  ctx.rect(GUTTER_W, 0, L.width, L.height);
  ctx.clip();
  ctx.translate(GUTTER_W, 0);
  ctx.fillStyle = hatchPattern(ctx);
  for (const b of bands) for (const r of rows) ctx.fillRect(b.x0, r.y, b.x1 - b.x0, r.h);
  const first = rows[0];
  if (first) {
    ctx.font = '11px ui-sans-serif, system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = '#c3cad6';
    for (const b of bands) {
      const w = ctx.measureText(b.label).width;
      if (b.x1 - b.x0 >= w + 12) ctx.fillText(b.label, b.x0 + 6, first.y + first.h / 2);
    }
  }
  ctx.strokeStyle = '#5fb3a1'; // the recorded stretches' edges, on the axis
  ctx.lineWidth = 2;
  for (const s of m.recorded) {
    if (s.end < vp.t0 || s.start > vp.t1) continue;
    const x0 = tToX(s.start, vp, L.width);
    const x1 = tToX(s.end, vp, L.width);
    ctx.beginPath();
    ctx.moveTo(Math.max(0, x0), 20);
    ctx.lineTo(Math.min(L.width, Math.max(x0 + 1, x1)), 20);
    ctx.stroke();
  }
  ctx.restore();
  return bands;
}
