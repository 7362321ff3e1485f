import type { Api } from '../api/client';
import { fmtDur, fmtInt, fmtWallClock } from '../lib/format';
import { useAsync } from '../lib/useAsync';
import { AsyncView } from './States';

/** The two sessions picked for comparison, side by side. The comparison itself comes with the insights issue. */
export function Compare({ api, a, b }: { api: Api; a: string; b: string }) {
  return (
    <div className="compare">
      <p className="muted">Picked for comparison. The comparison view arrives with the insights issue.</p>
      <div className="compare-cols">
        {[a, b].map((id) => (
          <CompareCol key={id} api={api} id={id} />
        ))}
      </div>
    </div>
  );
}

function CompareCol({ api, id }: { api: Api; id: string }) {
  const d = useAsync((sig) => api.session(id, sig), [api, id]);
  return (
    <section className="card">
      <AsyncView value={d} what="the session">
        {(s) => (
          <>
            <h3>
              <a href={`#/s/${encodeURIComponent(s.id)}/kernels`}>
                {s.app ?? '(unknown app)'} [host: {s.host ?? 'unknown'}]
              </a>
            </h3>
            <dl className="kv">
              <div><dt>Started</dt><dd>{fmtWallClock(s.origin)}</dd></div>
              <div><dt>Duration</dt><dd>{fmtDur(s.rangeEnd)}</dd></div>
              <div><dt>Kernels</dt><dd>{fmtInt(s.totals.kernels)}</dd></div>
              <div><dt>GPU time</dt><dd>{fmtDur(s.totals.gpu_time_ns)}</dd></div>
            </dl>
          </>
        )}
      </AsyncView>
    </section>
  );
}
