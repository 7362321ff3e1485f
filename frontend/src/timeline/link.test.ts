import { describe, expect, it } from 'vitest';
import { ViewportLink } from './link';
import type { Viewport } from './viewport';

describe('ViewportLink', () => {
  it('moves every other member, never echoing back to the one that moved', () => {
    const link = new ViewportLink();
    const seen: Record<string, Viewport[]> = { a: [], b: [], c: [] };
    const a = link.join((v) => seen.a.push(v));
    const b = link.join((v) => seen.b.push(v));
    link.join((v) => seen.c.push(v));
    link.publish(a, { t0: 10, t1: 20 });
    expect(seen).toEqual({ a: [], b: [{ t0: 10, t1: 20 }], c: [{ t0: 10, t1: 20 }] });
    link.publish(null, { t0: 0, t1: 5 });
    expect(seen.a).toEqual([{ t0: 0, t1: 5 }]);
    expect(seen.b.length).toBe(2);
    link.leave(b);
    link.publish(a, { t0: 1, t1: 2 });
    expect(seen.b.length).toBe(2);
    expect(link.size).toBe(2);
  });

  it('hands the keyboard to the member last moved or pointed at', () => {
    const link = new ViewportLink();
    const a = link.join(() => {});
    const b = link.join(() => {});
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
    link.join((v) => got.push(v));
    link.join((v) => got.push(v));
    const vp = { t0: 3, t1: 4 };
    link.publish(null, vp);
    got[0].t0 = 99;
    expect(got[1].t0).toBe(3);
    expect(vp.t0).toBe(3);
  });
});
