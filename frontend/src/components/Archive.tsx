import { useEffect, useState } from 'react';
import type { Api, ArchivedSession, ArchivePage, RestoreJob } from '../api/client';
import { describeError } from '../api/http';
import { toBig } from '../api/json';
import { archiveCounts, archiveKey as key, jobProgress, restoreControl } from '../lib/archive';
import { fmtBytes, fmtInt, fmtWallClock } from '../lib/format';
import type { Route } from '../lib/route';
import { Empty, ErrorState, Loading } from './States';

const POLL_MS = 500;

/** Archived sessions (the agents' raw-log archive in S3) that the store does not hold, each with a Restore
 * action for admin keys, and the restore jobs' progress. */
export function Archive({ api, navigate }: { api: Api; navigate: (r: Route) => void }) {
  const [page, setPage] = useState<ArchivePage | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [more, setMore] = useState(false);
  const [jobs, setJobs] = useState<Record<string, RestoreJob>>({});
  const [refused, setRefused] = useState<Record<string, string>>({});

  useEffect(() => {
    const ac = new AbortController();
    api.archivedSessions({ inStore: false, limit: 100 }, ac.signal).then(setPage, (e) => {
      if (!ac.signal.aborted) setError(e);
    });
    return () => ac.abort();
  }, [api]);

  // Follow every running job until it is done or failed.
  const running = Object.values(jobs).filter((j) => j.status === 'running');
  const runningKey = running.map((j) => j.id).join(',');
  useEffect(() => {
    if (!runningKey) return;
    const ac = new AbortController();
    const t = setTimeout(() => {
      for (const id of runningKey.split(',')) {
        api.restoreJob(id, ac.signal).then(
          (j) => setJobs((js) => ({ ...js, [key(j)]: j })),
          () => undefined, // the next tick asks again; a job the backend forgot (restart) stays as last seen
        );
      }
    }, POLL_MS);
    return () => {
      clearTimeout(t);
      ac.abort();
    };
  }, [api, runningKey, jobs]);

  async function restore(s: ArchivedSession) {
    setRefused((r) => ({ ...r, [key(s)]: '' }));
    try {
      const j = await api.restore(s);
      setJobs((js) => ({ ...js, [key(j)]: j }));
    } catch (e) {
      setRefused((r) => ({ ...r, [key(s)]: describeError(e) }));
    }
  }

  async function loadMore() {
    if (!page?.next_cursor) return;
    setMore(true);
    try {
      const p = await api.archivedSessions({ inStore: false, limit: 100, cursor: page.next_cursor });
      setPage({ ...p, items: [...page.items, ...p.items] });
    } catch (e) {
      setError(e);
    } finally {
      setMore(false);
    }
  }

  if (error !== null) return <ErrorState error={error} what="the archive" />;
  if (page === null) return <Loading what="the archive" />;
  if (!page.configured)
    return (
      <Empty>
        This backend has no raw-log archive configured. Set <code>GPUFL_ARCHIVE_URL=s3://BUCKET/PREFIX</code> (and its
        endpoint and credentials) to list and restore archived sessions.
      </Empty>
    );
  const counts = archiveCounts(page);
  return (
    <section className="archive">
      <h2>Archive</h2>
      <p className="muted">
        {counts.archived} in <code>{page.url}</code>; {counts.missing} listed here. A restore re-ingests a session's archived segments (checked against their sha256) as a
        deliberate re-delivery: the store keeps one copy of every record.
      </p>
      {!page.can_restore && (
        <p className="state note" role="note">
          Restoring needs an API key with the admin role; this key may list the archive only.
        </p>
      )}
      {page.items.length === 0 ? (
        <Empty>Every archived session is in the store.</Empty>
      ) : (
        <table className="grid archive-table">
          <thead>
            <tr>
              <th>Host</th>
              <th>App</th>
              <th>Session</th>
              <th className="num">Segments</th>
              <th className="num">Archived size</th>
              <th>Last upload</th>
              <th>Restore</th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((s) => {
              const j = jobs[key(s)];
              const control = restoreControl(page.can_restore, j);
              return (
                <tr key={key(s)} data-session={s.session_id}>
                  <td>{s.host}</td>
                  <td>{s.app}</td>
                  <td className="mono">{s.session_id}</td>
                  <td className="num">{fmtInt(s.segments)}</td>
                  <td className="num">{fmtBytes(s.bytes)}</td>
                  <td>{fmtWallClock(toBig(s.last_modified_ns))}</td>
                  <td>
                    <button disabled={control.disabled} title={control.title} onClick={() => void restore(s)}>
                      Restore
                    </button>
                    {refused[key(s)] && (
                      <div className="state error" role="alert">
                        {refused[key(s)]}
                      </div>
                    )}
                    {j && <JobStatus job={j} open={() => navigate({ page: 'session', session: j.session_id, tab: 'kernels' })} />}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {page.next_cursor && (
        <button onClick={() => void loadMore()} disabled={more}>
          {more ? 'Loading…' : 'Load more'}
        </button>
      )}
    </section>
  );
}

function JobStatus({ job, open }: { job: RestoreJob; open: () => void }) {
  const { state, text } = jobProgress(job);
  return (
    <div className={`job ${state}`} role={state === 'failed' ? 'alert' : 'status'}>
      {text}
      {state === 'done' && (
        <>
          {' '}
          <button className="link" onClick={open}>
            Open the session
          </button>
        </>
      )}
    </div>
  );
}
