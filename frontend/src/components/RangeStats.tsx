/**
 * The area selection's statistics: what ran in a time range dragged on the timeline, per kernel name, per copy
 * kind and per scope path (GET /range, computed by the backend), as Perfetto's area selection shows.
 */
import type { Api, RangeSummary, SessionDetail } from '../api/client';
import { abs } from '../api/json';
import { fmtBytes, fmtDur, fmtInt } from '../lib/format';
import { shortKernelName } from '../lib/inspector';
import { useAsync } from '../lib/useAsync';
import { AsyncView } from './States';

export interface TimeRange {
  start: number;
  end: number;
}

export function RangeStats({ api, session, range, onClose }: { api: Api; session: SessionDetail; range: TimeRange; onClose: () => void }) {
  const value = useAsync((sig) => api.rangeSummary(session, range, sig), [api, session, range.start, range.end]);
  return (
    <section className="range-stats" data-testid="range-stats" data-start-ns={abs(range.start, session.origin)} data-end-ns={abs(range.end, session.origin)} aria-label="Selected range">
      <div className="range-head">
        <h3>
          Selected range · {fmtDur(range.end - range.start)} <span className="muted small">(+{fmtDur(range.start)} … +{fmtDur(range.end)})</span>
        </h3>
        <button className="link" onClick={onClose} aria-label="Clear the selected range">
          ✕
        </button>
      </div>
      <AsyncView value={value} what="the range's statistics">
        {(r) => <RangeTables r={r} span={range.end - range.start} />}
      </AsyncView>
    </section>
  );
}

const shown = (n: number, total: number, what: string) => (n < total ? `showing ${fmtInt(n)} of ${fmtInt(total)} ${what}` : `${fmtInt(total)} ${what}`);

function RangeTables({ r, span }: { r: RangeSummary; span: number }) {
  const share = (ns: number) => `${((100 * ns) / Math.max(1, span)).toFixed(1)}%`;
  return (
    <div className="range-tables">
      <div className="range-table">
        <table data-testid="range-kernels">
          <caption>Kernels · {shown(r.kernels.length, r.kernels_total, 'names')}</caption>
          <thead>
            <tr>
              <th>Kernel</th>
              <th>Count</th>
              <th>In range</th>
              <th>Of range</th>
            </tr>
          </thead>
          <tbody>
            {r.kernels.map((k) => (
              <tr key={k.name ?? ''} data-name={k.name ?? ''}>
                <td className="kname" title={k.name ?? undefined}>
                  {k.name !== null ? shortKernelName(k.name) : '(unnamed)'}
                </td>
                <td>{fmtInt(k.count)}</td>
                <td>{fmtDur(k.in_range_ns)}</td>
                <td>{share(k.in_range_ns)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="range-table">
        <table data-testid="range-copies">
          <caption>Copies &amp; memsets · {shown(r.copies.length, r.copies_total, 'kinds')}</caption>
          <thead>
            <tr>
              <th>Kind</th>
              <th>Count</th>
              <th>Bytes</th>
              <th>In range</th>
            </tr>
          </thead>
          <tbody>
            {r.copies.map((c) => (
              <tr key={c.kind} data-kind={c.kind}>
                <td>{c.kind}</td>
                <td>{fmtInt(c.count)}</td>
                <td>{fmtBytes(c.bytes)}</td>
                <td>{fmtDur(c.in_range_ns)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="range-table">
        <table data-testid="range-scopes">
          <caption>Scopes · {shown(r.scopes.length, r.scopes_total, 'paths')}</caption>
          <thead>
            <tr>
              <th>Scope</th>
              <th>Count</th>
              <th>In range</th>
            </tr>
          </thead>
          <tbody>
            {r.scopes.map((s) => (
              <tr key={s.path} data-path={s.path}>
                <td>{s.path}</td>
                <td>
                  {fmtInt(s.count)}
                  {s.open > 0 ? ` (${fmtInt(s.open)} open)` : ''}
                </td>
                <td>{fmtDur(s.in_range_ns)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
