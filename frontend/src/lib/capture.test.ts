import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CaptureWindowsWire } from '../api/client';
import { bandsInView } from '../timeline/captureBands';
import { captureModel, complement, merge, modeText, notRecordedAt } from './capture';

// The capture_window records and session_start of tests/fixtures/capture_windows_edited (a real H100 capture with
// three windows added; its README says what was edited), read as the API serves them.
const FIXTURE = join(__dirname, '..', '..', '..', 'tests', 'fixtures', 'capture_windows_edited');
const device = readFileSync(join(FIXTURE, 'vm.multistream_capture_windows.uijlrpwdb3l3capw.device.000000.log'), 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l.replace(/(":\s*)(\d{16,})/g, '$1"$2"')) as Record<string, unknown>);
const header = device[0];
const end = device[device.length - 1];
const origin = BigInt(header.start_ns as string);
const rangeEnd = Number(BigInt(end.end_ns as string) - origin);
const wire: CaptureWindowsWire = { session_id: 'uijlrpwdb3l3capw', mode: 'windows', windows: device.filter((r) => r.type === 'capture_window') };
const session = { origin, rangeEnd, header, notices: [] as Record<string, unknown>[] };
const MS = 1_000_000;

describe('capture model', () => {
  it('says the mode as asked for, continuous when absent', () => {
    expect(modeText(header.options)).toBe('windows 100ms/250ms');
    expect(modeText({})).toBe('continuous');
    expect(modeText(undefined)).toBe('continuous');
  });

  it('merges and complements spans', () => {
    expect(merge([{ start: 5, end: 9 }, { start: 0, end: 3 }, { start: 3, end: 4 }, { start: 7, end: 7 }])).toEqual([
      { start: 0, end: 4 },
      { start: 5, end: 9 },
    ]);
    expect(complement([{ start: 2, end: 4 }, { start: 6, end: 20 }], 0, 10)).toEqual([
      { start: 0, end: 2 },
      { start: 4, end: 6 },
    ]);
    expect(complement([], 0, 10)).toEqual([{ start: 0, end: 10 }]);
  });

  it('shades what lies outside the windows and counts what was recorded', () => {
    const m = captureModel(session, wire)!;
    expect(m.windows).toBe(3);
    expect(m.recorded).toEqual([
      { start: 0, end: 100 * MS },
      { start: 250 * MS, end: 350 * MS },
      { start: 500 * MS, end: 600 * MS },
    ]);
    const label = 'not recorded (capture: windows 100ms/250ms)';
    expect(m.notRecorded).toEqual([
      { start: 100 * MS, end: 250 * MS, label },
      { start: 350 * MS, end: 500 * MS, label },
      { start: 600 * MS, end: rangeEnd, label },
    ]);
    expect(m.recordedNs).toBe(300 * MS);
    expect(m.summary).toContain('Capture: windows 100ms/250ms · 3 windows · kernels recorded in 300.0 ms of ');
    expect(m.summary).toContain(`(${((300 * MS * 100) / rangeEnd).toFixed(1)}%)`);
    expect(notRecordedAt(m, 120 * MS)).toBe(label);
    expect(notRecordedAt(m, 50 * MS)).toBeNull();
  });

  it('gives continuous sessions nothing, unless tracing stepped aside', () => {
    const plain = { ...session, header: { ...header, options: {} } };
    expect(captureModel(plain, null)).toBeNull();
    expect(captureModel(plain, { session_id: 'x', mode: 'continuous', windows: [] })).toBeNull();
    const gap = { type: 'capture_gap', start_ns: String(origin + 200n * BigInt(MS)), end_ns: String(origin + 300n * BigInt(MS)), reason: 'torch.profiler' };
    const m = captureModel({ ...plain, notices: [gap] }, null)!;
    expect(m.notRecorded).toEqual([{ start: 200 * MS, end: 300 * MS, label: 'not recorded (tracing stepped aside: torch.profiler)' }]);
    expect(m.summary).toContain('Capture: continuous · 1 capture gap (tracing stepped aside)');
    expect(m.recordedNs).toBe(rangeEnd - 100 * MS);
  });

  it('says when an on-demand session opened no window', () => {
    const m = captureModel({ ...session, header: { ...header, options: { capture: 'on-demand' } } }, { ...wire, mode: 'on-demand', windows: [] })!;
    expect(m.notRecorded).toEqual([{ start: 0, end: rangeEnd, label: 'not recorded (capture: on-demand)' }]);
    expect(m.summary).toContain('no window was opened');
    expect(m.recordedNs).toBe(0);
  });

  it('places the bands in view in plot pixels', () => {
    const m = captureModel(session, wire)!;
    const b = bandsInView(m, { t0: 0, t1: 400 * MS }, 800);
    expect(b.map((x) => [x.x0, x.x1])).toEqual([
      [200, 500],
      [700, 800],
    ]);
    expect(bandsInView(null, { t0: 0, t1: 1 }, 800)).toEqual([]);
  });
});
