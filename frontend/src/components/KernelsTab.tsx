import { useEffect, useMemo, useRef, useState } from 'react';
import type { Api, KernelSummary, MemcpyRow, ScopeInstance, SessionDetail } from '../api/client';
import { captureModel, modeText } from '../lib/capture';
import type { CopyRef } from '../lib/route';
import { useAsync } from '../lib/useAsync';
import { useDebounced } from '../lib/useDebounced';
import { Timeline } from '../timeline/Timeline';
import type { Viewport } from '../timeline/viewport';
import { CopyInspector } from './CopyInspector';
import { Inspector } from './Inspector';
import { RangeStats, type TimeRange } from './RangeStats';
import { AsyncView } from './States';
import { SummaryTable } from './SummaryTable';
import { TimelineSearch } from './TimelineSearch';

export interface KernelsTabProps {
  api: Api;
  session: SessionDetail;
  t0?: number;
  t1?: number;
  kernel?: string;
  name?: string;
  /** The selected copy or memset (in the URL, so a link reopens it). */
  copy?: CopyRef;
  onChange: (patch: { t0?: number; t1?: number; kernel?: string; name?: string; copy?: CopyRef }) => void;
}

export function KernelsTab({ api, session, t0, t1, kernel, name, copy, onChange }: KernelsTabProps) {
  const initial: Viewport =
    t0 !== undefined && t1 !== undefined && t1 > t0 ? { t0, t1 } : { t0: 0, t1: session.rangeEnd };
  const [vp, setVp] = useState<Viewport>(initial);
  const [nonce, setNonce] = useState(0);
  const [range, setRange] = useState<TimeRange | null>(null);
  const reported = useRef<Viewport>(initial);

  // A window from outside (deep link edit, System chart click) moves the timeline.
  useEffect(() => {
    if (t0 === undefined || t1 === undefined || t1 <= t0) return;
    const r = reported.current;
    if (Math.abs(r.t0 - t0) > 1 || Math.abs(r.t1 - t1) > 1) {
      reported.current = { t0, t1 };
      setVp({ t0, t1 });
      setNonce((n) => n + 1);
    }
  }, [t0, t1]);

  const detail = useAsync((sig) => (kernel ? api.kernel(session, kernel, sig) : Promise.resolve(null)), [api, session, kernel]);
  // A copy (or memset) clicked on the timeline or named by the URL: found by id among those running when it
  // started.
  const copyDetail = useAsync((sig) => (copy ? findCopy(api, session, copy, sig) : Promise.resolve(null)), [api, session, copy?.id, copy?.start]);
  const copyRow = copyDetail.state === 'ready' ? copyDetail.data?.row ?? null : null;
  // GPU activity under the kernel lanes (SM active beside NVML's utilisation): off until asked, then kept.
  const [activity, setActivity] = useState(() => readFlag(ACTIVITY_KEY));
  // The summary waits for the timeline's first frame (or 2 s): on a big session both are backend work, and the
  // timeline is what the user looks at first.
  const [summaryGo, setSummaryGo] = useState(false);
  useEffect(() => {
    const t = window.setTimeout(() => setSummaryGo(true), 2000);
    return () => window.clearTimeout(t);
  }, []);
  // The deep engines' summary (the inspector's divergence and stalls) waits likewise: on a 10M-kernel session
  // it shared the backend with the first frame's tiles.
  const deep = useAsync((sig) => (summaryGo ? api.deepSummary(session, sig) : Promise.resolve(null)), [api, session, summaryGo]);
  // "Visible range only": the summary follows the timeline's window, re-asked once the view rests (300 ms).
  const [visibleOnly, setVisibleOnly] = useState(false);
  const win = useDebounced(visibleOnly ? { start: Math.max(0, t0 ?? 0), end: t1 ?? session.rangeEnd } : undefined, 300);
  const summary = useAsync(
    (sig) => (summaryGo ? api.kernelSummary(session, 'total', 1000, sig, win) : new Promise<never>(() => {})),
    [api, session, summaryGo, win?.start, win?.end],
  );
  const sel = detail.state === 'ready' && detail.data ? detail.data : null;
  // One object per selected kernel (a new one each render would read, to the timeline, as a new selection
  // and hide the tooltip whenever the URL follows the window).
  const selected = useMemo(
    () =>
      sel
        ? {
            start: sel.start,
            end: sel.end,
            device: sel.device,
            stream: sel.stream,
            call: sel.apiStart !== null && sel.threadId !== null ? { thread: sel.threadId, start: sel.apiStart, end: sel.apiStart + (sel.apiDur ?? 0) } : null,
          }
        : null,
    [sel],
  );
  // What was recorded when: sessions not in continuous mode traced only in their capture windows (#21).
  const windowed = modeText(session.header?.options) !== 'continuous';
  const windows = useAsync((sig) => (windowed ? api.captureWindows(session.id, sig) : Promise.resolve(null)), [api, session, windowed]);
  const capture = useMemo(() => (windows.state === 'ready' ? captureModel(session, windows.data) : null), [session, windows]);

  // A kernel selected from elsewhere (Scopes tab, deep link) that is outside the window: bring it into view.
  useEffect(() => {
    if (!sel) return;
    const v = reported.current;
    if (sel.end >= v.t0 && sel.start <= v.t1) return;
    const span = Math.max(v.t1 - v.t0, (sel.end - sel.start) * 3, 10_000);
    const mid = (sel.start + sel.end) / 2;
    const nv = { t0: mid - span / 2, t1: mid + span / 2 };
    reported.current = nv;
    setVp(nv);
    setNonce((n) => n + 1);
  }, [sel]);
  // Likewise a copy opened from a link.
  useEffect(() => {
    if (!copyRow) return;
    const v = reported.current;
    if (copyRow.end >= v.t0 && copyRow.start <= v.t1) return;
    const span = Math.max(v.t1 - v.t0, (copyRow.end - copyRow.start) * 3, 10_000);
    const mid = (copyRow.start + copyRow.end) / 2;
    const nv = { t0: mid - span / 2, t1: mid + span / 2 };
    reported.current = nv;
    setVp(nv);
    setNonce((n) => n + 1);
  }, [copyRow]);

  const table = (data: KernelSummary, stale: boolean) => (
    <SummaryTable
      api={api}
      session={session}
      data={data}
      stale={stale}
      win={win}
      visibleOnly={visibleOnly}
      onVisibleOnly={setVisibleOnly}
      selected={name ?? null}
      onSelect={(n) => onChange({ name: n ?? undefined })}
    />
  );

  return (
    <div className="kernels-tab">
      <div className="kernels-top">
        <div className="timeline-col">
          <TimelineSearch
            api={api}
            session={session}
            windowStart={() => reported.current.t0}
            onMatch={(m) => {
              // zoom to the instance: it fills the middle third of the view (at least 10 µs of view)
              const end = m.end ?? m.start + Math.max(1000, reported.current.t1 - reported.current.t0) / 3;
              const span = Math.max(3 * (end - m.start), 10_000);
              const mid = (m.start + end) / 2;
              const nv = { t0: mid - span / 2, t1: mid + span / 2 };
              reported.current = nv;
              setVp(nv);
              setNonce((n) => n + 1);
              if (m.kind === 'kernel') onChange({ kernel: m.id, copy: undefined, t0: Math.round(nv.t0), t1: Math.round(nv.t1) });
            }}
          />
          <Timeline
            api={api}
            session={session}
            viewport={vp}
            viewportNonce={nonce}
            onViewportChange={(v) => {
              reported.current = v;
              onChange({ t0: Math.round(v.t0), t1: Math.round(v.t1) });
            }}
            selectedId={kernel ?? null}
            selected={selected}
            onSelect={(id) => onChange({ kernel: id, copy: undefined })}
            selectedCopy={copyRow}
            onSelectCopy={(c) => onChange({ copy: { id: c.id, start: c.start }, kernel: undefined })}
            activity={activity}
            capture={capture}
            highlightName={name ?? null}
            onReady={() => setSummaryGo(true)}
            onRange={setRange}
          />
          {capture && (
            <div className="small capture-line" data-testid="capture-line">
              {capture.summary}
            </div>
          )}
          {windows.state === 'error' && (
            <div className="small capture-line" data-testid="capture-line">
              Capture ({modeText(session.header?.options)}): the capture windows could not be loaded ({String(windows.error)}), so time not
              recorded is not shaded.
            </div>
          )}
          <label className="small activity-toggle">
            <input
              type="checkbox"
              data-testid="activity-toggle"
              checked={activity}
              onChange={(e) => {
                setActivity(e.target.checked);
                writeFlag(ACTIVITY_KEY, e.target.checked);
              }}
            />{' '}
            SM activity under the kernel lanes (NVML GPM, beside NVML utilisation)
          </label>
          {range && <RangeStats api={api} session={session} range={range} onClose={() => setRange(null)} />}
        </div>
        {copy ? (
          <CopyInspector
            value={copyDetail.state === 'ready' ? { state: 'ready', data: copyDetail.data?.row ?? null } : copyDetail.state === 'error' ? copyDetail : { state: 'loading' }}
            scope={copyDetail.state === 'ready' ? (copyDetail.data?.scope ?? null) : null}
            session={session}
            onClose={() => onChange({ copy: undefined })}
          />
        ) : (
          <Inspector value={kernel ? detail : null} session={session} deep={deep.state === 'ready' ? deep.data : null} onClose={() => onChange({ kernel: undefined })} />
        )}
      </div>
      {summary.state === 'loading' && summary.prev ? (
        table(summary.prev, true)
      ) : (
        <AsyncView value={summary} what="the kernel summary">
          {(s) => table(s, false)}
        </AsyncView>
      )}
    </div>
  );
}

const ACTIVITY_KEY = 'gpufl.timeline.activity';

function readFlag(key: string): boolean {
  try {
    return window.localStorage.getItem(key) === '1';
  } catch {
    return false;
  }
}

function writeFlag(key: string, on: boolean): void {
  try {
    window.localStorage.setItem(key, on ? '1' : '0');
  } catch {
    // storage blocked: the choice lasts for this page only
  }
}

/** The copy (or memset, id "memset:<seq>") with id `c.id`, among those running at its start; and its scope. */
async function findCopy(api: Api, s: SessionDetail, c: { id: string; start: number }, signal: AbortSignal): Promise<{ row: MemcpyRow; scope: ScopeInstance | null } | null> {
  const win = { start: c.start, end: c.start + 1 };
  const page = c.id.startsWith('memset:') ? await api.memsets(s, win, 1000, signal) : await api.memcpy(s, win, 1000, signal);
  const row = page.items.find((m) => m.id === c.id);
  if (!row) return null;
  let scope: ScopeInstance | null = null;
  if (row.scopeInst !== null) {
    const sc = await api.scopeInstances(s, { start: row.start, end: row.start + 1 }, 0, 1000, undefined, signal);
    scope = sc.items.find((x) => x.inst === row.scopeInst) ?? null;
  }
  return { row, scope };
}
