import { describe, expect, it } from 'vitest';
import type { DiffWire } from '../api/client';
import {
  alignAt,
  compactKey,
  countText,
  cutText,
  filterRows,
  fmtDeltaNs,
  fmtRel,
  fmtStart,
  frame,
  impactShare,
  kernelHref,
  labelCounts,
  maxImpact,
  NO_FILTER,
  noiseText,
  rowId,
  rowWhy,
  scaleText,
  totalView,
} from './diff';
import { parseRoute } from './route';
// The backend's real answer for examples/captures/diff_layer_removed against diff_base, cut to 60 rows (see
// the file's _comment): one transformer layer of six removed, so each per-layer kernel runs 5/6 as often.
import real from './fixtures/diff_layer_removed.json';

const d = real as unknown as DiffWire;

describe('diff shaping', () => {
  it('states what the figures are and that the list was cut', () => {
    expect(scaleText(d)).toBe('per step (12 vs 12 steps)');
    expect(scaleText({ ...d, per_step: false })).toBe('whole session');
    expect(d.rows.length).toBe(60);
    expect(cutText(d)).toBe(`showing 60 of ${d.rows_total} rows (largest impact first)`);
    expect(cutText({ ...d, rows_total: d.rows.length })).toBeNull();
  });

  it('states the noise test with its settings', () => {
    const t = noiseText(d.noise);
    expect(t).toContain(d.noise.test);
    expect(t).toContain(`z_crit ${d.noise.z_crit}`);
    expect(t).toContain('min_effect 5%');
    expect(t).toContain(`fewer than ${d.noise.min_instances} instances`);
  });

  it('finds the per-layer kernels faster by about 1/6, with their counts per step', () => {
    const faster = filterRows(d.rows, { ...NO_FILTER, kinds: ['kernel'], labels: ['faster'] });
    expect(faster.length).toBeGreaterThan(10);
    expect(faster.every((r) => r.kind === 'kernel' && r.label === 'faster')).toBe(true);
    // GEMMs of the layers: 6 launches per step each became 5 (72 → 60 over 12 steps)
    const gemm = faster.find((r) => r.key === 'nvjet_sm90_hsh_128x256_64x4_2x1_v_bz_coopA_bias_TNN')!;
    expect(gemm.base.n).toBe(72);
    expect(gemm.target.n).toBe(60);
    expect(countText(gemm.base, true)).toBe('6/step (72)');
    expect(countText(gemm.target, true)).toBe('5/step (60)');
    expect(countText(gemm.target, false)).toBe('60');
    expect(fmtRel(gemm.rel)).toBe('\u221216.7%');
    // the order is the backend's (by impact) after filtering too
    const all = d.rows.map(rowId);
    const idx = faster.map((r) => all.indexOf(rowId(r)));
    expect([...idx].sort((a, b) => a - b)).toEqual(idx);
  });

  it('filters by text and counts labels per kind', () => {
    const sdpa = filterRows(d.rows, { ...NO_FILTER, text: 'SDPA_SM90' });
    expect(sdpa.length).toBeGreaterThan(0);
    expect(sdpa.every((r) => r.key.toLowerCase().includes('sdpa_sm90'))).toBe(true);
    const all = labelCounts(d.rows, []);
    expect(Object.values(all).reduce((a, b) => a + b, 0)).toBe(d.rows.length);
    const scopes = labelCounts(d.rows, ['scope']);
    expect(Object.values(scopes).reduce((a, b) => a + b, 0)).toBe(d.rows.filter((r) => r.kind === 'scope').length);
    expect(filterRows(d.rows, NO_FILTER)).toEqual(d.rows);
  });

  it('formats totals with unit, sign and the reason for the label', () => {
    const gpu = totalView(d.totals.find((t) => t.metric === 'total_gpu_time')!, d.noise);
    expect(gpu.name).toBe('GPU busy time');
    expect(gpu.label).toBe('down');
    expect(gpu.rel).toBe('\u221210.8%');
    expect(gpu.delta).toBe('\u2212677.7 µs');
    expect(gpu.why).toContain('|z| ≥ 3.29');
    const idle = totalView(d.totals.find((t) => t.metric === 'idle')!, d.noise);
    expect(idle.label).toBe('untested');
    expect(idle.z).toBe('—');
    expect(idle.why).toMatch(/Not judged/);
    const kernels = totalView(d.totals.find((t) => t.metric === 'kernels')!, d.noise);
    expect([kernels.base, kernels.target, kernels.delta]).toEqual(['495.1', '425.1', '\u221270']);
    expect(kernels.why).toMatch(/Exact count/);
    const bytes = totalView(d.totals.find((t) => t.metric === 'copy_bytes')!, d.noise);
    expect(bytes.base).toBe('80.7 MiB');
    expect(bytes.delta.startsWith('\u2212')).toBe(true);
  });

  it('leaves PyTorch namespaces out of kernel names in cells, nothing else', () => {
    const reduce = d.rows.find((r) => r.key.startsWith('void at::native::reduce_kernel<128, 4'))!;
    const short = compactKey(reduce);
    expect(short.startsWith('reduce_kernel<128, 4, ReduceOp<Half, func_wrapper_t<Half, sum_functor<Half, float, Half>')).toBe(true);
    expect(short).not.toMatch(/at::native::|c10::|^void /);
    const scope = d.rows.find((r) => r.kind === 'scope')!;
    expect(compactKey(scope)).toBe(scope.key);
    const nvjet = d.rows.find((r) => r.key.startsWith('nvjet_'))!;
    expect(compactKey(nvjet)).toBe(nvjet.key);
  });

  it('signs changes and explains row labels', () => {
    expect(fmtRel(null)).toBe('—');
    expect(fmtRel(0.052)).toBe('+5.2%');
    expect(fmtDeltaNs(-53777)).toBe('\u221253.8 µs');
    expect(fmtDeltaNs(1500)).toBe('+1.50 µs');
    const unchanged = d.rows.find((r) => r.label === 'unchanged' && r.z !== null)!;
    expect(rowWhy(unchanged, d.noise)).toMatch(/^Within noise: z /);
    const faster = d.rows.find((r) => r.label === 'faster')!;
    expect(rowWhy(faster, d.noise)).toContain(`z ${faster.z!.toFixed(1)}`);
  });

  it('sizes the impact bar against the largest change shown', () => {
    const m = maxImpact(d.rows);
    expect(m).toBe(Math.abs(d.rows[0].delta_ns));
    expect(impactShare(d.rows[0], m)).toBe(1);
    expect(impactShare(d.rows[59], m)).toBeLessThan(0.01);
    expect(impactShare(d.rows[0], 0)).toBe(0);
  });

  it('links an instance into its session and frames it', () => {
    const h = kernelHref('s1', { id: '42', name: 'nvjet<x, y>', start: 1_000_000, end: 1_010_000 });
    expect(parseRoute(h)).toMatchObject({ page: 'session', session: 's1', tab: 'kernels', kernel: '42', name: 'nvjet<x, y>', t0: 980_000, t1: 1_030_000 });
    expect(frame(100, 200)).toEqual({ t0: 150 - 5000, t1: 150 + 5000 });
    expect(frame(0, 100_000)).toEqual({ t0: -30_000, t1: 130_000 });
    expect(fmtStart(12_345_678)).toBe('12.346 ms');
    // instance 1 of the reduce kernel: 7.965094 s (10.9 µs) in the base, 6.993709 s (11.0 µs) in the target
    const al = alignAt({ start: 7_965_094_000, end: 7_965_104_900 }, { start: 6_993_709_000, end: 6_993_720_000 });
    expect(al.offset).toBe(6_993_709_000 - 7_965_094_000);
    expect(al.vp.t1 - al.vp.t0).toBe(11_000 * 1.6);
    expect(al.vp.t0).toBe(7_965_094_000 - 3_300);
    expect(alignAt({ start: 0, end: 100 }, { start: 50, end: 150 }).vp).toEqual({ t0: -4_950, t1: 5_050 });
    expect(fmtStart(1_234_567_890)).toBe('1.234568 s');
  });
});
