import { describe, expect, it } from 'vitest';
import { clamp, panBy, tickStep, tToX, xToT, zoomAt, type Bounds } from './viewport';

const B: Bounds = { start: 0, end: 1e9, minSpan: 1000 };

describe('viewport', () => {
  it('maps time to pixels and back', () => {
    const v = { t0: 100, t1: 1100 };
    expect(tToX(600, v, 500)).toBe(250);
    expect(xToT(250, v, 500)).toBe(600);
  });

  it('zooms around the anchor, keeping it under the same pixel', () => {
    const v = { t0: 0, t1: 1e8 };
    const z = zoomAt(v, 0.5, 2.5e7, B);
    expect(z.t1 - z.t0).toBeCloseTo(5e7);
    expect(tToX(2.5e7, z, 1000)).toBeCloseTo(tToX(2.5e7, v, 1000));
  });

  it('never zooms below the minimum span nor beyond the session (+5%)', () => {
    const z = zoomAt({ t0: 0, t1: 2000 }, 0.0001, 1000, B);
    expect(z.t1 - z.t0).toBe(1000);
    const out = zoomAt({ t0: 0, t1: 1e9 }, 10, 5e8, B);
    expect(out.t1 - out.t0).toBeCloseTo(1.1e9);
    expect(out.t0).toBeCloseTo(-5e7);
  });

  it('pans by pixels and stops at the edges', () => {
    const v = { t0: 0, t1: 1e8 };
    const p = panBy(v, 100, 1000, B);
    expect(p.t0).toBeCloseTo(1e7);
    const far = panBy(v, 1e6, 1000, B);
    expect(far.t1).toBeCloseTo(1.05e9);
    expect(clamp({ t0: -1e12, t1: -1e12 + 10 }, B).t0).toBeCloseTo(-5e7);
  });

  it('chooses 1-2-5 tick steps', () => {
    expect(tickStep(1e9, 10)).toBe(1e8);
    expect(tickStep(3e6, 10)).toBe(5e5);
    expect(tickStep(1.5e3, 10)).toBe(200);
  });
});
