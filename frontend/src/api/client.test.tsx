import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SignIn } from '../components/SignIn';
import { Api } from './client';
import { ApiError } from './http';

function mockFetch(status: number, body: string) {
  const f = vi.fn(async (_url: string, _init?: RequestInit) => new Response(body, { status, headers: { 'Content-Type': 'application/json' } }));
  vi.stubGlobal('fetch', f);
  return f;
}

afterEach(() => {
  vi.unstubAllGlobals();
  cleanup();
});

const session = { id: 's 1', origin: 1732521600000000000n } as never;

describe('Api', () => {
  it('sends the bearer token and reads kernel times exactly', async () => {
    const f = mockFetch(
      200,
      '{"id":"7","seq":7,"name":"k","launch_id":1,"device_id":0,"stream_id":7,"corr_id":1,"start_ns":1732521600000000123,"end_ns":1732521600000000456,"dur_ns":333,"scope_inst":null,"stack_id":null,"graph_id":null,"thread_id":null,"mangled":null,"api_start_ns":null,"api_dur_ns":null,"graph_node_id":null,"launch":null,"stack":null,"scope":null}',
    );
    const k = await new Api('tok').kernel(session, '7');
    expect(f.mock.calls[0][0]).toBe('/api/v1/sessions/s%201/kernels/7');
    expect((f.mock.calls[0][1]!.headers as Record<string, string>).Authorization).toBe('Bearer tok');
    expect(k.start).toBe(123);
    expect(k.end).toBe(456);
    expect(k.startAbs).toBe('1732521600000000123');
  });

  it('asks for scope instances with absolute bounds and min_dur_ns, and reads open ones as end null', async () => {
    const f = mockFetch(
      200,
      '{"items":[{"inst":1,"scope_id":0,"path":"train","name":"train","depth":0,"parent_inst":null,"thread_id":9,"start_ns":1732521600000000007,"end_ns":1732521600000001007},{"inst":2,"scope_id":1,"path":"train/fwd","name":"fwd","depth":1,"parent_inst":1,"thread_id":9,"start_ns":1732521600000000100,"end_ns":null}],"next_cursor":null}',
    );
    const r = await new Api('t').scopeInstances(session, { start: -5, end: 2000 }, 12.7, 5000);
    const url = new URL(f.mock.calls[0][0], 'http://x');
    expect(url.pathname).toBe('/api/v1/sessions/s%201/scopes/instances');
    expect(url.searchParams.get('start_ns')).toBe('1732521599999999995');
    expect(url.searchParams.get('end_ns')).toBe('1732521600000002000');
    expect(url.searchParams.get('min_dur_ns')).toBe('12');
    expect(url.searchParams.get('limit')).toBe('5000');
    expect(r.nextCursor).toBeNull();
    expect(r.items[0]).toEqual({ inst: 1, scopeId: 0, path: 'train', name: 'train', depth: 0, parentInst: null, threadId: 9, start: 7, end: 1007 });
    expect(r.items[1].end).toBeNull();
    expect(r.items[1].start).toBe(100);
  });

  it('reads memsets from /memsets as rows of the copy lane', async () => {
    const f = mockFetch(
      200,
      '{"items":[{"id":"12","seq":12,"device_id":0,"stream_id":7,"corr_id":3,"start_ns":1732521600000000040,"end_ns":1732521600000000090,"dur_ns":50,"bytes":4096,"value":0,"mem_kind":"Device","scope_inst":null,"stack_id":null}],"next_cursor":"abc"}',
    );
    const r = await new Api('t').memsets(session, { start: 0, end: 1000 }, 2000);
    const url = new URL(f.mock.calls[0][0], 'http://x');
    expect(url.pathname).toBe('/api/v1/sessions/s%201/memsets');
    expect(url.searchParams.get('limit')).toBe('2000');
    expect(r.nextCursor).toBe('abc');
    expect(r.items).toEqual([
      { id: 'memset:12', device: 0, stream: 7, start: 40, end: 90, dur: 50, bytes: 4096, copyKind: 'memset', throughput: null, corrId: 3, scopeInst: null, srcKind: null, dstKind: null, mode: null, threadId: null, apiStart: null, apiDur: null },
    ]);
  });

  it('reads the launch-API calls per thread with times relative to the session', async () => {
    const f = mockFetch(
      200,
      '{"start_ns":1732521600000000000,"end_ns":1732521600000001000,"bucket_ns":10,"total":3,"buckets":[{"t_ns":1732521600000000100,"thread_id":635,"count":3,"busy_ns":70,"longest":{"kind":"memcpy","id":"1","corr_id":590,"name":"HtoD","device_id":0,"stream_id":7,"gpu_start_ns":1732521600000000200,"start_ns":1732521600000000105,"end_ns":1732521600000000150}}]}',
    );
    const r = await new Api('t').launchTimeline(session, { start: 0, end: 1000 }, 10);
    const url = new URL(f.mock.calls[0][0], 'http://x');
    expect(url.pathname).toBe('/api/v1/sessions/s%201/launches');
    expect(url.searchParams.get('resolution_ns')).toBe('10');
    expect(r.total).toBe(3);
    expect(r.buckets[0]).toEqual({ t: 100, thread: 635, count: 3, busy: 70, longest: { kind: 'memcpy', id: '1', corrId: 590, name: 'HtoD', device: 0, stream: 7, gpuStart: 200, start: 105, end: 150 } });
  });

  it('asks the LOD form with absolute window bounds and the resolution', async () => {
    const f = mockFetch(200, '{"start_ns":1732521600000000000,"end_ns":1732521600001048576,"bucket_ns":1048576,"buckets":[{"t_ns":1732521600000000000,"device_id":0,"stream_id":7,"count":3,"busy_ns":900,"longest":{"id":"9","name":"k","start_ns":1732521600000000010,"end_ns":1732521600000000510}}]}');
    const r = await new Api('t').kernelTimeline(session, { start: 0, end: 1048576 }, 2 ** 20);
    const url = new URL(f.mock.calls[0][0], 'http://x');
    expect(url.searchParams.get('start_ns')).toBe('1732521600000000000');
    expect(url.searchParams.get('end_ns')).toBe('1732521600001048576');
    expect(url.searchParams.get('resolution_ns')).toBe('1048576');
    expect(r.buckets[0]).toEqual({ t: 0, device: 0, stream: 7, count: 3, busy: 900, longest: { id: '9', name: 'k', start: 10, end: 510 } });
  });

  it('raises ApiError with the status and the backend message', async () => {
    mockFetch(403, '{"error":"role read required"}');
    await expect(new Api('t').hosts()).rejects.toMatchObject({ status: 403, message: 'role read required' });
    await expect(new Api('t').hosts()).rejects.toBeInstanceOf(ApiError);
  });
});

describe('SignIn', () => {
  it('shows a clear message on 401 and does not sign in', async () => {
    mockFetch(401, '{"error":"unknown token"}');
    const ok = vi.fn();
    render(<SignIn onSignedIn={ok} />);
    fireEvent.change(screen.getByLabelText('API key'), { target: { value: 'bad' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    await waitFor(() => expect(screen.getByTestId('signin-error').textContent).toMatch(/not accepted \(401\)/));
    expect(ok).not.toHaveBeenCalled();
  });

  it('signs in when the key can read', async () => {
    mockFetch(200, '{"hosts":[]}');
    const ok = vi.fn();
    render(<SignIn onSignedIn={ok} />);
    fireEvent.change(screen.getByLabelText('API key'), { target: { value: ' good ' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    await waitFor(() => expect(ok).toHaveBeenCalledWith('good'));
  });
});
