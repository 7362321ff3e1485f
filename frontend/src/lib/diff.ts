/**
 * Shaping of a run-vs-run diff (GET /diff) for the compare view: which rows a filter keeps, every figure as
 * text with its sign, and what the numbers are (per step or per session, the noise test, a cut list).
 */
import type { DiffRow, DiffTotal, DiffWire } from '../api/client';
import { fmtBytes, fmtDur, fmtInt } from './format';
import { formatRoute } from './route';

export type RowKind = DiffRow['kind'];
export type RowLabel = DiffRow['label'];
export const ROW_KINDS: RowKind[] = ['kernel', 'scope', 'copy', 'memset'];
export const ROW_LABELS: RowLabel[] = ['slower', 'faster', 'added', 'removed', 'unchanged'];

/** Empty lists keep every kind / label; `text` matches the key case-insensitively. */
export interface RowFilter {
  kinds: RowKind[];
  labels: RowLabel[];
  text: string;
}

export const NO_FILTER: RowFilter = { kinds: [], labels: [], text: '' };

/** The rows a filter keeps, in the backend's order (by impact, largest |Δ| first). */
export function filterRows(rows: DiffRow[], f: RowFilter): DiffRow[] {
  const t = f.text.trim().toLowerCase();
  return rows.filter(
    (r) =>
      (f.kinds.length === 0 || f.kinds.includes(r.kind)) &&
      (f.labels.length === 0 || f.labels.includes(r.label)) &&
      (!t || r.key.toLowerCase().includes(t)),
  );
}

/** A kernel name for a table cell: PyTorch's namespaces and a leading `void` left out (the cell's tooltip
 * and the row's panel show the full name). Other keys as they are. */
export function compactKey(r: Pick<DiffRow, 'kind' | 'key'>): string {
  if (r.kind !== 'kernel') return r.key;
  return r.key.replace(/^void /, '').replace(/\bat::native::|\(anonymous namespace\)::|\bc10::/g, '');
}

/** A row's identity in the view (a key alone is not unique: a scope and a kernel may share a name). */
export function rowId(r: Pick<DiffRow, 'kind' | 'key'>): string {
  return `${r.kind}:${r.key}`;
}

/** How many rows of each label the filter would keep by kind alone (the counts beside the label toggles). */
export function labelCounts(rows: DiffRow[], kinds: RowKind[]): Record<RowLabel, number> {
  const out = Object.fromEntries(ROW_LABELS.map((l) => [l, 0])) as Record<RowLabel, number>;
  for (const r of rows) if (kinds.length === 0 || kinds.includes(r.kind)) out[r.label]++;
  return out;
}

/** What each compared figure is: "per step (12 vs 12 steps)" or "whole session". */
export function scaleText(d: Pick<DiffWire, 'per_step' | 'base' | 'target'>): string {
  return d.per_step ? `per step (${d.base.steps} vs ${d.target.steps} steps)` : 'whole session';
}

/** "showing 60 of 93 rows" when the backend cut the list by impact, else null. */
export function cutText(d: Pick<DiffWire, 'rows' | 'rows_total'>): string | null {
  return d.rows.length < d.rows_total ? `showing ${fmtInt(d.rows.length)} of ${fmtInt(d.rows_total)} rows (largest impact first)` : null;
}

/** The noise settings as one line: the test, its critical z, the smallest change called a change. */
export function noiseText(n: DiffWire['noise']): string {
  return `${n.test}. z_crit ${n.z_crit} (two-sided), min_effect ${fmtPct(n.min_effect)}; rows with fewer than ${n.min_instances} instances on a side change only when their count does.`;
}

function fmtPct(x: number): string {
  return `${+(x * 100).toFixed(1)}%`;
}

const MINUS = '\u2212';

function sign(x: number): string {
  return x > 0 ? '+' : x < 0 ? MINUS : '±';
}

/** Relative change as "+5.2%" / "−16.7%"; "—" where there is no base to divide by (added). */
export function fmtRel(rel: number | null): string {
  if (rel === null || !Number.isFinite(rel)) return '—';
  return `${sign(rel)}${Math.abs(rel * 100).toFixed(1)}%`;
}

/** A signed duration change ("−53.78 µs"). */
export function fmtDeltaNs(ns: number): string {
  return `${sign(ns)}${fmtDur(Math.abs(ns))}`;
}

/** An instance count that may be per step (fractional): "24", "20.5". */
export function fmtCount(x: number): string {
  return Number.isInteger(x) ? fmtInt(x) : (+x.toFixed(1)).toLocaleString('en-US');
}

/** One side's count as shown: per step with the session's total, or the total. */
export function countText(side: DiffRow['base'], perStep: boolean): string {
  return perStep ? `${fmtCount(side.n_value)}/step (${fmtInt(side.n)})` : fmtInt(side.n);
}

/** The largest |Δ| of the rows (the impact bar's full width). */
export function maxImpact(rows: DiffRow[]): number {
  return rows.reduce((a, x) => Math.max(a, Math.abs(x.delta_ns)), 0);
}

/** A row's |Δ| as a fraction of `max` (the impact bar). */
export function impactShare(r: DiffRow, max: number): number {
  return max > 0 ? Math.abs(r.delta_ns) / max : 0;
}

const METRIC_NAME: Record<string, string> = {
  total_gpu_time: 'GPU busy time',
  idle: 'GPU idle',
  kernel_time: 'Kernel time',
  kernels: 'Kernels',
  copy_time: 'Copy time',
  copy_bytes: 'Copied bytes',
  copies: 'Copies',
  memset_time: 'Memset time',
  step_time: 'Step time',
};

export interface TotalView {
  metric: string;
  name: string;
  base: string;
  target: string;
  delta: string;
  rel: string;
  z: string;
  label: DiffTotal['label'];
  /** Why the label is what it is (the chip's tooltip). */
  why: string;
}

export function totalView(t: DiffTotal, noise: DiffWire['noise']): TotalView {
  const f = t.unit === 'ns' ? fmtDur : t.unit === 'bytes' ? (x: number) => fmtBytes(Math.round(x)) : fmtCount;
  const why =
    t.label === 'untested'
      ? 'Not judged: no noise model applies to this figure (it moves between identical runs).'
      : t.tested
        ? `Welch z against the per-instance spread: changed when |z| ≥ ${noise.z_crit} and |change| ≥ ${fmtPct(noise.min_effect)}.`
        : `Exact count: changed when |change| ≥ ${fmtPct(noise.min_effect)}.`;
  return {
    metric: t.metric,
    name: METRIC_NAME[t.metric] ?? t.metric,
    base: f(t.base),
    target: f(t.target),
    delta: t.unit === 'ns' ? fmtDeltaNs(t.delta) : `${sign(t.delta)}${f(Math.abs(t.delta))}`,
    rel: fmtRel(t.rel),
    z: t.z === null ? '—' : t.z.toFixed(1),
    label: t.label,
    why,
  };
}

/** Tooltip of a row's label chip. */
export function rowWhy(r: DiffRow, noise: DiffWire['noise']): string {
  switch (r.label) {
    case 'added':
      return 'No instance in the base session.';
    case 'removed':
      return 'No instance in the target session.';
    case 'unchanged':
      return r.z === null
        ? `Too few instances to test; |change| below ${fmtPct(noise.min_effect)} or not tested.`
        : `Within noise: z ${r.z.toFixed(1)} (needs |z| ≥ ${noise.z_crit} and |change| ≥ ${fmtPct(noise.min_effect)}).`;
    default: {
      const countMoved =
        r.base.n_value > 0 && Math.abs(r.target.n_value - r.base.n_value) >= noise.min_effect * r.base.n_value;
      const z = r.z === null ? '' : `z ${r.z.toFixed(1)}, `;
      if (countMoved)
        return `${z}instance count moved ${fmtPct((r.target.n_value - r.base.n_value) / r.base.n_value)} (counts are exact).`;
      return `${z}|change| ≥ ${fmtPct(noise.min_effect)}.`;
    }
  }
}

/** The Kernels tab of a session at one kernel instance (selected, its name highlighted, framed with a margin). */
export function kernelHref(session: string, k: { id: string; name: string | null; start: number; end: number }): string {
  const pad = Math.max(2000, (k.end - k.start) * 2);
  return formatRoute({ page: 'session', session, tab: 'kernels', kernel: k.id, name: k.name ?? undefined, t0: Math.max(0, k.start - pad), t1: k.end + pad });
}

/** An instance's start from its session's start, to the µs: "12.345 ms", "1.234567 s". */
export function fmtStart(ns: number): string {
  return Math.abs(ns) < 1e9 ? `${(ns / 1e6).toFixed(3)} ms` : `${(ns / 1e9).toFixed(6)} s`;
}

/** A window around [start, end] with a margin on each side, at least `minSpan` wide. */
export function frame(start: number, end: number, minSpan = 10_000): { t0: number; t1: number } {
  const mid = (start + end) / 2;
  const span = Math.max(minSpan, (end - start) * 1.6);
  return { t0: mid - span / 2, t1: mid + span / 2 };
}

/**
 * Two instances of one kernel aligned at their starts: the target's shift against the base (`offset`, ns) and
 * the shared window, in base time, that frames the longer of the two with a margin.
 */
export function alignAt(b: { start: number; end: number }, t: { start: number; end: number }, minSpan = 10_000): { offset: number; vp: { t0: number; t1: number } } {
  const dur = Math.max(b.end - b.start, t.end - t.start);
  const span = Math.max(minSpan, dur * 1.6);
  const t0 = b.start - (span - dur) / 2;
  return { offset: t.start - b.start, vp: { t0, t1: t0 + span } };
}
