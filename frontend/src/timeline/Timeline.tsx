/**
 * The Kernels timeline: scope rows on top (one per nesting depth), a memory-copy lane, canvas lanes per
 * (GPU, CUDA stream), and a minimap.
 * Data flow: the viewport decides which LOD tiles are needed; the track data loader (loader.ts) fetches
 * missing tiles and side data asynchronously into its caches; every animation frame draws synchronously from
 * whatever they hold (draw.ts); input (input.ts) only moves the viewport and reports hover and clicks.
 */
import { useEffect, useRef } from 'react';
import type { Api, SessionDetail } from '../api/client';
import { abs } from '../api/json';
import type { CaptureModel } from '../lib/capture';
import { notRecordedAt } from '../lib/capture';
import { ACTIVITY_COLORS } from './activity';
import { DEVICE_ROWS, drawCaptureBands, type DrawnBand } from './captureBands';
import { drawFrame, drawMinimap, drawMinimapFrame, hitTest, layout, memKey, GUTTER_W, MEMCPY_COLORS, type FrameInput, type Hit } from './draw';
import { attachInput, tooltipText } from './input';
import type { ViewportLink } from './link';
import { TrackLoader } from './loader';
import { scopeRowLabels, scopeRowOf, SCOPE_KEY } from './scopes';
import { LAUNCH_KEY, threadRows } from './threads';
import { useResizableHeight } from './height';
import type { Bounds, Viewport } from './viewport';

export interface TimelineProps {
  api: Api;
  session: SessionDetail;
  viewport: Viewport;
  /** Bumped by the parent to force `viewport` onto the timeline (deep link, click on a System chart). */
  viewportNonce: number;
  onViewportChange: (vp: Viewport) => void;
  selectedId: string | null;
  selected: FrameInput['selected'];
  onSelect: (id: string) => void;
  /** The selected copy or memset, outlined; a click on one (or on a copy's launch call) calls onSelectCopy. */
  selectedCopy?: FrameInput['selectedCopy'];
  onSelectCopy?: (c: { id: string; start: number; end: number }) => void;
  /** Show the GPU activity rows (SM active beside NVML utilisation) under the kernel lanes. */
  activity?: boolean;
  /** What was recorded when (lib/capture.ts): time not recorded is hatched and labelled; null: nothing to draw. */
  capture?: CaptureModel | null;
  highlightName: string | null;
  /** A range was dragged out (shift-drag, or a drag on the axis): the timeline zooms to it. */
  onRange?: (r: { start: number; end: number }) => void;
  /** Called once the first full frame of data is on screen. */
  onReady?: () => void;
  /** The time range the view and the minimap span (default the session's): linked timelines share one. */
  extent?: number;
  /** Timelines that show the same window (compare view): zoom and pan move them all. */
  link?: ViewportLink;
  /** This timeline's role in `link` (offsets are set per role); default the session id. */
  linkKey?: string;
}

const MINIMAP_H = 46;

declare global {
  interface Window {
    /** Hooks for the e2e tests and bench/ui_timeline (read-only use). */
    __gpuflTimeline?: {
      frames: number[];
      drawMs: number[];
      rectsPerFrame: number[];
      firstDataPaint: number | null;
      pending: () => number;
      /** No tile pending, the side data (scopes, copies, calls, activity) in for the current window, and drawn. */
      settled: () => boolean;
      viewport: () => Viewport;
      setViewport: (vp: Viewport) => void;
      rects: number;
      /** Rows as drawn (CSS px inside the canvas) and the plot geometry, to aim clicks at a kernel. */
      rows: () => { key: string; kind: string; label: string; y: number; h: number }[];
      plotX: (t: number) => number;
      memcpyCount: () => number;
      /** Instances of the highlighted kernel name counted in the loaded window. */
      highlightCount: () => number;
      /** The key of the row that draws scopes of (thread, depth), null when there is none yet. */
      scopeRowKey: (threadId: number, depth: number) => string | null;
      /** The axis labels of the last frame. */
      ticks: () => string[];
      /** Launch calls overlapping the window (every one counted), the threads with a call row, and whether
       * the last frame drew the flow arrow of the selected kernel. */
      calls: () => number;
      launchThreads: () => number[];
      flow: () => boolean;
      /** The row keys of the memory lanes (one per (GPU, stream)). */
      memRows: () => string[];
      memKey: (device: number, stream: number) => string;
      launchKey: (thread: number) => string;
      /** The GPU activity rows' labels and their SM-active point counts. */
      activity: () => { label: string; smPoints: number; utilPoints: number; smMean: number[] }[];
      /** The /system query behind the activity rows (absolute ns as strings). */
      activityQuery: () => { startNs: string; endNs: string; points: number } | null;
      /** The capture bands (time not recorded) the last frame drew: label and plot x range (px). */
      captureBands: () => DrawnBand[];
      /** The tooltip's text as shown (null: hidden). */
      tooltip: () => string | null;
      /** The scope query behind the scope rows (absolute ns as strings), what it loaded and what is in view. */
      scopes: () => { startNs: string; endNs: string; minDurNs: number; loaded: number; truncated: boolean; inView: number } | null;
      gutter: number;
    };
  }
}

/** What the component keeps between frames (the data itself lives in the TrackLoader). */
interface View {
  vp: Viewport;
  width: number;
  dpr: number;
  hover: { x: number; y: number } | null;
  selection: { t0: number; t1: number } | null;
  raf: number;
  scopesInView: number;
  calls: number;
  bands: DrawnBand[];
  flow: boolean;
  /** What the tooltip shows (recomputed every frame while the pointer is over the canvas, so it never goes stale). */
  tip: string | null;
  /** The minimap's lanes and density are drawn once into this canvas and blitted each frame. */
  minimapImg: HTMLCanvasElement | null;
  minimapKey: string;
  ready: boolean;
}

export function Timeline(p: TimelineProps) {
  const wrapRef = useRef<HTMLDivElement>(null);
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const miniRef = useRef<HTMLCanvasElement>(null);
  const tipRef = useRef<HTMLDivElement>(null);
  const statusRef = useRef<HTMLDivElement>(null);
  const lastFrame = useRef<FrameInput | null>(null);
  const props = useRef(p);
  props.current = p;
  const view = useRef<View>({ vp: p.viewport, width: 800, dpr: 1, hover: null, selection: null, raf: 0, scopesInView: 0, calls: 0, bands: [], flow: false, tip: null, minimapImg: null, minimapKey: '', ready: false });

  const bounds = (): Bounds => ({ start: 0, end: props.current.extent ?? props.current.session.rangeEnd, minSpan: 1000 });

  const schedule = useRef<() => void>(() => {});
  const hideTip = useRef<() => void>(() => {});
  const height = useResizableHeight('gpufl.timeline.height');
  const setVp = useRef<(vp: Viewport) => void>(() => {});

  useEffect(() => {
    const v = view.current;
    const plotWidth = () => Math.max(50, v.width - GUTTER_W);
    const loader = new TrackLoader({
      api: () => props.current.api,
      session: () => props.current.session,
      viewport: () => v.vp,
      plotWidth,
      highlightName: () => props.current.highlightName,
      activityOn: () => props.current.activity ?? false,
      changed: () => sched(),
    });
    const hooks: NonNullable<Window['__gpuflTimeline']> = {
      frames: [],
      drawMs: [],
      rectsPerFrame: [],
      firstDataPaint: null,
      pending: () => loader.pendingNeeded().length + loader.inflight,
      // ...and drawn: no frame pending, so rows() is the layout of the data that arrived last.
      settled: () => loader.pendingNeeded().length + loader.inflight === 0 && !loader.sideBusy && !v.raf,
      viewport: () => ({ ...v.vp }),
      setViewport: (vp) => setVp.current(vp),
      rects: 0,
      rows: () => (lastFrame.current ? lastFrame.current.layout.rows.map((r) => ({ key: r.key, kind: r.kind, label: r.label, y: r.y, h: r.h })) : []),
      plotX: (t) => GUTTER_W + ((t - v.vp.t0) / (v.vp.t1 - v.vp.t0)) * plotWidth(),
      memcpyCount: () => (loader.memBuckets ? loader.memBuckets.buckets.reduce((n, b) => n + b.count, 0) : loader.memcpy.length),
      highlightCount: () => loader.highlightCount,
      ticks: () => [...ticks],
      calls: () => v.calls,
      launchThreads: () => [...loader.launchThreads],
      flow: () => v.flow,
      memRows: () => (lastFrame.current ? lastFrame.current.layout.rows.filter((r) => r.kind === 'memcpy').map((r) => r.key) : []),
      memKey,
      launchKey: (thread) => LAUNCH_KEY + thread,
      activity: () => loader.activity.map((a) => ({ label: a.label, smPoints: a.sm?.t.length ?? 0, utilPoints: a.util?.t.length ?? 0, smMean: a.sm ? [...a.sm.mean] : [] })),
      activityQuery: () => {
        const q = loader.activityQuery;
        const o = props.current.session.origin;
        return q && props.current.activity ? { startNs: abs(q.start, o), endNs: abs(q.end, o), points: q.points } : null;
      },
      captureBands: () => v.bands.map((b) => ({ ...b })),
      tooltip: () => v.tip,
      scopeRowKey: (threadId, depth) => {
        const r = scopeRowOf(loader.scopeTracks, threadId, depth);
        return r < 0 ? null : SCOPE_KEY + r;
      },
      scopes: () => {
        const l = loader.scopesLoaded;
        if (!l) return null;
        const o = props.current.session.origin;
        return { startNs: abs(l.start, o), endNs: abs(l.end, o), minDurNs: l.minDur, loaded: loader.scopes.length, truncated: l.truncated, inView: v.scopesInView };
      },
      gutter: GUTTER_W,
    };
    window.__gpuflTimeline = hooks;
    let urlTimer = 0;
    let ticks: string[] = [];

    // ---- drawing: one frame from whatever the loader holds (draw.ts paints) -------------------------------
    function frame() {
      v.raf = 0;
      const canvas = canvasRef.current;
      const mini = miniRef.current;
      if (!canvas || !mini) return;
      const t0 = performance.now();
      const P = props.current;
      const needed = loader.neededKeys();
      loader.requestMissing(needed);
      // Until the first scope instances arrive, one row holds their place (so lanes don't jump down later).
      const scopeLabels = loader.scopeTracks.threads.length ? scopeRowLabels(loader.scopeTracks) : P.session.totals.scope_instances > 0 ? ['Scopes'] : [];
      const hasMem = P.session.totals.memcpys + P.session.totals.memsets > 0;
      const L = layout(
        loader.lanes,
        hasMem && (loader.memLanes.length ? loader.memLanes : true),
        plotWidth(),
        threadRows(loader.scopeTracks, scopeLabels, loader.launchThreads),
        P.activity ? loader.activity : [],
      );
      const W = v.width;
      const dpr = v.dpr;
      if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(L.height * dpr)) {
        canvas.width = Math.round(W * dpr);
        canvas.height = Math.round(L.height * dpr);
        canvas.style.width = `${W}px`;
        canvas.style.height = `${L.height}px`;
      }
      const ctx = canvas.getContext('2d');
      if (!ctx) return;
      const f: FrameInput = {
        vp: v.vp,
        layout: L,
        tiles: loader.tilesToDraw(needed),
        memcpy: loader.memcpy,
        memBuckets: loader.memBuckets,
        selectedId: P.selectedId,
        selected: P.selected,
        selectedCopy: P.selectedCopy ?? null,
        highlightName: P.highlightName,
        highlights: loader.highlights,
        edge: loader.edge,
        hover: v.hover,
        scopes: loader.scopes,
        scopesTruncated: loader.scopesLoaded?.truncated ?? false,
        scopeTracks: loader.scopeTracks,
        selection: v.selection,
        launches: loader.launches,
        activity: P.activity ? loader.activity : [],
      };
      lastFrame.current = f;
      const stats = drawFrame(ctx, f, dpr);
      v.bands = drawCaptureBands(ctx, P.capture ?? null, v.vp, L, dpr);
      if (mini.width !== Math.round(W * dpr)) {
        mini.width = Math.round(W * dpr);
        mini.height = Math.round(MINIMAP_H * dpr);
        mini.style.width = `${W}px`;
        mini.style.height = `${MINIMAP_H}px`;
      }
      const mctx = mini.getContext('2d');
      if (mctx) {
        const mk = `${W}|${dpr}|${loader.lanes.length}|${loader.overview?.state}`;
        if (mk !== v.minimapKey) {
          v.minimapImg = v.minimapImg ?? document.createElement('canvas');
          v.minimapImg.width = mini.width;
          v.minimapImg.height = mini.height;
          const ictx = v.minimapImg.getContext('2d');
          if (ictx) drawMinimap(ictx, loader.overview, loader.lanes, { start: 0, end: bounds().end }, null, W, MINIMAP_H, dpr);
          v.minimapKey = mk;
        }
        drawMinimapFrame(mctx, v.minimapImg, { start: 0, end: bounds().end }, v.vp, W, MINIMAP_H, dpr);
      }
      const t1 = performance.now();
      hooks.frames.push(t1);
      hooks.drawMs.push(t1 - t0);
      hooks.rectsPerFrame.push(stats.rects);
      if (hooks.frames.length > 20000) {
        hooks.frames.splice(0, 10000);
        hooks.drawMs.splice(0, 10000);
        hooks.rectsPerFrame.splice(0, 10000);
      }
      hooks.rects = stats.rects;
      v.scopesInView = stats.scopes;
      v.calls = stats.calls;
      v.flow = stats.flow;
      // The tooltip follows what is under the pointer now (after a keyboard zoom, a wheel, new data).
      if (v.hover) showTip(hitTest(f, v.hover.x, v.hover.y), v.hover.x, v.hover.y);
      canvas.dataset.captureBands = String(v.bands.length);
      ticks = stats.ticks;
      const pend = loader.pendingNeeded().length;
      if (hooks.firstDataPaint === null && pend === 0 && loader.overview) {
        hooks.firstDataPaint = t1;
        canvas.dataset.painted = '1';
      }
      if (!v.ready && pend === 0 && loader.overview) {
        v.ready = true;
        props.current.onReady?.();
      }
      canvas.dataset.pending = String(pend);
      canvas.dataset.lanes = String(loader.lanes.length);
      canvas.dataset.scopes = String(stats.scopes);
      canvas.dataset.scopeRows = String(L.rows.filter((r) => r.kind === 'scope').length);
      canvas.dataset.window = `${Math.round(v.vp.t0)}:${Math.round(v.vp.t1)}`;
      if (statusRef.current) {
        const msg = loader.error ? `⚠ ${loader.error}` : pend ? 'Loading…' : loader.lanes.length === 0 && loader.overview ? 'No kernels in this session.' : '';
        if (statusRef.current.textContent !== msg) statusRef.current.textContent = msg;
      }
    }

    function showTip(h: Hit | null, x: number, y: number) {
      const tip = tipRef.current;
      if (!tip) return;
      v.tip = h ? tooltipText(h) : notRecordedTip(x, y);
      if (!v.tip) {
        tip.style.display = 'none';
        return;
      }
      tip.style.display = 'block';
      tip.style.left = `${Math.min(x + 14, v.width - 320)}px`;
      tip.style.top = `${y + 14}px`;
      if (tip.textContent !== v.tip) tip.textContent = v.tip;
    }
    hideTip.current = () => showTip(null, -1, -1);

    // Over a device row where nothing was recorded: say so (an empty lane there is not an idle GPU).
    function notRecordedTip(x: number, y: number): string | null {
      const row = lastFrame.current?.layout.rows.find((r) => y >= r.y && y < r.y + r.h);
      if (!row || !DEVICE_ROWS.has(row.kind) || x < GUTTER_W) return null;
      return notRecordedAt(props.current.capture ?? null, v.vp.t0 + ((x - GUTTER_W) / plotWidth()) * (v.vp.t1 - v.vp.t0));
    }

    function sched() {
      if (!v.raf) v.raf = requestAnimationFrame(frame);
    }
    schedule.current = sched;

    // ---- the window: redraw, refetch side data, tell linked timelines and (debounced) the URL -------------
    // fromLink: the window came from a linked timeline, which already knows it.
    function viewportChanged(fromLink = false) {
      if (!fromLink) props.current.link?.publish(linkId, v.vp);
      sched();
      loader.viewportChanged();
      window.clearTimeout(urlTimer);
      urlTimer = window.setTimeout(() => props.current.onViewportChange({ ...v.vp }), 250);
    }
    setVp.current = (vp: Viewport) => {
      v.vp = vp;
      viewportChanged();
    };
    const link = props.current.link;
    const linkId = link
      ? link.join(props.current.linkKey ?? props.current.session.id, (vp) => {
          v.vp = vp;
          viewportChanged(true);
        })
      : 0;

    // Overview (minimap + lanes): the whole session at the plot's width, through the shared tile cache.
    void loader.loadOverview(Math.max(50, (wrapRef.current?.clientWidth ?? 1200) - GUTTER_W)).then(() => {
      v.minimapKey = '';
    });

    // ---- input --------------------------------------------------------------------------------------------
    const canvas = canvasRef.current!;
    const mini = miniRef.current!;
    const wrap = wrapRef.current!;
    const ro = new ResizeObserver(() => {
      v.width = Math.max(300, wrap.clientWidth);
      v.dpr = window.devicePixelRatio || 1;
      sched();
    });
    ro.observe(wrap);
    v.width = Math.max(300, wrap.clientWidth);
    v.dpr = window.devicePixelRatio || 1;

    const detach = attachInput(canvas, mini, {
      viewport: () => v.vp,
      setViewport: (vp) => setVp.current(vp),
      bounds,
      plotWidth,
      hover: () => v.hover,
      setHover: (h) => {
        v.hover = h;
        sched();
      },
      hitAt: (x, y) => (lastFrame.current ? hitTest(lastFrame.current, x, y) : null),
      showTip,
      select: (id) => props.current.onSelect(id),
      selectCopy: (c) => props.current.onSelectCopy?.(c),
      drive: () => props.current.link?.drive(linkId),
      ownsKeys: () => !props.current.link || props.current.link.drives(linkId),
      setSelection: (sel) => {
        v.selection = sel;
        sched();
      },
      selectRange: (a, b) => {
        const span = Math.max(b - a, bounds().minSpan);
        setVp.current({ t0: a, t1: a + span });
        props.current.onRange?.({ start: a, end: b });
      },
    });
    viewportChanged();

    return () => {
      ro.disconnect();
      link?.leave(linkId);
      detach();
      loader.dispose();
      cancelAnimationFrame(v.raf);
      v.raf = 0;
      window.clearTimeout(urlTimer);
      if (window.__gpuflTimeline === hooks) delete window.__gpuflTimeline;
    };
    // The session is fixed for the life of this component (the parent keys it by session id).
  }, []);

  // Viewport forced by the parent (deep link, System chart click).
  const forced = p.viewport;
  useEffect(() => {
    if (p.viewportNonce > 0) setVp.current(forced);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [p.viewportNonce]);

  // Selection and highlight changes: redraw, and fetch the highlighted kernel's instances. An inspector
  // opening takes the pointer's attention: the tooltip goes until the pointer moves again.
  useEffect(() => {
    view.current.hover = null;
    hideTip.current();
    schedule.current();
  }, [p.selectedId, p.selected, p.selectedCopy]);
  useEffect(() => {
    setVp.current(view.current.vp);
  }, [p.highlightName, p.activity]);
  useEffect(() => {
    schedule.current();
  }, [p.capture]);

  return (
    <div className="timeline" ref={wrapRef}>
      <canvas ref={miniRef} className="minimap" data-testid="minimap" />
      <div className="timeline-canvas-wrap" data-testid="timeline-scroll" style={height.style}>
        <canvas ref={canvasRef} className="timeline-canvas" data-testid="timeline" tabIndex={0} />
        <div ref={tipRef} className="tooltip" style={{ display: 'none' }} />
      </div>
      <div className="timeline-resize" data-testid="timeline-resize" title="Drag to resize the timeline (double-click: fit every row)" {...height.handle} />
      <div ref={statusRef} className="timeline-status" role="status" />
      <div className="hint">
        Wheel / pinch to zoom · drag to pan · shift-drag (or drag on the time axis) to select a range · W/S zoom · A/D
        pan · click a kernel, copy or launch call to inspect · hover a scope for its timing
        {p.activity && (
          <span className="legend">
            {' '}
            · <span className="swatch" style={{ background: ACTIVITY_COLORS.sm }} />
            SM active (GPM) <span className="swatch" style={{ background: ACTIVITY_COLORS.util }} />
            NVML GPU utilisation (line)
          </span>
        )}
        {p.session.totals.memcpys + p.session.totals.memsets > 0 && (
          <span className="legend">
            {' '}
            · copies and memsets:
            {Object.entries(MEMCPY_COLORS).map(([k, c]) => (
              <span key={k}>
                <span className="swatch" style={{ background: c }} />
                {k}
              </span>
            ))}
          </span>
        )}
      </div>
    </div>
  );
}
