import type { Api, SessionDetail } from '../api/client';
import { fmtDur } from '../lib/format';
import { formatRoute, type Route } from '../lib/route';
import { shapeInsights, timelineRoute, type InsightView } from '../lib/insights';
import { useAsync } from '../lib/useAsync';
import { AsyncView, Empty } from './States';

/** What looks wrong with the session, most severe first, each with its evidence and a link to its time range. */
export function InsightsTab({ api, session, navigate }: { api: Api; session: SessionDetail; navigate: (r: Route) => void }) {
  const value = useAsync((sig) => api.insights(session.id, sig), [api, session.id]);
  return (
    <AsyncView value={value} what="insights">
      {(w) => {
        const v = shapeInsights(w, session.origin);
        return (
          <div className="insights" data-testid="insights">
            <p className="insight-counts">
              {v.items.length === 0 ? 'No insight fired.' : `${v.items.length} insight${v.items.length > 1 ? 's' : ''}:`}{' '}
              {(['critical', 'warning', 'info'] as const).map((s) => v.counts[s] > 0 && (
                <span key={s} className={`sev sev-${s}`}>{v.counts[s]} {s}</span>
              ))}
              {v.clear.length > 0 && <span className="muted"> Clear: {v.clear.join(', ')}.</span>}
            </p>
            {v.items.length === 0 && <Empty>None of the rules found a problem in this session.</Empty>}
            {v.items.map((i) => (
              <InsightCard key={i.key} i={i} session={session.id} navigate={navigate} />
            ))}
            {v.notChecked.length > 0 && (
              <div className="not-checked" data-testid="not-checked">
                <b>Not checked</b> (the data these rules need was not recorded):
                <ul>
                  {v.notChecked.map((n) => (
                    <li key={n.rule}>
                      <span className="mono">{n.rule}</span>: {n.reason}
                    </li>
                  ))}
                </ul>
              </div>
            )}
          </div>
        );
      }}
    </AsyncView>
  );
}

function InsightCard({ i, session, navigate }: { i: InsightView; session: string; navigate: (r: Route) => void }) {
  const open = (start: number, end: number) => {
    const r = timelineRoute(session, start, end);
    return { href: formatRoute(r), onClick: (e: React.MouseEvent) => (e.preventDefault(), navigate(r)) };
  };
  return (
    <section className={`insight sev-border-${i.severity}`} data-rule={i.rule}>
      <header>
        <span className={`sev sev-${i.severity}`}>{i.severity}</span> <b className="insight-title">{i.title}</b>
      </header>
      <p className="suggestion">→ {i.suggestion}</p>
      <dl className="facts">
        {i.facts.map((f) => (
          <div key={f.label}>
            <dt>{f.label}</dt>
            <dd>{f.text}</dd>
          </div>
        ))}
      </dl>
      <p className="range">
        <a {...open(i.start, i.end)} data-testid="open-timeline">
          Open the timeline at {fmtDur(i.start)} – {fmtDur(i.end)}
        </a>
        {i.device !== null && <span className="muted"> · GPU {i.device}</span>}
      </p>
      {i.involved.length > 0 && (
        <table className="grid involved">
          <tbody>
            {i.involved.map((x, n) => (
              <tr key={n}>
                <td className="muted">{x.kind}</td>
                <td className="mono name" title={x.name}>
                  {x.start !== null && x.end !== null ? <a {...open(x.start, x.end)}>{x.name}</a> : x.name}
                </td>
                <td>{x.facts.map((f) => `${f.label} ${f.text}`).join(' · ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
