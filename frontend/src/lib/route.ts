/**
 * Deep links: the URL hash holds where the user is.
 *   #/                                     session selector (filters: ?host=&app=&q=&since=&until=)
 *   #/s/<session>/<tab>?t0=&t1=&k=&name=&copy=
 *                                          dashboard: tab, visible window (ns from session start),
 *                                          selected kernel id, highlighted kernel name, selected copy or
 *                                          memset (`<id>@<start>`: its id and start, ns from session start,
 *                                          which is where the copy is looked up)
 *   #/archive                              archived sessions the store lacks, and their restore (#23)
 *   #/captures                             remote capture requests and each session's status (#22)
 *   #/compare/<base>/<target>?row=         run-vs-run diff of target against base, a selected row
 *                                          (`kind:key`, e.g. `kernel:nvjet_sm90_…`)
 */
export type Tab = 'kernels' | 'scopes' | 'system' | 'insights';
export const TABS: Tab[] = ['kernels', 'scopes', 'system', 'insights'];

export type Route =
  | { page: 'sessions'; host?: string; app?: string; q?: string; since?: string; until?: string }
  | {
      page: 'session';
      session: string;
      tab: Tab;
      t0?: number;
      t1?: number;
      kernel?: string;
      name?: string;
      scope?: number;
      copy?: CopyRef;
    }
  | { page: 'compare'; a: string; b: string; row?: string }
  | { page: 'archive' }
  | { page: 'captures' };

/** A selected copy or memset: its id (a memset's is `memset:<seq>`) and start (ns from session start). */
export interface CopyRef {
  id: string;
  start: number;
}

function copyRef(v: string | null): CopyRef | undefined {
  const at = v ? v.lastIndexOf('@') : -1;
  if (!v || at <= 0) return undefined;
  const start = num(v.slice(at + 1));
  return start === undefined ? undefined : { id: v.slice(0, at), start };
}

function num(v: string | null): number | undefined {
  if (v === null || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function str(v: string | null): string | undefined {
  return v === null || v === '' ? undefined : v;
}

export function parseRoute(hash: string): Route {
  const h = hash.replace(/^#/, '');
  const qi = h.indexOf('?');
  const path = qi >= 0 ? h.slice(0, qi) : h;
  const q = new URLSearchParams(qi >= 0 ? h.slice(qi + 1) : '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 's' && parts[1]) {
    const tab = (TABS as string[]).includes(parts[2] ?? '') ? (parts[2] as Tab) : 'kernels';
    return {
      page: 'session',
      session: parts[1],
      tab,
      t0: num(q.get('t0')),
      t1: num(q.get('t1')),
      kernel: str(q.get('k')),
      name: str(q.get('name')),
      scope: num(q.get('scope')),
      copy: copyRef(q.get('copy')),
    };
  }
  if (parts[0] === 'archive') return { page: 'archive' };
  if (parts[0] === 'captures') return { page: 'captures' };
  if (parts[0] === 'compare' && parts[1] && parts[2]) return { page: 'compare', a: parts[1], b: parts[2], row: str(q.get('row')) };
  return {
    page: 'sessions',
    host: str(q.get('host')),
    app: str(q.get('app')),
    q: str(q.get('q')),
    since: str(q.get('since')),
    until: str(q.get('until')),
  };
}

export function formatRoute(r: Route): string {
  const q = new URLSearchParams();
  const set = (k: string, v: string | number | undefined) => {
    if (v !== undefined && v !== '') q.set(k, String(v));
  };
  let path: string;
  if (r.page === 'session') {
    path = `/s/${encodeURIComponent(r.session)}/${r.tab}`;
    set('t0', r.t0 !== undefined ? Math.round(r.t0) : undefined);
    set('t1', r.t1 !== undefined ? Math.round(r.t1) : undefined);
    set('k', r.kernel);
    set('name', r.name);
    set('scope', r.scope);
    set('copy', r.copy ? `${r.copy.id}@${Math.round(r.copy.start)}` : undefined);
  } else if (r.page === 'archive') {
    path = '/archive';
  } else if (r.page === 'captures') {
    path = '/captures';
  } else if (r.page === 'compare') {
    path = `/compare/${encodeURIComponent(r.a)}/${encodeURIComponent(r.b)}`;
    set('row', r.row);
  } else {
    path = '/';
    set('host', r.host);
    set('app', r.app);
    set('q', r.q);
    set('since', r.since);
    set('until', r.until);
  }
  const qs = q.toString();
  return `#${path}${qs ? `?${qs}` : ''}`;
}
