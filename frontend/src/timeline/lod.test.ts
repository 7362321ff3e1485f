import { describe, expect, it } from 'vitest';
import type { LodBucket } from '../api/client';
import { clipBuckets, evict, lanesFrom, levelFor, MAX_LEVEL, sideResolution, tileKey, tilesFor, tilesToDraw, tileSpan, tileWindow, TILE_BUCKETS, type Tile } from './lod';

const origin = 1_732_521_600_123_456_789n;

function bucket(t: number, device = 0, stream = 7, count = 1): LodBucket {
  return { t, device, stream, count, busy: 10, longest: { id: String(t), name: 'k', start: t, end: t + 10 } };
}

function readyTile(level: number, index: bigint, buckets: LodBucket[] = []): Tile {
  const w = tileWindow({ level, index }, origin);
  return { key: tileKey(level, index), level, start: w.start, end: w.end, state: 'ready', bucketNs: 2 ** level, buckets };
}

describe('levelFor', () => {
  it('picks the backend stored level nearest to one pixel (log scale) from 2^20 ns per pixel', () => {
    expect(levelFor(2 ** 20 * 1000, 1000)).toBe(20);
    expect(levelFor(2 ** 22 * 1000, 1000)).toBe(20); // tie goes finer
    expect(levelFor(2 ** 22.1 * 1000, 1000)).toBe(24);
    expect(levelFor(2 ** 24 * 1000, 1000)).toBe(24);
    expect(levelFor(2 ** 31 * 1000, 1000)).toBe(32);
    expect(levelFor(2 ** 29.9 * 1000, 1000)).toBe(28);
    expect(levelFor(2 ** 32.4 * 1000, 1000)).toBe(32);
  });
  it('past the coarsest stored level (2^32 ns), the power of two nearest one pixel: the backend re-buckets into it', () => {
    expect(levelFor(2 ** 32.6 * 1000, 1000)).toBe(33);
    expect(levelFor(2 ** 33.5 * 1000, 1000)).toBe(33); // tie goes finer
    expect(levelFor(2 ** 40 * 1000, 1000)).toBe(40);
    expect(levelFor(2 ** 60 * 1000, 1000)).toBe(MAX_LEVEL);
  });
  it('keeps buckets between 1/4 and 4 pixels wide in the stored range, and 0.7 to 1.4 past it', () => {
    for (let lg = 20; lg <= 44; lg += 0.05) {
      const perPx = 2 ** lg;
      const bucketPx = 2 ** levelFor(perPx * 1500, 1500) / perPx;
      expect(bucketPx).toBeGreaterThanOrEqual(lg <= 32 ? 0.25 - 1e-9 : Math.SQRT1_2 - 1e-9);
      expect(bucketPx).toBeLessThanOrEqual(lg <= 32 ? 4 + 1e-9 : Math.SQRT2 + 1e-9);
    }
  });
  it('draws the 10M-kernel session (14,826 s) whole at most √2 buckets per pixel, in fewer tiles than at 2^32 ns', () => {
    for (const w of [1000, 1223, 1400, 1600]) {
      const level = levelFor(14_826e9, w);
      expect(level).toBeGreaterThan(32);
      expect(14_826e9 / w / 2 ** level).toBeLessThanOrEqual(Math.SQRT2);
      expect(14_826e9 / w / 2 ** 32).toBeGreaterThan(2); // what the 2^32 level fetched
      const tiles = tilesFor(0, 14_826e9, level, origin).length;
      expect(tiles).toBeLessThan(tilesFor(0, 14_826e9, 32, origin).length);
      expect(tiles).toBeLessThanOrEqual(3);
    }
  });
  it('uses the power of two below one pixel under 2^20 ns, not below 64 ns', () => {
    expect(levelFor(2 ** 15 * 1000 + 1, 1000)).toBe(15);
    expect(levelFor(2 ** 15 * 1000 - 1, 1000)).toBe(14);
    expect(levelFor(1000, 1000)).toBe(6);
  });
});

describe('sideResolution', () => {
  it('asks for one to two buckets per pixel, a power of two (the backend stores levels at powers of two)', () => {
    for (const [span, w] of [[14_826e9, 1400], [1488e9, 1223], [60e9, 1400], [2e9, 800], [20e6, 1400], [3e6, 1000]]) {
      const r = sideResolution(span, w);
      expect(Math.log2(r) % 1).toBe(0);
      expect(span / r).toBeGreaterThan(w);
      expect(span / r).toBeLessThanOrEqual(2 * w);
    }
  });
  it('tiles the finest stored width (2^18 ns) once a bucket is that wide: 2^33 ns for 14,826 s at 1,400 px', () => {
    expect(sideResolution(14_826e9, 1400)).toBe(2 ** 33);
    expect(sideResolution(2e9, 1400) % 2 ** 18).toBe(0);
    expect(sideResolution(0.5e9, 1400)).toBe(2 ** 18);
  });
  it('is never below 1 ns', () => {
    expect(sideResolution(100, 1400)).toBe(1);
  });
});

describe('tiles', () => {
  it('covers the window with absolute-aligned tiles of TILE_BUCKETS buckets', () => {
    const level = 20;
    const ts = tileSpan(level);
    expect(ts).toBe(BigInt(2 ** 20 * TILE_BUCKETS));
    const t0 = 5e9;
    const t1 = 9e9;
    const tiles = tilesFor(t0, t1, level, origin);
    const first = tileWindow(tiles[0], origin);
    const last = tileWindow(tiles[tiles.length - 1], origin);
    expect(first.start).toBeLessThanOrEqual(t0);
    expect(first.end).toBeGreaterThan(t0);
    expect(last.end).toBeGreaterThanOrEqual(t1);
    expect(last.start).toBeLessThan(t1);
    for (const t of tiles) expect((origin + BigInt(tileWindow(t, origin).start)) % ts).toBe(0n);
    // consecutive, no gaps
    for (let i = 1; i < tiles.length; i++) expect(tiles[i].index - tiles[i - 1].index).toBe(1n);
  });

  it('reuses the same tiles after a small pan', () => {
    const a = tilesFor(0, 1e9, 20, origin).map((t) => t.index);
    const b = tilesFor(1e6, 1e9 + 1e6, 20, origin).map((t) => t.index);
    expect(b.filter((x) => a.includes(x)).length).toBeGreaterThanOrEqual(a.length - 1);
  });

  it('keeps only buckets starting inside the tile', () => {
    const bs = [bucket(-5), bucket(0), bucket(99), bucket(100)];
    expect(clipBuckets(bs, 0, 100).map((b) => b.t)).toEqual([0, 99]);
  });

  it('draws a coarser ready tile while the needed one is loading', () => {
    const cache = new Map<string, Tile>();
    const needed = tilesFor(1e9, 2e9, 20, origin);
    const coarse = tilesFor(1e9, 2e9, 24, origin);
    for (const k of coarse) cache.set(tileKey(24, k.index), readyTile(24, k.index));
    const loading = readyTile(20, needed[0].index);
    loading.state = 'loading';
    cache.set(loading.key, loading);
    const drawn = tilesToDraw(needed, origin, cache);
    expect(drawn.length).toBeGreaterThan(0);
    expect(drawn.every((t) => t.level === 24)).toBe(true);
    // once ready, the own tile wins
    const own = needed.map((k) => readyTile(20, k.index));
    for (const t of own) cache.set(t.key, t);
    expect(new Set(tilesToDraw(needed, origin, cache).map((t) => t.level))).toEqual(new Set([20]));
  });

  it('draws a coarser ready tile past the stored levels too (2^35 ns while 2^33 ns loads)', () => {
    const cache = new Map<string, Tile>();
    const needed = tilesFor(0, 14_826e9, 33, origin);
    for (const k of tilesFor(0, 14_826e9, 35, origin)) cache.set(tileKey(35, k.index), readyTile(35, k.index));
    const drawn = tilesToDraw(needed, origin, cache);
    expect(drawn.length).toBeGreaterThan(0);
    expect(drawn.every((t) => t.level === 35)).toBe(true);
  });

  it('falls back to finer tiles when no coarser one is ready', () => {
    const cache = new Map<string, Tile>();
    const needed = tilesFor(0, 1e8, 20, origin).slice(0, 1);
    const w = tileWindow(needed[0], origin);
    for (const k of tilesFor(w.start, w.end, 19, origin)) cache.set(tileKey(19, k.index), readyTile(19, k.index));
    const drawn = tilesToDraw(needed, origin, cache);
    expect(drawn.length).toBe(2);
    expect(drawn.every((t) => t.level === 19)).toBe(true);
    expect(tilesToDraw(needed, origin, new Map())).toEqual([]);
  });

  it('evicts least recently used tiles but keeps the needed ones', () => {
    const cache = new Map<string, Tile>();
    for (let i = 0n; i < 10n; i++) cache.set(tileKey(20, i), readyTile(20, i));
    evict(cache, 4, new Set([tileKey(20, 0n)]));
    expect(cache.size).toBe(4);
    expect(cache.has(tileKey(20, 0n))).toBe(true);
    expect(cache.has(tileKey(20, 9n))).toBe(true);
    expect(cache.has(tileKey(20, 1n))).toBe(false);
  });
});

describe('lanesFrom', () => {
  it('makes one lane per (device, stream), ordered', () => {
    const lanes = lanesFrom([bucket(0, 1, 3), bucket(1, 0, 9), bucket(2, 0, 7), bucket(3, 1, 3)], new Map([[0, 'NVIDIA H100']]));
    expect(lanes.map((l) => l.key)).toEqual(['0:7', '0:9', '1:3']);
    expect(lanes[0].label).toBe('GPU 0 · stream 7');
    expect(lanes[0].title).toBe('NVIDIA H100 (GPU 0), CUDA stream 7');
    expect(lanes[2].label).toBe('GPU 1 · stream 3');
  });
});
