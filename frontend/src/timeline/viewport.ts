/** Viewport math for the timeline: a window [t0, t1) of ns offsets from the session start, mapped to pixels. */
export interface Viewport {
  t0: number;
  t1: number;
}

export interface Bounds {
  /** Session range, ns from origin. */
  start: number;
  end: number;
  /** Narrowest window allowed (ns). */
  minSpan: number;
}

export function span(v: Viewport): number {
  return v.t1 - v.t0;
}

export function tToX(t: number, v: Viewport, width: number): number {
  return ((t - v.t0) / (v.t1 - v.t0)) * width;
}

export function xToT(x: number, v: Viewport, width: number): number {
  return v.t0 + (x / width) * (v.t1 - v.t0);
}

/** Keep the window inside the session (with a 5% margin) and no narrower than minSpan. */
export function clamp(v: Viewport, b: Bounds): Viewport {
  const full = b.end - b.start;
  const margin = full * 0.05;
  const lo = b.start - margin;
  const hi = b.end + margin;
  let s = Math.max(b.minSpan, Math.min(span(v), hi - lo));
  if (!Number.isFinite(s) || s <= 0) s = Math.max(b.minSpan, full);
  let t0 = v.t0;
  if (t0 < lo) t0 = lo;
  if (t0 + s > hi) t0 = hi - s;
  return { t0, t1: t0 + s };
}

/** Zoom by `factor` (<1 zooms in) keeping time `anchor` under the same pixel. */
export function zoomAt(v: Viewport, factor: number, anchor: number, b: Bounds): Viewport {
  const s = span(v);
  const ns = Math.max(b.minSpan, s * factor);
  const f = s > 0 ? (anchor - v.t0) / s : 0.5;
  return clamp({ t0: anchor - f * ns, t1: anchor - f * ns + ns }, b);
}

/** Pan by dx pixels (positive moves the content left, i.e. forward in time). */
export function panBy(v: Viewport, dxPx: number, width: number, b: Bounds): Viewport {
  const dt = (dxPx / width) * span(v);
  return clamp({ t0: v.t0 + dt, t1: v.t1 + dt }, b);
}

/** Centre the window on t, keeping its span. */
export function centreOn(v: Viewport, t: number, b: Bounds): Viewport {
  const s = span(v);
  return clamp({ t0: t - s / 2, t1: t + s / 2 }, b);
}

/** Nice tick step (1, 2, 5 × 10^n ns) so that about `target` ticks fit in the window. */
export function tickStep(spanNs: number, target: number): number {
  const raw = spanNs / Math.max(1, target);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  const nice = m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10;
  return nice * p;
}
