import { describe, expect, it } from 'vitest';
import type { Api, KernelTimeline, MemoryPage, MemoryTimeline, SessionDetail } from '../api/client';
import { TrackLoader } from './loader';

// The loader against an Api double answering as the backend would (shapes of api/client.ts); the real
// backend behind it is exercised by the e2e tests. What is checked here is the scheduling.
const session = { id: 's', origin: 0n, rangeEnd: 1e9, devices: [], totals: { scope_instances: 0, memcpys: 3000, memsets: 0 } } as unknown as SessionDetail;

function fakeApi(calls: string[], opts: { copies: number; resolutions?: number[] }): Api {
  const page = (n: number): MemoryPage => ({
    items: Array.from({ length: Math.min(n, 2000) }, (_, i) => ({ id: String(i), device: 0, stream: 7, start: i * 10, end: i * 10 + 5, dur: 5, bytes: 8, copyKind: 'HtoD', throughput: null, corrId: i, scopeInst: null, srcKind: 'Pinned', dstKind: 'Device', mode: 'async', threadId: 1, apiStart: null, apiDur: null })),
    nextCursor: n > 2000 ? 'more' : null,
  });
  const api = {
    async kernelTimeline(_s: SessionDetail, win: { start: number; end: number; name?: string }, res: number): Promise<KernelTimeline> {
      calls.push(win.name ? `named:${win.name}` : 'tile');
      const buckets = win.name
        ? [{ t: 0, device: 0, stream: 7, count: 6000, busy: 1, longest: { id: '1', name: win.name, start: 0, end: 1 } }]
        : [{ t: win.start, device: 0, stream: 7, count: 1, busy: 1, longest: { id: '1', name: 'k', start: win.start, end: win.start + 1 } }];
      return { start: win.start, end: win.end, bucketNs: res, buckets };
    },
    async memcpy(): Promise<MemoryPage> {
      calls.push('memcpy');
      return page(opts.copies);
    },
    async memsets(): Promise<MemoryPage> {
      calls.push('memsets');
      return page(0);
    },
    async memoryTimeline(_s: SessionDetail, win: { start: number; end: number }, res: number): Promise<MemoryTimeline> {
      calls.push('memoryTimeline');
      opts.resolutions?.push(res);
      return { start: win.start, end: win.end, bucketNs: res, buckets: [{ t: 0, kind: 'HtoD', device: 0, stream: 7, count: opts.copies, bytes: 8 * opts.copies, busy: 1, longest: { id: '1', start: 0, end: 5, bytes: 8 } }] };
    },
    async kernels() {
      calls.push('edge');
      return { items: [], nextCursor: null };
    },
  };
  return api as unknown as Api;
}

async function until(cond: () => boolean) {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  expect(cond()).toBe(true);
}

/** Side data waits for the window's tiles: load them all first. */
async function loadTiles(l: TrackLoader) {
  for (let i = 0; i < 10 && l.pendingNeeded().length > 0; i++) {
    l.requestMissing(l.neededKeys());
    await until(() => l.inflight === 0 && l.pendingNeeded().length < l.neededKeys().length);
  }
  expect(l.pendingNeeded()).toEqual([]);
}

function loaderFor(calls: string[], copies: number, highlight: string | null, resolutions?: number[]) {
  let changed = 0;
  const l = new TrackLoader({
    api: () => fakeApi(calls, { copies, resolutions }),
    session: () => session,
    viewport: () => ({ t0: 0, t1: 1e9 }),
    plotWidth: () => 1000,
    highlightName: () => highlight,
    activityOn: () => false,
    changed: () => changed++,
  });
  return { l, changed: () => changed };
}

describe('TrackLoader', () => {
  it('fetches the missing tiles of the window, at most six at a time, then reports nothing pending', async () => {
    const calls: string[] = [];
    const { l, changed } = loaderFor(calls, 10, null);
    const needed = l.neededKeys();
    expect(l.pendingNeeded().length).toBe(needed.length);
    l.requestMissing(needed);
    await until(() => calls.length > 0);
    expect(calls.filter((c) => c === 'tile').length).toBe(Math.min(6, needed.length));
    await loadTiles(l);
    expect(l.lanes.map((x) => x.key)).toEqual(['0:7']);
    expect(changed()).toBeGreaterThan(0);
  });

  it('draws copies one by one up to 2,000 and counts every one in buckets past that', async () => {
    const few: string[] = [];
    const a = loaderFor(few, 10, null).l;
    await loadTiles(a);
    a.viewportChanged();
    await until(() => few.includes('edge'));
    expect(a.memcpy.length).toBe(10);
    expect(a.memBuckets).toBeNull();
    expect(few).not.toContain('memoryTimeline');

    const many: string[] = [];
    const b = loaderFor(many, 3000, null).l;
    await loadTiles(b);
    b.viewportChanged();
    await until(() => many.includes('edge'));
    expect(b.memcpy).toEqual([]);
    expect(b.memBuckets?.buckets.reduce((n, x) => n + x.count, 0)).toBe(3000);
  });

  it('asks for the memory buckets only once the tiles are in, at a power of two (the stored levels answer it)', async () => {
    const calls: string[] = [];
    const resolutions: number[] = [];
    const l = loaderFor(calls, 3000, null, resolutions).l;
    l.viewportChanged();
    await new Promise((r) => setTimeout(r, 400));
    expect(calls).toEqual([]); // no side data before the first frame's tiles
    await loadTiles(l);
    await until(() => calls.includes('edge'));
    // the 1 s window widened to 2 s over 1,000 px: 1 ms per pixel → 2^20 ns, one to two buckets per pixel
    expect(resolutions).toEqual([2 ** 20]);
    expect(calls.indexOf('memoryTimeline')).toBeGreaterThan(calls.lastIndexOf('tile'));
  });

  it('counts every instance of a highlighted name from its buckets', async () => {
    const calls: string[] = [];
    const l = loaderFor(calls, 10, 'gemm').l;
    await loadTiles(l);
    l.viewportChanged();
    await until(() => calls.includes('edge'));
    expect(calls).toContain('named:gemm');
    expect(l.highlightCount).toBe(6000);
    expect(l.highlights).toHaveLength(1);
  });
});
