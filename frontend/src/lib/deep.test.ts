// Pure display logic of the deep engines. The figures here are structural (hand-checkable), not measured data.
import { describe, expect, it } from 'vitest';
import type { DeepKernel, DeepSummary } from '../api/client';
import { deepByScope, deepKernelFor, fmtDivergence, lossNotes, shortStall, stallBars, topStall } from './deep';

const LS = 'smsp__pcsamp_warps_issue_stalled_long_scoreboard';
const fig = (over: Partial<DeepKernel>): DeepKernel => ({
  kernel: 'k', mangled: null, instructions: null, thread_instructions: null, divergence: null, samples: null, stalls: [], other_samples: 0, not_issued: [], ...over,
});
const totals = { ranges: 0, pc_samples: null, pc_dropped: null, pc_non_user_samples: null, pc_buffer_full_ranges: 0, sass_records: null, sass_dropped: null, error_ranges: 0 };

describe('deep', () => {
  it('shortens CUPTI stall names only by the known prefix', () => {
    expect(shortStall(LS)).toBe('long_scoreboard');
    expect(shortStall('smsp__pcsamp_sample_count')).toBe('smsp__pcsamp_sample_count');
    expect(shortStall('smsp__pcsamp_warps_issue_stalled_')).toBe('smsp__pcsamp_warps_issue_stalled_');
  });
  it('states a missing divergence or stall instead of showing 0', () => {
    expect(fmtDivergence(null)).toBe('not reported');
    expect(fmtDivergence(24)).toBe('24.0 / 32');
    expect(topStall(fig({}))).toBe('not reported');
    expect(topStall(fig({ samples: 5, stalls: [{ reason: LS, samples: 4, share: 0.8 }] }))).toBe('long_scoreboard 80%');
  });
  it('lists every loss and error, and nothing when none', () => {
    expect(lossNotes({ range_totals: totals, errors: [] })).toEqual([]);
    const notes = lossNotes({
      range_totals: { ...totals, pc_samples: 7, pc_dropped: 2, pc_buffer_full_ranges: 1, sass_dropped: 3 },
      errors: [{ error: 'CUPTI_ERROR_INSUFFICIENT_PRIVILEGES', ranges: 2 }],
    });
    expect(notes).toEqual([
      '2 PC samples dropped (stall shares are of those kept)',
      'the PC-sampling buffer filled up in 1 range (raise the sampling period)',
      '3 SASS instruction records dropped',
      'engine error in 2 ranges: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES',
    ]);
  });
  it('counts errors whose text is not listed (a scope total)', () => {
    expect(lossNotes({ range_totals: { ...totals, error_ranges: 2 }, errors: [] })).toEqual(["engine error in 2 ranges (each range's error is listed with its instance)"]);
  });
  it('matches a launch to its deep kernel by mangled name first, then by name', () => {
    const s = { kernels: [fig({ kernel: 'a', mangled: '_Z1a' }), fig({ kernel: 'b' })], scopes: [] } as unknown as DeepSummary;
    expect(deepKernelFor(s, 'other', '_Z1a')?.kernel).toBe('a');
    expect(deepKernelFor(s, 'b', '_Z1b')?.kernel).toBe('b');
    expect(deepKernelFor(s, 'c', null)).toBeNull();
    expect(deepKernelFor(null, 'a', null)).toBeNull();
  });
  it('maps scope rows by path id, leaving out the session-wide range', () => {
    const s = { scopes: [{ ...fig({}), scope_id: null, path: null, whole_session: true }, { ...fig({ divergence: 16 }), scope_id: 2, path: 'a', whole_session: false }] } as unknown as DeepSummary;
    const m = deepByScope(s);
    expect([...m.keys()]).toEqual([2]);
    expect(m.get(2)?.divergence).toBe(16);
  });
  it('scales stall bars to the largest', () => {
    const bars = stallBars(fig({ samples: 5, stalls: [{ reason: LS, samples: 4, share: 0.8 }, { reason: 'x', samples: 1, share: 0.2 }] }));
    expect(bars.map((b) => [b.label, b.frac])).toEqual([['long_scoreboard', 1], ['x', 0.25]]);
  });
});
