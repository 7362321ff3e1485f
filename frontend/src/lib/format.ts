/** Formatting for durations, sizes and times. */

export function fmtDur(ns: number | null | undefined): string {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '—';
  const a = Math.abs(ns);
  if (a < 1e3) return `${round(ns, 0)} ns`;
  if (a < 1e6) return `${round(ns / 1e3, a < 1e4 ? 2 : 1)} µs`;
  if (a < 1e9) return `${round(ns / 1e6, a < 1e7 ? 2 : 1)} ms`;
  if (a < 60e9) return `${round(ns / 1e9, 2)} s`;
  if (a < 3600e9) return `${Math.floor(ns / 60e9)} min ${Math.round((ns % 60e9) / 1e9)} s`;
  return `${Math.floor(ns / 3600e9)} h ${Math.round((ns % 3600e9) / 60e9)} min`;
}

function round(x: number, digits: number): string {
  return x.toFixed(digits);
}

export function fmtBytes(b: number | null | undefined): string {
  if (b === null || b === undefined || !Number.isFinite(b)) return '—';
  if (b < 1024) return `${b} B`;
  if (b < 1024 ** 2) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 1024 ** 3) return `${(b / 1024 ** 2).toFixed(1)} MiB`;
  return `${(b / 1024 ** 3).toFixed(2)} GiB`;
}

export function fmtPct(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return `${(x * 100).toFixed(digits)}%`;
}

export function fmtInt(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return x.toLocaleString('en-US');
}

/** Absolute ns (BigInt) → local date-time string with millisecond precision. */
export function fmtWallClock(ns: bigint | null | undefined): string {
  if (ns === null || ns === undefined) return '—';
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A relative offset (ns from the session start) as `+1.234 s` style axis label, with precision suited to `step`. */
export function fmtOffset(ns: number, step: number): string {
  const a = Math.abs(step);
  if (a >= 1e9) return `${(ns / 1e9).toFixed(a >= 10e9 ? 0 : 1)} s`;
  if (a >= 1e6) return `${(ns / 1e6).toFixed(a >= 10e6 ? 0 : 1)} ms`;
  if (a >= 1e3) return `${(ns / 1e3).toFixed(a >= 10e3 ? 0 : 1)} µs`;
  return `${ns.toFixed(0)} ns`;
}

/**
 * An axis tick at `ns` (offset from the session start) for ticks `step` apart on an axis reaching `maxAbs`:
 * one unit for the whole axis, the one that fits its largest label (ns, µs, ms, s), with as many decimals as
 * the step needs ("583.0 ms", not "583000 µs"; "7.60950 s" deep in a long session).
 */
export function fmtTick(ns: number, step: number, maxAbs: number): string {
  const [unit, name] = maxAbs >= 1e9 ? [1e9, 's'] : maxAbs >= 1e6 ? [1e6, 'ms'] : maxAbs >= 1e3 ? [1e3, 'µs'] : [1, 'ns'];
  const r = Math.abs(step) / unit;
  const decimals = unit === 1 ? 0 : r >= 10 ? 0 : r >= 1 ? 1 : Math.min(9, Math.ceil(-Math.log10(r) - 1e-9));
  return `${(ns / unit).toFixed(decimals)} ${name}`;
}
