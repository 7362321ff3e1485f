import { parseJsonPrecise } from './json';

/** The API key lives for the browser session only (sessionStorage), never in the URL. */
const TOKEN_KEY = 'gpufl.token';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  readonly status: number;
  readonly detail: unknown;
  constructor(status: number, message: string, detail?: unknown) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

/** A human sentence for an API failure (what the error states show). */
export function describeError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 401) return 'The API key was not accepted (401): it is missing, unknown or revoked.';
    if (e.status === 403) return 'This API key lacks the role needed here (403). A key with the read role is enough.';
    if (e.status === 404) return `Not found (404): ${e.message}`;
    return `The backend answered ${e.status}: ${e.message}`;
  }
  if (e instanceof DOMException && e.name === 'AbortError') return 'Cancelled.';
  if (e instanceof Error) return `Could not reach the backend: ${e.message}`;
  return String(e);
}

type Listener = (status: number) => void;
const authListeners = new Set<Listener>();
/** Called on every 401 so the app can return to the sign-in screen. */
export function onAuthFailure(fn: Listener): () => void {
  authListeners.add(fn);
  return () => authListeners.delete(fn);
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function buildUrl(path: string, query?: Query): string {
  const params = new URLSearchParams();
  if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === '') continue;
      params.set(k, String(v));
    }
  }
  const qs = params.toString();
  return `/api/v1${path}${qs ? `?${qs}` : ''}`;
}

export function apiGet<T>(path: string, query?: Query, signal?: AbortSignal, token = getToken()): Promise<T> {
  return apiCall<T>('GET', path, query, signal, token);
}

/** A POST without a body (the API's actions take their arguments in the path and query). */
export function apiPost<T>(path: string, query?: Query, signal?: AbortSignal, token = getToken()): Promise<T> {
  return apiCall<T>('POST', path, query, signal, token);
}

/** A POST with a JSON body (remote capture's request, #22). */
export function apiPostJson<T>(path: string, body: unknown, token = getToken()): Promise<T> {
  return apiCall<T>('POST', path, undefined, undefined, token, JSON.stringify(body));
}

async function apiCall<T>(
  method: 'GET' | 'POST',
  path: string,
  query: Query | undefined,
  signal: AbortSignal | undefined,
  token: string | null,
  json?: string,
): Promise<T> {
  const res = await fetch(buildUrl(path, query), {
    method,
    headers: {
      Accept: 'application/json',
      ...(json !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: json,
    signal,
  });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? parseJsonPrecise(text) : null;
  } catch {
    body = text;
  }
  if (!res.ok) {
    const msg =
      body && typeof body === 'object'
        ? String((body as { error?: unknown; detail?: unknown }).error ?? (body as { detail?: unknown }).detail ?? res.statusText)
        : res.statusText || String(body);
    if (res.status === 401) authListeners.forEach((fn) => fn(401));
    throw new ApiError(res.status, msg, body);
  }
  return body as T;
}
