/** Data shaping for the System tab: which charts, in which order, with which series and units. */
import type { SystemSeries } from '../api/client';

export interface MetricInfo {
  title: string;
  unit: string;
  /** Multiply raw values by this to get `unit` (e.g. mW → W). */
  scale: number;
  host: boolean;
  /** How it is shown: a chart (default), a stated number (a total that does not move), or a 0/1 flag track. */
  kind?: 'chart' | 'constant' | 'flag' | 'bitmask';
  /** false: older gpufl clients did not sample it, so its absence may be gpufl's, not the GPU's. */
  sampled?: boolean;
  /** Why a session may lack it, where that is not "this GPU does not report it". */
  missingWhy?: string;
}

const GPM_MISSING = 'not recorded: gpufl reads it from NVML GPM on Hopper and newer GPUs, in sessions of contract v4 and later';
const gpm = (title: string, unit = '%', scale = 1): MetricInfo => ({ title, unit, scale, host: false, sampled: false, missingWhy: GPM_MISSING });

export const METRICS: Record<string, MetricInfo> = {
  util_gpu_pct: { title: 'GPU utilisation', unit: '%', scale: 1, host: false },
  // GPU activity (NVML GPM): beside NVML's utilisation, which reads 100 % while one SM runs one kernel
  sm_active_pct: gpm('SM active (GPM)'),
  tensor_active_pct: gpm('Tensor pipes active (GPM)'),
  dram_bw_pct: gpm('DRAM bandwidth (GPM)'),
  sm_occupancy_pct: gpm('SM occupancy (GPM)'),
  tensor_hmma_active_pct: gpm('Tensor HMMA active (GPM)'),
  tensor_imma_active_pct: gpm('Tensor IMMA active (GPM)'),
  tensor_dfma_active_pct: gpm('Tensor DFMA active (GPM)'),
  fp16_active_pct: gpm('FP16 pipe active (GPM)'),
  fp32_active_pct: gpm('FP32 pipe active (GPM)'),
  fp64_active_pct: gpm('FP64 pipe active (GPM)'),
  int_active_pct: gpm('Integer pipe active (GPM)'),
  gr_engine_active_pct: gpm('Graphics engine active (GPM)'),
  pcie_rx_mibs: gpm('PCIe receive, interval mean (GPM)', 'MiB/s'),
  pcie_tx_mibs: gpm('PCIe transmit, interval mean (GPM)', 'MiB/s'),
  nvlink_rx_mibs: gpm('NVLink receive (GPM)', 'MiB/s'),
  nvlink_tx_mibs: gpm('NVLink transmit (GPM)', 'MiB/s'),
  util_mem_pct: { title: 'Memory utilisation', unit: '%', scale: 1, host: false },
  mem_used_mib: { title: 'VRAM used', unit: 'MiB', scale: 1, host: false },
  temp_c: { title: 'Temperature', unit: '°C', scale: 1, host: false },
  power_mw: { title: 'Power', unit: 'W', scale: 1e-3, host: false },
  fan_pct: { title: 'Fan speed', unit: '%', scale: 1, host: false },
  clk_sm_mhz: { title: 'SM clock', unit: 'MHz', scale: 1, host: false },
  clk_gfx_mhz: { title: 'Graphics clock', unit: 'MHz', scale: 1, host: false },
  clk_mem_mhz: { title: 'Memory clock', unit: 'MHz', scale: 1, host: false },
  mem_free_mib: { title: 'VRAM free', unit: 'MiB', scale: 1, host: false },
  mem_total_mib: { title: 'VRAM total', unit: 'MiB', scale: 1, host: false, kind: 'constant' },
  energy_mj: { title: 'Energy since driver load', unit: 'kJ', scale: 1e-6, host: false },
  pcie_rx_kbs: { title: 'PCIe receive', unit: 'MB/s', scale: 1e-3, host: false, sampled: false },
  pcie_tx_kbs: { title: 'PCIe transmit', unit: 'MB/s', scale: 1e-3, host: false, sampled: false },
  throttle_pwr: { title: 'Power throttling', unit: '', scale: 1, host: false, kind: 'flag' },
  throttle_therm: { title: 'Thermal throttling', unit: '', scale: 1, host: false, kind: 'flag' },
  throttle_reasons: { title: 'Clock event reasons', unit: '', scale: 1, host: false, kind: 'bitmask' },
  cpu_pct: { title: 'Host CPU', unit: '%', scale: 1, host: true },
  ram_used_mib: { title: 'Host RAM used', unit: 'MiB', scale: 1, host: true },
  proc_rss_mib: { title: 'Process RSS', unit: 'MiB', scale: 1, host: true },
  ram_total_mib: { title: 'Host RAM total', unit: 'MiB', scale: 1, host: true, kind: 'constant' },
};

/** NVML's clocks-event (throttle) reason bits (nvml.h, nvmlClocksEventReason*; formerly ClocksThrottleReason*). */
export const CLOCK_EVENT_REASONS: { bit: number; name: string; what: string }[] = [
  { bit: 0x1, name: 'GpuIdle', what: 'nothing running, clocks dropping to idle' },
  { bit: 0x2, name: 'ApplicationsClocksSetting', what: 'clocks limited by the applications clocks setting' },
  { bit: 0x4, name: 'SwPowerCap', what: 'software power cap (power draw near the limit)' },
  { bit: 0x8, name: 'HwSlowdown', what: 'hardware slowdown (thermal, power brake or power supply)' },
  { bit: 0x10, name: 'SyncBoost', what: 'sync boost group holds clocks together' },
  { bit: 0x20, name: 'SwThermalSlowdown', what: 'software thermal slowdown (temperature near the limit)' },
  { bit: 0x40, name: 'HwThermalSlowdown', what: 'hardware thermal slowdown (too hot)' },
  { bit: 0x80, name: 'HwPowerBrakeSlowdown', what: 'hardware power brake (external signal)' },
  { bit: 0x100, name: 'DisplayClockSetting', what: 'clocks limited by the display clock setting' },
];

/** The named reasons of a mask, and any bits NVML's list above does not name (as hex). */
export function decodeClockEvents(mask: number): string[] {
  const out: string[] = [];
  let rest = mask;
  for (const r of CLOCK_EVENT_REASONS) {
    if (mask & r.bit) out.push(r.name);
    rest &= ~r.bit;
  }
  for (let b = 0; b < 31 && rest; b++) {
    if (rest & (1 << b)) {
      out.push(`bit 0x${(1 << b).toString(16)}`);
      rest &= ~(1 << b);
    }
  }
  return out;
}

/**
 * The sampling interval the data shows: the median gap between consecutive points of each series, and
 * whether every point is one raw sample (n = 1) rather than a mean of several. Null when no series has two
 * points.
 */
export function samplingOf(series: SystemSeries[]): { intervalNs: number | null; raw: boolean; maxPerPoint: number } {
  const gaps: number[] = [];
  let maxPerPoint = 0;
  for (const s of series) {
    for (let i = 1; i < s.t.length; i++) gaps.push(s.t[i] - s.t[i - 1]);
    for (const n of s.n) maxPerPoint = Math.max(maxPerPoint, n);
  }
  gaps.sort((a, b) => a - b);
  const intervalNs = gaps.length ? gaps[Math.floor((gaps.length - 1) / 2)] : null;
  return { intervalNs, raw: maxPerPoint <= 1, maxPerPoint };
}

/** A total that does not move (VRAM total, host RAM total): its value(s) per device, to state as numbers. */
export function constantValues(spec: ChartSpec): { device: number | null; min: number; max: number }[] {
  return spec.series.map((s) => ({
    device: s.device,
    min: Math.min(...s.min) * spec.info.scale,
    max: Math.max(...s.max) * spec.info.scale,
  }));
}

/**
 * GPU metrics this session has no point of, while it has GPU samples: each with why (the GPU did not report
 * it, NVML NotSupported, e.g. fan speed on an H100 SXM; or gpufl does not sample it yet).
 */
export function missingMetrics(series: SystemSeries[]): { metric: string; title: string; why: string }[] {
  const have = new Set(series.filter((s) => s.t.length).map((s) => s.metric));
  const gpu = series.some((s) => s.device !== null && s.t.length);
  if (!gpu) return [];
  const isGpm = (m: string) => METRICS[m].missingWhy === GPM_MISSING;
  const anyGpm = METRIC_ORDER.some((m) => isGpm(m) && have.has(m));
  const out = METRIC_ORDER.filter((m) => !METRICS[m].host && !have.has(m) && !(isGpm(m) && !anyGpm)).map((m) => ({
    metric: m,
    title: METRICS[m].title,
    why: isGpm(m)
      ? 'not reported by this GPU (NVML GPM NotSupported)'
      : METRICS[m].sampled === false
        ? 'not in this capture (gpufl clients before PCIe sampling, or the GPU did not report it)'
        : 'not reported by this GPU',
  }));
  // A session without any GPU-activity series: one line for the group, not sixteen.
  if (!anyGpm) out.push({ metric: 'gpm', title: 'GPU activity (SM active, tensor pipes, DRAM bandwidth)', why: GPM_MISSING });
  return out;
}

export const METRIC_ORDER = Object.keys(METRICS);

/** A GPU-activity (GPM) metric whose every point, on every device, is 0: stated, not charted. */
export function isIdleActivity(spec: ChartSpec): boolean {
  return spec.info.missingWhy === GPM_MISSING && spec.series.every((s) => s.max.every((v) => v === 0));
}

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
