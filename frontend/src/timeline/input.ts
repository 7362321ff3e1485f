/**
 * Input on the Kernels timeline: wheel and pinch zoom, drag to pan, shift-drag (or a drag on the time axis)
 * to select a range, the minimap, W/A/S/D, hover and click.
 * It only moves the viewport and reports hover and clicks through `InputTarget`; it neither fetches nor draws.
 */
import type { MemcpyRow } from '../api/client';
import { fmtBytes, fmtDur } from '../lib/format';
import { activityText } from './activity';
import { AXIS_H, GUTTER_W, type Hit } from './draw';
import { centreOn, panBy, zoomAt, type Bounds, type Viewport } from './viewport';

export interface InputTarget {
  viewport(): Viewport;
  /** Move the window (the owner redraws, refetches and tells linked timelines). */
  setViewport(vp: Viewport): void;
  bounds(): Bounds;
  plotWidth(): number;
  /** Pointer position over the canvas (CSS px), null when it left. */
  setHover(h: { x: number; y: number } | null): void;
  hover(): { x: number; y: number } | null;
  hitAt(x: number, y: number): Hit | null;
  /** Show the tooltip for `hit` at (x, y), or hide it (null). */
  showTip(hit: Hit | null, x: number, y: number): void;
  select(id: string): void;
  /** A copy or memset was clicked (its id, and when it ran, to find it): open the copy inspector. */
  selectCopy(c: { id: string; start: number; end: number }): void;
  /** The pointer is over this timeline: it drives the linked ones. */
  drive(): void;
  /** Whether keyboard input is this timeline's (the linked one under the pointer takes it). */
  ownsKeys(): boolean;
  /** The range being dragged (drawn as a band), null when none. */
  setSelection(sel: { t0: number; t1: number } | null): void;
  /** A range was selected (t0 < t1): the owner zooms to it and shows its statistics. */
  selectRange(t0: number, t1: number): void;
}

/** The tooltip's text for what is under the pointer. */
export function tooltipText(h: Hit): string {
  switch (h.kind) {
    case 'kernel':
      return `${h.name ?? '(unnamed)'} — ${fmtDur(h.end - h.start)}${h.count > 1 ? ` · longest of ${h.count} kernels here` : ''}`;
    case 'scope':
      return `scope ${h.scope.path} — ${h.scope.end === null ? 'open (no scope_end yet)' : fmtDur(h.scope.end - h.scope.start)} · thread ${h.scope.threadId}`;
    case 'memBucket':
      return `${h.bucket.count.toLocaleString('en-US')} ${h.bucket.kind} here — ${fmtBytes(h.bucket.bytes)}, busy ${fmtDur(h.bucket.busy)} · longest ${fmtDur(h.bucket.longest.end - h.bucket.longest.start)}`;
    case 'memcpy':
      return copyText(h.row);
    case 'launch': {
      const c = h.call.longest;
      const what = c.kind === 'kernel' ? `launch of ${c.name ?? '(unnamed kernel)'}` : `${c.name ?? 'copy'} copy call`;
      const dur = c.end > c.start ? fmtDur(c.end - c.start) : 'duration not recorded';
      return `${what} — ${dur} · correlation ${c.corrId}${h.call.count > 1 ? ` · longest of ${h.call.count.toLocaleString('en-US')} calls here` : ''}`;
    }
    case 'activity':
      return activityText(h.lane, h.t);
  }
}

/** A copy's tooltip: kind, size, time, throughput and the memory kinds (a pageable copy is staged through a
 * pinned buffer: slower); memsets: size and time. */
export function copyText(m: MemcpyRow): string {
  const base = `${m.copyKind} ${fmtBytes(m.bytes)} — ${fmtDur(m.dur)}`;
  if (m.copyKind === 'memset') return base;
  const gbps = m.throughput === null ? 'throughput not reported' : `${m.throughput.toFixed(2)} GB/s`;
  const kinds = m.srcKind && m.dstKind ? `${m.srcKind} → ${m.dstKind}` : 'memory kinds not reported';
  return `${base} · ${gbps} · ${kinds}${m.mode ? ` · ${m.mode}` : ''}`;
}

/** Listen for input on the timeline canvas and its minimap; returns the function that stops listening. */
export function attachInput(canvas: HTMLCanvasElement, mini: HTMLCanvasElement, t: InputTarget): () => void {
  let drag: { x: number; moved: boolean; minimap: boolean; select?: { x0: number; t0: number } } | null = null;
  const localX = (e: { clientX: number }, el: HTMLElement) => e.clientX - el.getBoundingClientRect().left;
  const localY = (e: { clientY: number }, el: HTMLElement) => e.clientY - el.getBoundingClientRect().top;
  const anchorAt = (px: number) => {
    const vp = t.viewport();
    const W = t.plotWidth();
    return vp.t0 + (Math.max(0, Math.min(W, px)) / W) * (vp.t1 - vp.t0);
  };

  function onWheel(e: WheelEvent) {
    e.preventDefault();
    const W = t.plotWidth();
    const vp = t.viewport();
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY) && !e.ctrlKey) {
      t.setViewport(panBy(vp, e.deltaX, W, t.bounds()));
    } else {
      const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      const factor = Math.exp(dy * (e.ctrlKey ? 0.01 : 0.002));
      t.setViewport(zoomAt(vp, factor, anchorAt(localX(e, canvas) - GUTTER_W), t.bounds()));
    }
  }

  // Touch pinch: two pointers on the canvas zoom around their midpoint.
  const touches = new Map<number, number>();
  let pinchDist = 0;
  function pinch(e: PointerEvent): boolean {
    if (!touches.has(e.pointerId)) return false;
    touches.set(e.pointerId, e.clientX);
    if (touches.size !== 2) return false;
    const [a, b] = [...touches.values()];
    const d = Math.abs(a - b);
    if (pinchDist > 0 && d > 0) {
      const mid = (a + b) / 2 - canvas.getBoundingClientRect().left - GUTTER_W;
      t.setViewport(zoomAt(t.viewport(), pinchDist / d, anchorAt(mid), t.bounds()));
    }
    pinchDist = d;
    return true;
  }

  function onDown(e: PointerEvent) {
    if (e.pointerType === 'touch' && e.currentTarget === canvas) {
      touches.set(e.pointerId, e.clientX);
      if (touches.size === 2) {
        drag = null;
        pinchDist = 0;
        return;
      }
    }
    if (e.button !== 0) return;
    const isMini = e.currentTarget === mini;
    drag = { x: e.clientX, moved: false, minimap: isMini };
    // shift, or a press on the time axis: select a range instead of panning (Perfetto's area selection)
    if (!isMini && (e.shiftKey || localY(e, canvas) < AXIS_H) && localX(e, canvas) >= GUTTER_W) {
      const x0 = localX(e, canvas) - GUTTER_W;
      drag.select = { x0, t0: anchorAt(x0) };
    }
    (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
    if (isMini) miniMove(e);
  }

  function miniMove(e: PointerEvent) {
    const x = localX(e, mini) - GUTTER_W;
    t.setViewport(centreOn(t.viewport(), (x / t.plotWidth()) * t.bounds().end, t.bounds()));
  }

  function onMove(e: PointerEvent) {
    if (touches.size === 2 && pinch(e)) return;
    if (drag?.select) {
      const t1 = anchorAt(localX(e, canvas) - GUTTER_W);
      drag.moved = drag.moved || Math.abs(e.clientX - drag.x) > 2;
      t.setSelection(drag.moved ? { t0: Math.min(drag.select.t0, t1), t1: Math.max(drag.select.t0, t1) } : null);
      return;
    }
    if (drag) {
      if (drag.minimap) return miniMove(e);
      const dx = e.clientX - drag.x;
      if (Math.abs(dx) > 2 || drag.moved) {
        drag.moved = true;
        drag.x = e.clientX;
        t.setViewport(panBy(t.viewport(), -dx, t.plotWidth(), t.bounds()));
      }
      return;
    }
    if (e.currentTarget !== canvas) return;
    t.drive();
    const h = { x: localX(e, canvas), y: localY(e, canvas) };
    t.setHover(h);
    t.showTip(t.hitAt(h.x, h.y), h.x, h.y);
  }

  function onUp(e: PointerEvent) {
    if (touches.delete(e.pointerId) && touches.size > 0) {
      pinchDist = 0;
      drag = null;
      return;
    }
    const d = drag;
    drag = null;
    if (d?.select) {
      t.setSelection(null);
      const x1 = localX(e, canvas) - GUTTER_W;
      if (Math.abs(x1 - d.select.x0) > 3) {
        const t1 = anchorAt(x1);
        t.selectRange(Math.min(d.select.t0, t1), Math.max(d.select.t0, t1));
        return;
      }
    }
    if (!d || d.minimap || d.moved || e.currentTarget !== canvas) return;
    const h = t.hitAt(localX(e, canvas), localY(e, canvas));
    if (h?.kind === 'kernel') t.select(h.id);
    else if (h?.kind === 'launch' && h.call.longest.kind === 'kernel') t.select(h.call.longest.id);
    else if (h?.kind === 'launch') t.selectCopy({ id: h.call.longest.id, start: h.call.longest.gpuStart, end: h.call.longest.gpuStart + 1 });
    else if (h?.kind === 'memcpy') t.selectCopy({ id: h.row.id, start: h.row.start, end: h.row.end });
    else if (h?.kind === 'memBucket') t.selectCopy({ id: h.bucket.longest.id, start: h.bucket.longest.start, end: h.bucket.longest.end });
  }

  function onLeave() {
    t.setHover(null);
    t.showTip(null, 0, 0);
  }

  function onKey(e: KeyboardEvent) {
    const target = e.target as HTMLElement | null;
    if (target && (target.tagName === 'INPUT' || target.tagName === 'TEXTAREA' || target.tagName === 'SELECT' || target.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (!t.ownsKeys()) return;
    const W = t.plotWidth();
    const vp = t.viewport();
    const hover = t.hover();
    const centre = hover && hover.x > GUTTER_W ? vp.t0 + ((hover.x - GUTTER_W) / W) * (vp.t1 - vp.t0) : (vp.t0 + vp.t1) / 2;
    let next: Viewport;
    switch (e.key.toLowerCase()) {
      case 'w':
        next = zoomAt(vp, 0.8, centre, t.bounds());
        break;
      case 's':
        next = zoomAt(vp, 1.25, centre, t.bounds());
        break;
      case 'a':
        next = panBy(vp, -W * 0.15, W, t.bounds());
        break;
      case 'd':
        next = panBy(vp, W * 0.15, W, t.bounds());
        break;
      default:
        return;
    }
    e.preventDefault();
    t.setViewport(next);
  }

  canvas.addEventListener('wheel', onWheel, { passive: false });
  for (const el of [canvas, mini]) {
    el.addEventListener('pointerdown', onDown);
    el.addEventListener('pointermove', onMove);
    el.addEventListener('pointerup', onUp);
  }
  canvas.addEventListener('pointerleave', onLeave);
  canvas.addEventListener('pointercancel', onUp);
  window.addEventListener('keydown', onKey);
  return () => {
    canvas.removeEventListener('wheel', onWheel);
    for (const el of [canvas, mini]) {
      el.removeEventListener('pointerdown', onDown);
      el.removeEventListener('pointermove', onMove);
      el.removeEventListener('pointerup', onUp);
    }
    canvas.removeEventListener('pointerleave', onLeave);
    canvas.removeEventListener('pointercancel', onUp);
    window.removeEventListener('keydown', onKey);
  };
}
