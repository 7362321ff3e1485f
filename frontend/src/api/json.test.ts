import { describe, expect, it } from 'vitest';
import { abs, parseJsonPrecise, quoteBigInts, rel, toBig } from './json';

describe('parseJsonPrecise', () => {
  it('keeps int64 epoch nanoseconds exact', () => {
    const text = '{"start_ns":1732521600123456789,"end_ns":1732521600123457001,"dur_ns":212}';
    const naive = JSON.parse(text) as { start_ns: number };
    expect(BigInt(naive.start_ns)).not.toBe(1732521600123456789n); // what we guard against
    const v = parseJsonPrecise(text) as { start_ns: string; end_ns: string; dur_ns: number };
    expect(toBig(v.start_ns)).toBe(1732521600123456789n);
    expect(toBig(v.end_ns) - toBig(v.start_ns)).toBe(212n);
    expect(v.dur_ns).toBe(212);
  });

  it('leaves strings, floats and small numbers alone', () => {
    const text = '{"name":"k<1234567890123456789>","x":[1.5,-2,12345678901234567.5,1e300],"n":-1234567890123456789}';
    const v = parseJsonPrecise(text) as { name: string; x: number[]; n: string };
    expect(v.name).toBe('k<1234567890123456789>');
    expect(v.x[0]).toBe(1.5);
    expect(v.x[1]).toBe(-2);
    expect(typeof v.x[2]).toBe('number');
    expect(v.x[3]).toBe(1e300);
    expect(v.n).toBe('-1234567890123456789');
  });

  it('handles escaped quotes inside strings', () => {
    expect(quoteBigInts('["a\\"1234567890123456789", 1234567890123456789]')).toBe('["a\\"1234567890123456789", "1234567890123456789"]');
  });

  it('converts between absolute and relative nanoseconds exactly', () => {
    const o = 1732521600000000000n;
    expect(rel('1732521600000000007', o)).toBe(7);
    expect(rel(null, o)).toBeNull();
    expect(abs(7, o)).toBe('1732521600000000007');
    expect(abs(-3.4, o)).toBe('1732521599999999997');
  });
});
