import { describe, expect, it } from 'vitest';
import type { ScopeInstance } from '../api/client';
import { AXIS_H, GUTTER_W, hitTest, layout, LANE_H } from './draw';
import { lanesFrom } from './lod';
import {
  MAX_SCOPE_ROWS,
  NO_SCOPE_TRACKS,
  rowFunction,
  scopeAt,
  scopeFetchCovers,
  scopeFetchFor,
  scopeInView,
  scopeRects,
  scopeRowCount,
  scopeRowLabels,
  scopeRowOf,
  scopeRowsFor,
  scopeTracksWith,
  SCOPE_ROW_H,
} from './scopes';

function sc(inst: number, depth: number, start: number, end: number | null, path = `p${inst}`): ScopeInstance {
  return { inst, scopeId: inst, path, name: path.split('/').pop()!, depth, parentInst: null, threadId: 1, start, end };
}

describe('scopeFetchFor / scopeFetchCovers', () => {
  it('asks for the window widened by half a span each side, min duration = one pixel of ns', () => {
    expect(scopeFetchFor({ t0: 1000, t1: 2000 }, 100)).toEqual({ start: 500, end: 2500, minDur: 10 });
    expect(scopeFetchFor({ t0: 0, t1: 50 }, 100).minDur).toBe(0);
  });

  it('reuses a load while panning inside it and refetches when zooming in past its resolution', () => {
    const have = { ...scopeFetchFor({ t0: 1000, t1: 2000 }, 100), truncated: false };
    expect(scopeFetchCovers(null, { t0: 1000, t1: 2000 }, 100)).toBe(false);
    expect(scopeFetchCovers(have, { t0: 1400, t1: 2400 }, 100)).toBe(true);
    expect(scopeFetchCovers(have, { t0: 1600, t1: 2600 }, 100)).toBe(false); // past the loaded end
    expect(scopeFetchCovers(have, { t0: 1000, t1: 1500 }, 100)).toBe(false); // 5 ns/px < min_dur 10
    // zoomed out inside the loaded window: still complete (min_dur below a pixel)
    expect(scopeFetchCovers(have, { t0: 600, t1: 2400 }, 100)).toBe(true);
  });

  it('refetches a truncated load once the view is much narrower than what was asked', () => {
    const have = { start: 0, end: 10_000, minDur: 10, truncated: true };
    expect(scopeFetchCovers(have, { t0: 0, t1: 5000 }, 500)).toBe(true);
    expect(scopeFetchCovers(have, { t0: 0, t1: 2000 }, 100)).toBe(false);
  });
});

describe('scopeRects', () => {
  const vp = { t0: 0, t1: 1000 };

  it('one row per depth, open instances run to the right edge, out-of-view ones are left out', () => {
    const items = [sc(1, 0, 100, 900), sc(2, 1, 150, 300), sc(3, 1, 1200, 1300), sc(4, 2, 500, null), sc(5, 9, 10, 20)];
    const { rects, inView } = scopeRects(items, vp, 1000);
    expect(inView).toBe(4);
    expect(rects.map((r) => [r.s.inst, r.row, r.x, r.w])).toEqual([
      [1, 0, 100, 800],
      [2, 1, 150, 150],
      [4, 2, 500, 500],
      [5, MAX_SCOPE_ROWS - 1, 10, 10],
    ]);
    expect(rects.find((r) => r.s.inst === 1)!.label).toBe('p1');
    expect(rects.find((r) => r.s.inst === 5)!.label).toBeNull();
    expect(scopeRowsFor(items)).toBe(MAX_SCOPE_ROWS);
    expect(scopeRowsFor([sc(1, 0, 0, 1), sc(2, 1, 0, 1)])).toBe(2);
  });

  it('skips sub-pixel instances whose pixel is already painted in the same row, but counts them in view', () => {
    const items = [sc(1, 0, 100, 100.2), sc(2, 0, 100.3, 100.5), sc(3, 1, 100.4, 100.6), sc(4, 0, 300, 300.1)];
    const { rects, inView } = scopeRects(items, vp, 1000);
    expect(inView).toBe(4);
    expect(rects.map((r) => r.s.inst)).toEqual([1, 3, 4]);
  });

  it('an open instance overlaps every window from its start on', () => {
    expect(scopeInView(sc(1, 0, 500, null), { t0: 600, t1: 700 })).toBe(true);
    expect(scopeInView(sc(1, 0, 800, null), { t0: 600, t1: 700 })).toBe(false);
    expect(scopeInView(sc(1, 0, 100, 600), { t0: 600, t1: 700 })).toBe(false); // [start, end) touches t0 only
  });
});

describe('scope rows in the layout and hit test', () => {
  const lanes = lanesFrom([{ device: 0, stream: 7 }], new Map());
  const L = layout(lanes, true, 1000, 2);

  it('puts the scope rows above the memcpy and GPU lanes', () => {
    expect(L.rows.map((r) => r.key)).toEqual(['scope:0', 'scope:1', 'memcpy', '0:7']);
    expect(L.rows[2].y).toBe(AXIS_H + 2 * SCOPE_ROW_H);
    expect(L.height).toBe(AXIS_H + 2 * SCOPE_ROW_H + 2 * LANE_H + 4);
  });

  it('hover over a scope row finds the instance of that depth (narrowest on ties)', () => {
    const scopes = [sc(1, 0, 100, 900, 'train'), sc(2, 1, 150, 300, 'train/fwd'), sc(3, 1, 310, 400, 'train/bwd')];
    const f = { vp: { t0: 0, t1: 1000 }, layout: L, tiles: [], memcpy: [], scopes };
    expect(hitTest(f, GUTTER_W + 200, AXIS_H + 4)).toMatchObject({ kind: 'scope', scope: { inst: 1 } });
    expect(hitTest(f, GUTTER_W + 200, AXIS_H + SCOPE_ROW_H + 4)).toMatchObject({ kind: 'scope', scope: { path: 'train/fwd' } });
    expect(hitTest(f, GUTTER_W + 600, AXIS_H + SCOPE_ROW_H + 4)).toBeNull();
    expect(scopeAt([sc(1, 0, 0, 1000), sc(2, 0, 100, 200)], f.vp, 1000, 0, 150)?.inst).toBe(2);
  });
});

describe('scope tracks, one per thread', () => {
  const onThread = (inst: number, thread: number, depth: number, start: number, end: number) => ({ ...sc(inst, depth, start, end), threadId: thread });

  it('give each thread its own rows, threads in id order, depths inside', () => {
    const items = [onThread(1, 20, 0, 0, 100), onThread(2, 10, 0, 50, 150), onThread(3, 20, 1, 10, 20), onThread(4, 10, 0, 200, 300)];
    const t = scopeTracksWith(NO_SCOPE_TRACKS, items);
    expect(t.threads).toEqual([
      { threadId: 10, rows: 1 },
      { threadId: 20, rows: 2 },
    ]);
    expect(scopeRowCount(t)).toBe(3);
    expect(scopeRowLabels(t)).toEqual(['Scopes · thread 10', 'Scopes · thread 20', '    depth 1']);
    expect(items.map((s) => scopeRowOf(t, s.threadId, s.depth))).toEqual([1, 0, 2, 0]);
    expect(scopeRowOf(t, 99, 0)).toBe(-1);
    // overlapping ranges of two threads land in different rows: no two rects of one row overlap
    const { rects } = scopeRects(items, { t0: 0, t1: 1000 }, 1000, 40, rowFunction(t));
    for (const a of rects) for (const b of rects) if (a !== b && a.row === b.row) expect(a.x + a.w <= b.x || b.x + b.w <= a.x).toBe(true);
  });

  it('never shrink, and keep the same object when nothing new is needed', () => {
    const t = scopeTracksWith(NO_SCOPE_TRACKS, [onThread(1, 5, 2, 0, 1)]);
    expect(scopeTracksWith(t, [onThread(2, 5, 0, 0, 1)])).toBe(t);
    expect(scopeTracksWith(t, [onThread(2, 6, 0, 0, 1)]).threads.map((x) => x.threadId)).toEqual([5, 6]);
  });

  it('hit-test a thread row for that thread only', () => {
    const items = [onThread(1, 10, 0, 100, 900), onThread(2, 20, 0, 100, 900)];
    const t = scopeTracksWith(NO_SCOPE_TRACKS, items);
    const L2 = layout(lanesFrom([{ device: 0, stream: 7 }], new Map()), false, 1000, scopeRowLabels(t));
    const f = { vp: { t0: 0, t1: 1000 }, layout: L2, tiles: [], memcpy: [], scopes: items, scopeTracks: t };
    expect(hitTest(f, GUTTER_W + 500, AXIS_H + 4)).toMatchObject({ scope: { threadId: 10 } });
    expect(hitTest(f, GUTTER_W + 500, AXIS_H + SCOPE_ROW_H + 4)).toMatchObject({ scope: { threadId: 20 } });
  });
});
