/**
 * Level-of-detail bookkeeping for the Kernels timeline (the data itself is computed by the backend's store).
 *
 * The visible window is covered by tiles: at level k a bucket is 2^k ns and a tile holds TILE_BUCKETS
 * buckets, aligned on absolute time so tiles are reused while panning and the backend's buckets (aligned on
 * multiples of bucket_ns) never straddle two tiles. The level is what the backend will actually answer with:
 * from 2^18 ns it answers a resolution R with buckets of the largest multiple of the coarsest stored level
 * not above R (levels stored at 2^18…2^32 ns, every second power of two), and below 2^18 ns with R itself,
 * so we ask for exactly a stored level (see levelFor) — zooming near one stored level then reuses the same tiles.
 * Above 2^32 ns per pixel (a session of hours on one screen) we ask for 2^33, 2^34, …: the backend
 * re-buckets its stored 2^32 level into them, every kernel counted, and a whole 4-hour session is two tiles
 * of a pixel-wide bucket each instead of four of 2–3 buckets per pixel. Tiles are cached per level; while a
 * tile loads, the nearest coarser (else finer) cached tile that covers the same time is drawn instead, so
 * the screen never goes blank.
 */
import type { LodBucket } from '../api/client';

export const TILE_BUCKETS = 1024;
export const MIN_LEVEL = 6; // 64 ns
/** 2^48 ns buckets (3.3 days): a tile spans 9 years, past any session. */
export const MAX_LEVEL = 48;
/** The backend's stored levels of detail (log2 of bucket_ns) the UI asks for; finer resolutions are computed
 * from raw rows, coarser ones re-bucketed from the last. */
export const STORED_LEVELS = [20, 24, 28, 32];
const COARSEST_STORED = STORED_LEVELS[STORED_LEVELS.length - 1];

/**
 * The bucket level for a window of `spanNs` drawn over `widthPx` pixels: below 2^20 ns per pixel the power of
 * two not above one pixel; up to 2^32 ns, the stored level nearest to one pixel in log scale (ties go finer),
 * so a bucket is between 1/4 and 4 pixels wide — never the 16 buckets per pixel that rounding down would
 * fetch; above, the power of two nearest to one pixel (a bucket 0.7–1.4 px wide), re-bucketed by the backend
 * from its 2^32 level, rather than the 2^32 level's several buckets per pixel.
 */
export function levelFor(spanNs: number, widthPx: number): number {
  const perPx = spanNs / Math.max(1, widthPx);
  const lg = Math.log2(Math.max(1, perPx));
  const k = Math.floor(lg);
  if (k < STORED_LEVELS[0]) return Math.max(MIN_LEVEL, k);
  if (lg > COARSEST_STORED) return Math.min(MAX_LEVEL, Math.ceil(lg - 0.5));
  let best = STORED_LEVELS[0];
  for (const l of STORED_LEVELS) if (Math.abs(l - lg) < Math.abs(best - lg)) best = l;
  return best;
}

/**
 * The resolution of a window's per-pixel side data (the memory lane's buckets, the thread tracks' calls):
 * one to two buckets per pixel of `widthPx`, rounded up to a power of two — from 2^18 ns (262 µs) on, the
 * backend then reads its stored levels of detail instead of every raw row of the window.
 */
export function sideResolution(spanNs: number, widthPx: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, spanNs / (2 * Math.max(1, widthPx)))));
}

/** Levels that levelFor can return (used to find fallback tiles). */
export function isLevel(l: number): boolean {
  return (l >= MIN_LEVEL && l < STORED_LEVELS[0]) || STORED_LEVELS.includes(l) || (l > COARSEST_STORED && l <= MAX_LEVEL);
}

export function tileSpan(level: number): bigint {
  return 1n << BigInt(level + Math.log2(TILE_BUCKETS));
}

export interface TileKey {
  level: number;
  index: bigint;
}

export function tileKey(level: number, index: bigint): string {
  return `${level}:${index}`;
}

/** Tiles (absolute-time aligned) covering the relative window [t0, t1) for a session with `origin`. */
export function tilesFor(t0: number, t1: number, level: number, origin: bigint): TileKey[] {
  const ts = tileSpan(level);
  const a = origin + BigInt(Math.floor(t0));
  const b = origin + BigInt(Math.ceil(t1));
  const first = floorDiv(a, ts);
  const last = floorDiv(b - 1n, ts);
  const out: TileKey[] = [];
  for (let i = first; i <= last && out.length < 64; i++) out.push({ level, index: i });
  return out;
}

/** A tile's window, relative to origin. */
export function tileWindow(t: TileKey, origin: bigint): { start: number; end: number } {
  const ts = tileSpan(t.level);
  return { start: Number(t.index * ts - origin), end: Number((t.index + 1n) * ts - origin) };
}

export function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

export interface Tile {
  key: string;
  level: number;
  start: number;
  end: number;
  state: 'loading' | 'ready' | 'error';
  bucketNs: number;
  buckets: LodBucket[];
  error?: string;
  /** Settles when the tile's fetch ends (ready or error). */
  done?: Promise<void>;
}

/** Keep only the buckets that start inside the tile (guards against duplicates at tile edges). */
export function clipBuckets(buckets: LodBucket[], start: number, end: number): LodBucket[] {
  return buckets.filter((b) => b.t >= start && b.t < end);
}

/**
 * For each needed tile, what to draw now: the tile itself if ready, else the closest ready tiles of other
 * levels that overlap it (coarser first — they cover it whole — then finer). Returned without duplicates.
 */
export function tilesToDraw(needed: TileKey[], origin: bigint, cache: Map<string, Tile>): Tile[] {
  const out = new Map<string, Tile>();
  // The levels that have a ready tile, finest first: the coarser search looks only at those (levels run to
  // MAX_LEVEL, and this runs every frame while a tile loads).
  let ready: number[] | null = null;
  for (const n of needed) {
    const own = cache.get(tileKey(n.level, n.index));
    if (own && own.state === 'ready') {
      out.set(own.key, own);
      continue;
    }
    ready ??= [...new Set([...cache.values()].filter((t) => t.state === 'ready').map((t) => t.level))].sort((a, b) => a - b);
    const w = tileWindow(n, origin);
    let found = false;
    for (const l of ready) {
      if (found) break;
      if (l <= n.level || !isLevel(l)) continue;
      for (const k of tilesFor(w.start, w.end, l, origin)) {
        const t = cache.get(tileKey(k.level, k.index));
        if (t && t.state === 'ready') {
          out.set(t.key, t);
          found = true;
        }
      }
    }
    if (found) continue;
    for (let l = n.level - 1; l >= Math.max(MIN_LEVEL, n.level - 4); l--) {
      if (!isLevel(l)) continue;
      const ks = tilesFor(w.start, w.end, l, origin);
      const ts = ks.map((k) => cache.get(tileKey(k.level, k.index)));
      if (ts.length && ts.every((t) => t && t.state === 'ready')) {
        for (const t of ts) out.set(t!.key, t!);
        break;
      }
    }
  }
  return [...out.values()];
}

/** Bound the cache: drop the least recently used tiles beyond `max`, never those in `keep`. */
export function evict(cache: Map<string, Tile>, max: number, keep: Set<string>): void {
  if (cache.size <= max) return;
  for (const k of cache.keys()) {
    if (cache.size <= max) break;
    if (!keep.has(k)) cache.delete(k);
  }
}

/** Mark a tile as used (Map keeps insertion order: re-insert to make it most recent). */
export function touch(cache: Map<string, Tile>, key: string): void {
  const t = cache.get(key);
  if (t) {
    cache.delete(key);
    cache.set(key, t);
  }
}

export interface Lane {
  key: string;
  device: number;
  stream: number;
  label: string;
  title?: string;
}

export function laneKey(device: number, stream: number): string {
  return `${device}:${stream}`;
}

/** Lanes from the buckets seen so far: one per (GPU, CUDA stream), ordered by device then stream. */
export function lanesFrom(buckets: Iterable<{ device: number; stream: number }>, deviceNames: Map<number, string>): Lane[] {
  const seen = new Map<string, Lane>();
  for (const b of buckets) {
    const k = laneKey(b.device, b.stream);
    if (!seen.has(k)) {
      const dn = deviceNames.get(b.device);
      seen.set(k, { key: k, device: b.device, stream: b.stream, label: `GPU ${b.device} · stream ${b.stream}`, title: dn ? `${dn} (GPU ${b.device}), CUDA stream ${b.stream}` : undefined });
    }
  }
  return [...seen.values()].sort((a, b) => a.device - b.device || a.stream - b.stream);
}

/** The density of a bucket, 0..1: how much of its width its kernels kept the lane busy. */
export function density(b: LodBucket, bucketNs: number): number {
  return bucketNs > 0 ? Math.min(1, b.busy / bucketNs) : 1;
}
