/** Data shaping for the Insights panel: the API's insights placed on the session's time axis, their facts as
 * text, and the Kernels-timeline window each one links to. */
import type { InsightFact, InsightsWire } from '../api/client';
import { rel } from '../api/json';
import { fmtBytes, fmtDur, fmtInt } from './format';
import type { Route } from './route';

export type Severity = 'critical' | 'warning' | 'info';

export interface InsightView {
  key: string;
  rule: string;
  severity: Severity;
  title: string;
  suggestion: string;
  /** The evidence's time range, ns from the session origin. */
  start: number;
  end: number;
  device: number | null;
  facts: { label: string; text: string }[];
  involved: { kind: string; name: string; facts: { label: string; text: string }[]; start: number | null; end: number | null }[];
}

export interface InsightsView {
  items: InsightView[];
  counts: Record<Severity, number>;
  /** Rules that could not run, with the reason (nothing hidden: the panel lists them). */
  notChecked: { rule: string; reason: string }[];
  clear: string[];
}

/** One fact's value as text, in its unit; "not reported" stays as the API says it. */
export function factText(f: InsightFact): string {
  const v = f.value;
  if (typeof v === 'string') return v;
  switch (f.unit) {
    case 'ns':
      return fmtDur(v);
    case 'bytes':
      return `${fmtBytes(v)} (${fmtInt(v)} B)`;
    case 'pct':
      return `${v.toFixed(1)} %`;
    case 'mhz':
      return `${fmtInt(v)} MHz`;
    case 'celsius':
      return `${v} °C`;
    case 'mw':
      return `${(v / 1000).toFixed(1)} W`;
    case 'mib':
      return `${fmtInt(Math.round(v))} MiB`;
    case 'gbps':
      return `${v.toFixed(2)} GB/s`;
    default:
      return fmtInt(v);
  }
}

const facts = (fs: InsightFact[]) => fs.map((f) => ({ label: f.label, text: factText(f) }));

export function shapeInsights(w: InsightsWire, origin: bigint): InsightsView {
  return {
    items: w.items.map((i, n) => ({
      key: `${i.rule}-${n}`,
      rule: i.rule,
      severity: i.severity,
      title: i.title,
      suggestion: i.suggestion,
      start: rel(i.start_ns, origin)!,
      end: rel(i.end_ns, origin)!,
      device: i.device_id,
      facts: facts(i.facts),
      involved: i.involved.map((x) => ({
        kind: x.kind,
        name: x.name,
        facts: facts(x.facts),
        start: rel(x.start_ns, origin),
        end: rel(x.end_ns, origin),
      })),
    })),
    counts: { critical: w.counts.critical, warning: w.counts.warning, info: w.counts.info },
    notChecked: w.rules.filter((r) => r.status === 'not_checked').map((r) => ({ rule: r.rule, reason: r.reason })),
    clear: w.rules.filter((r) => r.status === 'clear').map((r) => r.rule),
  };
}

/** The Kernels tab at [start, end] (a point widened to 1 ms, so a single sample still opens a window). */
export function timelineRoute(session: string, start: number, end: number): Route {
  const pad = Math.max(0, 500_000 - (end - start) / 2);
  return { page: 'session', session, tab: 'kernels', t0: Math.max(0, Math.round(start - pad)), t1: Math.round(end + pad) };
}

/** The session list's badge: how many warnings and criticals, or null when there are none. */
export function badgeText(c: Record<Severity, number>): string | null {
  const n = c.critical + c.warning;
  if (!n) return null;
  return c.critical ? `${n} warning${n > 1 ? 's' : ''} (${c.critical} critical)` : `${n} warning${n > 1 ? 's' : ''}`;
}
