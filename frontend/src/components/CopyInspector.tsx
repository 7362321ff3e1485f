import type { MemcpyRow, ScopeInstance, SessionDetail } from '../api/client';
import { copyFields } from '../lib/copies';
import type { Async } from '../lib/useAsync';
import { AsyncView } from './States';

/** The copy (or memset) inspector: in the kernel inspector's column, so opening it does not reflow the timeline. */
export function CopyInspector({ value, scope, session, onClose }: { value: Async<MemcpyRow | null>; scope: ScopeInstance | null; session: SessionDetail; onClose: () => void }) {
  return (
    <aside className="inspector" data-testid="copy-inspector" aria-label="Copy inspector">
      <div className="inspector-head">
        <h3>Copy</h3>
        <button className="link" onClick={onClose} aria-label="Close inspector">
          ✕
        </button>
      </div>
      <AsyncView value={value} what="the copy">
        {(c) =>
          !c ? (
            <p className="muted">That copy is no longer in the store.</p>
          ) : (
            <dl className="kv">
              {copyFields(c, scope, session.devices.find((d) => d.device_id === c.device)?.name ?? null).map((r) => (
                <div key={r.key} data-field={r.key}>
                  <dt>{r.label}</dt>
                  <dd>{r.value}</dd>
                </div>
              ))}
            </dl>
          )
        }
      </AsyncView>
    </aside>
  );
}
