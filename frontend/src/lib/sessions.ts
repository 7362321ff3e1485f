/** Data shaping for the session selector. */
import type { SessionInfo } from '../api/client';

/** Case-insensitive search over the fields a user would type: app, host, session id, job id, GPU names. */
export function matchesSearch(s: SessionInfo, q: string): boolean {
  const t = q.trim().toLowerCase();
  if (!t) return true;
  const hay = [s.app, s.host, s.id, s.jobId, ...s.gpus].filter(Boolean).join(' ').toLowerCase();
  return t.split(/\s+/).every((w) => hay.includes(w));
}

/** GPU names as "2× NVIDIA H100 80GB HBM3" (identical names grouped). */
export function gpuSummary(gpus: string[]): string {
  if (!gpus.length) return '—';
  const counts = new Map<string, number>();
  for (const g of gpus) counts.set(g, (counts.get(g) ?? 0) + 1);
  return [...counts.entries()].map(([g, n]) => (n > 1 ? `${n}× ${g}` : g)).join(', ');
}

/** A datetime-local input value (local time) → ns since the epoch as a decimal string, or undefined. */
export function localInputToNs(v: string | undefined): string | undefined {
  if (!v) return undefined;
  const ms = new Date(v).getTime();
  if (!Number.isFinite(ms)) return undefined;
  return (BigInt(ms) * 1_000_000n).toString();
}

/** Newest first, by start (sessions without a start last), ties by id — the order the API promises. */
export function sortNewestFirst(items: SessionInfo[]): SessionInfo[] {
  return [...items].sort((a, b) => {
    const x = a.start ?? a.last;
    const y = b.start ?? b.last;
    return x === y ? a.id.localeCompare(b.id) : x > y ? -1 : 1;
  });
}
