/** Remote capture (#22): an operator's request for a capture across the fleet, and each session's status. Its
 * own module (client.ts holds the read API). Wire *_ns values are wall-clock times, kept as NsLike. */
import { apiGet, apiPostJson } from './http';
import type { NsLike } from './json';
import type { components } from './schema';

type S = components['schemas'];
type W<T> = { [K in keyof T]: K extends `${string}_ns` ? (T[K] extends number ? NsLike : T[K] extends number | null ? NsLike | null : T[K]) : T[K] };

export type CaptureSession = W<S['CaptureSession']>;
export type CaptureRequest = Omit<W<S['CaptureInfo']>, 'sessions'> & { sessions: CaptureSession[] };
export type CaptureAsk = S['CaptureRequestBody'];

export function listCaptures(token: string | null, signal?: AbortSignal): Promise<CaptureRequest[]> {
  const get = token === null ? apiGet<{ items: CaptureRequest[] }>('/captures', { limit: 50 }, signal) : apiGet<{ items: CaptureRequest[] }>('/captures', { limit: 50 }, signal, token);
  return get.then((b) => b.items);
}

export function requestCapture(token: string | null, ask: CaptureAsk): Promise<CaptureRequest> {
  return token === null ? apiPostJson<CaptureRequest>('/captures', ask) : apiPostJson<CaptureRequest>('/captures', ask, token);
}
