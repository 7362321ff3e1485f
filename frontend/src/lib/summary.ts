/** Data shaping for the kernel summary table. */
import type { KernelSummaryRow } from '../api/client';

export type SummaryKey = 'name' | 'count' | 'total_ns' | 'mean_ns' | 'min_ns' | 'p50_ns' | 'p95_ns' | 'max_ns' | 'share';

export function sortSummary(rows: KernelSummaryRow[], key: SummaryKey, desc: boolean): KernelSummaryRow[] {
  const out = [...rows];
  out.sort((a, b) => {
    let c: number;
    if (key === 'name') c = (a.name ?? '').localeCompare(b.name ?? '');
    else c = (a[key] as number) - (b[key] as number);
    if (desc) c = -c;
    // ties: always by name, ascending
    return c !== 0 ? c : (a.name ?? '').localeCompare(b.name ?? '');
  });
  return out;
}

export function filterSummary(rows: KernelSummaryRow[], q: string): KernelSummaryRow[] {
  const t = q.trim().toLowerCase();
  return t ? rows.filter((r) => (r.name ?? '').toLowerCase().includes(t)) : rows;
}
