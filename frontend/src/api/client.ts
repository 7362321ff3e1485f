/**
 * Typed client for the public /api/v1 API. Wire types come from the OpenAPI document (schema.d.ts, generated
 * by `npm run gen:api` and checked against the backend by `npm run check:api`). Every absolute *_ns value is
 * converted here, once, into a Number offset from the session's origin (its session_start), so the rest of the
 * UI never handles int64 epoch nanoseconds.
 */
import { apiGet, apiPost, type Query } from './http';
import { abs, rel, toBig, type NsLike } from './json';
import { toDeepScope, toDeepSummary, type DeepLines, type DeepScopeDetail, type DeepScopeDetailWire, type DeepSummary, type DeepSummaryWire } from './deep';
import { toLaunchTimeline, type LaunchTimeline, type LaunchTimelineWire } from './launches';
import type { components } from './schema';

type S = components['schemas'];
/** A wire type whose *_ns fields may arrive as strings (see json.ts) — we read them through toBig/rel. */
type W<T> = { [K in keyof T]: K extends `${string}_ns` ? (T[K] extends number ? NsLike : T[K] extends number | null ? NsLike | null : T[K]) : T[K] };

export type SessionItemWire = W<S['SessionItem']>;
export type HostsResponse = S['HostsResponse'];
export type KernelSummary = S['KernelSummary'];
export type KernelSummaryRow = S['KernelSummaryRow'];
export type KernelHistogram = S['KernelHistogram'];
export type ScopeNode = S['ScopeNode'];
export type ScopeTree = S['ScopeTree'];
export type ScopeKernels = S['ScopeKernels'];
export type { DeepFigures, DeepKernel, DeepLine, DeepLines, DeepRange, DeepScope, DeepScopeDetail, DeepSummary } from './deep';
export type StreamStatus = W<S['StreamStatus']>;
export type SessionTotals = S['SessionTotals'];
export type StackFrame = S['StackFrame'];
export type InsightsWire = W<S['Insights']> & { items: (W<S['Insight']> & { involved: W<S['InsightInvolved']>[] })[] };
export type InsightFact = S['InsightFact'];
/** Run-vs-run diff. Its *_ns figures are durations (per step or per session), not timestamps, so they stay Numbers;
 * only the session refs' start_ns may arrive as a string (19 digits). */
export type DiffWire = Omit<S['Diff'], 'base' | 'target'> & { base: W<S['DiffSessionRef']>; target: W<S['DiffSessionRef']> };
export type DiffRow = S['DiffRow'];
/** The raw-log archive (#23): its *_ns are wall-clock upload/job times, kept as wire values (NsLike). */
export type ArchivePage = Omit<S['ArchivePage'], 'items'> & { items: W<S['ArchivedSessionItem']>[] };
export type ArchivedSession = W<S['ArchivedSessionItem']>;
export type RestoreJob = W<S['RestoreJobInfo']>;
export type DiffTotal = S['DiffTotal'];
/** When kernel tracing was on (contract v5): windows are capture_window records as written (absolute ns). */
export type CaptureWindowsWire = S['CaptureWindows'];

export interface SessionInfo {
  id: string;
  host: string | null;
  app: string | null;
  pid: number | null;
  jobId: string | null;
  start: bigint | null;
  end: bigint | null;
  last: bigint;
  gpus: string[];
  kernels: number;
  memcpys: number;
  records: number;
  ended: boolean;
  cutShort: boolean;
  /** (end ?? last) - start, ns; null before session_start has arrived. */
  durationNs: number | null;
}

export function toSessionInfo(w: SessionItemWire): SessionInfo {
  const start = w.start_ns === null ? null : toBig(w.start_ns);
  const end = w.end_ns === null ? null : toBig(w.end_ns);
  const last = toBig(w.last_ns);
  return {
    id: w.session_id,
    host: w.host,
    app: w.app,
    pid: w.pid,
    jobId: w.job_id,
    start,
    end,
    last,
    gpus: w.gpus,
    kernels: w.kernels,
    memcpys: w.memcpys,
    records: w.records,
    ended: w.ended,
    cutShort: w.cut_short,
    durationNs: start === null ? null : Number((end !== null && end > last ? end : last) - start),
  };
}

export interface SessionPage {
  items: SessionInfo[];
  nextCursor: string | null;
}

export interface DeviceInfo {
  device_id: number;
  name?: string | null;
  [k: string]: unknown;
}

export interface SessionDetail {
  id: string;
  host: string | null;
  app: string | null;
  header: Record<string, unknown> | null;
  /** Absolute ns every relative offset of this session is measured from. */
  origin: bigint;
  /** End of the session's data, ns from origin. */
  rangeEnd: number;
  devices: DeviceInfo[];
  streams: StreamStatus[];
  totals: SessionTotals;
  dropped: number;
  cutShort: boolean;
  notices: Record<string, unknown>[];
}

export function toSessionDetail(w: W<S['SessionDetail']>): SessionDetail {
  const header = w.header ?? null;
  const ns = (v: NsLike | null): v is NsLike => v !== null;
  const firsts = w.streams.map((s) => s.first_ns as NsLike | null).filter(ns).map((v) => toBig(v));
  const lasts = w.streams.map((s) => s.last_ns as NsLike | null).filter(ns).map((v) => toBig(v));
  const hStart = header && header.start_ns !== undefined ? toBig(header.start_ns as NsLike) : null;
  const origin = hStart ?? (firsts.length ? firsts.reduce((a, b) => (b < a ? b : a)) : 0n);
  const lastAbs = lasts.length ? lasts.reduce((a, b) => (b > a ? b : a)) : origin;
  return {
    id: w.session_id,
    host: (header?.host as string | undefined) ?? null,
    app: (header?.app as string | undefined) ?? null,
    header,
    origin,
    rangeEnd: Math.max(1, Number(lastAbs - origin)),
    devices: w.devices as DeviceInfo[],
    streams: w.streams,
    totals: w.totals,
    dropped: w.dropped,
    cutShort: w.cut_short,
    notices: w.notices,
  };
}

export interface LodBucket {
  t: number;
  device: number;
  stream: number;
  count: number;
  busy: number;
  longest: { id: string; name: string | null; start: number; end: number };
}

export interface KernelTimeline {
  start: number;
  end: number;
  bucketNs: number;
  buckets: LodBucket[];
}

/** The memory lane's level of detail: copies (by copy kind) or memsets ("memset") that started in a bucket. */
export interface MemoryBucket {
  t: number;
  kind: string;
  device: number;
  stream: number;
  count: number;
  bytes: number;
  busy: number;
  /** The bucket's longest copy or memset (its id as MemcpyRow's: memsets prefixed "memset:"). */
  longest: { id: string; start: number; end: number; bytes: number };
}

export interface MemoryTimeline {
  start: number;
  end: number;
  bucketNs: number;
  buckets: MemoryBucket[];
}

/** GET /range: what ran in a selected time range (wire shape; ns as numbers, durations). */
export type RangeSummary = S['RangeSummary'];

/** One search hit (times relative to the session origin). */
export interface SearchMatch {
  kind: 'kernel' | 'scope';
  id: string;
  name: string | null;
  start: number;
  end: number | null;
  device: number | null;
  stream: number | null;
  threadId: number | null;
  depth: number | null;
}

export interface SearchResult {
  kernels: number;
  scopes: number;
  match: SearchMatch | null;
}

export interface KernelRow {
  id: string;
  seq: number;
  name: string | null;
  launchId: number;
  device: number;
  stream: number;
  corrId: number;
  start: number;
  end: number;
  dur: number;
  scopeInst: number | null;
  stackId: number | null;
  graphId: number | null;
  threadId: number | null;
}

function toKernelRow(w: W<S['KernelRow']>, o: bigint): KernelRow {
  return {
    id: w.id,
    seq: w.seq,
    name: w.name,
    launchId: w.launch_id,
    device: w.device_id,
    stream: w.stream_id,
    corrId: w.corr_id,
    start: rel(w.start_ns, o)!,
    end: rel(w.end_ns, o)!,
    dur: Number(w.dur_ns),
    scopeInst: w.scope_inst,
    stackId: w.stack_id,
    graphId: w.graph_id,
    threadId: w.thread_id,
  };
}

export interface LaunchConfig {
  name?: string;
  grid?: [number, number, number];
  block?: [number, number, number];
  num_regs?: number;
  static_shared_bytes?: number;
  dyn_shared_bytes?: number;
  local_bytes?: number;
  occupancy?: number | null;
  limiting_resource?: string | null;
  max_active_blocks?: number | null;
  [k: string]: unknown;
}

export interface KernelDetail extends KernelRow {
  mangled: string | null;
  apiStart: number | null;
  apiDur: number | null;
  graphNodeId: number | null;
  launch: LaunchConfig | null;
  stack: StackFrame[] | null;
  scope: S['ScopeRef'] | null;
  /** Absolute start/end as exact decimal strings (for display and tests). */
  startAbs: string;
  endAbs: string;
}

export interface MemcpyRow {
  id: string;
  device: number;
  stream: number;
  start: number;
  end: number;
  dur: number;
  bytes: number;
  copyKind: string;
  throughput: number | null;
  corrId: number;
  scopeInst: number | null;
  /** Copies only (memsets: null): memory kinds, sync/async (v3+), the calling thread and the call's timing. */
  srcKind: string | null;
  dstKind: string | null;
  mode: string | null;
  threadId: number | null;
  apiStart: number | null;
  apiDur: number | null;
}

/** A page of the memory lane: copies, or memsets shaped like them. */
export interface MemoryPage {
  items: MemcpyRow[];
  nextCursor: string | null;
}

/** One scope instance (scope_begin .. scope_end), times relative to the session origin. */
export interface ScopeInstance {
  inst: number;
  scopeId: number;
  path: string;
  name: string;
  depth: number;
  parentInst: number | null;
  threadId: number;
  start: number;
  /** null while the instance is open (no scope_end stored yet). */
  end: number | null;
}

export function toScopeInstance(w: W<S['ScopeInstance']>, o: bigint): ScopeInstance {
  return {
    inst: w.inst,
    scopeId: w.scope_id,
    path: w.path,
    name: w.name,
    depth: w.depth,
    parentInst: w.parent_inst,
    threadId: w.thread_id,
    start: rel(w.start_ns, o)!,
    end: rel(w.end_ns, o),
  };
}

export interface SystemSeries {
  metric: string;
  device: number | null;
  t: number[];
  min: number[];
  max: number[];
  mean: number[];
  /** Samples per point (1: the point is one sample, not a mean). */
  n: number[];
  /** Bitmask metrics only (throttle_reasons): OR of the point's masks; null elsewhere. */
  bits: (number | null)[];
}

export interface SystemData {
  bucketNs: number;
  series: SystemSeries[];
}

export interface KernelWindow {
  start: number;
  end: number;
  device?: number;
  stream?: number;
  name?: string;
  scope?: number;
}

const prefetched = new Map<string, { token: string | null; p: Promise<SessionDetail> }>();

/** Typed calls to /api/v1 with one API key. */
export class Api {
  constructor(private readonly token: string | null = null) {}

  private get<T>(path: string, q?: Query, signal?: AbortSignal): Promise<T> {
    return this.token === null ? apiGet<T>(path, q, signal) : apiGet<T>(path, q, signal, this.token);
  }

  async sessions(
    f: { host?: string; app?: string; since?: string; until?: string; limit?: number; cursor?: string },
    signal?: AbortSignal,
  ): Promise<SessionPage> {
    const w = await this.get<W<S['SessionPage']> & { items: SessionItemWire[] }>('/sessions', f, signal);
    return { items: w.items.map(toSessionInfo), nextCursor: w.next_cursor };
  }

  archivedSessions(opts: { inStore?: boolean; limit?: number; cursor?: string | null }, signal?: AbortSignal): Promise<ArchivePage> {
    return this.get<ArchivePage>('/archive/sessions', { in_store: opts.inStore, limit: opts.limit, cursor: opts.cursor }, signal);
  }

  restore(s: ArchivedSession): Promise<RestoreJob> {
    const path = `/archive/sessions/${encodeURIComponent(s.session_id)}/restore`;
    const q = { host: s.host, app: s.app };
    return this.token === null ? apiPost<RestoreJob>(path, q) : apiPost<RestoreJob>(path, q, undefined, this.token);
  }

  restoreJob(id: string, signal?: AbortSignal): Promise<RestoreJob> {
    return this.get<RestoreJob>(`/archive/jobs/${encodeURIComponent(id)}`, undefined, signal);
  }

  hosts(signal?: AbortSignal): Promise<HostsResponse> {
    return this.get<HostsResponse>('/hosts', undefined, signal);
  }

  async session(id: string, signal?: AbortSignal): Promise<SessionDetail> {
    const early = prefetched.get(id);
    if (early && early.token === this.token) {
      prefetched.delete(id);
      try {
        return await early.p;
      } catch {
        /* fall through to a fresh request */
      }
    }
    return toSessionDetail(await this.get<W<S['SessionDetail']>>(`/sessions/${enc(id)}`, undefined, signal));
  }

  /** The insight rules over one session (times stay absolute: lib/insights.ts places them on the session). */
  insights(id: string, signal?: AbortSignal): Promise<InsightsWire> {
    return this.get<InsightsWire>(`/sessions/${enc(id)}/insights`, undefined, signal);
  }

  /** The session's capture mode and capture_window records (lib/capture.ts places them on the session). */
  captureWindows(id: string, signal?: AbortSignal): Promise<CaptureWindowsWire> {
    return this.get<CaptureWindowsWire>(`/sessions/${enc(id)}/capture-windows`, undefined, signal);
  }

  /** `target` against `base`: rows by impact (at most `limit`), totals, and the noise test used. */
  diff(base: string, target: string, opts: { minEffect?: number; limit?: number } = {}, signal?: AbortSignal): Promise<DiffWire> {
    return this.get<DiffWire>('/diff', { base, target, min_effect: opts.minEffect, limit: opts.limit }, signal);
  }

  /** Start loading a session's detail before React renders (a deep link's first request); `session()` uses it. */
  prefetchSession(id: string): void {
    const p = this.session(id);
    p.catch(() => {});
    prefetched.set(id, { token: this.token, p });
  }

  async kernelTimeline(s: SessionDetail, win: KernelWindow, resolutionNs: number, signal?: AbortSignal): Promise<KernelTimeline> {
    const o = s.origin;
    const w = await this.get<W<S['KernelTimeline']> & { buckets: W<S['LodBucket']>[] }>(
      `/sessions/${enc(s.id)}/kernels`,
      { ...winQuery(win, o), resolution_ns: Math.max(1, Math.round(resolutionNs)) },
      signal,
    );
    return {
      start: rel(w.start_ns, o)!,
      end: rel(w.end_ns, o)!,
      bucketNs: Number(w.bucket_ns),
      buckets: w.buckets.map((b) => ({
        t: rel(b.t_ns, o)!,
        device: b.device_id,
        stream: b.stream_id,
        count: b.count,
        busy: Number(b.busy_ns),
        longest: {
          id: b.longest.id,
          name: b.longest.name,
          start: rel(b.longest.start_ns as NsLike, o)!,
          end: rel(b.longest.end_ns as NsLike, o)!,
        },
      })),
    };
  }

  /** Copies and memsets of a window per bucket and kind: every one counted, whatever the zoom. */
  async memoryTimeline(s: SessionDetail, win: { start: number; end: number }, resolutionNs: number, signal?: AbortSignal): Promise<MemoryTimeline> {
    const o = s.origin;
    const w = await this.get<W<S['MemoryTimeline']> & { buckets: W<S['MemoryBucket']>[] }>(
      `/sessions/${enc(s.id)}/memory/timeline`,
      { start_ns: abs(win.start, o), end_ns: abs(win.end, o), resolution_ns: Math.max(1, Math.round(resolutionNs)) },
      signal,
    );
    return {
      start: rel(w.start_ns, o)!,
      end: rel(w.end_ns, o)!,
      bucketNs: Number(w.bucket_ns),
      buckets: w.buckets.map((b) => ({
        t: rel(b.t_ns, o)!,
        kind: b.kind,
        device: b.device_id,
        stream: b.stream_id,
        count: b.count,
        bytes: Number(b.bytes),
        busy: Number(b.busy_ns),
        longest: {
          id: b.kind === 'memset' ? `memset:${b.longest.id}` : b.longest.id,
          start: rel(b.longest.start_ns as NsLike, o)!,
          end: rel(b.longest.end_ns as NsLike, o)!,
          bytes: Number(b.longest.bytes),
        },
      })),
    };
  }

  /** Launch-API calls per thread and bucket of `resolutionNs` (each counted; the thread tracks' detail). */
  async launchTimeline(s: SessionDetail, win: { start: number; end: number }, resolutionNs: number, signal?: AbortSignal): Promise<LaunchTimeline> {
    const q = { start_ns: abs(win.start, s.origin), end_ns: abs(win.end, s.origin), resolution_ns: Math.max(1, Math.round(resolutionNs)) };
    return toLaunchTimeline(await this.get<LaunchTimelineWire>(`/sessions/${enc(s.id)}/launches`, q, signal), s.origin);
  }

  /** Aggregates of a selected time range per kernel name, copy kind and scope path (the area selection). */
  rangeSummary(s: SessionDetail, win: { start: number; end: number }, signal?: AbortSignal): Promise<RangeSummary> {
    return this.get<RangeSummary>(`/sessions/${enc(s.id)}/range`, { start_ns: abs(win.start, s.origin), end_ns: abs(win.end, s.origin), limit: 200 }, signal);
  }

  /** Kernels and scope instances whose name contains `text`: counts, and the next (or previous) from `at`, or
   * past `from` (the match standing at `at`: hits starting at the same ns then come one by one). */
  async search(s: SessionDetail, text: string, at: number, direction: 'next' | 'prev', from?: Pick<SearchMatch, 'kind' | 'id'>, signal?: AbortSignal): Promise<SearchResult> {
    const o = s.origin;
    const w = await this.get<W<S['SearchResult']> & { match: W<S['SearchMatch']> | null }>(
      `/sessions/${enc(s.id)}/search`,
      { text, at_ns: abs(at, o), direction, ...(from ? { at_kind: from.kind, at_id: from.id } : {}) },
      signal,
    );
    const m = w.match;
    return {
      kernels: w.kernels,
      scopes: w.scopes,
      match: m
        ? { kind: m.kind, id: m.id, name: m.name, start: rel(m.start_ns, o)!, end: rel(m.end_ns, o), device: m.device_id, stream: m.stream_id, threadId: m.thread_id, depth: m.depth }
        : null,
    };
  }

  async kernels(
    s: SessionDetail,
    win: KernelWindow,
    limit: number,
    cursor?: string,
    signal?: AbortSignal,
  ): Promise<{ items: KernelRow[]; nextCursor: string | null }> {
    const w = await this.get<{ items: W<S['KernelRow']>[]; next_cursor: string | null }>(
      `/sessions/${enc(s.id)}/kernels`,
      { ...winQuery(win, s.origin), limit, cursor },
      signal,
    );
    return { items: w.items.map((k) => toKernelRow(k, s.origin)), nextCursor: w.next_cursor };
  }

  /** The kernel summary of the whole session, or (win) of the kernels overlapping that window. */
  kernelSummary(s: SessionDetail, sort = 'total', limit = 500, signal?: AbortSignal, win?: { start: number; end: number }): Promise<KernelSummary> {
    const range = win ? { start_ns: abs(win.start, s.origin), end_ns: abs(win.end, s.origin) } : {};
    return this.get<KernelSummary>(`/sessions/${enc(s.id)}/kernels/summary`, { sort, limit, ...range }, signal);
  }

  /** Log-spaced duration histogram of the kernels named `name` (in the window, when given). */
  kernelHistogram(s: SessionDetail, name: string, signal?: AbortSignal, win?: { start: number; end: number }): Promise<KernelHistogram> {
    const range = win ? { start_ns: abs(win.start, s.origin), end_ns: abs(win.end, s.origin) } : {};
    return this.get<KernelHistogram>(`/sessions/${enc(s.id)}/kernels/histogram`, { name, ...range }, signal);
  }

  async kernel(s: SessionDetail, kernelId: string, signal?: AbortSignal): Promise<KernelDetail> {
    const w = await this.get<W<S['KernelDetail']>>(`/sessions/${enc(s.id)}/kernels/${enc(kernelId)}`, undefined, signal);
    return {
      ...toKernelRow(w, s.origin),
      mangled: w.mangled,
      apiStart: rel(w.api_start_ns, s.origin),
      apiDur: w.api_dur_ns === null ? null : Number(w.api_dur_ns),
      graphNodeId: w.graph_node_id,
      launch: (w.launch as LaunchConfig | null) ?? null,
      stack: w.stack,
      scope: w.scope,
      startAbs: toBig(w.start_ns).toString(),
      endAbs: toBig(w.end_ns).toString(),
    };
  }

  /** Copies in a window (the kernels' window parameters). */
  memcpy(s: SessionDetail, win: KernelWindow, limit: number, signal?: AbortSignal): Promise<MemoryPage> {
    return this.memoryPage<S['MemcpyRow']>('memcpy', s, win, limit, signal, (m) => ({
      id: m.id,
      copyKind: m.copy_kind,
      throughput: m.throughput_gbps,
      srcKind: m.src_kind,
      dstKind: m.dst_kind,
      mode: m.mode,
      threadId: m.thread_id,
      apiStart: m.api_lead_ns === null ? null : rel(m.start_ns, s.origin)! - Number(m.api_lead_ns),
      apiDur: m.api_dur_ns === null ? null : Number(m.api_dur_ns),
    }));
  }

  /** Memsets in a window, shaped like copies (copyKind "memset") so they share the copy lane. */
  memsets(s: SessionDetail, win: KernelWindow, limit: number, signal?: AbortSignal): Promise<MemoryPage> {
    return this.memoryPage<S['MemsetRow']>('memsets', s, win, limit, signal, (m) => ({
      id: `memset:${m.id}`,
      copyKind: 'memset',
      throughput: null,
      srcKind: null,
      dstKind: null,
      mode: null,
      threadId: null,
      apiStart: null,
      apiDur: null,
    }));
  }

  private async memoryPage<R extends S['MemcpyRow'] | S['MemsetRow']>(
    path: string,
    s: SessionDetail,
    win: KernelWindow,
    limit: number,
    signal: AbortSignal | undefined,
    own: (m: W<R>) => Omit<MemcpyRow, 'device' | 'stream' | 'start' | 'end' | 'dur' | 'bytes' | 'corrId' | 'scopeInst'>,
  ): Promise<MemoryPage> {
    const w = await this.get<{ items: W<R>[]; next_cursor: string | null }>(
      `/sessions/${enc(s.id)}/${path}`,
      { ...winQuery(win, s.origin), limit },
      signal,
    );
    return {
      items: w.items.map((m) => ({
        device: m.device_id,
        stream: m.stream_id,
        start: rel(m.start_ns, s.origin)!,
        end: rel(m.end_ns, s.origin)!,
        dur: Number(m.dur_ns),
        bytes: m.bytes,
        corrId: m.corr_id,
        scopeInst: m.scope_inst,
        ...own(m),
      })),
      nextCursor: w.next_cursor,
    };
  }

  scopes(id: string, signal?: AbortSignal): Promise<ScopeTree> {
    return this.get<ScopeTree>(`/sessions/${enc(id)}/scopes`, undefined, signal);
  }

  /** A scope's kernels with its children's, grouped by name (self and total). */
  scopeKernels(id: string, scopeId: number, signal?: AbortSignal): Promise<ScopeKernels> {
    return this.get<ScopeKernels>(`/sessions/${enc(id)}/scopes/${scopeId}/kernels`, { limit: 500 }, signal);
  }

  /** Scope instances overlapping [win.start, win.end), skipping closed ones shorter than `minDurNs`. */
  async scopeInstances(
    s: SessionDetail,
    win: { start: number; end: number },
    minDurNs: number,
    limit: number,
    cursor?: string,
    signal?: AbortSignal,
    scope?: number,
  ): Promise<{ items: ScopeInstance[]; nextCursor: string | null }> {
    const w = await this.get<{ items: W<S['ScopeInstance']>[]; next_cursor: string | null }>(
      `/sessions/${enc(s.id)}/scopes/instances`,
      {
        start_ns: abs(win.start, s.origin),
        end_ns: abs(win.end, s.origin),
        min_dur_ns: Math.max(0, Math.floor(minDurNs)),
        scope,
        limit,
        cursor,
      },
      signal,
    );
    return { items: w.items.map((x) => toScopeInstance(x, s.origin)), nextCursor: w.next_cursor };
  }

  async deepSummary(s: SessionDetail, signal?: AbortSignal): Promise<DeepSummary> {
    return toDeepSummary(await this.get<DeepSummaryWire>(`/sessions/${enc(s.id)}/deep`, undefined, signal), s.origin);
  }

  async deepScope(s: SessionDetail, scopeId: number, signal?: AbortSignal): Promise<DeepScopeDetail> {
    return toDeepScope(await this.get<DeepScopeDetailWire>(`/sessions/${enc(s.id)}/deep/scopes/${scopeId}`, undefined, signal), s.origin);
  }

  /** One kernel's rows per source line (or PC), hottest first; `scopeId`: that scope path's samples only. */
  deepLines(id: string, kernel: string, q: { scopeId?: number; by?: 'line' | 'pc'; limit?: number }, signal?: AbortSignal): Promise<DeepLines> {
    return this.get<DeepLines>(`/sessions/${enc(id)}/deep/lines`, { kernel, scope_id: q.scopeId, by: q.by, limit: q.limit }, signal);
  }

  async system(
    s: SessionDetail,
    q: { metric?: string; device?: number; start?: number; end?: number; points: number },
    signal?: AbortSignal,
  ): Promise<SystemData> {
    const w = await this.get<W<S['SystemResponse']> & { series: { metric: string; device: number | null; points: W<S['SeriesPoint']>[] }[] }>(
      `/sessions/${enc(s.id)}/system`,
      {
        metric: q.metric,
        device: q.device,
        start_ns: q.start !== undefined ? abs(q.start, s.origin) : undefined,
        end_ns: q.end !== undefined ? abs(q.end, s.origin) : undefined,
        points: q.points,
      },
      signal,
    );
    return { bucketNs: Number(w.bucket_ns), series: w.series.map((x) => shapeSeries(x, s.origin)) };
  }
}

/** Wire series (array of point objects) → columnar arrays (what the charts draw), times relative to `origin`. */
export function shapeSeries(
  x: { metric: string; device: number | null; points: { t_ns: NsLike; min: number; max: number; mean: number; n: number; bits: number | null }[] },
  origin: bigint,
): SystemSeries {
  const n = x.points.length;
  const out: SystemSeries = { metric: x.metric, device: x.device, t: new Array(n), min: new Array(n), max: new Array(n), mean: new Array(n), n: new Array(n), bits: new Array(n) };
  for (let i = 0; i < n; i++) {
    const p = x.points[i];
    out.t[i] = Number(toBig(p.t_ns) - origin);
    out.min[i] = p.min;
    out.max[i] = p.max;
    out.mean[i] = p.mean;
    out.n[i] = p.n;
    out.bits[i] = p.bits;
  }
  return out;
}

function winQuery(win: KernelWindow, o: bigint): Query {
  return {
    start_ns: abs(win.start, o),
    end_ns: abs(win.end, o),
    device: win.device,
    stream: win.stream,
    name: win.name,
    scope: win.scope,
  };
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
