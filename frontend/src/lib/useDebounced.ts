import { useEffect, useState } from 'react';

/** `value` once it has stayed the same (by JSON) for `ms`; the first value at once. */
export function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  const key = JSON.stringify(value);
  useEffect(() => {
    const id = window.setTimeout(() => setV(JSON.parse(key ?? 'null') ?? undefined), ms);
    return () => window.clearTimeout(id);
  }, [key, ms]);
  return v;
}
