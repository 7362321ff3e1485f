/** Throttle flags and NVML clock-event reasons as 0/1 tracks for the System tab (one row per flag or reason). */
import { CLOCK_EVENT_REASONS, decodeClockEvents, type ChartSpec } from './system';

export interface FlagRow {
  key: string;
  label: string;
  /** Per x: on, off, or null (no sample there). */
  values: (boolean | null)[];
  /** On in at least one sample. */
  on: boolean;
}

export interface FlagTracks {
  /** Seconds from session start: the union of the flag metrics' points. */
  x: number[];
  rows: FlagRow[];
  /** Reasons of NVML's list that no sample had on. */
  never: string[];
  /** Samples behind the tracks (the most of any series). */
  samples: number;
  /** Some point stands for several samples (then "on" means on in any of them). */
  mixed: boolean;
}

/**
 * Rows: the boolean flags (throttle_pwr, throttle_therm) per GPU, then each clock-event reason that was on in
 * some sample, decoded from the bitmask's per-point OR (`bits`; a mean of masks would decode into reasons that
 * never happened). Null when the session has none of these metrics.
 */
export function flagTracks(specs: ChartSpec[]): FlagTracks | null {
  const flags = specs.filter((s) => s.info.kind === 'flag' || s.info.kind === 'bitmask');
  if (!flags.length) return null;
  const xs = new Set<number>();
  for (const f of flags) for (const s of f.series) for (const t of s.t) xs.add(t);
  const x = [...xs].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const devices = new Set(flags.flatMap((f) => f.series.map((s) => s.device)));
  const gpu = (d: number | null) => (devices.size > 1 && d !== null ? ` · GPU ${d}` : '');
  const rows: FlagRow[] = [];
  const seen = new Set<string>();
  let samples = 0;
  let mixed = false;
  for (const f of flags) {
    for (const s of f.series) {
      samples = Math.max(samples, s.n.reduce((a, b) => a + b, 0));
      mixed ||= s.n.some((n) => n > 1);
      if (f.info.kind === 'flag') {
        const values = new Array<boolean | null>(x.length).fill(null);
        s.t.forEach((t, i) => (values[index.get(t)!] = s.max[i] >= 0.5));
        rows.push({ key: `${f.metric}:${s.device}`, label: `${f.info.title}${gpu(s.device)}`, values, on: values.some((v) => v === true) });
        continue;
      }
      // bitmask: the OR of each point's masks (n = 1: the one mask, also its mean)
      const masks = s.t.map((_t, i) => s.bits[i] ?? (s.n[i] === 1 ? s.mean[i] : null));
      const all = masks.reduce<number>((a, m) => a | (m ?? 0), 0);
      for (const name of decodeClockEvents(all)) {
        seen.add(name);
        const bit = CLOCK_EVENT_REASONS.find((r) => r.name === name)?.bit ?? parseInt(name.replace('bit 0x', ''), 16);
        const values = new Array<boolean | null>(x.length).fill(null);
        s.t.forEach((t, i) => (values[index.get(t)!] = masks[i] === null ? null : (masks[i]! & bit) !== 0));
        rows.push({ key: `${f.metric}:${s.device}:${name}`, label: `${name}${gpu(s.device)}`, values, on: true });
      }
    }
  }
  const hasMask = flags.some((f) => f.info.kind === 'bitmask');
  const never = hasMask ? CLOCK_EVENT_REASONS.map((r) => r.name).filter((n) => !seen.has(n)) : [];
  return { x: x.map((t) => t / 1e9), rows, never, samples, mixed };
}
