import { describe, expect, it } from 'vitest';
import type { InsightsWire } from '../api/client';
import { badgeText, factText, shapeInsights, timelineRoute } from './insights';
import { formatRoute, parseRoute } from './route';
// The backend's real answer for examples/captures/memcpy_heavy (see the file's _comment).
import real from './fixtures/insights_memcpy_heavy.json';
// …and for examples/captures/deep_sass (H100 SASS metrics: divergence 32.0 / 16.36 / 8.21 / 16.24).
import deep from './fixtures/insights_deep_sass.json';

const wire = real as unknown as InsightsWire;
const origin = BigInt(real.origin_ns);

describe('insights shaping', () => {
  it('places every insight on the session axis, exactly', () => {
    const v = shapeInsights(wire, origin);
    expect(v.items.map((i) => i.rule)).toEqual(real.items.map((i) => i.rule));
    real.items.forEach((w, n) => {
      expect(v.items[n].start).toBe(Number(BigInt(w.start_ns) - origin));
      expect(v.items[n].end).toBe(Number(BigInt(w.end_ns) - origin));
    });
    expect(v.counts).toEqual(real.counts);
  });

  it('shows the pageable bytes in MiB and in exact bytes', () => {
    const v = shapeInsights(wire, origin);
    const pageable = v.items.find((i) => i.rule === 'pageable_copy')!;
    const bytes = real.items.find((i) => i.rule === 'pageable_copy')!.facts.find((f) => f.label === 'pageable bytes')!;
    expect(pageable.facts.find((f) => f.label === 'pageable bytes')!.text).toBe(
      `810.6 MiB (${(bytes.value as number).toLocaleString('en-US')} B)`,
    );
  });

  it('lists the rules that could not run, with their reasons, and the clear ones', () => {
    const v = shapeInsights(wire, origin);
    expect(v.notChecked.map((n) => n.rule)).toEqual(['sm_underused', 'synchronisation', 'warp_divergence', 'stall_reason']);
    expect(v.notChecked.find((n) => n.rule === 'warp_divergence')!.reason).toContain('0 profile samples');
    expect(v.clear).toContain('launch_bound');
    expect(v.clear).not.toContain('pageable_copy');
  });

  it('formats each unit, and keeps "not reported" as the API says it', () => {
    expect(factText({ label: 'x', value: 'not reported', unit: 'text' })).toBe('not reported');
    expect(factText({ label: 'x', value: 1_500_000, unit: 'ns' })).toBe('1.50 ms');
    expect(factText({ label: 'x', value: 37.84, unit: 'pct' })).toBe('37.8 %');
    expect(factText({ label: 'x', value: 250_000, unit: 'mw' })).toBe('250.0 W');
  });

  it('links to the Kernels tab at the range, a point widened to 1 ms', () => {
    const v = shapeInsights(wire, origin);
    const i = v.items[0];
    const r = parseRoute(formatRoute(timelineRoute('sid', i.start, i.end)));
    expect(r).toMatchObject({ page: 'session', session: 'sid', tab: 'kernels', t0: i.start, t1: i.end });
    expect(timelineRoute('sid', 2_000_000, 2_000_000)).toMatchObject({ t0: 1_500_000, t1: 2_500_000 });
  });

  it('badges warnings and criticals only', () => {
    expect(badgeText({ critical: 0, warning: 0, info: 3 })).toBeNull();
    expect(badgeText(real.counts)).toBe('1 warning');
    expect(badgeText({ critical: 1, warning: 2, info: 0 })).toBe('3 warnings (1 critical)');
  });

  it('shows divergence with its decimals and the divergent source lines of each kernel', () => {
    const v = shapeInsights(deep as unknown as InsightsWire, BigInt(deep.origin_ns));
    const div = v.items.filter((i) => i.rule === 'warp_divergence');
    expect(div.map((i) => i.involved[0].name)).toEqual([
      'div_quad(float*, float)',
      'div_parity(float*, float)',
      'div_early_exit(float*, float)',
    ]);
    expect(div.map((i) => i.facts.find((f) => f.label === 'active threads per warp instruction')!.text)).toEqual([
      '8.21',
      '16.36',
      '16.24',
    ]);
    for (const i of div) {
      const lines = i.involved.filter((x) => x.kind === 'line');
      expect(lines.length).toBeGreaterThan(0);
      for (const x of lines) expect(x.name).toMatch(/deep_truth\.cu:\d+$/);
    }
    expect(v.notChecked.map((n) => n.rule)).toContain('stall_reason');
  });
});
