import { useMemo, useState } from 'react';
import type { DiffWire } from '../api/client';
import {
  compactKey,
  countText,
  fmtCount,
  filterRows,
  fmtDeltaNs,
  fmtRel,
  impactShare,
  maxImpact,
  labelCounts,
  NO_FILTER,
  ROW_KINDS,
  ROW_LABELS,
  rowId,
  rowWhy,
  type RowFilter,
} from '../lib/diff';
import { fmtDur } from '../lib/format';
import { Empty } from './States';

function toggle<T>(xs: T[], x: T): T[] {
  return xs.includes(x) ? xs.filter((y) => y !== x) : [...xs, x];
}

/** The diff's rows by impact, filterable by kind, label and text; a click selects a row. */
export function CompareRows({ d, selected, onSelect }: { d: DiffWire; selected: string | null; onSelect: (id: string) => void }) {
  const [f, setF] = useState<RowFilter>(NO_FILTER);
  const rows = useMemo(() => filterRows(d.rows, f), [d.rows, f]);
  const counts = useMemo(() => labelCounts(d.rows, f.kinds), [d.rows, f.kinds]);
  const max = useMemo(() => maxImpact(d.rows), [d.rows]);
  const unit = d.per_step ? 'per step' : 'total';
  return (
    <>
      <div className="diff-filters" role="group" aria-label="Filter rows">
        <span className="muted small">kind</span>
        {ROW_KINDS.map((k) => (
          <button key={k} className="toggle" aria-pressed={f.kinds.includes(k)} onClick={() => setF({ ...f, kinds: toggle(f.kinds, k) })}>
            {k}
          </button>
        ))}
        <span className="muted small">label</span>
        {ROW_LABELS.map((l) => (
          <button key={l} className="toggle" aria-pressed={f.labels.includes(l)} data-label={l} onClick={() => setF({ ...f, labels: toggle(f.labels, l) })}>
            <span className={`chip ${l}`}>{l}</span> {counts[l]}
          </button>
        ))}
        <input aria-label="Filter rows by name" placeholder="name contains…" value={f.text} onChange={(e) => setF({ ...f, text: e.target.value })} />
        <span className="muted small" data-testid="diff-shown">
          {rows.length} of {d.rows.length} shown
        </span>
      </div>
      {rows.length === 0 ? (
        <Empty>No row matches the filter.</Empty>
      ) : (
        <div className="diff-scroll">
          <table className="grid diff-table" data-testid="diff-rows">
            <thead>
              <tr>
                <th>Kind</th>
                <th className="key">Name</th>
                <th>Label</th>
                <th className="num" title={`time ${unit}`}>Base</th>
                <th className="num" title={`time ${unit}`}>Target</th>
                <th className="num">Change</th>
                <th className="num">%</th>
                <th className="num" title={d.per_step ? 'instances per step (in the whole session)' : 'instances'}>
                  Count{d.per_step ? '/step' : ''}
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => {
                const id = rowId(r);
                const share = impactShare(r, max);
                return (
                  <tr key={id} className={id === selected ? 'clickable selected' : 'clickable'} data-row={id} data-label={r.label} onClick={() => onSelect(id)}>
                    <td className="muted">{r.kind}</td>
                    <td className="key mono" title={r.key}>
                      {compactKey(r)}
                    </td>
                    <td>
                      <span className={`chip ${r.label}`} title={rowWhy(r, d.noise)}>
                        {r.label}
                      </span>
                    </td>
                    <td className="num">{r.base.n ? fmtDur(r.base.value_ns) : '—'}</td>
                    <td className="num">{r.target.n ? fmtDur(r.target.value_ns) : '—'}</td>
                    <td className="num delta">
                      <span className="impact" aria-hidden>
                        <span className={r.delta_ns < 0 ? 'neg' : 'pos'} style={{ width: `${Math.max(2, share * 100)}%` }} />
                      </span>
                      {fmtDeltaNs(r.delta_ns)}
                    </td>
                    <td className="num" data-testid="rel">
                      {fmtRel(r.rel)}
                    </td>
                    <td className="num" title={`${countText(r.base, d.per_step)} → ${countText(r.target, d.per_step)}`} data-testid="counts">
                      {fmtCount(r.base.n_value)} → {fmtCount(r.target.n_value)}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
