import { useMemo, useState } from 'react';
import type { KernelSummary } from '../api/client';
import { nameColor } from '../lib/color';
import { fmtDur, fmtInt, fmtPct } from '../lib/format';
import { filterSummary, sortSummary, type SummaryKey } from '../lib/summary';
import { Empty } from './States';

const COLS: { key: SummaryKey; label: string; num: boolean }[] = [
  { key: 'name', label: 'Kernel', num: false },
  { key: 'count', label: 'Count', num: true },
  { key: 'total_ns', label: 'Total', num: true },
  { key: 'mean_ns', label: 'Mean', num: true },
  { key: 'p95_ns', label: 'p95', num: true },
  { key: 'share', label: 'Share', num: true },
];

export function SummaryTable({ data, selected, onSelect }: { data: KernelSummary; selected: string | null; onSelect: (name: string | null) => void }) {
  const [key, setKey] = useState<SummaryKey>('total_ns');
  const [desc, setDesc] = useState(true);
  const [q, setQ] = useState('');
  const rows = useMemo(() => sortSummary(filterSummary(data.items, q), key, desc), [data, q, key, desc]);
  return (
    <div className="summary">
      <div className="filters">
        <h3>Kernel summary</h3>
        <input aria-label="Filter kernels" placeholder="Filter by name…" value={q} onChange={(e) => setQ(e.target.value)} />
        <span className="muted small">
          {rows.length} of {data.items.length} kernel names · GPU time {fmtDur(data.gpu_time_ns)}
        </span>
        {selected !== null && <button onClick={() => onSelect(null)}>Clear highlight</button>}
      </div>
      {data.items.length === 0 ? (
        <Empty>No kernels recorded in this session.</Empty>
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
                <tr
                  key={r.name ?? '(unnamed)'}
                  className={`clickable ${selected !== null && selected === r.name ? 'selected' : ''}`}
                  onClick={() => onSelect(selected === r.name ? null : r.name)}
                >
                  <td className="kname" title={r.name ?? ''}>
                    <span className="swatch" style={{ background: nameColor(r.name) }} />
                    {r.name ?? '(unnamed)'}
                  </td>
                  <td className="num">{fmtInt(r.count)}</td>
                  <td className="num">{fmtDur(r.total_ns)}</td>
                  <td className="num">{fmtDur(r.mean_ns)}</td>
                  <td
                    className="num"
                    title={
                      r.quantiles === 'exact'
                        ? 'exact: from every duration (linear interpolation between closest ranks)'
                        : 'estimated by a log-bucket sketch (relative error ≤ 1%)'
                    }
                  >
                    {r.quantiles === 'exact' ? '' : '≈ '}
                    {fmtDur(r.p95_ns)}
                  </td>
                  <td className="num">
                    <span className="bar" style={{ width: `${Math.round(r.share * 60)}px` }} /> {fmtPct(r.share)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
