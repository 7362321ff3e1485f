import { lazy, Suspense } from 'react';
import type { Api, SessionDetail } from '../api/client';
import { fmtDur, fmtInt, fmtWallClock } from '../lib/format';
import { TABS, type Route, type Tab } from '../lib/route';
import { useAsync } from '../lib/useAsync';
import { InsightsTab } from './InsightsTab';
import { KernelsTab } from './KernelsTab';
import { ScopesTab } from './ScopesTab';
import { AsyncView, Loading } from './States';

// The System tab (and uPlot) load on first use: the Kernels tab's first paint does not wait for them.
const SystemTab = lazy(() => import('./SystemTab').then((m) => ({ default: m.SystemTab })));

type SessionRoute = Extract<Route, { page: 'session' }>;

const TAB_LABEL: Record<Tab, string> = { kernels: 'Kernels', scopes: 'Scopes', system: 'System', insights: 'Insights' };

export function Dashboard({ api, route, navigate }: { api: Api; route: SessionRoute; navigate: (r: Route, replace?: boolean) => void }) {
  const detail = useAsync((sig) => api.session(route.session, sig), [api, route.session]);
  return (
    <AsyncView value={detail} what="the session">
      {(s) => <DashboardBody key={s.id} api={api} s={s} route={route} navigate={navigate} />}
    </AsyncView>
  );
}

function DashboardBody({ api, s, route, navigate }: { api: Api; s: SessionDetail; route: SessionRoute; navigate: (r: Route, replace?: boolean) => void }) {
  const go = (patch: Partial<SessionRoute>, replace = false) => navigate({ ...route, ...patch }, replace);
  const gpus = s.devices.map((d) => d.name).filter(Boolean);
  const missing = s.streams.reduce((a, x) => a + (x.missing ?? 0), 0);
  return (
    <div className="dashboard">
      <header className="session-head">
        <h2 data-testid="session-title">
          Session: {s.app ?? '(unknown app)'} [host: {s.host ?? 'unknown'}]
        </h2>
        <div className="facts">
          <span>{fmtWallClock(s.origin)}</span>
          <span>{fmtDur(s.rangeEnd)}</span>
          <span>{gpus.length ? gpus.join(', ') : 'no GPU info'}</span>
          <span>{fmtInt(s.totals.kernels)} kernels</span>
          <span>{fmtInt(s.totals.memcpys)} copies</span>
          {s.totals.memsets > 0 && <span>{fmtInt(s.totals.memsets)} memsets</span>}
          <span>GPU time {fmtDur(s.totals.gpu_time_ns)}</span>
          {s.cutShort && <span className="badge warn" title="Some stream has no session_end: the process was killed or is still running">cut short / live</span>}
          {s.dropped > 0 && <span className="badge warn">{fmtInt(s.dropped)} records dropped by the writer</span>}
          {missing > 0 && <span className="badge warn">{fmtInt(missing)} records missing in transport</span>}
        </div>
        {s.notices.length > 0 && (
          <details className="notices">
            <summary>{s.notices.length} notice(s)</summary>
            <ul>
              {s.notices.map((n, i) => (
                <li key={i}>
                  <b>{String(n.code ?? n.type ?? '')}</b> {String(n.message ?? n.reason ?? '')}
                </li>
              ))}
            </ul>
          </details>
        )}
      </header>
      <nav className="tabs" role="tablist">
        {TABS.map((t) => (
          <button key={t} role="tab" aria-selected={route.tab === t} className={route.tab === t ? 'tab active' : 'tab'} onClick={() => go({ tab: t })}>
            {TAB_LABEL[t]}
          </button>
        ))}
      </nav>
      <div className="tab-body" role="tabpanel">
        {route.tab === 'kernels' && (
          <KernelsTab
            api={api}
            session={s}
            t0={route.t0}
            t1={route.t1}
            kernel={route.kernel}
            name={route.name}
            copy={route.copy}
            onChange={(p) => go(p, p.t0 !== undefined)}
          />
        )}
        {route.tab === 'scopes' && (
          <ScopesTab
            api={api}
            session={s}
            scope={route.scope}
            onSelect={(id) => go({ scope: id })}
            onKernel={(id) => go({ tab: 'kernels', kernel: id })}
            onInstance={(a, b) => {
              // the call and a margin on each side, so its edges show; no selected kernel to pull the view away
              const pad = Math.max(1000, (b - a) * 0.05);
              go({ tab: 'kernels', t0: Math.round(a - pad), t1: Math.round(b + pad), kernel: undefined });
            }}
          />
        )}
        {route.tab === 'insights' && <InsightsTab api={api} session={s} navigate={navigate} />}
        {route.tab === 'system' && (
          <Suspense fallback={<Loading what="charts" />}>
            <SystemTab
              api={api}
              session={s}
              t0={route.t0}
              t1={route.t1}
              onJump={(t) => {
                const span = route.t0 !== undefined && route.t1 !== undefined && route.t1 > route.t0 ? route.t1 - route.t0 : Math.max(1e6, s.rangeEnd / 50);
                // The clicked moment wins: a selected kernel elsewhere would pull the timeline back to itself.
                go({ tab: 'kernels', t0: Math.round(t - span / 2), t1: Math.round(t + span / 2), kernel: undefined });
              }}
              onRange={(r) => go(r ? { t0: r.t0, t1: r.t1 } : { t0: undefined, t1: undefined })}
            />
          </Suspense>
        )}
      </div>
    </div>
  );
}
