import { Fragment, useMemo, useState } from 'react';
import type { Api, KernelSummary, KernelSummaryRow, SessionDetail } from '../api/client';
import { nameColor } from '../lib/color';
import { fmtDur, fmtInt, fmtOffset, fmtPct } from '../lib/format';
import { filterSummary, sortSummary, type SummaryKey } from '../lib/summary';
import { DurationHistogram } from './DurationHistogram';
import { Empty } from './States';

const COLS: { key: SummaryKey; label: string; num: boolean; quantile?: boolean }[] = [
  { key: 'name', label: 'Kernel', num: false },
  { key: 'count', label: 'Count', num: true },
  { key: 'total_ns', label: 'Total', num: true },
  { key: 'mean_ns', label: 'Mean', num: true },
  { key: 'min_ns', label: 'Min', num: true },
  { key: 'p50_ns', label: 'Median', num: true, quantile: true },
  { key: 'p95_ns', label: 'p95', num: true, quantile: true },
  { key: 'max_ns', label: 'Max', num: true },
  { key: 'share', label: 'Share', num: true },
];

function quantileCell(r: KernelSummaryRow, v: number) {
  return (
    <td
      className="num"
      title={
        r.quantiles === 'exact'
          ? 'exact: from every duration (linear interpolation between closest ranks)'
          : 'estimated by a log-bucket sketch (relative error ≤ 1%)'
      }
    >
      {r.quantiles === 'exact' ? '' : '≈ '}
      {fmtDur(v)}
    </td>
  );
}

export interface SummaryTableProps {
  api: Api;
  session: SessionDetail;
  data: KernelSummary;
  /** A reload for a new window is under way: `data` is the previous one. */
  stale: boolean;
  selected: string | null;
  onSelect: (name: string | null) => void;
  /** The window the rows cover (ns from session start), or undefined for the whole session. */
  win?: { start: number; end: number };
  visibleOnly: boolean;
  onVisibleOnly: (on: boolean) => void;
}

export function SummaryTable({ api, session, data, stale, selected, onSelect, win, visibleOnly, onVisibleOnly }: SummaryTableProps) {
  const [key, setKey] = useState<SummaryKey>('total_ns');
  const [desc, setDesc] = useState(true);
  const [q, setQ] = useState('');
  const rows = useMemo(() => sortSummary(filterSummary(data.items, q), key, desc), [data, q, key, desc]);
  return (
    <div className="summary">
      <div className="filters">
        <h3>Kernel summary</h3>
        <input aria-label="Filter kernels" placeholder="Filter by name…" value={q} onChange={(e) => setQ(e.target.value)} />
        <label className="small">
          <input type="checkbox" checked={visibleOnly} onChange={(e) => onVisibleOnly(e.target.checked)} data-testid="visible-only" /> Visible range only
        </label>
        <span className="muted small" data-testid="summary-scope">
          {rows.length} of {data.items.length} kernel names · GPU time {fmtDur(data.gpu_time_ns)} ·{' '}
          {win
            ? `kernels overlapping +${fmtOffset(win.start, win.end - win.start)} … +${fmtOffset(win.end, win.end - win.start)} (each counted whole)`
            : 'whole session'}
          {stale ? ' · updating…' : ''}
        </span>
        {selected !== null && <button onClick={() => onSelect(null)}>Clear highlight</button>}
      </div>
      {data.items.length === 0 ? (
        <Empty>{win ? 'No kernels overlap the visible range.' : 'No kernels recorded in this session.'}</Empty>
      ) : (
        <div className="scroll tall">
          <table className="grid" data-testid="summary">
            <thead>
              <tr>
                {COLS.map((c) => (
                  <th
                    key={c.key}
                    className={`sortable ${c.num ? 'num' : ''}`}
                    aria-sort={key === c.key ? (desc ? 'descending' : 'ascending') : 'none'}
                    onClick={() => {
                      if (key === c.key) setDesc(!desc);
                      else {
                        setKey(c.key);
                        setDesc(c.key !== 'name');
                      }
                    }}
                  >
                    {c.label} {key === c.key ? (desc ? '▼' : '▲') : ''}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <Fragment key={r.name ?? '(unnamed)'}>
                  <tr
                    className={`clickable ${selected !== null && selected === r.name ? 'selected' : ''}`}
                    onClick={() => onSelect(selected === r.name ? null : r.name)}
                    aria-expanded={selected !== null && selected === r.name}
                  >
                    <td className="kname" title={r.name ?? ''}>
                      <span className="swatch" style={{ background: nameColor(r.name) }} />
                      {r.name ?? '(unnamed)'}
                    </td>
                    <td className="num">{fmtInt(r.count)}</td>
                    <td className="num">{fmtDur(r.total_ns)}</td>
                    <td className="num">{fmtDur(r.mean_ns)}</td>
                    <td className="num">{fmtDur(r.min_ns)}</td>
                    {quantileCell(r, r.p50_ns)}
                    {quantileCell(r, r.p95_ns)}
                    <td className="num">{fmtDur(r.max_ns)}</td>
                    <td className="num">
                      <span className="bar" style={{ width: `${Math.round(r.share * 60)}px` }} /> {fmtPct(r.share)}
                    </td>
                  </tr>
                  {selected !== null && selected === r.name && (
                    <tr className="hist-row">
                      <td colSpan={COLS.length}>
                        <DurationHistogram api={api} session={session} name={r.name} win={win} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
