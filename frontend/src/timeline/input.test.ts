import { describe, expect, it } from 'vitest';
import { tooltipText } from './input';

describe('tooltipText', () => {
  it('names the kernel, its duration and how many share its pixel', () => {
    expect(tooltipText({ kind: 'kernel', id: '1', name: 'gemm', start: 0, end: 1500, count: 3, device: 0, stream: 7 })).toBe('gemm — 1.50 µs · longest of 3 kernels here');
    expect(tooltipText({ kind: 'kernel', id: '1', name: null, start: 0, end: 10, count: 1, device: 0, stream: 7 })).toBe('(unnamed) — 10 ns');
  });

  it('gives a memory bucket its count, bytes and longest', () => {
    const t = tooltipText({ kind: 'memBucket', bucket: { t: 0, kind: 'HtoD', count: 1234, bytes: 3 << 20, busy: 2_000_000, longest: { id: '1', start: 0, end: 500_000, bytes: 1 } } });
    expect(t).toBe('1,234 HtoD here — 3.0 MiB, busy 2.00 ms · longest 500.0 µs');
  });
});
