import type { KernelDetail, SessionDetail } from '../api/client';
import { inspectorRows, shortKernelName } from '../lib/inspector';
import type { Async } from '../lib/useAsync';
import { AsyncView } from './States';

/** The kernel inspector. Its column is always there (an empty one says how to fill it), so opening it never
 * narrows and redraws the timeline beside it. */
export function Inspector({ value, session, onClose }: { value: Async<KernelDetail | null> | null; session: SessionDetail; onClose: () => void }) {
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
