import { describe, expect, it } from 'vitest';
import type { InsightsWire } from '../api/client';
import { badgeText, factText, shapeInsights, timelineRoute } from './insights';
import { formatRoute, parseRoute } from './route';
// The backend's real answer for examples/captures/memcpy_heavy (see the file's _comment).
import real from './fixtures/insights_memcpy_heavy.json';

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
    expect(v.notChecked.map((n) => n.rule)).toEqual(['stall_reasons', 'synchronisation']);
    expect(v.notChecked[0].reason).toContain('profile samples');
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
});
