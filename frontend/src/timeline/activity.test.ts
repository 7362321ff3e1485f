import { describe, expect, it } from 'vitest';
import { shapeSeries } from '../api/client';
import { activityLanes, activityText, valueAt } from './activity';

// Points as GET /system answers them for the committed gpu_activity capture (H100, GPM): idle, then the
// GEMM phase (examples/captures/gpu_activity, system stream lines 8–10).
const wire = (metric: string, pts: [bigint, number][]) => ({
  metric,
  device: 0,
  points: pts.map(([t, v]) => ({ t_ns: t.toString(), min: v, max: v, mean: v, n: 1, bits: null })),
});
const origin = 1796506882181200607n;
const sm = shapeSeries(wire('sm_active_pct', [[1796506885640103512n, 0.0], [1796506886141739060n, 53.85], [1796506886642626460n, 98.37]]), origin);
const util = shapeSeries(wire('util_gpu_pct', [[1796506885640103512n, 0], [1796506886141739060n, 100], [1796506886642626460n, 100]]), origin);

describe('GPU activity rows', () => {
  it('one per GPU; a GPU without SM activity says "not recorded"', () => {
    const lanes = activityLanes([0, 1], [sm, util]);
    expect(lanes.map((l) => l.label)).toEqual(['SM active · GPU 0', 'SM active · GPU 1 · not recorded']);
    expect(lanes[1].sm).toBeNull();
  });

  it('reads the sample holding at a time, nothing before the first', () => {
    const t = Number(1796506886141739060n - origin);
    expect(valueAt(sm, t + 1)).toBe(53.85);
    expect(valueAt(sm, t - 1)).toBe(0);
    expect(valueAt(sm, 0)).toBeNull();
  });

  it('says both readings at a time: SM active beside NVML utilisation', () => {
    const [lane] = activityLanes([0], [sm, util]);
    expect(activityText(lane, Number(1796506886141739060n - origin) + 5)).toBe('GPU 0 — SM active (GPM) 53.9 % · NVML GPU utilisation 100.0 %');
    expect(activityText({ ...lane, sm: null }, Number(1796506886141739060n - origin))).toBe('GPU 0 — SM active (GPM) not recorded · NVML GPU utilisation 100.0 %');
  });
});
