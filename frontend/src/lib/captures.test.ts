import { describe, expect, it } from 'vitest';
import type { CaptureRequest } from '../api/captures';
import { parseRoute, formatRoute } from './route';
import { requestStatus, sessionStatus, settled, windowRoute } from './captures';
// The backend's real answer for a remote capture that two real client sessions acted on (see the file's _comment).
import real from './fixtures/remote_capture.json';

const cap = real.capture as unknown as CaptureRequest;
const [done, off, unwritable] = [...cap.sessions].sort((a, b) => (a.status === 'done' ? -1 : b.status === 'done' ? 1 : a.session_id.localeCompare(b.session_id)));

describe('remote capture status', () => {
  it('says what became of each session, with the reason', () => {
    expect(sessionStatus(done)).toBe('done');
    const failed = cap.sessions.filter((s) => s.status === 'failed').map(sessionStatus).sort();
    expect(failed).toEqual([
      'failed: not delivered: PermissionError: [Errno 13]',
      'failed: refused: remote capture is off in this process (GPUFL_REMOTE_CAPTURE=0)',
    ]);
    expect(off.status).toBe('failed');
    expect(unwritable.status).toBe('failed');
  });
  it('names the engines a session lacks', () => {
    expect(sessionStatus({ status: 'running', reason: null, answer: { missing: ['pc_sampling'] } })).toBe(
      'running (without pc_sampling: not run by this session)',
    );
  });
  it('says the request as a whole', () => {
    expect(requestStatus(cap)).toBe('done (3 sessions)');
    expect(requestStatus({ status: 'expired', sessions: [] })).toMatch(/^expired: no agent/);
    expect(settled(cap)).toBe(true);
    expect(settled({ status: 'delivered', expired: false })).toBe(false);
  });
  it("links a session's window on its Kernels timeline, in ns from the session's start", () => {
    const to = windowRoute(done);
    const w = done.window as { start_ns: number; end_ns: number };
    expect(to).toEqual({
      page: 'session',
      session: done.session_id,
      tab: 'kernels',
      t0: Number(BigInt(w.start_ns) - BigInt(done.start_ns!)),
      t1: Number(BigInt(w.end_ns) - BigInt(done.start_ns!)),
    });
    const at = to as { t0: number; t1: number };
    expect(at.t0 >= 0 && at.t1 >= at.t0).toBe(true);
    expect(parseRoute(formatRoute(to!))).toMatchObject({ page: 'session', session: done.session_id, tab: 'kernels' });
    expect(windowRoute(off)).toBeNull();
    expect(parseRoute('#/captures')).toEqual({ page: 'captures' });
  });
});
