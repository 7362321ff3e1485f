import { describe, expect, it } from 'vitest';
import type { LaunchTimeline } from '../api/launches';
import { AXIS_H, GUTTER_W, hitTest, layout } from './draw';
import { scopeRowLabels, type ScopeTracks } from './scopes';
import { callAt, callRects, flowPoints, launchThreadsWith, threadRows } from './threads';

const call = (t: number, thread: number, start: number, end: number, count = 1, kind: 'kernel' | 'memcpy' = 'kernel') => ({
  t,
  thread,
  count,
  busy: end - start,
  longest: { kind, id: `${thread}:${start}`, corrId: start, name: 'gemm', device: 0, stream: 7, gpuStart: end + 10, start, end },
});
const tl: LaunchTimeline = { start: 0, end: 1000, bucketNs: 10, total: 7, buckets: [call(0, 2, 0, 5, 3), call(100, 2, 100, 140), call(500, 9, 500, 503, 3, 'memcpy')] };

describe('thread tracks', () => {
  const tracks: ScopeTracks = { threads: [{ threadId: 2, rows: 2 }, { threadId: 5, rows: 1 }] };

  it('puts each thread\'s call row under its scope rows, threads in id order; a thread without scopes gets its own', () => {
    const rows = threadRows(tracks, scopeRowLabels(tracks), [2, 9]);
    expect(rows.map((r) => (r.kind === 'launch' ? `calls ${r.thread}` : r.label))).toEqual([
      'Scopes · thread 2',
      '    depth 1',
      'calls 2',
      'Scopes · thread 5',
      'calls 9',
    ]);
    expect(rows[4].label).toBe('API calls · thread 9');
  });

  it('keeps the scope rows\' indices: scope rows are numbered as without call rows', () => {
    const L = layout([], false, 1000, threadRows(tracks, scopeRowLabels(tracks), [2, 9]));
    expect(L.rows.filter((r) => r.kind === 'scope').map((r) => r.key)).toEqual(['scope:0', 'scope:1', 'scope:2']);
    expect(L.rows.filter((r) => r.kind === 'launch').map((r) => r.key)).toEqual(['launch:2', 'launch:9']);
  });

  it('grows the thread list, never shrinks it', () => {
    const a = launchThreadsWith([], tl);
    expect(a).toEqual([2, 9]);
    expect(launchThreadsWith(a, { ...tl, buckets: [] })).toBe(a);
  });

  it('counts every call in view, draws one rect per painted pixel', () => {
    const all = callRects(tl, 2, { t0: 0, t1: 1000 }, 100);
    expect(all.inView).toBe(4);
    expect(all.rects.length).toBe(2);
    expect(callRects(tl, 2, { t0: 200, t1: 1000 }, 100).inView).toBe(0);
  });

  it('hit-tests a call on its thread\'s row, and the tooltip path reaches it', () => {
    expect(callAt(tl, 2, { t0: 0, t1: 1000 }, 1000, 120)?.longest.start).toBe(100);
    expect(callAt(tl, 9, { t0: 0, t1: 1000 }, 1000, 120)).toBeNull();
    const L = layout([], false, 1000, threadRows({ threads: [] }, [], [2, 9]));
    const h = hitTest({ vp: { t0: 0, t1: 1000 }, layout: L, tiles: [], memcpy: [], launches: tl }, GUTTER_W + 501, AXIS_H + 14 + 7);
    expect(h).toMatchObject({ kind: 'launch', call: { thread: 9 } });
  });

  it('draws the flow from the call\'s exit down to the kernel\'s start', () => {
    const p = flowPoints({ start: 100, end: 140 }, 600, { y: 30, h: 14 }, { y: 100, h: 24 }, { t0: 0, t1: 1000 }, 1000);
    expect(p).toEqual({ x0: 140, y0: 42, x1: 600, y1: 103 });
    expect(flowPoints({ start: 0, end: 1 }, 5, undefined, { y: 100, h: 24 }, { t0: 0, t1: 1000 }, 1000)).toBeNull();
  });
});
