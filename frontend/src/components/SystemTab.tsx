/**
 * System metrics: one chart per metric, one line per GPU, shared cursor; totals that do not move stated as
 * numbers; throttle flags and NVML's clock-event reasons as 0/1 tracks; metrics the GPU did not report named.
 * Charts use uPlot: a ~50 KB canvas time-series library with no runtime dependencies or network access, fast
 * enough for thousands of points per series, and with built-in cursor sync across charts.
 * The time axis is the Kernels timeline's visible range (the URL's t0/t1) when one is set: dragging across a
 * chart sets that range for both, a click opens the timeline at that moment.
 */
import { useEffect, useRef, type RefObject } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Api, SessionDetail } from '../api/client';
import { fmtDur, fmtInt, fmtOffset } from '../lib/format';
import { alignSeries, chartSpecs, constantValues, isIdleActivity, missingMetrics, samplingOf, type ChartSpec } from '../lib/system';
import { flagTracks, type FlagTracks } from '../lib/flags';
import { useAsync } from '../lib/useAsync';
import { hashString } from '../lib/color';
import { AsyncView, Empty } from './States';

export const SYSTEM_POINTS = 600;

interface Props {
  api: Api;
  session: SessionDetail;
  /** The Kernels timeline's visible range (ns from session start), when the URL has one. */
  t0?: number;
  t1?: number;
  onJump: (t: number) => void;
  onRange: (r: { t0: number; t1: number } | null) => void;
}

export function SystemTab({ api, session, t0, t1, onJump, onRange }: Props) {
  const win = t0 !== undefined && t1 !== undefined && t1 > t0 ? { start: Math.max(0, t0), end: t1 } : null;
  const data = useAsync(
    (sig) => api.system(session, { points: SYSTEM_POINTS, start: win?.start, end: win?.end }, sig),
    [api, session, win?.start, win?.end],
  );
  const range: [number, number] = win ? [win.start / 1e9, win.end / 1e9] : [0, session.rangeEnd / 1e9];
  return (
    <AsyncView value={data} what="system metrics">
      {(d) => {
        const specs = chartSpecs(d.series);
        // GPU-activity pipes that never moved off 0 (FP64 on a bf16 job, NVLink on one GPU) are stated in one
        // line, not drawn as a dozen flat charts
        const idle = specs.filter(isIdleActivity);
        const charts = specs.filter((s) => (s.info.kind ?? 'chart') === 'chart' && !idle.includes(s));
        const constants = specs.filter((s) => s.info.kind === 'constant');
        const flags = flagTracks(specs);
        const missing = missingMetrics(d.series);
        const sampling = samplingOf(charts.flatMap((c) => c.series));
        return (
          <div className="system">
            <div className="system-head">
              <p className="muted small" data-testid="system-caption">
                {sampling.intervalNs === null
                  ? 'Fewer than two samples in this range.'
                  : `Sampled every ~${fmtDur(sampling.intervalNs)}`}
                {sampling.raw
                  ? '; each dot is one sample (no line: nothing was measured between them).'
                  : `; each point is the mean of up to ${fmtInt(sampling.maxPerPoint)} samples per ${fmtOffset(d.bucketNs, d.bucketNs)}, min–max shaded.`}{' '}
                Drag across a chart to set the time range (shared with the Kernels timeline); click to open the timeline at that moment.
              </p>
              <p className="small" data-testid="system-range">
                {win ? (
                  <>
                    Showing the Kernels timeline&apos;s visible range +{fmtOffset(win.start, win.end - win.start)} … +{fmtOffset(win.end, win.end - win.start)}{' '}
                    <button className="link" onClick={() => onRange(null)}>
                      Show the whole session
                    </button>
                  </>
                ) : (
                  <span className="muted">Showing the whole session ({fmtDur(session.rangeEnd)}).</span>
                )}
              </p>
            </div>
            {constants.length > 0 && (
              <dl className="facts constants" data-testid="system-constants">
                {constants.flatMap((c) =>
                  constantValues(c).map((v) => (
                    <div key={`${c.metric}:${v.device}`} data-metric={c.metric}>
                      <dt>
                        {c.info.title}
                        {v.device !== null ? ` (GPU ${v.device})` : ''}
                      </dt>
                      <dd>
                        {v.min === v.max ? `${fmtInt(Math.round(v.min))} ${c.info.unit}` : `${fmtInt(Math.round(v.min))}–${fmtInt(Math.round(v.max))} ${c.info.unit} (changed during the session)`}
                      </dd>
                    </div>
                  )),
                )}
              </dl>
            )}
            {missing.length > 0 && (
              <p className="small muted" data-testid="system-missing">
                {missing.map((m, i) => (
                  <span key={m.metric} data-metric={m.metric}>
                    {i > 0 && ' · '}
                    <b>{m.title}</b>: {m.why}
                  </span>
                ))}
              </p>
            )}
            {idle.length > 0 && (
              <p className="small muted" data-testid="system-idle">
                At 0 in every sample of this {win ? 'range' : 'session'}:{' '}
                {idle.map((c, i) => (
                  <span key={c.metric} data-metric={c.metric}>
                    {i > 0 && ', '}
                    {c.info.title}
                  </span>
                ))}
                .
              </p>
            )}
            {!charts.length && !flags && <Empty>No system samples were recorded in this {win ? 'range' : 'session'}.</Empty>}
            <div className="charts">
              {charts.map((s) => (
                <Chart key={s.metric} spec={s} range={range} raw={sampling.raw} onJump={onJump} onRange={onRange} />
              ))}
            </div>
            {flags && <FlagChart tracks={flags} range={range} onJump={onJump} onRange={onRange} />}
          </div>
        );
      }}
    </AsyncView>
  );
}

const PALETTE = ['#4cc9f0', '#f72585', '#90be6d', '#f9c74f', '#b5179e', '#43aa8b', '#f8961e', '#577590'];
const SYNC_KEY = 'gpufl-system';
const AXIS = { stroke: '#9aa3b2', grid: { stroke: '#2a2e37' }, ticks: { stroke: '#2a2e37' } };

function timeAxis(): uPlot.Axis {
  return { ...AXIS, values: (_u, vals) => vals.map((v) => fmtOffset(v * 1e9, (vals[1] - vals[0]) * 1e9)) };
}

/** Click → jump; drag → range. A click that ends a drag is not a jump. */
function bindChartEvents(u: uPlot, onJump: RefObject<(t: number) => void>, onRange: RefObject<(r: { t0: number; t1: number }) => void>) {
  let downX = 0;
  const over = u.over;
  const down = (e: MouseEvent) => (downX = e.clientX);
  const click = (e: MouseEvent) => {
    if (Math.abs(e.clientX - downX) > 3) return;
    const idx = u.cursor.left;
    if (idx === undefined || idx < 0) return;
    const t = u.posToVal(idx, 'x');
    if (Number.isFinite(t)) onJump.current(t * 1e9);
  };
  over.addEventListener('mousedown', down);
  over.addEventListener('click', click);
  return {
    setSelect: (uu: uPlot) => {
      if (uu.select.width < 4) return;
      const a = uu.posToVal(uu.select.left, 'x');
      const b = uu.posToVal(uu.select.left + uu.select.width, 'x');
      uu.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      onRange.current({ t0: Math.round(a * 1e9), t1: Math.round(b * 1e9) });
    },
    dispose: () => {
      over.removeEventListener('mousedown', down);
      over.removeEventListener('click', click);
    },
  };
}

function useLatest<T>(v: T) {
  const r = useRef(v);
  useEffect(() => {
    r.current = v;
  });
  return r;
}

interface ChartProps {
  range: [number, number];
  onJump: (t: number) => void;
  onRange: (r: { t0: number; t1: number }) => void;
}

function Chart({ spec, range, raw, onJump, onRange }: ChartProps & { spec: ChartSpec; raw: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  const jump = useLatest(onJump);
  const setRange = useLatest(onRange);
  const [r0, r1] = range;
  useEffect(() => {
    const el = ref.current!;
    const { x, ys } = alignSeries(spec.series, spec.info.scale);
    const series: uPlot.Series[] = [{ label: 'time', value: (_u, v) => (v === null ? '—' : fmtOffset(v * 1e9, 1e6)) }];
    const bands: uPlot.Band[] = [];
    spec.series.forEach((s, i) => {
      const color = PALETTE[(s.device ?? 0) % PALETTE.length] ?? PALETTE[hashString(String(i)) % PALETTE.length];
      const label = s.device === null ? 'host' : `GPU ${s.device}`;
      const fmt = (_u: uPlot, v: number | null) => (v === null ? '—' : `${v.toFixed(1)}${spec.info.unit ? ` ${spec.info.unit}` : ''}`);
      // One raw sample per point: dots only, a line would claim values nobody measured between them.
      series.push(
        raw
          ? { label, stroke: color, fill: color, width: 1.5, value: fmt, paths: () => null, points: { show: true, size: 7, fill: color } }
          : { label, stroke: color, width: 1.5, value: fmt, points: { show: false } },
      );
      series.push({ label: `${label} min`, stroke: 'transparent', value: fmt, show: true, points: { show: false } });
      series.push({ label: `${label} max`, stroke: 'transparent', value: fmt, show: true, points: { show: false } });
      const base = 1 + i * 3;
      if (!raw) bands.push({ series: [base + 2, base + 1], fill: color + '33' });
    });
    const ev: { current: ReturnType<typeof bindChartEvents> | null } = { current: null };
    const u = new uPlot(
      {
        width: Math.max(300, el.clientWidth),
        height: 170,
        series,
        bands,
        legend: { show: true, live: true },
        cursor: { sync: { key: SYNC_KEY, setSeries: false }, drag: { x: true, y: false, setScale: false } },
        hooks: { setSelect: [(uu) => ev.current?.setSelect(uu)] },
        scales: { x: { time: false, range: () => [r0, r1] } },
        axes: [
          timeAxis(),
          // wide enough for the longest tick label
          { ...AXIS, size: (_u, values) => (values && values.length ? Math.max(...values.map((v) => String(v).length)) * 7 + 18 : 50) },
        ],
      },
      [x, ...ys] as uPlot.AlignedData,
      el,
    );
    ev.current = bindChartEvents(u, jump, setRange);
    // What the e2e test checks: the points actually handed to the chart, per series, and how they are drawn.
    el.dataset.points = JSON.stringify(spec.series.map((_s, i) => (u.data[1 + i * 3] as (number | null)[]).filter((v) => v !== null).length));
    el.dataset.drawn = String(u.data[0].length);
    el.dataset.style = raw ? 'dots' : 'line';
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(300, el.clientWidth), height: 170 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      ev.current?.dispose();
      u.destroy();
    };
  }, [spec, r0, r1, raw, jump, setRange]);
  return (
    <figure className="chart" data-testid="chart" data-metric={spec.metric}>
      <figcaption>
        {spec.info.title} {spec.info.unit && <span className="muted">({spec.info.unit})</span>}
      </figcaption>
      <div ref={ref} className="chart-body" />
    </figure>
  );
}

const ROW_PX = 24;

/** Throttle flags and NVML clock-event reasons, one 0/1 track each: tall = on, thin = off, gap = no sample. */
function FlagChart({ tracks, range, onJump, onRange }: ChartProps & { tracks: FlagTracks }) {
  const ref = useRef<HTMLDivElement>(null);
  const jump = useLatest(onJump);
  const setRange = useLatest(onRange);
  const [r0, r1] = range;
  useEffect(() => {
    const el = ref.current!;
    const n = tracks.rows.length;
    const series: uPlot.Series[] = [{ label: 'time', value: (_u, v) => (v === null ? '—' : fmtOffset(v * 1e9, 1e6)) }];
    tracks.rows.forEach((r, i) => {
      const color = r.on ? '#f8961e' : '#577590';
      series.push({
        label: r.label,
        stroke: color,
        fill: color,
        width: 0,
        fillTo: i + 0.1,
        paths: uPlot.paths.bars!({ size: [1, Infinity], align: 1 }),
        points: { show: false },
        value: (_u, v) => (v === null ? '—' : v - i > 0.5 ? 'on' : 'off'),
      });
    });
    const ys = tracks.rows.map((r, i) => r.values.map((v) => (v === null ? null : v ? i + 0.9 : i + 0.22)));
    const ev: { current: ReturnType<typeof bindChartEvents> | null } = { current: null };
    const u = new uPlot(
      {
        width: Math.max(300, el.clientWidth),
        height: n * ROW_PX + 60,
        series,
        legend: { show: false },
        cursor: { sync: { key: SYNC_KEY, setSeries: false }, drag: { x: true, y: false, setScale: false }, points: { show: false } },
        hooks: { setSelect: [(uu) => ev.current?.setSelect(uu)] },
        scales: { x: { time: false, range: () => [r0, r1] }, y: { range: () => [0, n] } },
        axes: [
          timeAxis(),
          {
            ...AXIS,
            grid: { show: false },
            splits: () => tracks.rows.map((_r, i) => i + 0.55),
            values: () => tracks.rows.map((r) => r.label),
            size: Math.max(...tracks.rows.map((r) => r.label.length)) * 7 + 20,
          },
        ],
      },
      [tracks.x, ...ys] as uPlot.AlignedData,
      el,
    );
    ev.current = bindChartEvents(u, jump, setRange);
    el.dataset.tracks = JSON.stringify(tracks.rows.map((r) => ({ key: r.key, on: r.values.filter((v) => v === true).length, off: r.values.filter((v) => v === false).length })));
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(300, el.clientWidth), height: n * ROW_PX + 60 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      ev.current?.dispose();
      u.destroy();
    };
  }, [tracks, r0, r1, jump, setRange]);
  return (
    <figure className="chart flags" data-testid="flags">
      <figcaption>
        Throttling and NVML clock-event reasons <span className="muted">(per sample: tall = on, thin = off, gap = no sample)</span>
      </figcaption>
      <div ref={ref} className="chart-body" />
      <p className="muted small" data-testid="flags-never">
        {tracks.never.length
          ? `Never on in ${tracks.samples === 1 ? 'the one sample' : `any of the ${fmtInt(tracks.samples)} samples`}: ${tracks.never.join(', ')}.`
          : ''}
        {tracks.mixed ? ' Several samples per point here: a reason is drawn on if it was on in any of them.' : ''}
      </p>
    </figure>
  );
}
