/** The deep engines' figures for display (contract v6): stall-reason labels, divergence, what a range lost, and
 * which deep-engine kernel a traced launch is. Pure: tested in deep.test.ts. */
import type { DeepFigures, DeepKernel, DeepScope, DeepSummary } from '../api/client';
import { fmtInt } from './format';

/** What a session without deep data says, in one line. */
export const NO_DEEP = 'no deep-engine data: record with engines sass / pc_sampling';

const STALL_PREFIX = 'smsp__pcsamp_warps_issue_stalled_';

/** CUPTI's stall-reason name, short for a label: `smsp__pcsamp_warps_issue_stalled_long_scoreboard` →
 * `long_scoreboard`. Names without the prefix stay whole (the full name is always in the tooltip). */
export function shortStall(reason: string): string {
  return reason.startsWith(STALL_PREFIX) && reason.length > STALL_PREFIX.length ? reason.slice(STALL_PREFIX.length) : reason;
}

/** Average active threads per warp instruction, "24.0 / 32"; "not reported" where SASS metrics did not cover it. */
export function fmtDivergence(d: number | null | undefined): string {
  if (d === null || d === undefined || !Number.isFinite(d)) return 'not reported';
  return `${d.toFixed(1)} / 32`;
}

/** The top stall reason as "long_scoreboard 80%", or "not reported" without PC samples. */
export function topStall(f: DeepFigures): string {
  const s = f.stalls[0];
  if (!s || f.samples === null) return 'not reported';
  return `${shortStall(s.reason)} ${(s.share * 100).toFixed(0)}%`;
}

/** Deep figures per scope path id (scope rows of the tree), the session-wide range left out. */
export function deepByScope(s: DeepSummary | null): Map<number, DeepScope> {
  const m = new Map<number, DeepScope>();
  for (const x of s?.scopes ?? []) if (x.scope_id !== null && !x.whole_session) m.set(x.scope_id, x);
  return m;
}

/** What the deep ranges lost or failed at, as one sentence each; empty when nothing was lost. Never hidden:
 * stall shares are of the samples kept, so a reader must see what was not. */
export function lossNotes(s: Pick<DeepSummary, 'range_totals' | 'errors'>): string[] {
  const t = s.range_totals;
  const out: string[] = [];
  if (t.pc_dropped) out.push(`${fmtInt(t.pc_dropped)} PC samples dropped (stall shares are of those kept)`);
  if (t.pc_buffer_full_ranges) out.push(`the PC-sampling buffer filled up in ${fmtInt(t.pc_buffer_full_ranges)} range${t.pc_buffer_full_ranges === 1 ? '' : 's'} (raise the sampling period)`);
  if (t.sass_dropped) out.push(`${fmtInt(t.sass_dropped)} SASS instruction records dropped`);
  for (const e of s.errors) out.push(`engine error in ${fmtInt(e.ranges)} range${e.ranges === 1 ? '' : 's'}: ${e.error}`);
  const named = s.errors.reduce((a, e) => a + e.ranges, 0);
  if (t.error_ranges > named) out.push(`engine error in ${fmtInt(t.error_ranges - named)} ${named ? 'more ' : ''}range${t.error_ranges - named === 1 ? '' : 's'} (each range's error is listed with its instance)`);
  return out;
}

/** The deep-engine kernel a traced launch is: same mangled name where both have one, else the same name. */
export function deepKernelFor(s: DeepSummary | null, name: string | null, mangled: string | null): DeepKernel | null {
  if (!s) return null;
  if (mangled) {
    const m = s.kernels.find((k) => k.mangled === mangled);
    if (m) return m;
  }
  if (!name) return null;
  return s.kernels.find((k) => k.kernel === name) ?? null;
}

/** Bar lengths for a stall chart: each reason's samples over the largest, 0..1. */
export function stallBars(f: DeepFigures): { reason: string; label: string; samples: number; share: number; frac: number }[] {
  const peak = Math.max(0, ...f.stalls.map((x) => x.samples));
  return f.stalls.map((x) => ({ reason: x.reason, label: shortStall(x.reason), samples: x.samples, share: x.share, frac: peak ? x.samples / peak : 0 }));
}
