import { describe, expect, it } from 'vitest';
import { toSessionDetail, toSessionInfo, type KernelDetail, type KernelSummaryRow, type ScopeNode } from '../api/client';
import { inspectorRows, shortKernelName } from './inspector';
import { expandToDepth, findScope, visibleRows } from './scopes';
import { gpuSummary, localInputToNs, matchesSearch, sortNewestFirst } from './sessions';
import { filterSummary, sortSummary } from './summary';
import { fmtBytes, fmtDur, fmtTick } from './format';
import { tickStep } from '../timeline/viewport';

const item = (id: string, start: string | null, extra: object = {}) =>
  toSessionInfo({
    session_id: id,
    host: 'h100-a',
    app: 'train',
    pid: 1,
    job_id: null,
    start_ns: start,
    end_ns: null,
    last_ns: start ?? '1732521600000000000',
    gpus: ['NVIDIA H100 80GB HBM3', 'NVIDIA H100 80GB HBM3'],
    kernels: 5,
    memcpys: 0,
    records: 10,
    ended: false,
    cut_short: true,
    ...extra,
  });

describe('sessions', () => {
  it('computes duration from start to the later of end and last', () => {
    const s = item('a', '1732521600000000000', { end_ns: '1732521601000000001', last_ns: '1732521600500000000' });
    expect(s.durationNs).toBe(1_000_000_001);
    expect(item('b', null).durationNs).toBeNull();
  });
  it('searches app, host, id and GPU names, all words', () => {
    const s = item('sess-42', '1');
    expect(matchesSearch(s, 'H100 train')).toBe(true);
    expect(matchesSearch(s, 'sess-42')).toBe(true);
    expect(matchesSearch(s, 'a100')).toBe(false);
    expect(matchesSearch(s, '  ')).toBe(true);
  });
  it('summarises GPU names', () => {
    expect(gpuSummary(['A', 'A', 'B'])).toBe('2× A, B');
    expect(gpuSummary([])).toBe('—');
  });
  it('orders newest first', () => {
    const xs = sortNewestFirst([item('old', '1732521600000000000'), item('new', '1732521600000000001')]);
    expect(xs.map((x) => x.id)).toEqual(['new', 'old']);
  });
  it('turns a datetime-local value into epoch ns', () => {
    const v = localInputToNs('2024-11-25T10:00');
    expect(BigInt(v!)).toBe(BigInt(new Date('2024-11-25T10:00').getTime()) * 1_000_000n);
    expect(localInputToNs('')).toBeUndefined();
  });
});

describe('session detail', () => {
  it('uses session_start as the origin and the newest stream time as the end', () => {
    const d = toSessionDetail({
      session_id: 's',
      header: { start_ns: '1732521600000000000', host: 'h', app: 'a' },
      devices: [],
      streams: [
        { stream: 'device', received: 1, first_ns: '1732521600000000005', last_ns: '1732521602000000000', ended: true, end_reason: null, written: 1, missing: 0, dropped: 0 },
        { stream: 'system', received: 1, first_ns: '1732521600000000000', last_ns: '1732521603000000007', ended: true, end_reason: null, written: 1, missing: 0, dropped: 0 },
      ],
      totals: { kernels: 0, memcpys: 0, memsets: 0, scope_instances: 0, profile_samples: 0, system_samples: 0, gpu_time_ns: 0 },
      dropped: 0,
      cut_short: false,
      notices: [],
    } as never);
    expect(d.origin).toBe(1732521600000000000n);
    expect(d.rangeEnd).toBe(3_000_000_007);
    expect(d.host).toBe('h');
  });
});

describe('summary table', () => {
  const rows: KernelSummaryRow[] = [
    { name: 'b', count: 1, total_ns: 30, mean_ns: 30, min_ns: 30, p50_ns: 30, p95_ns: 30, max_ns: 30, share: 0.5, quantiles: 'exact' },
    { name: 'a', count: 3, total_ns: 30, mean_ns: 10, min_ns: 5, p50_ns: 10, p95_ns: 15, max_ns: 15, share: 0.5, quantiles: 'exact' },
    { name: 'gemm_c', count: 2, total_ns: 0, mean_ns: 0, min_ns: 0, p50_ns: 0, p95_ns: 0, max_ns: 0, share: 0, quantiles: 'exact' },
  ];
  it('sorts by any column, ties by name', () => {
    expect(sortSummary(rows, 'total_ns', true).map((r) => r.name)).toEqual(['a', 'b', 'gemm_c']);
    expect(sortSummary(rows, 'count', false).map((r) => r.name)).toEqual(['b', 'gemm_c', 'a']);
    expect(sortSummary(rows, 'name', false).map((r) => r.name)).toEqual(['a', 'b', 'gemm_c']);
  });
  it('filters by name substring, case-insensitive', () => {
    expect(filterSummary(rows, 'GEMM').map((r) => r.name)).toEqual(['gemm_c']);
  });
});

describe('scope tree', () => {
  const n = (id: number, path: string, children: ScopeNode[] = []): ScopeNode => ({
    scope_id: id, path, name: path.split('/').pop()!, depth: path.split('/').length - 1, calls: 1, wall_total_ns: 1,
    wall_mean_ns: 1, open_calls: 0, gpu_ns: 0, gpu_total_ns: 0, kernels: 0, kernels_total: 0, children,
  });
  const roots = [n(1, 'train', [n(2, 'train/fwd', [n(4, 'train/fwd/attn')]), n(3, 'train/bwd')]), n(5, 'eval')];
  it('shows children of expanded nodes only', () => {
    expect(visibleRows(roots, new Set()).map((r) => r.node.path)).toEqual(['train', 'eval']);
    expect(visibleRows(roots, new Set([1])).map((r) => [r.node.path, r.depth])).toEqual([['train', 0], ['train/fwd', 1], ['train/bwd', 1], ['eval', 0]]);
  });
  it('opens the top levels and finds nodes', () => {
    expect([...expandToDepth(roots, 2)].sort()).toEqual([1, 2]);
    expect(findScope(roots, 4)?.path).toBe('train/fwd/attn');
    expect(findScope(roots, 99)).toBeNull();
  });
});

describe('inspector rows', () => {
  const k: KernelDetail = {
    id: '12', seq: 12, name: 'gemm', launchId: 1, device: 0, stream: 7, corrId: 3, start: 1000, end: 3500, dur: 2500,
    scopeInst: 9, stackId: 1, graphId: null, threadId: null, mangled: '_Z4gemm', apiStart: 900, apiDur: 50, graphNodeId: null,
    launch: { grid: [132, 1, 1], block: [256, 1, 1], num_regs: 96, static_shared_bytes: 49152, dyn_shared_bytes: 0, local_bytes: 0, occupancy: 0.25, limiting_resource: 'registers' },
    stack: [], scope: { inst: 9, path_id: 2, path: 'train/fwd' }, startAbs: '1', endAbs: '2',
  };
  it('shows every launch field with units', () => {
    const r = Object.fromEntries(inspectorRows(k, 'NVIDIA H100').map((x) => [x.key, x.value]));
    expect(r.grid).toBe('(132, 1, 1)');
    expect(r.block).toBe('(256, 1, 1)');
    expect(r.registers).toBe('96');
    expect(r.static_smem).toBe('48.0 KiB (49152 B)');
    expect(r.dynamic_smem).toBe('0 B');
    expect(r.occupancy).toBe('25.0% (limited by registers)');
    expect(r.api).toBe('50 ns · called 100 ns before the kernel started');
    expect(r.start).toBe('+1.00 µs from session start');
    expect(r.device).toBe('GPU 0 · NVIDIA H100');
    expect(r.scope).toBe('train/fwd');
    expect(r.duration).toBe('2.50 µs');
  });
  it('gives the start to the ns when the origin is known', () => {
    const r = Object.fromEntries(inspectorRows({ ...k, startAbs: '1732521607609512345' }, null, 1732521600000000000n).map((x) => [x.key, x.value]));
    expect(r.start).toBe('+7.609512345 s from session start');
  });
  it('says occupancy at the maximum without calling it limited', () => {
    const full = { ...k, launch: { ...k.launch!, occupancy: 1, limiting_resource: 'registers' } };
    const r = Object.fromEntries(inspectorRows(full).map((x) => [x.key, x.value]));
    expect(r.occupancy).toBe('100.0% (the most the SM allows; registers also at their limit)');
    expect(r.occupancy).not.toContain('limited by');
  });
  it('shortens template-heavy kernel names and keeps plain ones', () => {
    const torch =
      'void at::native::vectorized_elementwise_kernel<8, at::native::bfloat16_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda(float)#1}, std::array<char*, 2ul> >(int, at::native::bfloat16_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda(float)#1}, std::array<char*, 2ul>)';
    expect(shortKernelName(torch)).toBe('at::native::vectorized_elementwise_kernel');
    expect(shortKernelName('gemm_kernel')).toBe('gemm_kernel');
    expect(shortKernelName('void relu(float*, int)')).toBe('relu');
    expect(shortKernelName('(anonymous namespace)::softmax_warp_forward<float, float, float, 8, false>(float*, float const*, int, int, int)')).toBe('(anonymous namespace)::softmax_warp_forward');
    expect(inspectorRows({ ...k, name: torch }).find((x) => x.key === 'name')!.value).toBe('at::native::vectorized_elementwise_kernel');
  });
  it('reads absent launch memory sizes as their contract default, 0', () => {
    const r = Object.fromEntries(inspectorRows({ ...k, launch: { grid: [1, 1, 1], block: [32, 1, 1], num_regs: 8 } }).map((x) => [x.key, x.value]));
    expect(r.static_smem).toBe('0 B');
    expect(r.local).toBe('0 B');
    expect(r.occupancy).toBe('—');
  });
  it('says unknown rather than inventing values', () => {
    const r = Object.fromEntries(inspectorRows({ ...k, launch: null, scope: null, scopeInst: null, name: null }).map((x) => [x.key, x.value]));
    expect(r.grid).toBe('—');
    expect(r.static_smem).toBe('—');
    expect(r.occupancy).toBe('—');
    expect(r.scope).toBe('—');
    expect(r.name).toBe('(name not yet known)');
  });
});

describe('format', () => {
  it('formats durations and sizes', () => {
    expect(fmtDur(999)).toBe('999 ns');
    expect(fmtDur(1500)).toBe('1.50 µs');
    expect(fmtDur(2.5e9)).toBe('2.50 s');
    expect(fmtDur(null)).toBe('—');
    expect(fmtBytes(1536)).toBe('1.5 KiB');
  });
});

describe('fmtTick', () => {
  it('uses seconds with enough decimals past 1 s, units below', () => {
    expect(fmtTick(7_609_500_000, 50_000, 7.7e9)).toBe('7.60950 s');
    expect(fmtTick(7_609_550_000, 50_000, 7.7e9)).toBe('7.60955 s');
    expect(fmtTick(2e9, 1e9, 3e9)).toBe('2.0 s');
    expect(fmtTick(500_000, 100_000, 9e5)).toBe('500 µs');
  });
  it('picks the unit from the largest label, never "583000 µs" (#24)', () => {
    expect(fmtTick(583_000_000, 100_000, 6e8)).toBe('583.0 ms');
    expect(fmtTick(583_010_000, 10_000, 6e8)).toBe('583.01 ms');
    expect(fmtTick(583_000_000, 20_000_000, 6e8)).toBe('583 ms');
    expect(fmtTick(1_500, 500, 2_000)).toBe('1.5 µs');
    expect(fmtTick(640, 20, 900)).toBe('640 ns');
    // every label of a deep zoom at any point of a session is distinct and at most ~12 characters
    for (const [t0, span] of [[0, 1e4], [5e8, 1e5], [7.6e9, 2e4], [1.488e12, 3e6], [3e5, 1e3]]) {
      const step = tickStep(span, 12);
      const labels: string[] = [];
      for (let t = Math.ceil(t0 / step) * step; t <= t0 + span; t += step) labels.push(fmtTick(t, step, t0 + span));
      expect(new Set(labels).size).toBe(labels.length);
      for (const l of labels) expect(l.length).toBeLessThanOrEqual(16);
    }
  });
});
