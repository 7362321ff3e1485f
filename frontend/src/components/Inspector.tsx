import type { DeepSummary, KernelDetail, SessionDetail } from '../api/client';
import { deepKernelFor, fmtDivergence, shortStall } from '../lib/deep';
import { fmtInt, fmtPct } from '../lib/format';
import { inspectorRows, shortKernelName } from '../lib/inspector';
import type { Async } from '../lib/useAsync';
import { AsyncView } from './States';

/** The kernel inspector. Its column is always there (an empty one says how to fill it), so opening it never
 * narrows and redraws the timeline beside it. */
export function Inspector({ value, session, deep, onClose }: { value: Async<KernelDetail | null> | null; session: SessionDetail; deep: DeepSummary | null; onClose: () => void }) {
  return (
    <aside className="inspector" data-testid="inspector" aria-label="Kernel inspector">
      <div className="inspector-head">
        <h3>Inspector</h3>
        {value && (
          <button className="link" onClick={onClose} aria-label="Close inspector">
            ✕
          </button>
        )}
      </div>
      {!value ? (
        <p className="muted">Click a kernel on the timeline to inspect it.</p>
      ) : (
        <AsyncView value={value} what="the kernel">
          {(k) => {
            if (!k) return <p className="muted">No kernel selected.</p>;
            const dn = session.devices.find((d) => d.device_id === k.device)?.name ?? null;
            return (
              <>
                <dl className="kv">
                  {inspectorRows(k, dn, session.origin).map((r) => (
                    <div key={r.key} data-field={r.key}>
                      <dt>{r.label}</dt>
                      <dd className={r.key === 'name' ? 'kname-short' : ''} title={r.key === 'name' ? (k.name ?? undefined) : undefined}>
                        {r.value}
                      </dd>
                    </div>
                  ))}
                </dl>
                {k.name !== null && k.name !== shortKernelName(k.name) && (
                  <details data-field="name-full">
                    <summary>Full name</summary>
                    <code className="kname-full wrap">{k.name}</code>
                  </details>
                )}
                <DeepOfKernel deep={deep} name={k.name} mangled={k.mangled} />
                <h4>CPU call stack</h4>
                {k.stack && k.stack.length ? (
                  <ol className="stack" data-testid="stack">
                    {k.stack.map((f, i) => (
                      <li key={i}>
                        <span className="fn">{f.function}</span>
                        <span className="muted small">
                          {f.file}:{f.line}
                        </span>
                      </li>
                    ))}
                  </ol>
                ) : (
                  <p className="muted">No call stack recorded for this launch.</p>
                )}
                {k.mangled && (
                  <details>
                    <summary>Mangled name</summary>
                    <code className="mono small wrap">{k.mangled}</code>
                  </details>
                )}
              </>
            );
          }}
        </AsyncView>
      )}
    </aside>
  );
}

/** A kernel's divergence and top stalls where a deep engine covered the same kernel in this session. */
function DeepOfKernel({ deep, name, mangled }: { deep: DeepSummary | null; name: string | null; mangled: string | null }) {
  if (!deep?.has_data) return null;
  const d = deepKernelFor(deep, name, mangled);
  if (!d) return <p className="muted small" data-testid="inspector-deep">No deep engine covered this kernel in this session.</p>;
  return (
    <div data-testid="inspector-deep">
      <h4>Deep engines (all its samples in the session)</h4>
      <dl className="kv">
        <div data-field="divergence">
          <dt title="average active threads per executed warp instruction (32 = no divergence)">Divergence</dt>
          <dd>{fmtDivergence(d.divergence)}</dd>
        </div>
        <div data-field="pc-samples">
          <dt>PC samples</dt>
          <dd>{d.samples === null ? 'not reported' : fmtInt(d.samples)}</dd>
        </div>
        {d.stalls.slice(0, 3).map((s) => (
          <div key={s.reason} data-field="stall">
            <dt title={s.reason}>{shortStall(s.reason)}</dt>
            <dd>{fmtPct(s.share)}</dd>
          </div>
        ))}
      </dl>
    </div>
  );
}
