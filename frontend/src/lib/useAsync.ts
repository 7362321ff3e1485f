import { useEffect, useState } from 'react';

/** While loading again, `prev` holds the last value that was ready (a view may keep showing it, marked stale). */
export type Async<T> = { state: 'loading'; prev?: T } | { state: 'error'; error: unknown } | { state: 'ready'; data: T };

/** Run `fn` whenever `deps` change; cancels the previous run (AbortSignal) and ignores its result. */
export function useAsync<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Async<T> {
  const [s, setS] = useState<Async<T>>({ state: 'loading' });
  useEffect(() => {
    const ac = new AbortController();
    setS((o) => ({ state: 'loading', prev: o.state === 'ready' ? o.data : o.state === 'loading' ? o.prev : undefined }));
    fn(ac.signal).then(
      (data) => {
        if (!ac.signal.aborted) setS({ state: 'ready', data });
      },
      (error) => {
        if (!ac.signal.aborted) setS({ state: 'error', error });
      },
    );
    return () => ac.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return s;
}
