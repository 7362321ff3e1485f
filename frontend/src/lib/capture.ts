/**
 * What was recorded when (issue #21): a session whose capture mode is not `continuous` traced kernels only inside
 * its capture windows (capture_window records), and any session may have capture gaps (capture_gap: tracing
 * stepped aside for another profiler). Outside a window, or inside a gap, kernels were not recorded: the Kernels
 * timeline shades that time with a label so that "not recorded" is never read as "idle", and the Kernels tab
 * says in one line what was recorded. Continuous sessions without gaps (every session before contract v5) get
 * no model at all: nothing drawn, nothing said.
 */
import type { CaptureWindowsWire, SessionDetail } from '../api/client';
import { rel, type NsLike } from '../api/json';
import { fmtDur, fmtPct } from './format';

export interface Span {
  start: number;
  end: number;
}

/** A stretch of the session where kernels were not recorded, and why (the band's label). */
export interface NotRecorded extends Span {
  label: string;
}

export interface CaptureModel {
  /** The mode as the session asked for it, for people: "windows 2s/60s", "on-demand", "continuous". */
  mode: string;
  /** Recorded stretches (windows; the whole session in continuous mode), merged, ns from the session's origin. */
  recorded: Span[];
  /** Stretches not recorded, by start: outside every window, and capture gaps. */
  notRecorded: NotRecorded[];
  windows: number;
  gaps: number;
  recordedNs: number;
  sessionNs: number;
  /** The Kernels tab's line. */
  summary: string;
}

/** "windows:2s/60s" → "windows 2s/60s"; absent → "continuous" (sessions before contract v5). */
export function modeText(options: unknown): string {
  const c = options && typeof options === 'object' ? (options as Record<string, unknown>).capture : undefined;
  return typeof c === 'string' && c ? c.replace(':', ' ') : 'continuous';
}

/** Sorted, overlapping or touching spans joined; empty ones dropped. */
export function merge(spans: Span[]): Span[] {
  const out: Span[] = [];
  for (const s of [...spans].filter((x) => x.end > x.start).sort((a, b) => a.start - b.start)) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

/** [lo, hi] less the (merged) spans. */
export function complement(spans: Span[], lo: number, hi: number): Span[] {
  const out: Span[] = [];
  let t = lo;
  for (const s of merge(spans)) {
    if (s.end <= t) continue;
    if (s.start >= hi) break;
    if (s.start > t) out.push({ start: t, end: s.start });
    t = Math.max(t, s.end);
  }
  if (t < hi) out.push({ start: t, end: hi });
  return out;
}

const total = (spans: Span[]) => spans.reduce((n, s) => n + (s.end - s.start), 0);

/**
 * The model for one session: `wire` from GET /capture-windows, `notices` the session detail's notice and
 * capture_gap records. null when there is nothing to show (continuous, no gaps).
 */
export function captureModel(session: Pick<SessionDetail, 'origin' | 'rangeEnd' | 'header' | 'notices'>, wire: CaptureWindowsWire | null): CaptureModel | null {
  const o = session.origin;
  const end = session.rangeEnd;
  const clip = (s: Span): Span => ({ start: Math.max(0, s.start), end: Math.min(end, s.end) });
  const at = (v: unknown, dflt: number) => (v === null || v === undefined ? dflt : rel(v as NsLike, o) ?? dflt);
  const gapRecs = session.notices.filter((n) => n.type === 'capture_gap');
  const gaps: NotRecorded[] = gapRecs
    .map((g) => ({ ...clip({ start: at(g.start_ns, 0), end: at(g.end_ns, end) }), label: `not recorded (tracing stepped aside: ${String(g.reason ?? 'another profiler')})` }))
    .filter((g) => g.end > g.start);
  const mode = modeText(session.header?.options);
  const continuous = (wire?.mode ?? 'continuous') === 'continuous';
  if (continuous && !gaps.length) return null;
  const wins = (wire?.windows ?? []).map((w) => clip({ start: at(w.start_ns, 0), end: at(w.end_ns, end) }));
  const traced = continuous ? [{ start: 0, end }] : merge(wins);
  const label = `not recorded (capture: ${mode})`;
  const outside = continuous ? [] : complement(traced, 0, end).map((s) => ({ ...s, label }));
  const notRecorded = [...outside, ...gaps].sort((a, b) => a.start - b.start);
  const recorded = complement(notRecorded, 0, end);
  const recordedNs = total(recorded);
  const parts = [`Capture: ${mode}`];
  if (!continuous) {
    const n = (wire?.windows ?? []).length;
    parts.push(n ? `${n} window${n === 1 ? '' : 's'}` : 'no window was opened');
  }
  if (gaps.length) parts.push(`${gaps.length} capture gap${gaps.length === 1 ? '' : 's'} (tracing stepped aside)`);
  const share = end > 0 ? recordedNs / end : 0;
  const summary = `${parts.join(' · ')} · kernels recorded in ${fmtDur(recordedNs)} of ${fmtDur(end)} (${fmtPct(share)}); shaded time was not recorded, not idle.`;
  return { mode, recorded, notRecorded, windows: (wire?.windows ?? []).length, gaps: gaps.length, recordedNs, sessionNs: end, summary };
}

/** The label of the not-recorded stretch at time t (the timeline's tooltip), null inside a recorded one. */
export function notRecordedAt(m: CaptureModel | null, t: number): string | null {
  if (!m) return null;
  const hits = m.notRecorded.filter((s) => t >= s.start && t < s.end).map((s) => s.label);
  return hits.length ? [...new Set(hits)].join('\n') : null;
}
