/** What the Captures page (#22) says about a remote capture and each session's part in it: pure, tested alone. */
import type { CaptureRequest, CaptureSession } from '../api/captures';
import { toBig } from '../api/json';
import type { Route } from './route';

const REASONS: Record<string, string> = {
  window_open: 'refused: a window was open and could not be extended (one window at a time)',
  engine_unavailable: 'refused: the session runs none of the engines asked for (tracing continuously: none of the deep ones)',
  budget_spent: "refused: the session's remote-capture budget for this hour is spent",
  remote_capture_disabled: 'refused: remote capture is off in this process (GPUFL_REMOTE_CAPTURE=0)',
  no_answer: 'no answer from the session after the request expired',
  continuous: 'traces continuously: its kernels are recorded anyway',
  session_not_stored: 'none of its records are stored yet',
};

/** One session's status in words: the state, and why where there is a reason. */
export function sessionStatus(s: Pick<CaptureSession, 'status' | 'reason' | 'answer'>): string {
  const why = s.reason ? (REASONS[s.reason] ?? s.reason) : null;
  const missing = (s.answer?.missing as string[] | undefined) ?? [];
  const lacks = missing.length ? ` (without ${missing.join(', ')}: not run by this session)` : '';
  return why ? `${s.status}: ${why}${lacks}` : `${s.status}${lacks}`;
}

/** The request's status in words. */
export function requestStatus(r: Pick<CaptureRequest, 'status' | 'sessions'>): string {
  if (r.status === 'requested') return 'requested: no agent has handed it on yet';
  if (r.status === 'expired') return 'expired: no agent found a live session of the app on a matching host';
  const n = r.sessions.length;
  return `${r.status} (${n} session${n === 1 ? '' : 's'})`;
}

/** Whether the page should keep asking: some session may still change. */
export function settled(r: Pick<CaptureRequest, 'status' | 'expired'>): boolean {
  return r.status === 'done' || r.status === 'failed' || (r.status === 'expired' && r.expired);
}

/** The session's window on the Kernels timeline (ns from the session's start), or null without one. */
export function windowRoute(s: Pick<CaptureSession, 'session_id' | 'start_ns' | 'window'>): Route | null {
  const w = s.window as { start_ns?: number | string; end_ns?: number | string } | null;
  if (!w || s.start_ns === null || w.start_ns === undefined || w.end_ns === undefined) return null;
  const origin = toBig(s.start_ns);
  return {
    page: 'session',
    session: s.session_id,
    tab: 'kernels',
    t0: Number(toBig(w.start_ns) - origin),
    t1: Number(toBig(w.end_ns) - origin),
  };
}
