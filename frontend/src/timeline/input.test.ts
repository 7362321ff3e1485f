import { describe, expect, it } from 'vitest';
import { GUTTER_W } from './draw';
import { attachInput, tooltipText } from './input';
import type { Viewport } from './viewport';

describe('tooltipText', () => {
  it('names the kernel, its duration and how many share its pixel', () => {
    expect(tooltipText({ kind: 'kernel', id: '1', name: 'gemm', start: 0, end: 1500, count: 3, device: 0, stream: 7 })).toBe('gemm — 1.50 µs · longest of 3 kernels here');
    expect(tooltipText({ kind: 'kernel', id: '1', name: null, start: 0, end: 10, count: 1, device: 0, stream: 7 })).toBe('(unnamed) — 10 ns');
  });

  it('gives a memory bucket its count, bytes and longest', () => {
    const t = tooltipText({ kind: 'memBucket', bucket: { t: 0, kind: 'HtoD', device: 0, stream: 7, count: 1234, bytes: 3 << 20, busy: 2_000_000, longest: { id: '1', start: 0, end: 500_000, bytes: 1 } } });
    expect(t).toBe('1,234 HtoD here — 3.0 MiB, busy 2.00 ms · longest 500.0 µs');
  });
});

describe('attachInput: range selection', () => {
  function setup() {
    const canvas = document.createElement('canvas');
    const mini = document.createElement('canvas');
    const calls: { sel: ({ t0: number; t1: number } | null)[]; ranges: [number, number][]; vps: Viewport[] } = { sel: [], ranges: [], vps: [] };
    let vp: Viewport = { t0: 0, t1: 1000 };
    const detach = attachInput(canvas, mini, {
      viewport: () => vp,
      setViewport: (v) => {
        vp = v;
        calls.vps.push(v);
      },
      bounds: () => ({ start: 0, end: 1000, minSpan: 1 }),
      plotWidth: () => 1000,
      setHover: () => {},
      hover: () => null,
      hitAt: () => null,
      showTip: () => {},
      select: () => {},
      drive: () => {},
      ownsKeys: () => true,
      setSelection: (s) => calls.sel.push(s),
      selectRange: (a, b) => calls.ranges.push([a, b]),
      selectCopy: () => {},
    });
    (canvas as unknown as { setPointerCapture: () => void }).setPointerCapture = () => {};
    const fire = (type: string, x: number, y: number, shiftKey = false) =>
      canvas.dispatchEvent(Object.assign(new MouseEvent(type, { clientX: x, clientY: y, button: 0, shiftKey, bubbles: true }), { pointerId: 1, pointerType: 'mouse' }));
    return { calls, fire, detach };
  }

  it('a drag on the time axis selects the range under it, drawn while dragging', () => {
    const { calls, fire, detach } = setup();
    fire('pointerdown', GUTTER_W + 600, 5);
    fire('pointermove', GUTTER_W + 450, 5);
    fire('pointermove', GUTTER_W + 300, 5);
    fire('pointerup', GUTTER_W + 300, 5);
    expect(calls.sel.at(-2)).toEqual({ t0: 300, t1: 600 });
    expect(calls.sel.at(-1)).toBeNull();
    expect(calls.ranges).toEqual([[300, 600]]);
    expect(calls.vps).toEqual([]); // no pan
    detach();
  });

  it('shift-drag on a lane selects; a plain drag there pans; a tiny drag selects nothing', () => {
    const { calls, fire, detach } = setup();
    fire('pointerdown', GUTTER_W + 100, 100, true);
    fire('pointermove', GUTTER_W + 200, 100, true);
    fire('pointerup', GUTTER_W + 200, 100, true);
    expect(calls.ranges).toEqual([[100, 200]]);
    fire('pointerdown', GUTTER_W + 100, 100);
    fire('pointermove', GUTTER_W + 150, 100);
    fire('pointerup', GUTTER_W + 150, 100);
    expect(calls.ranges).toHaveLength(1);
    expect(calls.vps.length).toBeGreaterThan(0);
    fire('pointerdown', GUTTER_W + 100, 5);
    fire('pointerup', GUTTER_W + 102, 5);
    expect(calls.ranges).toHaveLength(1);
    detach();
  });
});
