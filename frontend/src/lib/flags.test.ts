// Throttle tracks from the real H100 capture's system samples (examples/captures/gpt_train), shaped as the
// backend answers when every point is one sample (n = 1, bits = that sample's mask).
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SystemSeries } from '../api/client';
import { flagTracks } from './flags';
import { CLOCK_EVENT_REASONS, chartSpecs, decodeClockEvents, missingMetrics, samplingOf } from './system';

const DIR = resolve(__dirname, '../../../examples/captures/gpt_train');
const file = readdirSync(DIR).find((n) => n.includes('.system.'))!;
const samples = readFileSync(join(DIR, file), 'utf8')
  .split('\n')
  .filter((l) => l.includes('"system_sample"'))
  .map((l) => JSON.parse(l) as { ts_ns: number; gpus: Record<string, number | boolean | null>[] });

function series(metric: string): SystemSeries {
  const t0 = samples[0].ts_ns;
  const pts = samples.filter((s) => s.gpus[0][metric] !== undefined && s.gpus[0][metric] !== null);
  const v = pts.map((s) => Number(s.gpus[0][metric]));
  return {
    metric,
    device: 0,
    t: pts.map((s) => s.ts_ns - t0),
    min: v,
    max: v,
    mean: v,
    n: v.map(() => 1),
    bits: metric === 'throttle_reasons' ? v : v.map(() => null),
  };
}

describe('decodeClockEvents', () => {
  it("names NVML's bits and keeps unknown ones as hex", () => {
    expect(decodeClockEvents(0)).toEqual([]);
    expect(decodeClockEvents(0x1 | 0x4 | 0x40)).toEqual(['GpuIdle', 'SwPowerCap', 'HwThermalSlowdown']);
    expect(decodeClockEvents(0x100 | 0x400)).toEqual(['DisplayClockSetting', 'bit 0x400']);
    expect(CLOCK_EVENT_REASONS.map((r) => r.bit)).toEqual([0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100]);
  });
});

describe('flagTracks on the gpt_train capture', () => {
  const all = ['throttle_pwr', 'throttle_therm', 'throttle_reasons', 'util_gpu_pct'].map(series);
  const tracks = flagTracks(chartSpecs(all))!;

  it('has one 0/1 track per flag and per reason that was on, sample by sample', () => {
    const idle = samples.filter((s) => (Number(s.gpus[0].throttle_reasons) & 0x1) !== 0).length;
    expect(idle).toBeGreaterThan(0); // the capture starts idle: the test needs a reason that was on
    const byKey = Object.fromEntries(tracks.rows.map((r) => [r.key, r]));
    expect(byKey['throttle_reasons:0:GpuIdle'].values.filter((v) => v === true)).toHaveLength(idle);
    const pwrOn = samples.filter((s) => s.gpus[0].throttle_pwr === true).length;
    expect(byKey['throttle_pwr:0'].values.filter((v) => v === true)).toHaveLength(pwrOn);
    expect(byKey['throttle_pwr:0'].values.filter((v) => v !== null)).toHaveLength(samples.length);
    expect(tracks.x).toHaveLength(samples.length);
    expect(tracks.mixed).toBe(false);
  });

  it('lists the reasons no sample had on', () => {
    const seen = new Set(samples.flatMap((s) => decodeClockEvents(Number(s.gpus[0].throttle_reasons))));
    expect(tracks.never).toEqual(CLOCK_EVENT_REASONS.map((r) => r.name).filter((n) => !seen.has(n)));
  });

  it('is null without flag metrics', () => {
    expect(flagTracks(chartSpecs([series('util_gpu_pct')]))).toBeNull();
  });
});

describe('samplingOf and missingMetrics on the gpt_train capture', () => {
  it('finds the interval between samples (configured 1 s) and that each point is one sample', () => {
    const s = samplingOf([series('power_mw')]);
    expect(s.raw).toBe(true);
    expect(s.intervalNs).toBeGreaterThan(0.9e9);
    expect(s.intervalNs).toBeLessThan(1.1e9);
  });

  it('names the fan (NVML NotSupported on this H100) and PCIe (not in this older capture) as absent', () => {
    const m = missingMetrics(['util_gpu_pct', 'power_mw', 'mem_total_mib'].map(series));
    const why = Object.fromEntries(m.map((x) => [x.metric, x.why]));
    expect(samples.every((s) => s.gpus[0].fan_pct === undefined || s.gpus[0].fan_pct === null)).toBe(true);
    expect(why.fan_pct).toBe('not reported by this GPU');
    expect(why.pcie_rx_kbs).toMatch(/^not in this capture/);
    expect(why.power_mw).toBeUndefined();
  });
});
