/** The deep engines' wire types (GET /sessions/{id}/deep...), a range's start/end as offsets from the origin. */
import { rel, type NsLike } from './json';
import type { components } from './schema';

type S = components['schemas'];
type RangeWire = Omit<S['DeepRange'], 'start_ns' | 'end_ns'> & { start_ns: NsLike; end_ns: NsLike };

export type DeepKernel = S['DeepKernel'];
export type DeepFigures = Pick<DeepKernel, 'instructions' | 'thread_instructions' | 'divergence' | 'samples' | 'stalls' | 'other_samples' | 'not_issued'>;
export type DeepLine = S['DeepLine'];
export type DeepLines = S['DeepLines'];
export type DeepScope = S['DeepScope'];
export type DeepRange = Omit<S['DeepRange'], 'start_ns' | 'end_ns'> & { start: number; end: number };
export type DeepSummary = Omit<S['DeepSummary'], 'ranges'> & { ranges: DeepRange[] };
type Instance<R> = Omit<S['DeepInstance'], 'range'> & { range: R | null };
export type DeepScopeDetail = Omit<S['DeepScopeDetail'], 'instances'> & { instances: Instance<DeepRange>[] };
export type DeepSummaryWire = Omit<S['DeepSummary'], 'ranges'> & { ranges: RangeWire[] };
export type DeepScopeDetailWire = Omit<S['DeepScopeDetail'], 'instances'> & { instances: Instance<RangeWire>[] };

function toRange(r: RangeWire, origin: bigint): DeepRange {
  const { start_ns, end_ns, ...rest } = r;
  return { ...rest, start: rel(start_ns, origin) ?? 0, end: rel(end_ns, origin) ?? 0 };
}

export function toDeepSummary(w: DeepSummaryWire, origin: bigint): DeepSummary {
  return { ...w, ranges: w.ranges.map((r) => toRange(r, origin)) };
}

export function toDeepScope(w: DeepScopeDetailWire, origin: bigint): DeepScopeDetail {
  return { ...w, instances: w.instances.map((i) => ({ ...i, range: i.range === null ? null : toRange(i.range, origin) })) };
}
