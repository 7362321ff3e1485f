import type { Api, DiffRow, KernelRow, SessionDetail } from '../api/client';
import { countText, fmtRel, fmtStart, kernelHref } from '../lib/diff';
import { fmtDur } from '../lib/format';
import { formatRoute } from '../lib/route';
import { useAsync } from '../lib/useAsync';
import { AsyncView } from './States';

/** Instances listed per side: enough to compare the first steps' launches by eye, and to jump to any of them. */
const LISTED = 12;

/** A selected row's instances on both sides: counts and spread, and for kernels the first few instances with
 * start and duration — a click aligns both timelines at that instance (`onAlign`), a link opens it in its
 * session's Kernels tab. */
export function CompareInstances({
  api,
  row,
  base,
  target,
  perStep,
  onAlign,
  onClose,
}: {
  api: Api;
  row: DiffRow;
  base: SessionDetail;
  target: SessionDetail;
  perStep: boolean;
  onAlign: (i: number, b: KernelRow | undefined, t: KernelRow | undefined) => void;
  onClose: () => void;
}) {
  const list = (s: SessionDetail, n: number, sig: AbortSignal) =>
    n > 0 ? api.kernels(s, { start: 0, end: s.rangeEnd + 1, name: row.key }, LISTED, undefined, sig).then((p) => p.items) : Promise.resolve([]);
  const lists = useAsync(
    (sig) => (row.kind === 'kernel' ? Promise.all([list(base, row.base.n, sig), list(target, row.target.n, sig)]) : Promise.resolve(null)),
    [api, base, target, row.kind, row.key],
  );
  const sides = [['base', base, row.base] as const, ['target', target, row.target] as const];
  return (
    <aside className="card compare-instances" data-testid="diff-instances">
      <div className="panel-head">
        <h3>
          <span className={`chip ${row.label}`}>{row.label}</span> {row.kind} <span className="muted small">{fmtRel(row.rel)}</span>
        </h3>
        <button className="link" onClick={onClose} aria-label="Close">
          ✕
        </button>
      </div>
      <p className="mono small wrap">{row.key}</p>
      <div className="instances-cols">
        {sides.map(([role, , side]) => (
          <section key={role} data-side={role}>
            <h4>
              <span className={`chip role ${role}`}>{role}</span> <span data-testid="instance-count">{countText(side, perStep)}</span>
            </h4>
            <div className="muted small">
              mean {side.n ? fmtDur(side.mean_ns) : '—'} · sd {side.n > 1 ? fmtDur(side.sd_ns) : '—'}
              <br />
              total {fmtDur(side.total_ns)}
            </div>
          </section>
        ))}
      </div>
      {row.kind === 'kernel' ? (
        <AsyncView value={lists} what="the instances">
          {(ls) => (
            <>
              <p className="muted small">Click an instance to align both timelines there and zoom to it.</p>
              <div className="instances-cols">
                {sides.map(([role, s, side], j) => {
                  const items = ls?.[j] ?? [];
                  return (
                    <section key={role} data-side={role}>
                      {items.length === 0 ? (
                        <p className="muted small">No instance in this session.</p>
                      ) : (
                        <Instances
                          s={s}
                          items={items}
                          total={side.n}
                          onPick={(i) => onAlign(i, ls?.[0][i], ls?.[1][i])}
                        />
                      )}
                    </section>
                  );
                })}
              </div>
            </>
          )}
        </AsyncView>
      ) : (
        <p className="muted small">
          Instances are listed for kernel rows. Open each session&apos;s{' '}
          {sides.map(([role, s], j) => (
            <span key={role}>
              {j > 0 && ' / '}
              <a href={formatRoute({ page: 'session', session: s.id, tab: row.kind === 'scope' ? 'scopes' : 'kernels' })}>{role}</a>
            </span>
          ))}{' '}
          {row.kind === 'scope' ? 'Scopes tab' : 'timeline (copies and memsets lane)'}.
        </p>
      )}
    </aside>
  );
}

function Instances({ s, items, total, onPick }: { s: SessionDetail; items: KernelRow[]; total: number; onPick: (i: number) => void }) {
  return (
    <>
      <div className="muted small" data-testid="instances-listed">
        first {items.length} of {total}
      </div>
      <table className="grid instances">
        <thead>
          <tr>
            <th className="num">#</th>
            <th className="num">start</th>
            <th className="num">duration</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {items.map((k, i) => (
            <tr key={k.id} className="clickable" title="Align both timelines at this instance and zoom to it" onClick={() => onPick(i)}>
              <td className="num muted">{i + 1}</td>
              <td className="num">{fmtStart(k.start)}</td>
              <td className="num">{fmtDur(k.dur)}</td>
              <td>
                <a href={kernelHref(s.id, k)} onClick={(e) => e.stopPropagation()} title="Open in this session's Kernels tab" aria-label={`Open instance ${i + 1} in the Kernels tab`}>
                  ↗
                </a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
