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

export function inspectorRows(k: KernelDetail, deviceName?: string | null): InspectorRow[] {
  // The event contract: a field absent from a record takes its schema default; in LaunchConfig the
  // shared/local memory sizes default to 0 (the writer omits zeros). Without a launch record, nothing is known.
  const l: LaunchConfig = k.launch ? { static_shared_bytes: 0, dyn_shared_bytes: 0, local_bytes: 0, ...k.launch } : {};
  const occ = typeof l.occupancy === 'number' ? fmtPct(l.occupancy) : '—';
  const lim = typeof l.limiting_resource === 'string' ? (LIMITER_LABEL[l.limiting_resource] ?? l.limiting_resource) : null;
  return [
    { key: 'name', label: 'Kernel', value: k.name ?? '(name not yet known)' },
    { key: 'duration', label: 'Duration', value: fmtDur(k.dur) },
    { key: 'dur_ns', label: 'Duration (ns)', value: String(k.dur) },
    { key: 'start', label: 'Start', value: `+${fmtDur(k.start)} from session start` },
    { key: 'grid', label: 'Grid', value: dim3(l.grid) },
    { key: 'block', label: 'Block', value: dim3(l.block) },
    { key: 'registers', label: 'Registers / thread', value: numOr(l.num_regs) },
    { key: 'static_smem', label: 'Shared memory (static)', value: numOr(l.static_shared_bytes, bytes) },
    { key: 'dynamic_smem', label: 'Shared memory (dynamic)', value: numOr(l.dyn_shared_bytes, bytes) },
    { key: 'local', label: 'Local memory / thread', value: numOr(l.local_bytes, bytes) },
    { key: 'occupancy', label: 'Theoretical occupancy', value: lim ? `${occ} (limited by ${lim})` : occ },
    { key: 'stream', label: 'Stream', value: String(k.stream) },
    { key: 'device', label: 'Device', value: `GPU ${k.device}${deviceName ? ` · ${deviceName}` : ''}` },
    { key: 'scope', label: 'Scope', value: k.scope?.path ?? (k.scopeInst !== null ? `instance ${k.scopeInst}` : '—') },
    { key: 'corr', label: 'Correlation id', value: String(k.corrId) },
    { key: 'api', label: 'Launch API call', value: k.apiDur !== null ? fmtDur(k.apiDur) : '—' },
    { key: 'id', label: 'Kernel id', value: k.id },
  ];
}
