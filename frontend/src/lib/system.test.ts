import { describe, expect, it } from 'vitest';
import { shapeSeries, type SystemSeries } from '../api/client';
import { alignSeries, chartSpecs, isIdleActivity, missingMetrics } from './system';

const origin = 1_732_521_600_000_000_000n;
const wire = (metric: string, device: number | null, ts: number[]) => ({
  metric,
  device,
  points: ts.map((t, i) => ({ t_ns: (origin + BigInt(t)).toString(), min: i, max: i + 2, mean: i + 1, n: 1, bits: null })),
});

describe('shapeSeries', () => {
  it('turns point objects into columns relative to the session start', () => {
    const s = shapeSeries(wire('power_mw', 0, [0, 1_000_000_007]), origin);
    expect(s.t).toEqual([0, 1_000_000_007]);
    expect(s.min).toEqual([0, 1]);
    expect(s.max).toEqual([2, 3]);
    expect(s.mean).toEqual([1, 2]);
  });
});

describe('chartSpecs', () => {
  it('makes one chart per metric with points, known metrics first, devices sorted', () => {
    const series: SystemSeries[] = [
      shapeSeries(wire('zz_custom', 0, [0]), origin),
      shapeSeries(wire('temp_c', 1, [0]), origin),
      shapeSeries(wire('temp_c', 0, [0]), origin),
      shapeSeries(wire('cpu_pct', null, [0]), origin),
      shapeSeries(wire('util_gpu_pct', 0, [0, 10]), origin),
      shapeSeries(wire('fan_pct', 0, []), origin),
    ];
    const specs = chartSpecs(series);
    expect(specs.map((s) => s.metric)).toEqual(['util_gpu_pct', 'temp_c', 'cpu_pct', 'zz_custom']);
    expect(specs[1].info.unit).toBe('°C');
    expect(specs[1].series.map((s) => s.device)).toEqual([0, 1]);
    expect(specs[2].info.host).toBe(true);
    expect(specs[3].info.title).toBe('zz_custom');
  });
});

describe('alignSeries', () => {
  it('aligns series on the union of bucket starts, scaled, in seconds', () => {
    const a = shapeSeries(wire('power_mw', 0, [0, 2e9]), origin);
    const b = shapeSeries(wire('power_mw', 1, [1e9, 2e9]), origin);
    const { x, ys } = alignSeries([a, b], 1e-3);
    expect(x).toEqual([0, 1, 2]);
    expect(ys).toHaveLength(6);
    expect(ys[0]).toEqual([0.001, null, 0.002]); // GPU 0 mean
    expect(ys[3]).toEqual([null, 0.001, 0.002]); // GPU 1 mean
    expect(ys[5]).toEqual([null, 0.002, 0.003]); // GPU 1 max
  });
});

describe('missingMetrics', () => {
  it('says once that a session has no GPU activity at all (recorded before GPM sampling)', () => {
    const old = [shapeSeries(wire('util_gpu_pct', 0, [0, 10]), origin), shapeSeries(wire('temp_c', 0, [0]), origin)];
    const missing = missingMetrics(old);
    const gpm = missing.filter((m) => m.metric === 'gpm' || m.metric.endsWith('_active_pct') || m.metric === 'dram_bw_pct');
    expect(gpm.map((m) => m.metric)).toEqual(['gpm']);
    expect(gpm[0].why).toMatch(/not recorded.*GPM.*v4/);
  });

  it('names each GPU-activity metric the GPU did not report when others were recorded', () => {
    const v4 = [
      shapeSeries(wire('util_gpu_pct', 0, [0, 10]), origin),
      shapeSeries(wire('sm_active_pct', 0, [10]), origin),
      shapeSeries(wire('dram_bw_pct', 0, [10]), origin),
    ];
    const missing = missingMetrics(v4);
    expect(missing.some((m) => m.metric === 'gpm')).toBe(false);
    const nvlink = missing.find((m) => m.metric === 'nvlink_rx_mibs');
    expect(nvlink?.why).toMatch(/not reported by this GPU/);
    expect(missing.some((m) => m.metric === 'sm_active_pct')).toBe(false);
  });

  it('puts GPU activity right after NVML utilisation', () => {
    const specs = chartSpecs([
      shapeSeries(wire('temp_c', 0, [0]), origin),
      shapeSeries(wire('sm_active_pct', 0, [0]), origin),
      shapeSeries(wire('util_gpu_pct', 0, [0]), origin),
    ]);
    expect(specs.map((s) => s.metric)).toEqual(['util_gpu_pct', 'sm_active_pct', 'temp_c']);
  });
});

describe('isIdleActivity', () => {
  const flat = (metric: string, max: number[]) => ({ ...shapeSeries(wire(metric, 0, max.map((_, i) => i)), origin), max });
  it('states a GPU-activity pipe that stayed at 0, charts one that moved, never hides NVML metrics', () => {
    const specs = chartSpecs([flat('fp64_active_pct', [0, 0]), flat('tensor_active_pct', [0, 93.2]), flat('fan_pct', [0, 0])]);
    const by = Object.fromEntries(specs.map((s) => [s.metric, isIdleActivity(s)]));
    expect(by).toEqual({ tensor_active_pct: false, fp64_active_pct: true, fan_pct: false });
  });
});
