/** Data shaping for the System tab: which charts, in which order, with which series and units. */
import type { SystemSeries } from '../api/client';

export interface MetricInfo {
  title: string;
  unit: string;
  /** Multiply raw values by this to get `unit` (e.g. mW → W). */
  scale: number;
  host: boolean;
}

export const METRICS: Record<string, MetricInfo> = {
  util_gpu_pct: { title: 'GPU utilisation', unit: '%', scale: 1, host: false },
  util_mem_pct: { title: 'Memory utilisation', unit: '%', scale: 1, host: false },
  mem_used_mib: { title: 'VRAM used', unit: 'MiB', scale: 1, host: false },
  temp_c: { title: 'Temperature', unit: '°C', scale: 1, host: false },
  power_mw: { title: 'Power', unit: 'W', scale: 1e-3, host: false },
  fan_pct: { title: 'Fan speed', unit: '%', scale: 1, host: false },
  clk_sm_mhz: { title: 'SM clock', unit: 'MHz', scale: 1, host: false },
  clk_gfx_mhz: { title: 'Graphics clock', unit: 'MHz', scale: 1, host: false },
  clk_mem_mhz: { title: 'Memory clock', unit: 'MHz', scale: 1, host: false },
  mem_free_mib: { title: 'VRAM free', unit: 'MiB', scale: 1, host: false },
  mem_total_mib: { title: 'VRAM total', unit: 'MiB', scale: 1, host: false },
  energy_mj: { title: 'Energy since driver load', unit: 'kJ', scale: 1e-6, host: false },
  pcie_rx_kbs: { title: 'PCIe receive', unit: 'MB/s', scale: 1e-3, host: false },
  pcie_tx_kbs: { title: 'PCIe transmit', unit: 'MB/s', scale: 1e-3, host: false },
  throttle_pwr: { title: 'Power throttling (1 = on)', unit: '', scale: 1, host: false },
  throttle_therm: { title: 'Thermal throttling (1 = on)', unit: '', scale: 1, host: false },
  throttle_reasons: { title: 'Clock event reasons (NVML bitmask)', unit: '', scale: 1, host: false },
  cpu_pct: { title: 'Host CPU', unit: '%', scale: 1, host: true },
  ram_used_mib: { title: 'Host RAM used', unit: 'MiB', scale: 1, host: true },
  proc_rss_mib: { title: 'Process RSS', unit: 'MiB', scale: 1, host: true },
  ram_total_mib: { title: 'Host RAM total', unit: 'MiB', scale: 1, host: true },
};

export const METRIC_ORDER = Object.keys(METRICS);

export interface ChartSpec {
  metric: string;
  info: MetricInfo;
  series: SystemSeries[];
}

/**
 * One chart per metric that has at least one point, in METRIC_ORDER (unknown metrics after, by name),
 * each with one series per device (sorted by device id; host series have device null).
 */
export function chartSpecs(series: SystemSeries[]): ChartSpec[] {
  const by = new Map<string, SystemSeries[]>();
  for (const s of series) {
    if (!s.t.length) continue;
    let a = by.get(s.metric);
    if (!a) by.set(s.metric, (a = []));
    a.push(s);
  }
  const metrics = [...by.keys()].sort((a, b) => {
    const ia = METRIC_ORDER.indexOf(a);
    const ib = METRIC_ORDER.indexOf(b);
    if (ia >= 0 && ib >= 0) return ia - ib;
    if (ia >= 0) return -1;
    if (ib >= 0) return 1;
    return a.localeCompare(b);
  });
  return metrics.map((m) => ({
    metric: m,
    info: METRICS[m] ?? { title: m, unit: '', scale: 1, host: false },
    series: by.get(m)!.sort((a, b) => (a.device ?? -1) - (b.device ?? -1)),
  }));
}

/**
 * Columnar data for uPlot: one shared x (seconds from session start, the union of all series' bucket
 * starts) and per series mean/min/max aligned on it (null where that series has no point).
 */
export function alignSeries(series: SystemSeries[], scale: number): { x: number[]; ys: (number | null)[][] } {
  const xs = new Set<number>();
  for (const s of series) for (const t of s.t) xs.add(t);
  const x = [...xs].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const ys: (number | null)[][] = [];
  for (const s of series) {
    const mean = new Array<number | null>(x.length).fill(null);
    const min = new Array<number | null>(x.length).fill(null);
    const max = new Array<number | null>(x.length).fill(null);
    for (let i = 0; i < s.t.length; i++) {
      const j = index.get(s.t[i])!;
      mean[j] = s.mean[i] * scale;
      min[j] = s.min[i] * scale;
      max[j] = s.max[i] * scale;
    }
    ys.push(mean, min, max);
  }
  return { x: x.map((t) => t / 1e9), ys };
}
