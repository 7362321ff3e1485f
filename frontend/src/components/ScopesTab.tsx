import { useMemo, useState } from 'react';
import type { Api, DeepScope, DeepSummary, ScopeNode, SessionDetail } from '../api/client';
import { deepByScope, fmtDivergence, NO_DEEP, topStall } from '../lib/deep';
import { fmtDur, fmtInt, fmtPct } from '../lib/format';
import { expandToDepth, findScope, visibleRows } from '../lib/scopes';
import { useAsync } from '../lib/useAsync';
import { DeepBlock, DeepLosses } from './Deep';
import { AsyncView, Empty } from './States';

export function ScopesTab({ api, session, scope, onSelect, onKernel, onInstance }: { api: Api; session: SessionDetail; scope?: number; onSelect: (id: number | undefined) => void; onKernel: (id: string) => void; onInstance: (start: number, end: number) => void }) {
  const tree = useAsync((sig) => api.scopes(session.id, sig), [api, session.id]);
  const deep = useAsync((sig) => api.deepSummary(session, sig), [api, session]);
  const d = deep.state === 'ready' ? deep.data : null;
  return (
    <>
      <AsyncView value={tree} what="scopes">
        {(t) =>
          t.roots.length === 0 ? (
            <Empty>This session recorded no scopes (wrap code in <code>gpufl.scope("name")</code> to see it here).</Empty>
          ) : (
            <ScopeTreeView roots={t.roots} api={api} session={session} deep={d} scope={scope} onSelect={onSelect} onKernel={onKernel} onInstance={onInstance} />
          )
        }
      </AsyncView>
      <AsyncView value={deep} what="deep-engine data">
        {(x) => <DeepSession api={api} session={session} deep={x} />}
      </AsyncView>
    </>
  );
}

/** The session's deep-engine data: what the ranges lost, then per kernel over the whole session. */
function DeepSession({ api, session, deep }: { api: Api; session: SessionDetail; deep: DeepSummary }) {
  if (!deep.has_data) return <p className="muted" data-testid="no-deep">{NO_DEEP}</p>;
  return (
    <section className="deep-session" data-testid="deep-session">
      <h3>Deep engines: the whole session</h3>
      <DeepLosses summary={deep} />
      {deep.ranges_truncated && <p className="muted small">Ranges: the first {deep.ranges.length} by start are listed by scope below.</p>}
      <DeepBlock api={api} session={session} what="the session" figures={deep.figures} kernels={deep.kernels} />
    </section>
  );
}

function ScopeTreeView({ roots, api, session, deep, scope, onSelect, onKernel, onInstance }: { roots: ScopeNode[]; api: Api; session: SessionDetail; deep: DeepSummary | null; scope?: number; onSelect: (id: number | undefined) => void; onKernel: (id: string) => void; onInstance: (start: number, end: number) => void }) {
  const [expanded, setExpanded] = useState<Set<number>>(() => expandToDepth(roots, 2));
  const rows = useMemo(() => visibleRows(roots, expanded), [roots, expanded]);
  const sel = scope !== undefined ? findScope(roots, scope) : null;
  const deepScopes = useMemo(() => deepByScope(deep), [deep]);
  const withDeep = deepScopes.size > 0;
  const toggle = (id: number) =>
    setExpanded((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  return (
    <div className="scopes">
      <table className="grid" data-testid="scopes">
        <thead>
          <tr>
            <th>Scope</th>
            <th className="num">Calls</th>
            <th className="num">Wall total</th>
            <th className="num">Wall mean</th>
            <th className="num">GPU time (self)</th>
            <th className="num">GPU time (total)</th>
            <th className="num">Kernels</th>
            <th className="num" title="closed calls: shortest · median · longest">Per call min · median · max</th>
            {withDeep && (
              <th className="num" title="deep engines: average active threads per warp instruction (32 = no divergence) · top stall reason">
                Divergence · top stall
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.node.scope_id} className={`clickable ${scope === r.node.scope_id ? 'selected' : ''}`} onClick={() => onSelect(r.node.scope_id)} data-scope={r.node.path}>
              <td style={{ paddingLeft: 8 + r.depth * 16 }}>
                {r.hasChildren ? (
                  <button
                    className="link toggle"
                    aria-label={r.expanded ? `Collapse ${r.node.path}` : `Expand ${r.node.path}`}
                    aria-expanded={r.expanded}
                    onClick={(e) => {
                      e.stopPropagation();
                      toggle(r.node.scope_id);
                    }}
                  >
                    {r.expanded ? '▾' : '▸'}
                  </button>
                ) : (
                  <span className="toggle" />
                )}
                {r.node.name}
                {r.node.open_calls > 0 && <span className="badge warn" title="instances without scope_end">{r.node.open_calls} open</span>}
              </td>
              <td className="num">{fmtInt(r.node.calls)}</td>
              <td className="num">{fmtDur(r.node.wall_total_ns)}</td>
              <td className="num">{fmtDur(r.node.wall_mean_ns)}</td>
              <td className="num">{fmtDur(r.node.gpu_ns)}</td>
              <td className="num">{fmtDur(r.node.gpu_total_ns)}</td>
              <td className="num">{fmtInt(r.node.kernels_total)}</td>
              <td className="num">
                {r.node.wall_min_ns == null || r.node.wall_max_ns == null
                  ? '—'
                  : `${fmtDur(r.node.wall_min_ns)} · ${r.node.wall_p50_ns == null ? '?' : fmtDur(r.node.wall_p50_ns)} · ${fmtDur(r.node.wall_max_ns)}`}
              </td>
              {withDeep && <DeepCell d={deepScopes.get(r.node.scope_id)} />}
            </tr>
          ))}
        </tbody>
      </table>
      {sel && <ScopeDetail key={sel.scope_id} api={api} session={session} node={sel} deep={deepScopes.get(sel.scope_id) ?? null} hasDeep={deep?.has_data ?? false} onKernel={onKernel} onInstance={onInstance} />}
    </div>
  );
}

function DeepCell({ d }: { d: DeepScope | undefined }) {
  if (!d) return <td className="num muted">—</td>;
  return (
    <td className="num small" data-field="deep">
      {fmtDivergence(d.divergence)} · {topStall(d)}
    </td>
  );
}

const CALLS_SHOWN = 200;

function ScopeDetail({ api, session, node, deep, hasDeep, onKernel, onInstance }: { api: Api; session: SessionDetail; node: ScopeNode; deep: DeepScope | null; hasDeep: boolean; onKernel: (id: string) => void; onInstance: (start: number, end: number) => void }) {
  const calls = useAsync(
    (sig) => api.scopeInstances(session, { start: 0, end: session.rangeEnd + 1 }, 0, CALLS_SHOWN, undefined, sig, node.scope_id),
    [api, session, node.scope_id],
  );
  const kernels = useAsync(
    (sig) => api.kernels(session, { start: 0, end: session.rangeEnd + 1, scope: node.scope_id }, 200, undefined, sig),
    [api, session, node.scope_id],
  );
  const byName = useAsync((sig) => api.scopeKernels(session.id, node.scope_id, sig), [api, session.id, node.scope_id]);
  return (
    <div className="scope-detail">
      <h3>
        Calls of <code>{node.path}</code> <span className="muted small">(click one to see it on the Kernels timeline)</span>
      </h3>
      <AsyncView value={calls} what="the scope's calls">
        {(c) => (
          <div className="scroll short">
            <table className="grid" data-testid="scope-calls">
              <thead>
                <tr>
                  <th className="num">#</th>
                  <th className="num">Start</th>
                  <th className="num">Duration</th>
                  <th className="num">Thread</th>
                </tr>
              </thead>
              <tbody>
                {c.items.map((x, i) => (
                  <tr key={x.inst} className="clickable" data-inst={x.inst} onClick={() => onInstance(x.start, x.end ?? session.rangeEnd)}>
                    <td className="num">{i + 1}</td>
                    <td className="num">+{fmtDur(x.start)}</td>
                    <td className="num">{x.end === null ? 'open (no scope_end)' : fmtDur(x.end - x.start)}</td>
                    <td className="num">{x.threadId}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {c.nextCursor && (
              <p className="muted small">
                The first {c.items.length} of {fmtInt(node.calls)} calls, in time order.
              </p>
            )}
          </div>
        )}
      </AsyncView>
      <h3>
        Kernels by name in <code>{node.path}</code> and the scopes under it
      </h3>
      <AsyncView value={byName} what="the scope's kernels by name">
        {(g) =>
          g.items.length === 0 ? (
            <Empty>No kernels were launched in this scope or in the scopes under it.</Empty>
          ) : (
            <div className="scroll">
              <table className="grid" data-testid="scope-kernels-by-name">
                <thead>
                  <tr>
                    <th>Kernel</th>
                    <th className="num">Count (self)</th>
                    <th className="num">Total</th>
                    <th className="num">Self</th>
                    <th className="num">Mean</th>
                    <th className="num">Min</th>
                    <th className="num">Max</th>
                    <th className="num">Share</th>
                  </tr>
                </thead>
                <tbody>
                  {g.items.map((r) => (
                    <tr key={r.name ?? '(unnamed)'}>
                      <td className="kname" title={r.name ?? ''}>{r.name ?? '(unnamed)'}</td>
                      <td className="num">
                        {fmtInt(r.count)} ({fmtInt(r.self_count)})
                      </td>
                      <td className="num">{fmtDur(r.total_ns)}</td>
                      <td className="num">{fmtDur(r.self_ns)}</td>
                      <td className="num">{fmtDur(r.mean_ns)}</td>
                      <td className="num">{fmtDur(r.min_ns)}</td>
                      <td className="num">{fmtDur(r.max_ns)}</td>
                      <td className="num">{fmtPct(r.share)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {g.names > g.items.length && (
                <p className="muted small">
                  The {g.items.length} names with the most time of {fmtInt(g.names)}.
                </p>
              )}
            </div>
          )
        }
      </AsyncView>
      <h3>
        Kernels launched in <code>{node.path}</code>
      </h3>
      <AsyncView value={kernels} what="the scope's kernels">
        {(k) =>
          k.items.length === 0 ? (
            <Empty>
              No kernels were launched directly in this scope
              {node.kernels_total > 0 ? `; ${fmtInt(node.kernels_total)} in the scopes under it (by name above)` : ''}.
            </Empty>
          ) : (
            <>
              <div className="scroll">
                <table className="grid" data-testid="scope-kernels">
                  <thead>
                    <tr>
                      <th>Kernel</th>
                      <th className="num">Start</th>
                      <th className="num">Duration</th>
                      <th className="num">GPU</th>
                      <th className="num">Stream</th>
                    </tr>
                  </thead>
                  <tbody>
                    {k.items.map((r) => (
                      <tr key={r.id} className="clickable" onClick={() => onKernel(r.id)}>
                        <td className="kname">{r.name ?? '(unnamed)'}</td>
                        <td className="num">+{fmtDur(r.start)}</td>
                        <td className="num">{fmtDur(r.dur)}</td>
                        <td className="num">{r.device}</td>
                        <td className="num">{r.stream}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              {k.nextCursor && <p className="muted small">Showing the first {k.items.length} of {fmtInt(node.kernels)} kernels.</p>}
            </>
          )
        }
      </AsyncView>
      <h3>
        Warp divergence and stall reasons in <code>{node.path}</code>
      </h3>
      {!hasDeep ? (
        <p className="muted">{NO_DEEP}</p>
      ) : !deep ? (
        <Empty>No deep-engine samples for this scope: it was not a deep scope (<code>gpufl.scope(name, deep=True)</code>).</Empty>
      ) : (
        <>
          <DeepLosses summary={{ range_totals: deep.ranges, errors: [] }} />
          <DeepBlock api={api} session={session} what={node.path} figures={deep} kernels={deep.kernels} scopeId={node.scope_id} />
          <DeepInstances api={api} session={session} scopeId={node.scope_id} />
        </>
      )}
    </div>
  );
}

/** A deep scope's instances: each one's range (engines, samples, what it lost) and divergence per kernel. */
function DeepInstances({ api, session, scopeId }: { api: Api; session: SessionDetail; scopeId: number }) {
  const detail = useAsync((sig) => api.deepScope(session, scopeId, sig), [api, session, scopeId]);
  return (
    <AsyncView value={detail} what="the scope's deep instances">
      {(d) => (
        <div className="scroll short">
          <p className="small">Per call of the scope (its deep range: engines, samples, what it lost):</p>
          <table className="grid" data-testid="deep-instances">
            <thead>
              <tr>
                <th className="num">Instance</th>
                <th>Engines</th>
                <th className="num">PC samples (dropped)</th>
                <th>Divergence per kernel</th>
                <th>Error</th>
              </tr>
            </thead>
            <tbody>
              {d.instances.map((i) => (
                <tr key={i.inst} data-inst={i.inst}>
                  <td className="num">{i.inst}</td>
                  <td className="small">{i.range ? i.range.engines.join(', ') : 'no profile_range arrived'}</td>
                  <td className="num">
                    {i.range?.pc_samples == null ? '—' : fmtInt(i.range.pc_samples)}
                    {i.range?.pc_dropped ? ` (${fmtInt(i.range.pc_dropped)} dropped)` : ''}
                    {i.range?.pc_buffer_full ? ' buffer full' : ''}
                  </td>
                  <td className="small">{i.kernels.map((k) => `${k.kernel ?? '(unnamed)'}: ${fmtDivergence(k.divergence)}`).join('; ') || '—'}</td>
                  <td className="small warn">{i.range?.error ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {d.truncated && (
            <p className="muted small">
              The first {d.instances.length} of {fmtInt(d.instances_total)} instances, by start.
            </p>
          )}
        </div>
      )}
    </AsyncView>
  );
}
