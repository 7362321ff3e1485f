/**
 * The timeline's height, resizable with a drag handle under it and kept in localStorage. Unset (the default,
 * or after a double-click on the handle), the timeline is as tall as its rows; set, it scrolls inside it.
 */
import { useState, type CSSProperties, type PointerEvent } from 'react';

export const MIN_HEIGHT = 120;
export const MAX_HEIGHT = 4000;

export function clampHeight(h: number): number {
  return Math.round(Math.max(MIN_HEIGHT, Math.min(MAX_HEIGHT, h)));
}

function load(key: string): number | null {
  try {
    const v = Number(window.localStorage.getItem(key));
    return Number.isFinite(v) && v > 0 ? clampHeight(v) : null;
  } catch {
    return null; // storage blocked: the height is not kept, the timeline still works
  }
}

function save(key: string, h: number | null): void {
  try {
    if (h === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, String(h));
  } catch {
    // storage blocked: see load
  }
}

export function useResizableHeight(key: string): {
  style: CSSProperties;
  handle: {
    onPointerDown: (e: PointerEvent<HTMLDivElement>) => void;
    onPointerMove: (e: PointerEvent<HTMLDivElement>) => void;
    onPointerUp: (e: PointerEvent<HTMLDivElement>) => void;
    onDoubleClick: () => void;
  };
} {
  const [height, setHeight] = useState<number | null>(() => load(key));
  const [drag, setDrag] = useState<{ y: number; h: number } | null>(null);
  return {
    style: height === null ? {} : { height, overflowY: 'auto' },
    handle: {
      onPointerDown: (e) => {
        const wrap = e.currentTarget.previousElementSibling as HTMLElement | null;
        setDrag({ y: e.clientY, h: wrap?.getBoundingClientRect().height ?? height ?? 400 });
        e.currentTarget.setPointerCapture(e.pointerId);
      },
      onPointerMove: (e) => {
        if (drag) setHeight(clampHeight(drag.h + e.clientY - drag.y));
      },
      onPointerUp: (e) => {
        if (!drag) return;
        const h = clampHeight(drag.h + e.clientY - drag.y);
        setDrag(null);
        setHeight(h);
        save(key, h);
      },
      onDoubleClick: () => {
        setHeight(null);
        save(key, null);
      },
    },
  };
}
