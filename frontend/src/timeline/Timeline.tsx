/**
 * The Kernels timeline: scope rows on top (one per nesting depth), a memory-copy lane, canvas lanes per
 * (GPU, CUDA stream), and a minimap.
 * Data flow: the viewport decides which LOD tiles are needed; missing tiles are fetched asynchronously into
 * a cache; every animation frame draws synchronously from whatever the cache holds (drawFrame).
 */
import { useEffect, useRef } from 'react';
import type { Api, KernelRow, LodBucket, MemcpyRow, MemoryTimeline, ScopeInstance, SessionDetail } from '../api/client';
import { describeError } from '../api/http';
import { abs } from '../api/json';
import { fmtBytes, fmtDur } from '../lib/format';
import { drawFrame, drawMinimap, drawMinimapFrame, groupByLane, hitTest, layout, maxDurByLane, GUTTER_W, MEMCPY_COLORS, type DrawnTile, type FrameInput } from './draw';
import { clipBuckets, evict, laneKey, lanesFrom, levelFor, tileKey, tilesFor, tilesToDraw, tileWindow, touch, type Lane, type Tile } from './lod';
import { scopeFetchCovers, scopeFetchFor, scopeRowsFor, SCOPE_LIMIT, type LoadedScopes } from './scopes';
import type { ViewportLink } from './link';
import { centreOn, panBy, zoomAt, type Bounds, type Viewport } from './viewport';

export interface TimelineProps {
  api: Api;
  session: SessionDetail;
  viewport: Viewport;
  /** Bumped by the parent to force `viewport` onto the timeline (deep link, click on a System chart). */
  viewportNonce: number;
  onViewportChange: (vp: Viewport) => void;
  selectedId: string | null;
  selected: { start: number; end: number; device: number; stream: number } | null;
  onSelect: (id: string) => void;
  highlightName: string | null;
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
const MAX_TILES = 400;
const MAX_INFLIGHT = 6;
/** Copies and memsets drawn one by one up to this many in the loaded window; past it, per-pixel buckets. */
const MEMCPY_LIMIT = 2000;

interface State {
  vp: Viewport;
  width: number;
  dpr: number;
  tiles: Map<string, DrawnTile>;
  overview: DrawnTile | null;
  lanes: Lane[];
  laneKeys: Set<string>;
  memcpy: MemcpyRow[];
  memcpyTruncated: boolean;
  /** The memory lane's buckets when the window holds more than MEMCPY_LIMIT copies and memsets. */
  memBuckets: MemoryTimeline | null;
  memcpyWin: { start: number; end: number } | null;
  highlights: { start: number; end: number; device: number; stream: number }[];
  /** Instances of the highlighted name in the loaded window (every one, from the backend's buckets). */
  highlightCount: number;
  scopes: ScopeInstance[];
  scopesLoaded: LoadedScopes | null;
  /** Scope rows drawn: grows to the deepest depth seen (never shrinks, so lanes don't jump while panning). */
  scopeRows: number;
  scopesInView: number;
  edge: KernelRow[];
  hover: { x: number; y: number } | null;
  inflight: number;
  raf: number;
  fetchTimer: number;
  sideTimer: number;
  drag: { x: number; moved: boolean; minimap: boolean } | null;
  error: string | null;
  /** The minimap's lanes and density are drawn once into this canvas and blitted each frame. */
  minimapImg: HTMLCanvasElement | null;
  minimapKey: string;
  ready: boolean;
}

declare global {
  interface Window {
    /** Hooks for the e2e tests and bench/ui_timeline (read-only use). */
    __gpuflTimeline?: {
      frames: number[];
      drawMs: number[];
      rectsPerFrame: number[];
      firstDataPaint: number | null;
      pending: () => number;
      viewport: () => Viewport;
      setViewport: (vp: Viewport) => void;
      rects: number;
      /** Rows as drawn (CSS px inside the canvas) and the plot geometry, to aim clicks at a kernel. */
      rows: () => { key: string; y: number; h: number }[];
      plotX: (t: number) => number;
      memcpyCount: () => number;
      /** Instances of the highlighted kernel name counted in the loaded window. */
      highlightCount: () => number;
      /** The scope query behind the scope rows (absolute ns as strings), what it loaded and what is in view. */
      scopes: () => { startNs: string; endNs: string; minDurNs: number; loaded: number; truncated: boolean; inView: number } | null;
      gutter: number;
    };
  }
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
  const st = useRef<State>({
    vp: p.viewport,
    width: 800,
    dpr: 1,
    tiles: new Map(),
    overview: null,
    lanes: [],
    laneKeys: new Set(),
    memcpy: [],
    memcpyTruncated: false,
    memBuckets: null,
    memcpyWin: null,
    highlights: [],
    highlightCount: 0,
    scopes: [],
    scopesLoaded: null,
    scopeRows: p.session.totals.scope_instances > 0 ? 1 : 0,
    scopesInView: 0,
    edge: [],
    hover: null,
    inflight: 0,
    raf: 0,
    fetchTimer: 0,
    sideTimer: 0,
    drag: null,
    error: null,
    minimapImg: null,
    minimapKey: '',
    ready: false,
  });

  const bounds = (): Bounds => ({ start: 0, end: props.current.extent ?? props.current.session.rangeEnd, minSpan: 1000 });

  // ---- scheduling ---------------------------------------------------------------------------------------
  const schedule = useRef<() => void>(() => {});
  const setVp = useRef<(vp: Viewport) => void>(() => {});

  useEffect(() => {
    const s = st.current;
    const hooks: NonNullable<Window['__gpuflTimeline']> = {
      frames: [],
      drawMs: [],
      rectsPerFrame: [],
      firstDataPaint: null,
      pending: () => pendingNeeded().length + s.inflight,
      viewport: () => ({ ...s.vp }),
      setViewport: (vp) => setVp.current(vp),
      rects: 0,
      rows: () => (lastFrame.current ? lastFrame.current.layout.rows.map((r) => ({ key: r.key, y: r.y, h: r.h })) : []),
      plotX: (t) => GUTTER_W + ((t - s.vp.t0) / (s.vp.t1 - s.vp.t0)) * plotWidth(),
      memcpyCount: () => (s.memBuckets ? s.memBuckets.buckets.reduce((n, b) => n + b.count, 0) : s.memcpy.length),
      highlightCount: () => s.highlightCount,
      scopes: () => {
        const l = s.scopesLoaded;
        if (!l) return null;
        const o = props.current.session.origin;
        return { startNs: abs(l.start, o), endNs: abs(l.end, o), minDurNs: l.minDur, loaded: s.scopes.length, truncated: l.truncated, inView: s.scopesInView };
      },
      gutter: GUTTER_W,
    };
    window.__gpuflTimeline = hooks;
    let urlTimer = 0;

    const plotWidth = () => Math.max(50, s.width - GUTTER_W);

    function neededKeys() {
      const level = levelFor(s.vp.t1 - s.vp.t0, plotWidth());
      return tilesFor(s.vp.t0, s.vp.t1, level, props.current.session.origin);
    }

    function pendingNeeded() {
      return neededKeys().filter((k) => s.tiles.get(tileKey(k.level, k.index))?.state !== 'ready');
    }

    function addLanes(buckets: LodBucket[]) {
      if (buckets.every((b) => s.laneKeys.has(laneKey(b.device, b.stream)))) return;
      const names = new Map(props.current.session.devices.map((d) => [d.device_id, d.name ?? '']));
      s.lanes = lanesFrom([...s.lanes, ...buckets], names);
      s.laneKeys = new Set(s.lanes.map((l) => l.key));
    }

    function fetchTile(level: number, index: bigint): Promise<void> {
      const p = loadTile(level, index);
      const t = s.tiles.get(tileKey(level, index));
      if (t) t.done = p;
      return p;
    }

    async function loadTile(level: number, index: bigint) {
      const sess = props.current.session;
      const key = tileKey(level, index);
      const w = tileWindow({ level, index }, sess.origin);
      const tile: DrawnTile = { key, level, start: w.start, end: w.end, state: 'loading', bucketNs: 2 ** level, buckets: [], byLane: new Map() };
      s.tiles.set(key, tile);
      s.inflight++;
      try {
        const r = await props.current.api.kernelTimeline(sess, { start: w.start, end: w.end }, 2 ** level);
        tile.buckets = clipBuckets(r.buckets, w.start, w.end);
        tile.bucketNs = r.bucketNs;
        tile.byLane = groupByLane(tile.buckets);
        tile.maxDur = maxDurByLane(tile.byLane);
        tile.state = 'ready';
        addLanes(tile.buckets);
        s.error = null;
      } catch (e) {
        tile.state = 'error';
        tile.error = describeError(e);
        s.error = tile.error;
        // let a later frame retry
        window.setTimeout(() => {
          if (s.tiles.get(key) === tile) s.tiles.delete(key);
        }, 3000);
      } finally {
        s.inflight--;
        sched();
      }
    }

    function fetchMissing() {
      const keep = new Set<string>();
      for (const k of neededKeys()) {
        const key = tileKey(k.level, k.index);
        keep.add(key);
        if (s.tiles.has(key)) {
          touch(s.tiles as Map<string, Tile>, key);
          continue;
        }
        if (s.inflight >= MAX_INFLIGHT) break;
        void fetchTile(k.level, k.index);
      }
      evict(s.tiles as Map<string, Tile>, MAX_TILES, keep);
    }

    async function fetchSide() {
      // Memory copies and highlights wait for the visible kernel tiles (the backend serves one at a time).
      if (pendingNeeded().length + s.inflight > 0) {
        window.clearTimeout(s.sideTimer);
        s.sideTimer = window.setTimeout(fetchSide, 100);
        return;
      }
      const P = props.current;
      const sess = P.session;
      const span = s.vp.t1 - s.vp.t0;
      const win = { start: s.vp.t0 - span / 2, end: s.vp.t1 + span / 2 };
      // Scope instances of the widened window, leaving out those shorter than a pixel.
      if (sess.totals.scope_instances > 0 && !scopeFetchCovers(s.scopesLoaded, s.vp, plotWidth())) {
        const q = scopeFetchFor(s.vp, plotWidth());
        try {
          const r = await P.api.scopeInstances(sess, q, q.minDur, SCOPE_LIMIT);
          s.scopes = r.items;
          s.scopesLoaded = { ...q, truncated: r.nextCursor !== null };
          s.scopeRows = Math.max(s.scopeRows, scopeRowsFor(r.items));
        } catch (e) {
          s.error = describeError(e);
        }
      }
      if (sess.totals.memcpys + sess.totals.memsets > 0) {
        const have = s.memcpyWin;
        // Buckets are per pixel of the window they were fetched for: refetch when zoomed in past 4x.
        const covered = have && have.start <= s.vp.t0 && have.end >= s.vp.t1 && (!s.memBuckets || have.end - have.start <= 4 * span);
        if (!covered) {
          try {
            const none = { items: [], nextCursor: null };
            const [c, m] = await Promise.all([
              sess.totals.memcpys > 0 ? P.api.memcpy(sess, win, MEMCPY_LIMIT) : none,
              sess.totals.memsets > 0 ? P.api.memsets(sess, win, MEMCPY_LIMIT) : none,
            ]);
            const truncated = c.nextCursor !== null || m.nextCursor !== null;
            // More than the lane draws one by one: every copy counted in per-pixel buckets instead.
            s.memBuckets = truncated ? await P.api.memoryTimeline(sess, win, (win.end - win.start) / (2 * plotWidth())) : null;
            s.memcpy = truncated ? [] : [...c.items, ...m.items].sort((a, b) => a.start - b.start);
            s.memcpyTruncated = false;
            s.memcpyWin = win;
          } catch (e) {
            s.error = describeError(e);
          }
        }
      }
      if (P.highlightName) {
        try {
          // Every instance of the name, one mark per pixel-wide bucket that holds any (the backend's LOD).
          const r = await P.api.kernelTimeline(sess, { ...win, name: P.highlightName }, (win.end - win.start) / (2 * plotWidth()));
          s.highlights = r.buckets.map((b) => ({ start: b.t, end: Math.max(b.t + r.bucketNs, b.longest.end), device: b.device, stream: b.stream }));
          s.highlightCount = r.buckets.reduce((n, b) => n + b.count, 0);
        } catch (e) {
          s.error = describeError(e);
        }
      } else {
        s.highlights = [];
        s.highlightCount = 0;
      }
      // Kernels still running at the left edge whose start (and so their LOD bucket) is before the window.
      try {
        const r = await P.api.kernels(sess, { start: s.vp.t0, end: s.vp.t0 + 1 }, 200);
        s.edge = r.items.filter((k) => k.start < s.vp.t0);
      } catch (e) {
        s.error = describeError(e);
      }
      sched();
    }

    function frame() {
      s.raf = 0;
      const canvas = canvasRef.current;
      const mini = miniRef.current;
      if (!canvas || !mini) return;
      const t0 = performance.now();
      const P = props.current;
      const needed = neededKeys();
      const missing = needed.some((k) => !s.tiles.has(tileKey(k.level, k.index)));
      if (missing) {
        window.clearTimeout(s.fetchTimer);
        s.fetchTimer = window.setTimeout(fetchMissing, s.tiles.size === 0 ? 0 : 40);
      }
      const tiles = tilesToDraw(needed, P.session.origin, s.tiles as Map<string, Tile>) as DrawnTile[];
      const L = layout(s.lanes, P.session.totals.memcpys + P.session.totals.memsets > 0, plotWidth(), s.scopeRows);
      const W = s.width;
      const dpr = s.dpr;
      if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(L.height * dpr)) {
        canvas.width = Math.round(W * dpr);
        canvas.height = Math.round(L.height * dpr);
        canvas.style.width = `${W}px`;
        canvas.style.height = `${L.height}px`;
      }
      const ctx = canvas.getContext('2d');
      if (!ctx) return;
      const f: FrameInput = {
        vp: s.vp,
        layout: L,
        tiles,
        memcpy: s.memcpy,
        memcpyTruncated: s.memcpyTruncated,
        memBuckets: s.memBuckets,
        selectedId: P.selectedId,
        selected: P.selected,
        highlightName: P.highlightName,
        highlights: s.highlights,
        edge: s.edge,
        hover: s.hover,
        scopes: s.scopes,
        scopesTruncated: s.scopesLoaded?.truncated ?? false,
      };
      lastFrame.current = f;
      const stats = drawFrame(ctx, f, dpr);
      if (mini.width !== Math.round(W * dpr)) {
        mini.width = Math.round(W * dpr);
        mini.height = Math.round(MINIMAP_H * dpr);
        mini.style.width = `${W}px`;
        mini.style.height = `${MINIMAP_H}px`;
      }
      const mctx = mini.getContext('2d');
      if (mctx) {
        const mk = `${W}|${dpr}|${s.lanes.length}|${s.overview?.state}`;
        if (mk !== s.minimapKey) {
          s.minimapImg = s.minimapImg ?? document.createElement('canvas');
          s.minimapImg.width = mini.width;
          s.minimapImg.height = mini.height;
          const ictx = s.minimapImg.getContext('2d');
          if (ictx) drawMinimap(ictx, s.overview, s.lanes, { start: 0, end: bounds().end }, null, W, MINIMAP_H, dpr);
          s.minimapKey = mk;
        }
        drawMinimapFrame(mctx, s.minimapImg, { start: 0, end: bounds().end }, s.vp, W, MINIMAP_H, dpr);
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
      s.scopesInView = stats.scopes;
      const pend = pendingNeeded().length;
      if (hooks.firstDataPaint === null && pend === 0 && s.overview) {
        hooks.firstDataPaint = t1;
        canvas.dataset.painted = '1';
      }
      if (!s.ready && pend === 0 && s.overview) {
        s.ready = true;
        props.current.onReady?.();
      }
      canvas.dataset.pending = String(pend);
      canvas.dataset.lanes = String(s.lanes.length);
      canvas.dataset.scopes = String(stats.scopes);
      canvas.dataset.scopeRows = String(s.scopeRows);
      canvas.dataset.window = `${Math.round(s.vp.t0)}:${Math.round(s.vp.t1)}`;
      if (statusRef.current) {
        const msg = s.error ? `⚠ ${s.error}` : pend ? 'Loading…' : s.lanes.length === 0 && s.overview ? 'No kernels in this session.' : '';
        if (statusRef.current.textContent !== msg) statusRef.current.textContent = msg;
      }
    }

    function sched() {
      if (!s.raf) s.raf = requestAnimationFrame(frame);
    }
    schedule.current = sched;

    // fromLink: the window came from a linked timeline, which already knows it.
    function viewportChanged(fromLink = false) {
      if (!fromLink) props.current.link?.publish(linkId, s.vp);
      sched();
      window.clearTimeout(s.sideTimer);
      s.sideTimer = window.setTimeout(fetchSide, 120);
      window.clearTimeout(urlTimer);
      urlTimer = window.setTimeout(() => props.current.onViewportChange({ ...s.vp }), 250);
    }
    setVp.current = (vp: Viewport) => {
      s.vp = vp;
      viewportChanged();
    };
    const link = props.current.link;
    const linkId = link
      ? link.join(props.current.linkKey ?? props.current.session.id, (vp) => {
          s.vp = vp;
          viewportChanged(true);
        })
      : 0;

    // Overview (minimap + lanes): the whole session at the plot's width. Its tiles are the ones the initial
    // full-session view needs, fetched once through the shared cache.
    (async () => {
      const sess = props.current.session;
      const level = levelFor(sess.rangeEnd, Math.max(50, (wrapRef.current?.clientWidth ?? 1200) - GUTTER_W));
      const keys = tilesFor(0, sess.rangeEnd, level, sess.origin);
      await Promise.all(keys.map((k) => (s.tiles.has(tileKey(k.level, k.index)) ? s.tiles.get(tileKey(k.level, k.index))!.done : fetchTile(k.level, k.index))));
      const parts = keys.map((k) => s.tiles.get(tileKey(k.level, k.index)));
      if (parts.some((t) => !t || t.state !== 'ready')) {
        s.overview = { key: 'overview', level, start: 0, end: sess.rangeEnd, state: 'error', bucketNs: 1, buckets: [], byLane: new Map() };
      } else {
        const buckets = parts.flatMap((t) => t!.buckets);
        s.overview = { key: 'overview', level, start: 0, end: sess.rangeEnd, state: 'ready', bucketNs: parts[0]?.bucketNs ?? 2 ** level, buckets, byLane: groupByLane(buckets) };
      }
      s.minimapKey = '';
      sched();
    })();

    // ---- input ----------------------------------------------------------------------------------------
    const canvas = canvasRef.current!;
    const mini = miniRef.current!;
    const wrap = wrapRef.current!;

    const ro = new ResizeObserver(() => {
      s.width = Math.max(300, wrap.clientWidth);
      s.dpr = window.devicePixelRatio || 1;
      sched();
    });
    ro.observe(wrap);
    s.width = Math.max(300, wrap.clientWidth);
    s.dpr = window.devicePixelRatio || 1;

    const localX = (e: { clientX: number }, el: HTMLElement) => e.clientX - el.getBoundingClientRect().left;
    const localY = (e: { clientY: number }, el: HTMLElement) => e.clientY - el.getBoundingClientRect().top;

    function onWheel(e: WheelEvent) {
      e.preventDefault();
      const x = localX(e, canvas) - GUTTER_W;
      const W = plotWidth();
      if (Math.abs(e.deltaX) > Math.abs(e.deltaY) && !e.ctrlKey) {
        s.vp = panBy(s.vp, e.deltaX, W, bounds());
      } else {
        const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
        const factor = Math.exp(dy * (e.ctrlKey ? 0.01 : 0.002));
        const anchor = s.vp.t0 + (Math.max(0, Math.min(W, x)) / W) * (s.vp.t1 - s.vp.t0);
        s.vp = zoomAt(s.vp, factor, anchor, bounds());
      }
      viewportChanged();
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
        const W = plotWidth();
        const mid = (a + b) / 2 - canvas.getBoundingClientRect().left - GUTTER_W;
        const anchor = s.vp.t0 + (Math.max(0, Math.min(W, mid)) / W) * (s.vp.t1 - s.vp.t0);
        s.vp = zoomAt(s.vp, pinchDist / d, anchor, bounds());
        viewportChanged();
      }
      pinchDist = d;
      return true;
    }

    function onDown(e: PointerEvent) {
      if (e.pointerType === 'touch' && e.currentTarget === canvas) {
        touches.set(e.pointerId, e.clientX);
        if (touches.size === 2) {
          s.drag = null;
          pinchDist = 0;
          return;
        }
      }
      if (e.button !== 0) return;
      const isMini = e.currentTarget === mini;
      s.drag = { x: e.clientX, moved: false, minimap: isMini };
      (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
      if (isMini) miniMove(e);
    }

    function miniMove(e: PointerEvent) {
      const W = plotWidth();
      const x = localX(e, mini) - GUTTER_W;
      const t = (x / W) * bounds().end;
      s.vp = centreOn(s.vp, t, bounds());
      viewportChanged();
    }

    function onMove(e: PointerEvent) {
      if (touches.size === 2 && pinch(e)) return;
      if (s.drag) {
        if (s.drag.minimap) return miniMove(e);
        const dx = e.clientX - s.drag.x;
        if (Math.abs(dx) > 2 || s.drag.moved) {
          s.drag.moved = true;
          s.drag.x = e.clientX;
          s.vp = panBy(s.vp, -dx, plotWidth(), bounds());
          viewportChanged();
        }
        return;
      }
      if (e.currentTarget !== canvas) return;
      props.current.link?.drive(linkId);
      s.hover = { x: localX(e, canvas), y: localY(e, canvas) };
      const tip = tipRef.current;
      const f = lastFrame.current;
      if (tip && f) {
        const h = hitTest(f, s.hover.x, s.hover.y);
        if (h) {
          tip.style.display = 'block';
          tip.style.left = `${Math.min(s.hover.x + 14, s.width - 320)}px`;
          tip.style.top = `${s.hover.y + 14}px`;
          tip.textContent =
            h.kind === 'kernel'
              ? `${h.name ?? '(unnamed)'} — ${fmtDur(h.end - h.start)}${h.count > 1 ? ` · longest of ${h.count} kernels here` : ''}`
              : h.kind === 'scope'
                ? `scope ${h.scope.path} — ${h.scope.end === null ? 'open (no scope_end yet)' : fmtDur(h.scope.end - h.scope.start)} · thread ${h.scope.threadId}`
                : h.kind === 'memBucket'
                  ? `${h.bucket.count.toLocaleString('en-US')} ${h.bucket.kind} here — ${fmtBytes(h.bucket.bytes)}, busy ${fmtDur(h.bucket.busy)} · longest ${fmtDur(h.bucket.longest.end - h.bucket.longest.start)}`
                  : `${h.row.copyKind} ${h.row.bytes.toLocaleString('en-US')} B — ${fmtDur(h.row.dur)}`;
        } else tip.style.display = 'none';
      }
      sched();
    }

    function onUp(e: PointerEvent) {
      if (touches.delete(e.pointerId) && touches.size > 0) {
        pinchDist = 0;
        s.drag = null;
        return;
      }
      const d = s.drag;
      s.drag = null;
      if (!d || d.minimap || d.moved || e.currentTarget !== canvas) return;
      const f = lastFrame.current;
      if (!f) return;
      const h = hitTest(f, localX(e, canvas), localY(e, canvas));
      if (h?.kind === 'kernel') props.current.onSelect(h.id);
    }

    function onLeave() {
      s.hover = null;
      if (tipRef.current) tipRef.current.style.display = 'none';
      sched();
    }

    function onKey(e: KeyboardEvent) {
      const t = e.target as HTMLElement | null;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (props.current.link && !props.current.link.drives(linkId)) return;
      const W = plotWidth();
      const centre = s.hover && s.hover.x > GUTTER_W ? s.vp.t0 + ((s.hover.x - GUTTER_W) / W) * (s.vp.t1 - s.vp.t0) : (s.vp.t0 + s.vp.t1) / 2;
      switch (e.key.toLowerCase()) {
        case 'w':
          s.vp = zoomAt(s.vp, 0.8, centre, bounds());
          break;
        case 's':
          s.vp = zoomAt(s.vp, 1.25, centre, bounds());
          break;
        case 'a':
          s.vp = panBy(s.vp, -W * 0.15, W, bounds());
          break;
        case 'd':
          s.vp = panBy(s.vp, W * 0.15, W, bounds());
          break;
        default:
          return;
      }
      e.preventDefault();
      viewportChanged();
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
    viewportChanged();

    return () => {
      ro.disconnect();
      link?.leave(linkId);
      canvas.removeEventListener('wheel', onWheel);
      for (const el of [canvas, mini]) {
        el.removeEventListener('pointerdown', onDown);
        el.removeEventListener('pointermove', onMove);
        el.removeEventListener('pointerup', onUp);
      }
      canvas.removeEventListener('pointerleave', onLeave);
      canvas.removeEventListener('pointercancel', onUp);
      window.removeEventListener('keydown', onKey);
      cancelAnimationFrame(s.raf);
      s.raf = 0;
      window.clearTimeout(s.fetchTimer);
      window.clearTimeout(s.sideTimer);
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

  // Selection and highlight changes: redraw, and fetch the highlighted kernel's instances.
  useEffect(() => {
    schedule.current();
  }, [p.selectedId, p.selected]);
  useEffect(() => {
    setVp.current(st.current.vp);
  }, [p.highlightName]);

  return (
    <div className="timeline" ref={wrapRef}>
      <canvas ref={miniRef} className="minimap" data-testid="minimap" />
      <div className="timeline-canvas-wrap">
        <canvas ref={canvasRef} className="timeline-canvas" data-testid="timeline" tabIndex={0} />
        <div ref={tipRef} className="tooltip" style={{ display: 'none' }} />
      </div>
      <div ref={statusRef} className="timeline-status" role="status" />
      <div className="hint">
        Wheel / pinch to zoom · drag to pan · W/S zoom · A/D pan · click a kernel to inspect · hover a scope for its
        timing
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
