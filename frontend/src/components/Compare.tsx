import { useMemo, useState } from 'react';
import type { Api, DiffWire, KernelRow, SessionDetail } from '../api/client';
import { alignAt, cutText, frame, noiseText, ROW_LABELS, rowId, scaleText, totalView } from '../lib/diff';
import { fmtDur, fmtWallClock } from '../lib/format';
import type { Route } from '../lib/route';
import { useAsync } from '../lib/useAsync';
import { ViewportLink } from '../timeline/link';
import { Timeline } from '../timeline/Timeline';
import { CompareInstances } from './CompareInstances';
import { CompareRows } from './CompareRows';
import { AsyncView } from './States';

type CompareRoute = Extract<Route, { page: 'compare' }>;

/** The most rows the backend returns in one answer (its `limit` bound). */
const MAX_ROWS = 100_000;

/** Run-vs-run diff: `b` (target) against `a` (base) — totals, both timelines at one scale, rows by impact. */
export function Compare({ api, route, navigate }: { api: Api; route: CompareRoute; navigate: (r: Route, replace?: boolean) => void }) {
  const { a, b } = route;
  const sessions = useAsync((sig) => Promise.all([api.session(a, sig), api.session(b, sig)]), [api, a, b]);
  // The backend's default cut (1000 rows by impact) unless the user asks for every row.
  const [limit, setLimit] = useState<number | undefined>(undefined);
  const diff = useAsync((sig) => api.diff(a, b, { limit }, sig), [api, a, b, limit]);
  return (
    <div className="compare">
      <AsyncView value={sessions} what="the two sessions">
        {([base, target]) => (
          <AsyncView value={diff} what="the diff">
            {(d) => <CompareBody key={`${a}|${b}`} api={api} base={base} target={target} d={d} route={route} navigate={navigate} onAll={() => setLimit(MAX_ROWS)} />}
          </AsyncView>
        )}
      </AsyncView>
    </div>
  );
}

function CompareBody({
  api,
  base,
  target,
  d,
  route,
  navigate,
  onAll,
}: {
  api: Api;
  base: SessionDetail;
  target: SessionDetail;
  d: DiffWire;
  route: CompareRoute;
  navigate: (r: Route, replace?: boolean) => void;
  onAll: () => void;
}) {
  const link = useMemo(() => new ViewportLink(), []);
  const extent = Math.max(base.rangeEnd, target.rangeEnd);
  const selected = d.rows.find((r) => rowId(r) === route.row) ?? null;
  const highlight = selected?.kind === 'kernel' ? selected.key : null;
  const [picked, setPicked] = useState<{ session: string; id: string } | null>(null);
  // The target's shift against the base once aligned at an instance (null: both from their own starts).
  const [aligned, setAligned] = useState<{ i: number; name: string; offset: number } | null>(null);
  const alignAtInstance = (i: number, bk: KernelRow | undefined, tk: KernelRow | undefined) => {
    if (bk && tk) {
      const a = alignAt(bk, tk);
      link.setOffset('target', a.offset);
      setAligned({ i, name: bk.name ?? '', offset: a.offset });
      link.publish(null, a.vp);
    } else if (bk) link.publish(null, frame(bk.start, bk.end));
    else if (tk) {
      const f = frame(tk.start, tk.end);
      const o = link.offset('target');
      link.publish(null, { t0: f.t0 - o, t1: f.t1 - o });
    }
  };
  const unalign = () => {
    link.setOffset('target', 0);
    setAligned(null);
    link.publish(null, { t0: 0, t1: extent });
  };
  const select = (row: string | undefined) => navigate({ ...route, row }, true);
  // A kernel clicked on either timeline selects its row (when the diff has one).
  const onKernel = (s: SessionDetail) => (id: string) => {
    setPicked({ session: s.id, id });
    api.kernel(s, id).then(
      (k) => {
        const r = d.rows.find((x) => x.kind === 'kernel' && x.key === k.name);
        if (r) select(rowId(r));
      },
      () => {},
    );
  };
  const cut = cutText(d);
  return (
    <>
      <header className="session-head compare-head">
        <h2 data-testid="compare-title">Compare</h2>
        <div className="compare-sides">
          <SideRef role="base" s={base} steps={d.base.steps} />
          <span className="arrow" aria-hidden>→</span>
          <SideRef role="target" s={target} steps={d.target.steps} />
          <button onClick={() => navigate({ page: 'compare', a: target.id, b: base.id })} title="Make the target the base">
            Swap
          </button>
        </div>
      </header>

      <div className="compare-summary">
        <section className="card compare-totals">
          <h3>Totals</h3>
          <table className="grid" data-testid="diff-totals">
            <thead>
              <tr>
                <th>Metric</th>
                <th className="num">Base</th>
                <th className="num">Target</th>
                <th className="num">Change</th>
                <th className="num">%</th>
                <th className="num" title="standard errors">z</th>
                <th>Label</th>
              </tr>
            </thead>
            <tbody>
              {d.totals.map((t) => {
                const v = totalView(t, d.noise);
                return (
                  <tr key={t.metric} data-metric={t.metric}>
                    <td>{v.name}</td>
                    <td className="num">{v.base}</td>
                    <td className="num">{v.target}</td>
                    <td className="num">{v.delta}</td>
                    <td className="num">{v.rel}</td>
                    <td className="num">{v.z}</td>
                    <td>
                      <span className={`chip ${v.label}`} title={v.why}>
                        {v.label}
                      </span>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </section>
        <section className="card compare-reading">
          <h3>Reading it</h3>
          <p data-testid="diff-scale">
            Figures are <b>{scaleText(d)}</b>; change is target − base.
          </p>
          <p className="muted small">Noise: {noiseText(d.noise)}</p>
          <p data-testid="diff-counts">
            {ROW_LABELS.map((l) => (
              <span key={l} className="count-chip">
                <span className={`chip ${l}`}>{l}</span> {d.counts[l] ?? 0}
              </span>
            ))}
            <span className="muted small"> of {d.rows_total} rows</span>
          </p>
        </section>
      </div>

      <section className="compare-timelines" data-testid="compare-timelines">
        <p className="muted small" data-testid="timelines-alignment">
          {aligned ? (
            <>
              Aligned at instance #{aligned.i + 1} of <span className="mono">{shortName(aligned.name)}</span>, which starts{' '}
              {aligned.offset === 0 ? 'at the same time' : `${fmtDur(Math.abs(aligned.offset))} ${aligned.offset < 0 ? 'earlier' : 'later'}`} in the
              target than in the base. Same scale, zoom and pan move both; each axis keeps its own session&apos;s time.{' '}
              <button className="link" onClick={unalign}>
                Align at the session starts
              </button>
            </>
          ) : (
            <>Both kernel timelines measured from each session&apos;s own start, at the same scale: zoom and pan move both.</>
          )}
          {highlight && ' Instances of the selected kernel are highlighted on both.'}
        </p>
        {[base, target].map((s, i) => (
          <div key={i} className="compare-timeline" data-side={i === 0 ? 'base' : 'target'}>
            <div className="compare-timeline-label">
              <span className={`chip role ${i === 0 ? 'base' : 'target'}`}>{i === 0 ? 'base' : 'target'}</span> {s.app ?? '(unknown app)'}{' '}
              <span className="muted mono small">{s.id}</span> <span className="muted small">· {fmtDur(s.rangeEnd)}</span>
            </div>
            <Timeline
              api={api}
              session={s}
              viewport={{ t0: 0, t1: extent }}
              viewportNonce={0}
              onViewportChange={() => {}}
              selectedId={picked?.session === s.id ? picked.id : null}
              selected={null}
              onSelect={onKernel(s)}
              highlightName={highlight}
              extent={extent}
              link={link}
              linkKey={i === 0 ? 'base' : 'target'}
            />
          </div>
        ))}
      </section>

      <div className={selected ? 'compare-rows with-panel' : 'compare-rows'}>
        <section className="card">
          <h3>
            Rows <span className="muted small">time {d.per_step ? 'per step' : 'in the session'}, sorted by impact (|change|)</span>
          </h3>
          {cut && (
            <p className="cut-note">
              <span className="badge warn" data-testid="diff-cut">
                {cut}
              </span>{' '}
              {d.rows_total <= MAX_ROWS && (
                <button className="link" onClick={onAll}>
                  show all {d.rows_total}
                </button>
              )}
            </p>
          )}
          <CompareRows d={d} selected={route.row ?? null} onSelect={(id) => select(id === route.row ? undefined : id)} />
        </section>
        {selected && (
          <CompareInstances
            key={rowId(selected)}
            api={api}
            row={selected}
            base={base}
            target={target}
            perStep={d.per_step}
            onAlign={alignAtInstance}
            onClose={() => select(undefined)}
          />
        )}
      </div>
    </>
  );
}

/** A kernel name cut for a sentence (the full name is in the row and the panel). */
function shortName(n: string): string {
  return n.length > 60 ? `${n.slice(0, 57)}…` : n;
}

function SideRef({ role, s, steps }: { role: 'base' | 'target'; s: SessionDetail; steps: number }) {
  return (
    <div className="side-ref" data-testid={`side-${role}`}>
      <span className={`chip role ${role}`}>{role}</span>{' '}
      <a href={`#/s/${encodeURIComponent(s.id)}/kernels`}>
        {s.app ?? '(unknown app)'} [host: {s.host ?? 'unknown'}]
      </a>
      <div className="muted small">
        <span className="mono">{s.id}</span> · {fmtWallClock(s.origin)} · {fmtDur(s.rangeEnd)} · {steps} steps
      </div>
    </div>
  );
}
