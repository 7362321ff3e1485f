import type { ReactNode } from 'react';
import { describeError } from '../api/http';
import type { Async } from '../lib/useAsync';

export function Loading({ what }: { what: string }) {
  return (
    <div className="state loading" role="status">
      <span className="spinner" aria-hidden /> Loading {what}…
    </div>
  );
}

export function ErrorState({ error, what }: { error: unknown; what: string }) {
  return (
    <div className="state error" role="alert">
      Could not load {what}. {describeError(error)}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="state empty">{children}</div>;
}

/** Render an Async value with the standard loading / error states. */
export function AsyncView<T>({ value, what, children }: { value: Async<T>; what: string; children: (data: T) => ReactNode }) {
  if (value.state === 'loading') return <Loading what={what} />;
  if (value.state === 'error') return <ErrorState error={value.error} what={what} />;
  return <>{children(value.data)}</>;
}
