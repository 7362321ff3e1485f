import { useEffect, useMemo, useState } from 'react';
import type { Api, SessionInfo } from '../api/client';
import { fmtDur, fmtInt, fmtWallClock } from '../lib/format';
import type { Route } from '../lib/route';
import { badgeText } from '../lib/insights';
import { gpuSummary, localInputToNs, matchesSearch } from '../lib/sessions';
import { useAsync } from '../lib/useAsync';
import { AsyncView, Empty, ErrorState, Loading } from './States';

type Filters = Extract<Route, { page: 'sessions' }>;

export function SessionSelector({ api, route, navigate }: { api: Api; route: Filters; navigate: (r: Route, replace?: boolean) => void }) {
  const hosts = useAsync((sig) => api.hosts(sig), [api]);
  const [items, setItems] = useState<SessionInfo[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [state, setState] = useState<'loading' | 'ready' | 'error'>('loading');
  const [error, setError] = useState<unknown>(null);
  const [picked, setPicked] = useState<string[]>([]);
  const [more, setMore] = useState(false);
  const filt = { host: route.host, app: route.app, since: localInputToNs(route.since), until: localInputToNs(route.until) };
  const fkey = JSON.stringify(filt);

  useEffect(() => {
    const ac = new AbortController();
    setState('loading');
    api.sessions({ ...filt, limit: 100 }, ac.signal).then(
      (p) => {
        setItems(p.items);
        setCursor(p.nextCursor);
        setState('ready');
      },
      (e) => {
        if (ac.signal.aborted) return;
        setError(e);
        setState('error');
      },
    );
    return () => ac.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [api, fkey]);

  async function loadMore() {
    if (!cursor) return;
    setMore(true);
    try {
      const p = await api.sessions({ ...filt, limit: 100, cursor });
      setItems((xs) => [...xs, ...p.items]);
      setCursor(p.nextCursor);
    } catch (e) {
      setError(e);
      setState('error');
    } finally {
      setMore(false);
    }
  }

  const shown = useMemo(() => items.filter((s) => matchesSearch(s, route.q ?? '')), [items, route.q]);
  const set = (patch: Partial<Filters>) => navigate({ ...route, ...patch }, true);
  const togglePick = (id: string) =>
    setPicked((p) => (p.includes(id) ? p.filter((x) => x !== id) : [...p, id].slice(-2)));

  return (
    <div className="selector">
      <aside className="hosts" aria-label="Hosts and apps">
        <h2>Hosts</h2>
        <AsyncView value={hosts} what="hosts">
          {(h) =>
            h.hosts.length === 0 ? (
              <Empty>No hosts yet: nothing has been ingested.</Empty>
            ) : (
              <ul className="tree">
                <li>
                  <button className={!route.host ? 'link active' : 'link'} onClick={() => set({ host: undefined, app: undefined })}>
                    All hosts
                  </button>
                </li>
                {h.hosts.map((hn) => (
                  <li key={hn.host}>
                    <button
                      className={route.host === hn.host && !route.app ? 'link active' : 'link'}
                      onClick={() => set({ host: hn.host, app: undefined })}
                    >
                      {hn.host} <span className="muted">({hn.sessions})</span>
                    </button>
                    <ul>
                      {hn.apps.map((a) => (
                        <li key={a.app}>
                          <button
                            className={route.host === hn.host && route.app === a.app ? 'link active' : 'link'}
                            onClick={() => set({ host: hn.host, app: a.app })}
                          >
                            {a.app} <span className="muted">({a.sessions})</span>
                          </button>
                        </li>
                      ))}
                    </ul>
                  </li>
                ))}
              </ul>
            )
          }
        </AsyncView>
      </aside>
      <section className="sessions">
        <div className="filters">
          <input
            aria-label="Search sessions"
            placeholder="Search app, host, GPU, session id…"
            value={route.q ?? ''}
            onChange={(e) => set({ q: e.target.value || undefined })}
          />
          <input aria-label="Host" placeholder="host" value={route.host ?? ''} onChange={(e) => set({ host: e.target.value || undefined })} />
          <input aria-label="App" placeholder="app" value={route.app ?? ''} onChange={(e) => set({ app: e.target.value || undefined })} />
          <label>
            from <input type="datetime-local" aria-label="Started after" value={route.since ?? ''} onChange={(e) => set({ since: e.target.value || undefined })} />
          </label>
          <label>
            to <input type="datetime-local" aria-label="Started before" value={route.until ?? ''} onChange={(e) => set({ until: e.target.value || undefined })} />
          </label>
          <button
            disabled={picked.length !== 2}
            onClick={() => navigate({ page: 'compare', a: picked[0], b: picked[1] })}
            title="Tick two sessions: the first ticked is the base, the second the target"
          >
            Compare base → target ({picked.length}/2)
          </button>
        </div>
        {state === 'loading' && <Loading what="sessions" />}
        {state === 'error' && <ErrorState error={error} what="sessions" />}
        {state === 'ready' &&
          (shown.length === 0 ? (
            <Empty>{items.length ? 'No session matches the search.' : 'No sessions match these filters.'}</Empty>
          ) : (
            <table className="grid sessions-table" data-testid="sessions">
              <thead>
                <tr>
                  <th aria-label="Compare" />
                  <th>App</th>
                  <th>Host</th>
                  <th>Started</th>
                  <th>Duration</th>
                  <th>GPUs</th>
                  <th className="num">Kernels</th>
                  <th>Status</th>
                  <th>Insights</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((s) => (
                  <tr
                    key={s.id}
                    className="clickable"
                    data-session={s.id}
                    onClick={() => {
                      // The detail's request leaves now, not after React has rendered the session page.
                      api.prefetchSession(s.id);
                      navigate({ page: 'session', session: s.id, tab: 'kernels' });
                    }}
                  >
                    <td onClick={(e) => e.stopPropagation()}>
                      <input type="checkbox" aria-label={`Pick ${s.id} for comparison`} checked={picked.includes(s.id)} onChange={() => togglePick(s.id)} />
                      {picked.includes(s.id) && <span className={`chip role ${picked[0] === s.id ? 'base' : 'target'}`}>{picked[0] === s.id ? 'base' : 'target'}</span>}
                    </td>
                    <td>
                      <a href={`#/s/${encodeURIComponent(s.id)}/kernels`} onClick={(e) => e.stopPropagation()}>
                        {s.app ?? '(unknown app)'}
                      </a>
                      <div className="muted small mono">{s.id}</div>
                    </td>
                    <td>{s.host ?? '—'}</td>
                    <td>{fmtWallClock(s.start)}</td>
                    <td>{fmtDur(s.durationNs)}</td>
                    <td>{gpuSummary(s.gpus)}</td>
                    <td className="num">{fmtInt(s.kernels)}</td>
                    <td>{s.cutShort ? <span className="badge warn">cut short / live</span> : s.ended ? <span className="badge">ended</span> : '—'}</td>
                    <td>
                      <InsightBadge api={api} id={s.id} kernels={s.kernels} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          ))}
        {cursor && state === 'ready' && (
          <button onClick={loadMore} disabled={more}>
            {more ? 'Loading…' : 'Load more'}
          </button>
        )}
      </section>
    </div>
  );
}

/** Above this many kernels a listed session's insights are computed only when asked for (a click on its badge, or
 * its Insights tab): they read every activity row — ~4–9 s at 10M kernels and minutes at 100M on two cores — and
 * the list's request would compete with the timeline the user opens next (bench/ui_timeline.mjs at 100M: first
 * paint 0.95–1.56 s with the badge's request, 0.63 s without). */
export const BADGE_AUTO_MAX_KERNELS = 2_000_000;

/** The count of warning and critical insights of one listed session (the backend caches each answer until the
 * session's records change, so a list's worth of requests is cheap after the first). */
export function InsightBadge({ api, id, kernels }: { api: Api; id: string; kernels: number }) {
  const [asked, setAsked] = useState(kernels <= BADGE_AUTO_MAX_KERNELS);
  if (!asked)
    return (
      <button
        className="link"
        data-testid="insight-badge-ask"
        title={`${fmtInt(kernels)} kernels: insights are computed on request for sessions over ${fmtInt(BADGE_AUTO_MAX_KERNELS)} kernels (they read every record)`}
        onClick={(e) => {
          e.stopPropagation();
          setAsked(true);
        }}
      >
        check
      </button>
    );
  return <InsightCount api={api} id={id} />;
}

function InsightCount({ api, id }: { api: Api; id: string }) {
  const v = useAsync((sig) => api.insights(id, sig), [api, id]);
  if (v.state === 'loading') return <span className="muted">…</span>;
  if (v.state === 'error') return <span className="muted" title="insights could not be loaded">?</span>;
  const text = badgeText(v.data.counts);
  return text ? (
    <span className="badge warn" data-testid="insight-badge" title={v.data.items.map((i) => i.title).join('\n')}>
      {text}
    </span>
  ) : (
    <span className="muted">none</span>
  );
}
