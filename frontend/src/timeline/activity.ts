/**
 * GPU activity under the kernel lanes (issue #20): per GPU a thin row of NVML GPM's SM activity
 * (`sm_active_pct`: the share of SMs busy) as bars, and NVML's `util_gpu_pct` (a kernel was running at all) as a
 * line beside it — the contrast that shows a GPU "100 % utilised" with most SMs idle. Points come from
 * GET /system with the backend's level of detail (a point per pixel or two); a session without GPM says
 * "not recorded" in the row's label. Pure: the loader fetches, draw.ts calls this.
 */
import type { SystemSeries } from '../api/client';
import { tToX, type Viewport } from './viewport';

export const ACTIVITY_ROW_H = 28;
export const SM_METRIC = 'sm_active_pct';
export const UTIL_METRIC = 'util_gpu_pct';
const SM_COLOR = '#2ec4b6';
const UTIL_COLOR = '#f4a261';

export interface ActivityLane {
  device: number;
  label: string;
  /** null: the GPU reported no SM activity in this session (no GPM). */
  sm: SystemSeries | null;
  util: SystemSeries | null;
}

/** One lane per GPU of the session (or per GPU with a series), labelled with what it shows. */
export function activityLanes(devices: number[], series: SystemSeries[]): ActivityLane[] {
  const ids = [...new Set([...devices, ...series.filter((s) => s.device !== null).map((s) => s.device as number)])].sort((a, b) => a - b);
  return ids.map((device) => {
    const sm = series.find((s) => s.metric === SM_METRIC && s.device === device && s.t.length > 0) ?? null;
    const util = series.find((s) => s.metric === UTIL_METRIC && s.device === device && s.t.length > 0) ?? null;
    return { device, label: sm ? `SM active · GPU ${device}` : `SM active · GPU ${device} · not recorded`, sm, util };
  });
}

/** The value of `s` at `t`: the last point at or before it (samples hold until the next), null outside. */
export function valueAt(s: SystemSeries | null, t: number): number | null {
  if (!s || !s.t.length || t < s.t[0]) return null;
  let lo = 0;
  let hi = s.t.length;
  while (hi - lo > 1) {
    const m = (lo + hi) >>> 1;
    if (s.t[m] <= t) lo = m;
    else hi = m;
  }
  return s.mean[lo];
}

/** The tooltip text for the lane at `t`. */
export function activityText(a: ActivityLane, t: number): string {
  const sm = valueAt(a.sm, t);
  const util = valueAt(a.util, t);
  const f = (v: number | null, what: string) => (v === null ? `${what} not recorded` : `${what} ${v.toFixed(1)} %`);
  return `GPU ${a.device} — ${f(sm, 'SM active (GPM)')} · ${f(util, 'NVML GPU utilisation')}`;
}

/** Paint the lane in plot coordinates (y, h: the row); returns the rects drawn. */
export function drawActivity(ctx: CanvasRenderingContext2D, a: ActivityLane, vp: Viewport, W: number, y: number, h: number): number {
  const top = y + 3;
  const H = h - 6;
  let n = 0;
  const pts = (s: SystemSeries, each: (x0: number, x1: number, v: number) => void) => {
    for (let i = 0; i < s.t.length; i++) {
      const t1 = i + 1 < s.t.length ? s.t[i + 1] : s.t[i] + (i > 0 ? s.t[i] - s.t[i - 1] : 0);
      if (t1 < vp.t0 || s.t[i] > vp.t1) continue;
      each(tToX(s.t[i], vp, W), tToX(t1, vp, W), Math.max(0, Math.min(100, s.mean[i])));
    }
  };
  if (a.sm) {
    ctx.fillStyle = SM_COLOR;
    ctx.globalAlpha = 0.75;
    pts(a.sm, (x0, x1, v) => {
      const bh = (v / 100) * H;
      ctx.fillRect(x0, top + H - bh, Math.max(1, x1 - x0), bh);
      n++;
    });
    ctx.globalAlpha = 1;
  }
  if (a.util) {
    ctx.strokeStyle = UTIL_COLOR;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let first = true;
    pts(a.util, (x0, x1, v) => {
      const yy = top + H - (v / 100) * H;
      if (first) ctx.moveTo(x0, yy);
      else ctx.lineTo(x0, yy);
      ctx.lineTo(x1, yy);
      first = false;
    });
    ctx.stroke();
  }
  return n;
}

export const ACTIVITY_COLORS = { sm: SM_COLOR, util: UTIL_COLOR };
