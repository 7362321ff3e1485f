import { useEffect, useState } from 'react';
import { listCaptures, requestCapture, type CaptureAsk, type CaptureRequest } from '../api/captures';
import { describeError } from '../api/http';
import { toBig } from '../api/json';
import { requestStatus, sessionStatus, settled, windowRoute } from '../lib/captures';
import { fmtWallClock } from '../lib/format';
import type { Route } from '../lib/route';
import { Empty, ErrorState, Loading } from './States';

const POLL_MS = 1000;
const ENGINES = ['tracing', 'sass', 'pc_sampling'] as const;

/** Remote capture (#22): ask for a capture on every live session of an app on matching hosts, and follow
 * each session's part (delivered → running → done / failed, with the reason), linked to its window. */
export function Captures({ token, navigate }: { token: string | null; navigate: (r: Route) => void }) {
  const [items, setItems] = useState<CaptureRequest[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [refused, setRefused] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const [ask, setAsk] = useState<{ app: string; host: string; job: string; seconds: string; engines: string[] }>({
    app: '',
    host: '*',
    job: '',
    seconds: '10',
    engines: ['tracing'],
  });

  const busy = items?.some((r) => !settled(r)) ?? true;
  useEffect(() => {
    const ac = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () =>
      listCaptures(token, ac.signal).then(
        (got) => {
          setItems(got);
          setError(null);
          if (got.some((r) => !settled(r))) timer = setTimeout(load, POLL_MS);
        },
        (e) => {
          if (!ac.signal.aborted) setError(e);
        },
      );
    void load();
    return () => {
      ac.abort();
      clearTimeout(timer);
    };
  }, [token, busy]);

  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setRefused(null);
    setSending(true);
    const body: CaptureAsk = {
      app: ask.app.trim(),
      host: ask.host.trim() || '*',
      job_id: ask.job.trim() || null,
      engines: ask.engines as CaptureAsk['engines'],
      seconds: Number(ask.seconds),
      expires_s: 60, // agents hand it on for a minute; sessions starting later are not asked
    };
    try {
      const made = await requestCapture(token, body);
      setItems((xs) => [made, ...(xs ?? [])]);
    } catch (err) {
      setRefused(describeError(err));
    } finally {
      setSending(false);
    }
  }

  return (
    <section className="captures">
      <h2>Remote capture</h2>
      <form className="capture-form" onSubmit={(e) => void submit(e)} aria-label="Request a capture">
        <label>
          App <input name="app" required value={ask.app} onChange={(e) => setAsk({ ...ask, app: e.target.value })} />
        </label>
        <label>
          Hosts (glob) <input name="host" value={ask.host} onChange={(e) => setAsk({ ...ask, host: e.target.value })} />
        </label>
        <label>
          Job (optional) <input name="job" value={ask.job} onChange={(e) => setAsk({ ...ask, job: e.target.value })} />
        </label>
        <label>
          Seconds{' '}
          <input name="seconds" type="number" min="0.1" max="600" step="any" value={ask.seconds} onChange={(e) => setAsk({ ...ask, seconds: e.target.value })} />
        </label>
        <fieldset>
          <legend>Engines</legend>
          {ENGINES.map((name) => (
            <label key={name}>
              <input
                type="checkbox"
                name={`engine-${name}`}
                checked={ask.engines.includes(name)}
                onChange={(e) =>
                  setAsk({ ...ask, engines: e.target.checked ? [...ask.engines, name] : ask.engines.filter((x) => x !== name) })
                }
              />{' '}
              {name}
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={sending || !ask.app.trim() || ask.engines.length === 0}>
          {sending ? 'Requesting…' : 'Request capture'}
        </button>
        {refused && (
          <div className="state error" role="alert">
            {refused}
          </div>
        )}
      </form>
      <p className="muted">
        Every live session of the app on a matching host opens a window when its agent hands the request on (a session that traces
        continuously is traced anyway: there only SASS or PC sampling opens a window); a session may refuse (one window at a time, an engine it does not run, its budget per hour, remote capture off). Needs an operator or admin
        key to request; any read key lists.
      </p>
      {error !== null && <ErrorState error={error} what="capture requests" />}
      {items === null && error === null && <Loading what="capture requests" />}
      {items !== null && items.length === 0 && <Empty>No capture has been requested yet.</Empty>}
      {items?.map((r) => (
        <article key={r.id} className="capture-request" data-capture={r.id}>
          <h3>
            <span className="mono">{r.id}</span> · {r.app} on <code>{r.host_glob}</code>
            {r.job_id ? ` job ${r.job_id}` : ''} · {r.engines.join(', ')} for {r.seconds} s
          </h3>
          <p className="muted">
            Requested {fmtWallClock(toBig(r.created_ns))} by {r.requester}; {r.expired ? 'expired' : 'handed on until'} {fmtWallClock(toBig(r.expires_ns))}.{' '}
            <span className="capture-status" data-status={r.status}>
              {requestStatus(r)}
            </span>
          </p>
          {r.sessions.length > 0 && (
            <table className="grid capture-sessions">
              <thead>
                <tr>
                  <th>Host</th>
                  <th>Session</th>
                  <th>Status</th>
                  <th>Window</th>
                </tr>
              </thead>
              <tbody>
                {r.sessions.map((s) => {
                  const to = windowRoute(s);
                  return (
                    <tr key={s.session_id} data-session={s.session_id} data-status={s.status}>
                      <td>{s.host ?? '—'}</td>
                      <td className="mono">{s.session_id}</td>
                      <td>{sessionStatus(s)}</td>
                      <td>
                        {to ? (
                          <button className="link" onClick={() => navigate(to)}>
                            Open on the timeline
                          </button>
                        ) : (
                          '—'
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        </article>
      ))}
    </section>
  );
}
