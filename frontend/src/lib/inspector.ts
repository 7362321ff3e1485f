/** Data shaping for the kernel inspector: the rows it shows, from a KernelDetail. */
import type { KernelDetail, LaunchConfig } from '../api/client';
import { fmtBytes, fmtDur, fmtPct } from './format';

export interface InspectorRow {
  key: string;
  label: string;
  value: string;
}

const dim3 = (v: unknown): string => (Array.isArray(v) ? `(${v.join(', ')})` : '—');
const numOr = (v: unknown, f: (n: number) => string = String): string => (typeof v === 'number' ? f(v) : '—');
/** Bytes readable at a glance, with the exact count when rounded ("48.0 KiB (49152 B)"). */
const bytes = (n: number): string => (n >= 1024 ? `${fmtBytes(n)} (${n} B)` : fmtBytes(n));

export const LIMITER_LABEL: Record<string, string> = {
  registers: 'registers',
  shared_memory: 'shared memory',
  warps: 'warps per SM',
  blocks: 'blocks per SM',
};

/**
 * A kernel's name without return type, template arguments or parameter list, the way one says it:
 * "void at::native::vectorized_elementwise_kernel<8, …>(int, …)" → "at::native::vectorized_elementwise_kernel".
 * The full name stays available (the inspector shows it on demand).
 */
export function shortKernelName(name: string): string {
  let s = '';
  let depth = 0;
  for (const ch of name) {
    if (ch === '<') depth++;
    else if (ch === '>' && depth > 0) depth--;
    else if (depth === 0) s += ch;
  }
  s = s.trim();
  // the parameter list: the parenthesis that closes at the end and the one that opens it
  if (s.endsWith(')')) {
    let d = 0;
    for (let i = s.length - 1; i >= 0; i--) {
      if (s[i] === ')') d++;
      else if (s[i] === '(' && --d === 0) {
        if (i > 0) s = s.slice(0, i).trim();
        break;
      }
    }
  }
  // the return type: whatever precedes the last space outside parentheses ("void", "static void")
  let d = 0;
  for (let i = s.length - 1; i >= 0; i--) {
    if (s[i] === ')') d++;
    else if (s[i] === '(') d--;
    else if (s[i] === ' ' && d === 0) {
      s = s.slice(i + 1);
      break;
    }
  }
  return s || name;
}

/** ns from the session start, exact (BigInt), in seconds with all nine decimals: "+7.609512345 s". */
export function exactOffset(absNs: string, origin: bigint): string {
  const rel = BigInt(absNs) - origin;
  const sign = rel < 0n ? '-' : '+';
  const a = rel < 0n ? -rel : rel;
  return `${sign}${a / 1_000_000_000n}.${(a % 1_000_000_000n).toString().padStart(9, '0')} s`;
}

/** Theoretical occupancy and what limits it; at the maximum nothing holds it back, so it says so. */
export function occupancyText(occupancy: unknown, limiter: unknown): string {
  if (typeof occupancy !== 'number') return '—';
  const lim = typeof limiter === 'string' ? (LIMITER_LABEL[limiter] ?? limiter) : null;
  if (occupancy >= 1) return lim ? `${fmtPct(occupancy)} (the most the SM allows; ${lim} also at their limit)` : `${fmtPct(occupancy)} (the most the SM allows)`;
  return lim ? `${fmtPct(occupancy)} (limited by ${lim})` : fmtPct(occupancy);
}

export function inspectorRows(k: KernelDetail, deviceName?: string | null, origin?: bigint): InspectorRow[] {
  // The event contract: a field absent from a record takes its schema default; in LaunchConfig the
  // shared/local memory sizes default to 0 (the writer omits zeros). Without a launch record, nothing is known.
  const l: LaunchConfig = k.launch ? { static_shared_bytes: 0, dyn_shared_bytes: 0, local_bytes: 0, ...k.launch } : {};
  // exact from the absolute ns strings when the origin is known (a float offset loses ns past ~104 days)
  const at = (rel: number) => `+${fmtDur(rel)}`;
  const start = origin !== undefined ? exactOffset(k.startAbs, origin) : at(k.start);
  const api =
    k.apiStart !== null
      ? `${k.apiDur !== null ? fmtDur(k.apiDur) : 'duration not reported'} · called ${fmtDur(k.start - k.apiStart)} before the kernel started`
      : k.apiDur !== null
        ? fmtDur(k.apiDur)
        : 'not reported';
  return [
    { key: 'name', label: 'Kernel', value: k.name !== null ? shortKernelName(k.name) : '(name not yet known)' },
    { key: 'duration', label: 'Duration', value: fmtDur(k.dur) },
    { key: 'dur_ns', label: 'Duration (ns)', value: String(k.dur) },
    { key: 'start', label: 'Start', value: `${start} from session start` },
    { key: 'grid', label: 'Grid', value: dim3(l.grid) },
    { key: 'block', label: 'Block', value: dim3(l.block) },
    { key: 'registers', label: 'Registers / thread', value: numOr(l.num_regs) },
    { key: 'static_smem', label: 'Shared memory (static)', value: numOr(l.static_shared_bytes, bytes) },
    { key: 'dynamic_smem', label: 'Shared memory (dynamic)', value: numOr(l.dyn_shared_bytes, bytes) },
    { key: 'local', label: 'Local memory / thread', value: numOr(l.local_bytes, bytes) },
    { key: 'occupancy', label: 'Theoretical occupancy', value: occupancyText(l.occupancy, l.limiting_resource) },
    { key: 'stream', label: 'Stream', value: String(k.stream) },
    { key: 'device', label: 'Device', value: `GPU ${k.device}${deviceName ? ` · ${deviceName}` : ''}` },
    { key: 'scope', label: 'Scope', value: k.scope?.path ?? (k.scopeInst !== null ? `instance ${k.scopeInst}` : '—') },
    { key: 'corr', label: 'Correlation id', value: String(k.corrId) },
    { key: 'api', label: 'Launch API call', value: api },
    { key: 'id', label: 'Kernel id', value: k.id },
  ];
}
