/**
 * System metrics: one chart per metric, one line per GPU (mean per bucket, min–max as a band), shared cursor.
 * Charts use uPlot: a ~50 KB canvas time-series library with no runtime dependencies or network access, fast
 * enough for thousands of points per series, and with built-in cursor sync across charts.
 */
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Api, SessionDetail } from '../api/client';
import { fmtOffset } from '../lib/format';
import { alignSeries, chartSpecs, type ChartSpec } from '../lib/system';
import { useAsync } from '../lib/useAsync';
import { hashString } from '../lib/color';
import { AsyncView, Empty } from './States';

export const SYSTEM_POINTS = 600;

export function SystemTab({ api, session, onJump }: { api: Api; session: SessionDetail; onJump: (t: number) => void }) {
  const data = useAsync((sig) => api.system(session, { points: SYSTEM_POINTS }, sig), [api, session]);
  return (
    <AsyncView value={data} what="system metrics">
      {(d) => {
        const specs = chartSpecs(d.series);
        if (!specs.length) return <Empty>No system samples were recorded in this session.</Empty>;
        return (
          <div className="system">
            <p className="muted small">
              Mean per {fmtOffset(d.bucketNs, d.bucketNs)} bucket, min–max shaded. Click a chart to show that moment on the Kernels timeline.
            </p>
            <div className="charts">
              {specs.map((s) => (
                <Chart key={s.metric} spec={s} rangeEnd={session.rangeEnd} onJump={onJump} />
              ))}
            </div>
          </div>
        );
      }}
    </AsyncView>
  );
}

const PALETTE = ['#4cc9f0', '#f72585', '#90be6d', '#f9c74f', '#b5179e', '#43aa8b', '#f8961e', '#577590'];
const SYNC_KEY = 'gpufl-system';

function Chart({ spec, rangeEnd, onJump }: { spec: ChartSpec; rangeEnd: number; onJump: (t: number) => void }) {
  const ref = useRef<HTMLDivElement>(null);
  const jump = useRef(onJump);
  jump.current = onJump;
  useEffect(() => {
    const el = ref.current!;
    const { x, ys } = alignSeries(spec.series, spec.info.scale);
    const series: uPlot.Series[] = [{ label: 'time', value: (_u, v) => (v === null ? '—' : fmtOffset(v * 1e9, 1e6)) }];
    const bands: uPlot.Band[] = [];
    spec.series.forEach((s, i) => {
      const color = PALETTE[(s.device ?? 0) % PALETTE.length] ?? PALETTE[hashString(String(i)) % PALETTE.length];
      const label = s.device === null ? 'host' : `GPU ${s.device}`;
      const fmt = (_u: uPlot, v: number | null) => (v === null ? '—' : `${v.toFixed(1)}${spec.info.unit ? ` ${spec.info.unit}` : ''}`);
      series.push({ label, stroke: color, width: 1.5, value: fmt, points: { show: false } });
      series.push({ label: `${label} min`, stroke: 'transparent', value: fmt, show: true, points: { show: false } });
      series.push({ label: `${label} max`, stroke: 'transparent', value: fmt, show: true, points: { show: false } });
      const base = 1 + i * 3;
      bands.push({ series: [base + 2, base + 1], fill: color + '33' });
    });
    const width = Math.max(300, el.clientWidth);
    const u = new uPlot(
      {
        width,
        height: 170,
        series,
        bands,
        legend: { show: true, live: true },
        cursor: { sync: { key: SYNC_KEY, setSeries: false }, drag: { x: false, y: false } },
        scales: { x: { time: false, range: () => [0, rangeEnd / 1e9] } },
        axes: [
          { stroke: '#9aa3b2', grid: { stroke: '#2a2e37' }, ticks: { stroke: '#2a2e37' }, values: (_u, vals) => vals.map((v) => fmtOffset(v * 1e9, (vals[1] - vals[0]) * 1e9)) },
          {
            stroke: '#9aa3b2',
            grid: { stroke: '#2a2e37' },
            ticks: { stroke: '#2a2e37' },
            // wide enough for the longest tick label
            size: (_u, values) => (values && values.length ? Math.max(...values.map((v) => String(v).length)) * 7 + 18 : 50),
          },
        ],
      },
      [x, ...ys] as uPlot.AlignedData,
      el,
    );
    // What the e2e test checks: the points actually handed to the chart, per series.
    el.dataset.points = JSON.stringify(spec.series.map((_s, i) => (u.data[1 + i * 3] as (number | null)[]).filter((v) => v !== null).length));
    el.dataset.drawn = String(u.data[0].length);
    const over = u.over;
    const onClick = () => {
      const idx = u.cursor.left;
      if (idx === undefined || idx < 0) return;
      const t = u.posToVal(idx, 'x');
      if (Number.isFinite(t)) jump.current(t * 1e9);
    };
    over.addEventListener('click', onClick);
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(300, el.clientWidth), height: 170 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      over.removeEventListener('click', onClick);
      u.destroy();
    };
  }, [spec, rangeEnd]);
  return (
    <figure className="chart" data-testid="chart" data-metric={spec.metric}>
      <figcaption>
        {spec.info.title} {spec.info.unit && <span className="muted">({spec.info.unit})</span>}
      </figcaption>
      <div ref={ref} className="chart-body" />
    </figure>
  );
}
