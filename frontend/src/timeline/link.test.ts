import { describe, expect, it } from 'vitest';
import { ViewportLink } from './link';
import type { Viewport } from './viewport';

describe('ViewportLink', () => {
  it('moves every other member, never echoing back to the one that moved', () => {
    const link = new ViewportLink();
    const seen: Record<string, Viewport[]> = { a: [], b: [], c: [] };
    const a = link.join('a', (v) => seen.a.push(v));
    const b = link.join('b', (v) => seen.b.push(v));
    link.join('c', (v) => seen.c.push(v));
    link.publish(a, { t0: 10, t1: 20 });
    expect(seen).toEqual({ a: [], b: [{ t0: 10, t1: 20 }], c: [{ t0: 10, t1: 20 }] });
    link.publish(null, { t0: 0, t1: 5 });
    expect(seen.a).toEqual([{ t0: 0, t1: 5 }]);
    expect(seen.b.length).toBe(2);
    link.leave(b);
    link.publish(a, { t0: 1, t1: 2 });
    expect(seen.b.length).toBe(2);
    expect(link.size).toBe(2);
    // a member that left publishes nothing
    link.publish(b, { t0: 7, t1: 8 });
    expect(seen.a.length).toBe(1);
  });

  it('keeps shifted members at their offset, at one scale, whichever side moves', () => {
    const link = new ViewportLink();
    const got: Record<string, Viewport[]> = { base: [], target: [] };
    const base = link.join('base', (v) => got.base.push(v));
    const target = link.join('target', (v) => got.target.push(v));
    // align instance 1: at 7.965 s in the base, 6.994 s in the target
    link.setOffset('target', 6_994_000_000 - 7_965_000_000);
    expect(link.offset('target')).toBe(-971_000_000);
    link.publish(null, { t0: 7_965_000_000, t1: 7_965_100_000 });
    expect(got.base.at(-1)).toEqual({ t0: 7_965_000_000, t1: 7_965_100_000 });
    expect(got.target.at(-1)).toEqual({ t0: 6_994_000_000, t1: 6_994_100_000 });
    link.publish(target, { t0: 6_000_000_000, t1: 6_500_000_000 });
    expect(got.base.at(-1)).toEqual({ t0: 6_971_000_000, t1: 7_471_000_000 });
    link.publish(base, { t0: 0, t1: 1000 });
    expect(got.target.at(-1)).toEqual({ t0: -971_000_000, t1: -970_999_000 });
    link.setOffset('target', 0);
    expect(link.offset('target')).toBe(0);
    link.publish(base, { t0: 5, t1: 6 });
    expect(got.target.at(-1)).toEqual({ t0: 5, t1: 6 });
  });

  it('hands the keyboard to the member last moved or pointed at', () => {
    const link = new ViewportLink();
    const a = link.join('a', () => {});
    const b = link.join('b', () => {});
    expect(link.drives(a)).toBe(true);
    expect(link.drives(b)).toBe(false);
    link.drive(b);
    expect([link.drives(a), link.drives(b)]).toEqual([false, true]);
    link.publish(a, { t0: 0, t1: 1 });
    expect(link.drives(a)).toBe(true);
    link.publish(null, { t0: 0, t1: 1 });
    expect(link.drives(a)).toBe(true);
    link.leave(a);
    expect(link.drives(b)).toBe(true);
  });

  it('hands each member its own copy of the window', () => {
    const link = new ViewportLink();
    const got: Viewport[] = [];
    link.join('a', (v) => got.push(v));
    link.join('b', (v) => got.push(v));
    const vp = { t0: 3, t1: 4 };
    link.publish(null, vp);
    got[0].t0 = 99;
    expect(got[1].t0).toBe(3);
    expect(vp.t0).toBe(3);
  });
});
