import { describe, expect, it } from 'vitest';
import type { LodBucket, MemcpyRow } from '../api/client';
import { Batch, firstVisible, GUTTER_W, groupByLane, hitTest, layout, LANE_H, AXIS_H, maxDurByLane, type DrawnTile } from './draw';
import { lanesFrom } from './lod';

function b(t: number, stream: number, start: number, end: number, id: string, count = 1): LodBucket {
  return { t, device: 0, stream, count, busy: end - start, longest: { id, name: `k${id}`, start, end } };
}

describe('groupByLane', () => {
  it('groups per lane and sorts by time', () => {
    const g = groupByLane([b(30, 1, 30, 31, 'c'), b(10, 1, 10, 11, 'a'), b(20, 2, 20, 21, 'b')]);
    expect([...g.keys()].sort()).toEqual(['0:1', '0:2']);
    expect(g.get('0:1')!.map((x) => x.t)).toEqual([10, 30]);
  });
});

describe('hitTest', () => {
  const buckets = [b(0, 1, 100, 200, 'a'), b(1000, 1, 1000, 1010, 'tiny', 5), b(0, 2, 500, 900, 'other')];
  const lanes = lanesFrom(buckets, new Map());
  const tile: DrawnTile = { key: 't', level: 6, start: 0, end: 2000, state: 'ready', bucketNs: 64, buckets, byLane: groupByLane(buckets) };
  const memcpy: MemcpyRow[] = [{ id: 'm1', device: 0, stream: 1, start: 1500, end: 1600, dur: 100, bytes: 4096, copyKind: 'HtoD', throughput: 1, corrId: 3, scopeInst: null, srcKind: 'Pinned', dstKind: 'Device', mode: 'async', threadId: 1, apiStart: null, apiDur: null }];
  const f = { vp: { t0: 0, t1: 2000 }, layout: layout(lanes, true, 2000), tiles: [tile], memcpy };
  const rowY = (i: number) => AXIS_H + LANE_H * i + LANE_H / 2; // row 0 is the memcpy lane

  it('finds the kernel under the pointer in the right lane', () => {
    const h = hitTest(f, GUTTER_W + 150, rowY(1));
    expect(h).toMatchObject({ kind: 'kernel', id: 'a' });
    expect(hitTest(f, GUTTER_W + 150, rowY(2))).toBeNull();
    expect(hitTest(f, GUTTER_W + 600, rowY(2))).toMatchObject({ kind: 'kernel', id: 'other' });
  });

  it('accepts a near miss within 4 px on tiny kernels (1 px = 1 ns here)', () => {
    expect(hitTest(f, GUTTER_W + 1013, rowY(1))).toMatchObject({ id: 'tiny', count: 5 });
    expect(hitTest(f, GUTTER_W + 1020, rowY(1))).toBeNull();
  });

  it('hits memory copies in their lane and nothing in the gutter', () => {
    expect(hitTest(f, GUTTER_W + 1550, rowY(0))).toMatchObject({ kind: 'memcpy' });
    expect(hitTest(f, 10, rowY(1))).toBeNull();
  });
});

describe('firstVisible / maxDurByLane', () => {
  const bs = [b(0, 1, 0, 5000, 'long'), b(100, 1, 100, 110, 'x'), b(200, 1, 200, 210, 'y'), b(300, 1, 300, 310, 'z')];
  it('binary-searches the first bucket at or before t0', () => {
    expect(firstVisible(bs, 250)).toBe(2);
    expect(firstVisible(bs, 200)).toBe(1);
    expect(firstVisible(bs, -5)).toBe(0);
    expect(firstVisible(bs, 1e9)).toBe(3);
  });
  it('records the longest kernel per lane so long kernels starting before the window still draw', () => {
    expect(maxDurByLane(groupByLane(bs)).get('0:1')).toBe(5000);
  });
});

describe('Batch', () => {
  it('groups rects by alpha and colour and fills each group once', () => {
    const calls: string[] = [];
    const ctx = {
      set globalAlpha(v: number) { calls.push(`alpha ${v}`); },
      set fillStyle(v: string) { calls.push(`fill ${v}`); },
      beginPath: () => calls.push('begin'),
      rect: () => calls.push('rect'),
      fill: () => calls.push('FILL'),
    } as unknown as CanvasRenderingContext2D;
    const batch = new Batch();
    batch.add(1, 'red', 0, 0, 1, 1);
    batch.add(1, 'blue', 0, 0, 1, 1);
    batch.add(1, 'red', 2, 0, 1, 1);
    batch.add(0.5, 'red', 2, 0, 1, 1);
    expect(batch.flush(ctx)).toBe(4);
    expect(calls.filter((c) => c === 'FILL')).toHaveLength(3);
    expect(calls.filter((c) => c === 'rect')).toHaveLength(4);
  });
});

describe('hitTest on edge kernels', () => {
  it('hits a long kernel that started before the window (no bucket of it is drawn)', () => {
    const lanes = lanesFrom([{ device: 0, stream: 3 }], new Map());
    const edge = [{ id: 'long', seq: 1, name: 'nccl', launchId: 1, device: 0, stream: 3, corrId: 1, start: -5000, end: 500, dur: 5500, scopeInst: null, stackId: null, graphId: null, threadId: null }];
    const f = { vp: { t0: 0, t1: 1000 }, layout: layout(lanes, false, 1000), tiles: [], memcpy: [], edge };
    expect(hitTest(f, GUTTER_W + 100, AXIS_H + LANE_H / 2)).toMatchObject({ kind: 'kernel', id: 'long' });
    expect(hitTest({ ...f, edge: [] }, GUTTER_W + 100, AXIS_H + LANE_H / 2)).toBeNull();
  });
});

describe('hitTest on the memory lane in buckets', () => {
  const buckets = [b(0, 1, 100, 200, 'a')];
  const lanes = lanesFrom(buckets, new Map());
  const memBuckets = {
    start: 0,
    end: 2000,
    bucketNs: 100,
    buckets: [{ t: 1500, kind: 'DtoH', device: 0, stream: 1, count: 37, bytes: 1 << 20, busy: 900, longest: { id: 'm9', start: 1520, end: 1580, bytes: 4096 } }],
  };
  const f = { vp: { t0: 0, t1: 2000 }, layout: layout(lanes, true, 2000), tiles: [], memcpy: [], memBuckets };

  it('answers the bucket (its count and bytes) under the pointer', () => {
    const h = hitTest(f, GUTTER_W + 1550, AXIS_H + LANE_H / 2);
    expect(h).toMatchObject({ kind: 'memBucket', bucket: { count: 37, kind: 'DtoH' } });
    expect(hitTest(f, GUTTER_W + 1000, AXIS_H + LANE_H / 2)).toBeNull();
  });
});
