import { describe, expect, it } from 'vitest';
import type { MemcpyRow } from '../api/client';
import { copyText } from '../timeline/input';
import { copyFields, memoryKinds } from './copies';

// The first copy of the committed memcpy_heavy_v3 capture (H100; seq 1), as api/client.ts shapes GET /memcpy's row
// (times relative to its session_start): 64 KiB HtoD from pageable memory.
const copy: MemcpyRow = {
  id: '1',
  device: 0,
  stream: 7,
  start: 424193721,
  end: 424199193,
  dur: 5472,
  bytes: 65536,
  copyKind: 'HtoD',
  throughput: 11.977,
  corrId: 590,
  scopeInst: 1,
  srcKind: 'Pageable',
  dstKind: 'Device',
  mode: 'async',
  threadId: 635,
  apiStart: 424193721 - 41113,
  apiDur: 3732090,
};

describe('copy inspector and tooltip', () => {
  it('names direction, size, throughput, memory kinds, mode, stream, thread and the call', () => {
    const f = Object.fromEntries(copyFields(copy, null, 'NVIDIA H100').map((r) => [r.key, r.value]));
    expect(f.direction).toBe('HtoD — host → device');
    expect(f.bytes).toBe('64.0 KiB (65,536 B)');
    expect(f.throughput).toBe('11.98 GB/s');
    expect(f.memory).toBe('Pageable → Device (pageable: staged through a pinned buffer by the driver)');
    expect(f.mode).toBe('async');
    expect(f.stream).toBe('GPU 0 (NVIDIA H100) · stream 7');
    expect(f.scope).toBe('instance 1');
    expect(f.thread).toBe('635');
    expect(f.api).toBe('entered 41.1 µs before the copy started, took 3.73 ms');
    expect(f.corr).toBe('590');
  });

  it('says what is not reported rather than leave it out, and says what pageable memory costs', () => {
    const f = Object.fromEntries(copyFields({ ...copy, throughput: null, mode: null, threadId: null, apiStart: null, scopeInst: null, srcKind: 'Pinned' }, null, null).map((r) => [r.key, r.value]));
    expect(f.throughput).toBe('not reported');
    expect(f.mode).toBe('not reported (before contract v3)');
    expect(f.thread).toBe('not reported');
    expect(f.api).toBe('not reported');
    expect(f.memory).toBe('Pinned → Device');
    expect(f.scope).toBe('none (outside every scope)');
    expect(memoryKinds('unknown', 'unknown')).toBe('not reported');
  });

  it('puts throughput and memory kinds in the tooltip', () => {
    expect(copyText(copy)).toBe('HtoD 64.0 KiB — 5.47 µs · 11.98 GB/s · Pageable → Device · async');
    expect(copyText({ ...copy, copyKind: 'memset', srcKind: null, dstKind: null })).toBe('memset 64.0 KiB — 5.47 µs');
  });
});
