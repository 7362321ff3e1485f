/**
 * The Kernels timeline's track data loader: what the tracks draw, fetched from the backend and kept in
 * caches, apart from rendering and input (as Perfetto keeps its track data loaders apart from its renderer).
 *
 * Kernel lanes come as LOD tiles (lod.ts) fetched for whatever window the view asks about; the side data
 * (scope instances, the memory lane, a highlighted name's instances, kernels running across the left edge)
 * is fetched for the window widened by half a span each side, once the visible tiles are in. Each arrival
 * calls `changed` so the owner schedules a frame; nothing here draws.
 */
import type { Api, KernelRow, LodBucket, MemcpyRow, MemoryTimeline, ScopeInstance, SessionDetail, SystemSeries } from '../api/client';
import { describeError } from '../api/http';
import type { LaunchTimeline } from '../api/launches';
import { activityLanes, SM_METRIC, UTIL_METRIC, type ActivityLane } from './activity';
import { groupByLane, maxDurByLane, type DrawnTile, type MemLane } from './draw';
import { clipBuckets, evict, laneKey, lanesFrom, levelFor, sideResolution, tileKey, tilesFor, tilesToDraw, tileWindow, touch, type Lane, type Tile, type TileKey } from './lod';
import { NO_SCOPE_TRACKS, scopeFetchCovers, scopeFetchFor, scopeTracksWith, SCOPE_LIMIT, type LoadedScopes, type ScopeTracks } from './scopes';
import { launchThreadsWith } from './threads';
import type { Viewport } from './viewport';

const MAX_TILES = 400;
const MAX_INFLIGHT = 6;
/** Copies and memsets drawn one by one up to this many in the loaded window; past it, per-pixel buckets. */
export const MEMCPY_LIMIT = 2000;

export interface LoaderSource {
  api: () => Api;
  session: () => SessionDetail;
  viewport: () => Viewport;
  plotWidth: () => number;
  highlightName: () => string | null;
  /** Whether the GPU activity rows (SM active) are shown: their series are fetched only then. */
  activityOn: () => boolean;
  /** Data arrived (or failed): draw a frame. */
  changed: () => void;
}

export class TrackLoader {
  tiles = new Map<string, DrawnTile>();
  /** The whole session at the plot's width: the minimap's density and the lanes. */
  overview: DrawnTile | null = null;
  lanes: Lane[] = [];
  memcpy: MemcpyRow[] = [];
  /** The memory lane's buckets when the window holds more than MEMCPY_LIMIT copies and memsets. */
  memBuckets: MemoryTimeline | null = null;
  highlights: { start: number; end: number; device: number; stream: number }[] = [];
  /** Instances of the highlighted name in the loaded window (every one, from the backend's buckets). */
  highlightCount = 0;
  scopes: ScopeInstance[] = [];
  scopesLoaded: LoadedScopes | null = null;
  /** Scope tracks drawn, one per thread, a row per depth seen (never shrink, so lanes don't jump while panning). */
  scopeTracks: ScopeTracks = NO_SCOPE_TRACKS;
  /** Kernels running at the window's left edge whose start (and so their LOD bucket) is before it. */
  edge: KernelRow[] = [];
  /** The memory lanes: (GPU, stream) pairs seen copying (grow, never shrink). */
  memLanes: MemLane[] = [];
  /** Launch-API calls of the loaded window, per thread and pixel-wide bucket; the threads seen calling. */
  launches: LaunchTimeline | null = null;
  launchThreads: number[] = [];
  /** GPU activity rows (empty while hidden) and the window their points were fetched for. */
  activity: ActivityLane[] = [];
  /** The /system query behind `activity` (relative ns, points asked for). */
  activityQuery: { start: number; end: number; points: number } | null = null;
  inflight = 0;
  /** Side data (scopes, copies, calls, highlights, activity) is due or being fetched for the current window. */
  sideBusy = false;
  error: string | null = null;

  private laneKeys = new Set<string>();
  private memcpyWin: { start: number; end: number } | null = null;
  private launchWin: { start: number; end: number } | null = null;
  private activityWin: { start: number; end: number } | null = null;
  private fetchTimer = 0;
  private sideGen = 0;
  private sideTimer = 0;
  private disposed = false;

  constructor(private readonly src: LoaderSource) {}

  /** Tiles the current window needs at the level its width calls for. */
  neededKeys(): TileKey[] {
    const vp = this.src.viewport();
    const level = levelFor(vp.t1 - vp.t0, this.src.plotWidth());
    return tilesFor(vp.t0, vp.t1, level, this.src.session().origin);
  }

  pendingNeeded(): TileKey[] {
    return this.neededKeys().filter((k) => this.tiles.get(tileKey(k.level, k.index))?.state !== 'ready');
  }

  /** Tiles to draw for `needed`: the ready ones, and stand-ins from other levels while they load. */
  tilesToDraw(needed: TileKey[]): DrawnTile[] {
    return tilesToDraw(needed, this.src.session().origin, this.tiles as Map<string, Tile>) as DrawnTile[];
  }

  /** The frame found tiles missing: fetch them soon (at once for the very first). */
  requestMissing(needed: TileKey[]): void {
    if (!needed.some((k) => !this.tiles.has(tileKey(k.level, k.index)))) return;
    window.clearTimeout(this.fetchTimer);
    this.fetchTimer = window.setTimeout(() => this.fetchMissing(), this.tiles.size === 0 ? 0 : 40);
  }

  /** The window moved: refresh the side data once it settles. */
  viewportChanged(): void {
    this.sideBusy = true;
    this.sideGen++;
    window.clearTimeout(this.sideTimer);
    this.sideTimer = window.setTimeout(() => void this.fetchSide(), 120);
  }

  /** Load the overview (the tiles the initial whole-session view needs at `widthPx`), once. */
  async loadOverview(widthPx: number): Promise<void> {
    const sess = this.src.session();
    const level = levelFor(sess.rangeEnd, widthPx);
    const keys = tilesFor(0, sess.rangeEnd, level, sess.origin);
    await Promise.all(
      keys.map((k) => (this.tiles.has(tileKey(k.level, k.index)) ? this.tiles.get(tileKey(k.level, k.index))!.done : this.fetchTile(k.level, k.index))),
    );
    const parts = keys.map((k) => this.tiles.get(tileKey(k.level, k.index)));
    if (parts.some((t) => !t || t.state !== 'ready')) {
      this.overview = { key: 'overview', level, start: 0, end: sess.rangeEnd, state: 'error', bucketNs: 1, buckets: [], byLane: new Map() };
    } else {
      const buckets = parts.flatMap((t) => t!.buckets);
      this.overview = { key: 'overview', level, start: 0, end: sess.rangeEnd, state: 'ready', bucketNs: parts[0]?.bucketNs ?? 2 ** level, buckets, byLane: groupByLane(buckets) };
    }
    this.src.changed();
  }

  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.fetchTimer);
    window.clearTimeout(this.sideTimer);
  }

  private addLanes(buckets: LodBucket[]) {
    if (buckets.every((b) => this.laneKeys.has(laneKey(b.device, b.stream)))) return;
    const names = new Map(this.src.session().devices.map((d) => [d.device_id, d.name ?? '']));
    this.lanes = lanesFrom([...this.lanes, ...buckets], names);
    this.laneKeys = new Set(this.lanes.map((l) => l.key));
  }

  private fetchTile(level: number, index: bigint): Promise<void> {
    const p = this.loadTile(level, index);
    const t = this.tiles.get(tileKey(level, index));
    if (t) t.done = p;
    return p;
  }

  private async loadTile(level: number, index: bigint) {
    const sess = this.src.session();
    const key = tileKey(level, index);
    const w = tileWindow({ level, index }, sess.origin);
    const tile: DrawnTile = { key, level, start: w.start, end: w.end, state: 'loading', bucketNs: 2 ** level, buckets: [], byLane: new Map() };
    this.tiles.set(key, tile);
    this.inflight++;
    try {
      const r = await this.src.api().kernelTimeline(sess, { start: w.start, end: w.end }, 2 ** level);
      tile.buckets = clipBuckets(r.buckets, w.start, w.end);
      tile.bucketNs = r.bucketNs;
      tile.byLane = groupByLane(tile.buckets);
      tile.maxDur = maxDurByLane(tile.byLane);
      tile.state = 'ready';
      this.addLanes(tile.buckets);
      this.error = null;
    } catch (e) {
      tile.state = 'error';
      tile.error = describeError(e);
      this.error = tile.error;
      // let a later frame retry
      window.setTimeout(() => {
        if (this.tiles.get(key) === tile) this.tiles.delete(key);
      }, 3000);
    } finally {
      this.inflight--;
      if (!this.disposed) this.src.changed();
    }
  }

  private fetchMissing() {
    const keep = new Set<string>();
    for (const k of this.neededKeys()) {
      const key = tileKey(k.level, k.index);
      keep.add(key);
      if (this.tiles.has(key)) {
        touch(this.tiles as Map<string, Tile>, key);
        continue;
      }
      if (this.inflight >= MAX_INFLIGHT) break;
      void this.fetchTile(k.level, k.index);
    }
    evict(this.tiles as Map<string, Tile>, MAX_TILES, keep);
  }

  private async fetchSide() {
    const gen = this.sideGen;
    // Memory copies and highlights wait for the visible kernel tiles (the backend serves one at a time).
    if (this.pendingNeeded().length + this.inflight > 0) {
      window.clearTimeout(this.sideTimer);
      this.sideTimer = window.setTimeout(() => void this.fetchSide(), 100);
      return;
    }
    const api = this.src.api();
    const sess = this.src.session();
    const vp = this.src.viewport();
    const plotWidth = this.src.plotWidth();
    const span = vp.t1 - vp.t0;
    const win = { start: vp.t0 - span / 2, end: vp.t1 + span / 2 };
    // Scope instances of the widened window, leaving out those shorter than a pixel.
    if (sess.totals.scope_instances > 0 && !scopeFetchCovers(this.scopesLoaded, vp, plotWidth)) {
      const q = scopeFetchFor(vp, plotWidth);
      try {
        const r = await api.scopeInstances(sess, q, q.minDur, SCOPE_LIMIT);
        this.scopes = r.items;
        this.scopesLoaded = { ...q, truncated: r.nextCursor !== null };
        this.scopeTracks = scopeTracksWith(this.scopeTracks, r.items);
      } catch (e) {
        this.error = describeError(e);
      }
    }
    if (sess.totals.memcpys + sess.totals.memsets > 0) {
      const have = this.memcpyWin;
      // Buckets are per pixel of the window they were fetched for: refetch when zoomed in past 4x.
      if (!(this.memBuckets ? covers(have, vp, span) : have && have.start <= vp.t0 && have.end >= vp.t1)) {
        try {
          const none = { items: [], nextCursor: null };
          const [c, m] = await Promise.all([
            sess.totals.memcpys > 0 ? api.memcpy(sess, win, MEMCPY_LIMIT) : none,
            sess.totals.memsets > 0 ? api.memsets(sess, win, MEMCPY_LIMIT) : none,
          ]);
          const truncated = c.nextCursor !== null || m.nextCursor !== null;
          // More than the lane draws one by one: every copy counted in per-pixel buckets instead.
          this.memBuckets = truncated ? await api.memoryTimeline(sess, win, sideResolution(win.end - win.start, plotWidth)) : null;
          this.memcpy = truncated ? [] : [...c.items, ...m.items].sort((a, b) => a.start - b.start);
          this.memcpyWin = win;
          this.memLanes = memLanesWith(this.memLanes, this.memBuckets ? this.memBuckets.buckets : this.memcpy);
        } catch (e) {
          this.error = describeError(e);
        }
      }
    }
    // Launch-API calls: one or two buckets per pixel of the widened window, refetched as the memory lane's are.
    if (sess.totals.kernels + sess.totals.memcpys > 0 && !covers(this.launchWin, vp, span)) {
      try {
        this.launches = await api.launchTimeline(sess, win, sideResolution(win.end - win.start, plotWidth));
        this.launchThreads = launchThreadsWith(this.launchThreads, this.launches);
        this.launchWin = win;
      } catch (e) {
        this.error = describeError(e);
      }
    }
    if (!this.src.activityOn()) {
      this.activity = [];
      this.activityWin = null;
    } else if (!covers(this.activityWin, vp, span)) {
      try {
        // Two points per pixel of the window asked for; the backend averages samples into them.
        const points = Math.min(10_000, Math.max(2, Math.round(2 * plotWidth)));
        const got: SystemSeries[] = [];
        for (const metric of [SM_METRIC, UTIL_METRIC]) got.push(...(await api.system(sess, { metric, start: Math.max(0, win.start), end: win.end, points })).series);
        this.activity = activityLanes(sess.devices.map((d) => d.device_id), got);
        this.activityWin = win;
        this.activityQuery = { start: Math.max(0, win.start), end: win.end, points };
      } catch (e) {
        this.error = describeError(e);
      }
    }
    const name = this.src.highlightName();
    if (name) {
      try {
        // Every instance of the name, one mark per pixel-wide bucket that holds any (the backend's LOD).
        const r = await api.kernelTimeline(sess, { ...win, name }, (win.end - win.start) / (2 * plotWidth));
        this.highlights = r.buckets.map((b) => ({ start: b.t, end: Math.max(b.t + r.bucketNs, b.longest.end), device: b.device, stream: b.stream }));
        this.highlightCount = r.buckets.reduce((n, b) => n + b.count, 0);
      } catch (e) {
        this.error = describeError(e);
      }
    } else {
      this.highlights = [];
      this.highlightCount = 0;
    }
    try {
      const r = await api.kernels(sess, { start: vp.t0, end: vp.t0 + 1 }, 200);
      this.edge = r.items.filter((k) => k.start < vp.t0);
    } catch (e) {
      this.error = describeError(e);
    }
    if (gen === this.sideGen) this.sideBusy = false; // else a newer window's fetch is due
    if (!this.disposed) this.src.changed();
  }
}

/** Whether per-pixel data fetched for `have` still serves `vp`: it covers it and was not fetched for a window
 * more than 4× wider (its buckets would be more than 4 of today's pixels wide). */
function covers(have: { start: number; end: number } | null, vp: Viewport, span: number): boolean {
  return have !== null && have.start <= vp.t0 && have.end >= vp.t1 && have.end - have.start <= 4 * span;
}

/** `prev` grown by the (GPU, stream) pairs of `items`, in (GPU, stream) order. */
export function memLanesWith(prev: MemLane[], items: { device: number; stream: number }[]): MemLane[] {
  const seen = new Set(prev.map((m) => `${m.device}:${m.stream}`));
  const add: MemLane[] = [];
  for (const x of items) {
    const k = `${x.device}:${x.stream}`;
    if (!seen.has(k)) {
      seen.add(k);
      add.push({ device: x.device, stream: x.stream });
    }
  }
  return add.length ? [...prev, ...add].sort((a, b) => a.device - b.device || a.stream - b.stream) : prev;
}
