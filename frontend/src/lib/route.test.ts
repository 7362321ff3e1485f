import { describe, expect, it } from 'vitest';
import { formatRoute, parseRoute, type Route } from './route';

describe('route', () => {
  it('round-trips a dashboard deep link', () => {
    const r: Route = { page: 'session', session: 'abc/1', tab: 'kernels', t0: 1000, t1: 250000, kernel: '42', name: 'ampere_sgemm' };
    const h = formatRoute(r);
    expect(h).toBe('#/s/abc%2F1/kernels?t0=1000&t1=250000&k=42&name=ampere_sgemm');
    expect(parseRoute(h)).toEqual({ ...r, scope: undefined });
  });

  it('round-trips a selected copy or memset (id and start)', () => {
    const r: Route = { page: 'session', session: 's', tab: 'kernels', t0: 0, t1: 9000, copy: { id: 'memset:17', start: 4321 } };
    const h = formatRoute(r);
    expect(h).toBe('#/s/s/kernels?t0=0&t1=9000&copy=memset%3A17%404321');
    expect(parseRoute(h)).toEqual(r);
    expect(parseRoute('#/s/s/kernels?copy=12@88')).toMatchObject({ copy: { id: '12', start: 88 } });
    // no start, or not a number: no copy (nothing to look it up by)
    expect(parseRoute('#/s/s/kernels?copy=12')).toMatchObject({ copy: undefined });
    expect(parseRoute('#/s/s/kernels?copy=12@x')).toMatchObject({ copy: undefined });
  });

  it('defaults to the kernels tab and the session list', () => {
    expect(parseRoute('#/s/x/bogus')).toMatchObject({ page: 'session', session: 'x', tab: 'kernels' });
    expect(parseRoute('')).toMatchObject({ page: 'sessions' });
    expect(parseRoute('#/?host=h1&q=gpt')).toMatchObject({ page: 'sessions', host: 'h1', q: 'gpt', app: undefined });
  });

  it('ignores non-numeric windows', () => {
    expect(parseRoute('#/s/x/system?t0=abc&t1=5')).toMatchObject({ tab: 'system', t0: undefined, t1: 5 });
  });

  it('formats the archive route', () => {
    expect(formatRoute({ page: 'archive' })).toBe('#/archive');
    expect(parseRoute('#/archive')).toEqual({ page: 'archive' });
  });

  it('formats the compare route', () => {
    expect(parseRoute(formatRoute({ page: 'compare', a: 'a', b: 'b' }))).toEqual({ page: 'compare', a: 'a', b: 'b' });
    // a kernel name holds <, >, commas, spaces and colons: the selected row survives the round trip
    const row = 'kernel:void at::native::reduce_kernel<128, 4, at::native::ReduceOp<c10::Half> >(T)';
    const h = formatRoute({ page: 'compare', a: 'x/1', b: 'y', row });
    expect(parseRoute(h)).toEqual({ page: 'compare', a: 'x/1', b: 'y', row });
  });
});
