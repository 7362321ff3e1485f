import { act, renderHook } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { clampHeight, MAX_HEIGHT, MIN_HEIGHT, useResizableHeight } from './height';

describe('the timeline height', () => {
  it('stays between the bounds', () => {
    expect(clampHeight(10)).toBe(MIN_HEIGHT);
    expect(clampHeight(1e9)).toBe(MAX_HEIGHT);
    expect(clampHeight(333.4)).toBe(333);
  });

  it('is unset by default, kept in localStorage once set, unset again by a double-click', () => {
    localStorage.removeItem('k');
    const { result } = renderHook(() => useResizableHeight('k'));
    expect(result.current.style).toEqual({});
    const target = { previousElementSibling: { getBoundingClientRect: () => ({ height: 300 }) }, setPointerCapture: () => {} };
    act(() => result.current.handle.onPointerDown({ clientY: 100, pointerId: 1, currentTarget: target } as never));
    act(() => result.current.handle.onPointerMove({ clientY: 160 } as never));
    act(() => result.current.handle.onPointerUp({ clientY: 160 } as never));
    expect(result.current.style).toEqual({ height: 360, overflowY: 'auto' });
    expect(localStorage.getItem('k')).toBe('360');
    expect(renderHook(() => useResizableHeight('k')).result.current.style).toEqual({ height: 360, overflowY: 'auto' });
    act(() => result.current.handle.onDoubleClick());
    expect(result.current.style).toEqual({});
    expect(localStorage.getItem('k')).toBeNull();
  });
});
