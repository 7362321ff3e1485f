/** The deep engines' views (contract v6): divergence and stall reasons per kernel and scope, a stall-reason
 * chart, what the ranges lost, and a kernel's source lines / PCs, hottest first. */
import { useState } from 'react';
import type { Api, DeepFigures, DeepKernel, DeepSummary, SessionDetail } from '../api/client';
import { fmtDivergence, lossNotes, shortStall, stallBars, topStall } from '../lib/deep';
import { fmtInt, fmtPct } from '../lib/format';
import { useAsync } from '../lib/useAsync';
import { AsyncView, Empty } from './States';

const BAR_W = 360;
const ROW_H = 18;
const LABEL_W = 220;

/** Samples per stall reason as horizontal bars (plain SVG, like the duration histogram). */
export function StallChart({ figures, what }: { figures: DeepFigures; what: string }) {
  if (figures.samples === null) return <p className="muted small">Stall reasons: not reported (PC sampling did not cover {what}).</p>;
  const bars = stallBars(figures);
  const h = bars.length * ROW_H;
  return (
    <figure className="histogram stalls" data-testid="stall-chart" data-what={what} data-reasons={JSON.stringify(bars.map((b) => [b.reason, b.samples]))}>
      <figcaption className="small">
        Stall reasons of {what}: {fmtInt(figures.samples)} PC samples kept{figures.other_samples ? `, ${fmtInt(figures.other_samples)} in reasons not listed` : ''}. Bar: samples; hover for CUPTI's name.
      </figcaption>
      <svg viewBox={`0 0 ${LABEL_W + BAR_W + 110} ${h}`} width={LABEL_W + BAR_W + 110} height={h} role="img" aria-label={`Stall reasons of ${what}`}>
        {bars.map((b, i) => (
          <g key={b.reason}>
            <title>
              {b.reason}: {fmtInt(b.samples)} samples ({fmtPct(b.share)})
            </title>
            <text x={LABEL_W - 6} y={i * ROW_H + 13} className="tick" textAnchor="end">
              {b.label}
            </text>
            <rect x={LABEL_W} y={i * ROW_H + 3} width={Math.max(1, b.frac * BAR_W)} height={ROW_H - 6} className="hbar" />
            <text x={LABEL_W + Math.max(1, b.frac * BAR_W) + 6} y={i * ROW_H + 13} className="tick">
              {fmtInt(b.samples)} · {fmtPct(b.share)}
            </text>
          </g>
        ))}
      </svg>
      {figures.not_issued.length > 0 && (
        <p className="muted small" data-testid="not-issued">
          Of those, no warp issued in: {figures.not_issued.map((x) => `${shortStall(x.reason)} ${fmtInt(x.samples)} (${fmtPct(x.share)})`).join(', ')}.
        </p>
      )}
    </figure>
  );
}

/** What the deep ranges lost or failed at (dropped samples, a full buffer, engine errors): always shown. */
export function DeepLosses({ summary }: { summary: Pick<DeepSummary, 'range_totals' | 'errors'> }) {
  const notes = lossNotes(summary);
  const t = summary.range_totals;
  return (
    <div className="small" data-testid="deep-losses">
      <span className="muted">
        {fmtInt(t.ranges)} deep range{t.ranges === 1 ? '' : 's'}
        {t.pc_samples !== null ? `, ${fmtInt(t.pc_samples)} PC samples taken` : ''}
        {t.pc_non_user_samples ? ` (${fmtInt(t.pc_non_user_samples)} outside the program's kernels)` : ''}
        {notes.length === 0 ? '; nothing dropped, no engine error.' : ':'}
      </span>
      {notes.length > 0 && (
        <ul className="warn">
          {notes.map((n) => (
            <li key={n}>{n}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** Per kernel: instructions, divergence, PC samples, top stall; a click selects one. */
export function DeepKernels({ kernels, selected, onSelect }: { kernels: DeepKernel[]; selected: string | null; onSelect: (k: string | null) => void }) {
  return (
    <div className="scroll short wide">
      <table className="grid" data-testid="deep-kernels">
        <thead>
          <tr>
            <th>Kernel</th>
            <th className="num" title="warp instructions executed (smsp__sass_inst_executed)">Instructions</th>
            <th className="num" title="average active threads per executed warp instruction (32 = no divergence)">Divergence</th>
            <th className="num">PC samples</th>
            <th>Top stall</th>
          </tr>
        </thead>
        <tbody>
          {kernels.map((k) => (
            <tr key={k.kernel ?? '(unnamed)'} className={`clickable ${selected === k.kernel ? 'selected' : ''}`} data-kernel={k.kernel ?? ''} onClick={() => onSelect(k.kernel)}>
              <td className="kname" title={k.kernel ?? ''}>{k.kernel ?? '(unnamed)'}</td>
              <td className="num">{k.instructions === null ? 'not reported' : fmtInt(k.instructions)}</td>
              <td className="num" data-field="divergence">{fmtDivergence(k.divergence)}</td>
              <td className="num">{k.samples === null ? 'not reported' : fmtInt(k.samples)}</td>
              <td className="small" title={k.stalls[0]?.reason}>{topStall(k)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const LINES_SHOWN = 100;

/** One kernel's source lines (or PCs), hottest first: samples, then instructions; divergence and top stalls. */
export function DeepSource({ api, session, kernel, scopeId }: { api: Api; session: SessionDetail; kernel: string; scopeId?: number }) {
  const [by, setBy] = useState<'line' | 'pc'>('line');
  const lines = useAsync((sig) => api.deepLines(session.id, kernel, { scopeId, by, limit: LINES_SHOWN }, sig), [api, session.id, kernel, scopeId, by]);
  return (
    <div data-testid="deep-source">
      <p className="small">
        Hot {by === 'line' ? 'source lines' : 'PCs'} of <code className="kname">{kernel}</code>{' '}
        <button className="link" onClick={() => setBy(by === 'line' ? 'pc' : 'line')}>
          by {by === 'line' ? 'PC' : 'source line'} instead
        </button>
      </p>
      <AsyncView value={lines} what="the kernel's source lines">
        {(d) => (
          <div className="scroll">
            <table className="grid" data-testid="deep-lines" data-by={d.by}>
              <thead>
                <tr>
                  <th>{d.by === 'line' ? 'Source line' : 'PC'}</th>
                  <th className="num">PC samples</th>
                  <th className="num">Instructions</th>
                  <th className="num">Divergence</th>
                  <th>Top stalls</th>
                </tr>
              </thead>
              <tbody>
                {d.items.map((l, i) => (
                  <tr key={i} data-line={l.source_line ?? ''}>
                    <td className="mono small">
                      {l.source_line !== null ? `${l.source_file ?? '(unknown file)'}:${l.source_line}` : 'no line info'}
                      {l.pc_offset !== null ? ` @0x${l.pc_offset.toString(16)}` : l.pcs > 1 ? ` (${l.pcs} PCs)` : ''}
                    </td>
                    <td className="num">{l.samples === null ? '—' : `${fmtInt(l.samples)} (${fmtPct(l.sample_share)})`}</td>
                    <td className="num">{l.instructions === null ? '—' : fmtInt(l.instructions)}</td>
                    <td className="num">{fmtDivergence(l.divergence)}</td>
                    <td className="small">
                      {l.stalls.map((s) => `${shortStall(s.reason)} ${fmtPct(s.share, 0)}`).join(', ') || '—'}
                      {l.other_samples ? `, others ${fmtInt(l.other_samples)}` : ''}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {d.truncated && (
              <p className="muted small" data-testid="deep-lines-cut">
                The {d.items.length} hottest of {fmtInt(d.lines_total)} {d.by === 'line' ? 'rows' : 'PCs'}.
              </p>
            )}
          </div>
        )}
      </AsyncView>
    </div>
  );
}

/** Figures of a group (a scope, the session) and its kernels, a kernel's stall chart and source on a click. */
export function DeepBlock({ api, session, what, figures, kernels, scopeId }: { api: Api; session: SessionDetail; what: string; figures: DeepFigures; kernels: DeepKernel[]; scopeId?: number }) {
  const [sel, setSel] = useState<string | null>(null);
  const k = kernels.find((x) => x.kernel === sel) ?? null;
  if (kernels.length === 0) return <Empty>No deep-engine samples in {what}.</Empty>;
  return (
    <div className="deep" data-testid="deep-block" data-what={what}>
      <p className="small">
        Divergence of {what}: <strong data-field="divergence">{fmtDivergence(figures.divergence)}</strong> active threads per warp instruction
        {figures.instructions !== null ? ` over ${fmtInt(figures.instructions)} warp instructions` : ''}. Click a kernel for its stall reasons and hot source lines.
      </p>
      <StallChart figures={figures} what={what} />
      <DeepKernels kernels={kernels} selected={sel} onSelect={setSel} />
      {k && k.kernel !== null && (
        <>
          <StallChart figures={k} what={k.kernel} />
          <DeepSource key={k.kernel} api={api} session={session} kernel={k.kernel} scopeId={scopeId} />
        </>
      )}
    </div>
  );
}
