import type { Api, DiffRow, SessionDetail } from '../api/client';
import { countText, fmtRel, fmtStart, frame, kernelHref } from '../lib/diff';
import { fmtDur } from '../lib/format';
import { formatRoute } from '../lib/route';
import { useAsync } from '../lib/useAsync';
import type { Viewport } from '../timeline/viewport';
import { AsyncView } from './States';

/** Instances listed per side: enough to compare the first steps' launches by eye, and to jump to any of them. */
const LISTED = 12;

/** A selected row's instances on both sides: counts, the first few kernels with start and duration, each one
 * zoomable on the linked timelines and openable in its session's Kernels tab. */
export function CompareInstances({
  api,
  row,
  base,
  target,
  perStep,
  onZoom,
  onClose,
}: {
  api: Api;
  row: DiffRow;
  base: SessionDetail;
  target: SessionDetail;
  perStep: boolean;
  onZoom: (vp: Viewport) => void;
  onClose: () => void;
}) {
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
        {([['base', base, row.base] as const, ['target', target, row.target] as const]).map(([role, s, side]) => (
          <section key={role} data-side={role}>
            <h4>
              <span className={`chip role ${role}`}>{role}</span> <span data-testid="instance-count">{countText(side, perStep)}</span>
            </h4>
            <div className="muted small">
              mean {side.n ? fmtDur(side.mean_ns) : '—'} · sd {side.n > 1 ? fmtDur(side.sd_ns) : '—'} · total {fmtDur(side.total_ns)}
            </div>
            {row.kind === 'kernel' ? (
              side.n > 0 ? (
                <KernelInstances api={api} s={s} name={row.key} total={side.n} onZoom={onZoom} />
              ) : (
                <p className="muted small">No instance in this session.</p>
              )
            ) : (
              <p className="muted small">
                Instances are listed for kernel rows.{' '}
                {row.kind === 'scope' ? (
                  <a href={formatRoute({ page: 'session', session: s.id, tab: 'scopes' })}>Open this session's Scopes tab</a>
                ) : (
                  <a href={formatRoute({ page: 'session', session: s.id, tab: 'kernels' })}>Open this session's timeline</a>
                )}
                .
              </p>
            )}
          </section>
        ))}
      </div>
    </aside>
  );
}

function KernelInstances({ api, s, name, total, onZoom }: { api: Api; s: SessionDetail; name: string; total: number; onZoom: (vp: Viewport) => void }) {
  const v = useAsync((sig) => api.kernels(s, { start: 0, end: s.rangeEnd + 1, name }, LISTED, undefined, sig), [api, s, name]);
  return (
    <AsyncView value={v} what="the instances">
      {(p) => (
        <>
          <div className="muted small" data-testid="instances-listed">
            first {p.items.length} of {total}
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
              {p.items.map((k, i) => (
                <tr key={k.id} className="clickable" title="Zoom both timelines to this instance" onClick={() => onZoom(frame(k.start, k.end))}>
                  <td className="num muted">{i + 1}</td>
                  <td className="num">{fmtStart(k.start)}</td>
                  <td className="num">{fmtDur(k.dur)}</td>
                  <td>
                    <a href={kernelHref(s.id, k)} onClick={(e) => e.stopPropagation()} title="Open in this session's Kernels tab">
                      open ↗
                    </a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </AsyncView>
  );
}
