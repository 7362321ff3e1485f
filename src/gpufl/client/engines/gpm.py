"""GPU activity from NVML GPM (GPU Performance Monitoring): how busy the SMs, tensor pipes, DRAM and links
really are, beside NVML's "GPU utilisation" (which reads 100 % while one SM runs one kernel).

GPM (Hopper and newer) reads hardware counters in the driver: no CUPTI, so no conflict with the process's
CUPTI subscriber or with another profiler (DCGM's profiling metrics and CUPTI share a counter lock on
older GPUs; GPM does not take it). Each reading compares two GPM samples, so a metric is the mean over the
interval between two system samples; the first system sample of a session has none.

One ``GpmReader`` per process, driven by the system engine's sampler thread only (never the application's).
A GPU without GPM support, and a metric a GPU does not report, are found once and not asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# GpuSample field (the contract, v4) -> NVML GPM metric id (nvml.h, nvmlGpmMetricId_t: stable ABI values,
# so an older nvidia-ml-py that lacks a constant still works).
METRICS: dict[str, int] = {
    "gr_engine_active_pct": 1,  # NVML_GPM_METRIC_GRAPHICS_UTIL
    "sm_active_pct": 2,  # NVML_GPM_METRIC_SM_UTIL
    "sm_occupancy_pct": 3,  # NVML_GPM_METRIC_SM_OCCUPANCY
    "int_active_pct": 4,  # NVML_GPM_METRIC_INTEGER_UTIL
    "tensor_active_pct": 5,  # NVML_GPM_METRIC_ANY_TENSOR_UTIL
    "tensor_dfma_active_pct": 6,  # NVML_GPM_METRIC_DFMA_TENSOR_UTIL
    "tensor_hmma_active_pct": 7,  # NVML_GPM_METRIC_HMMA_TENSOR_UTIL
    "tensor_imma_active_pct": 9,  # NVML_GPM_METRIC_IMMA_TENSOR_UTIL
    "dram_bw_pct": 10,  # NVML_GPM_METRIC_DRAM_BW_UTIL
    "fp64_active_pct": 11,  # NVML_GPM_METRIC_FP64_UTIL
    "fp32_active_pct": 12,  # NVML_GPM_METRIC_FP32_UTIL
    "fp16_active_pct": 13,  # NVML_GPM_METRIC_FP16_UTIL
    "pcie_tx_mibs": 20,  # NVML_GPM_METRIC_PCIE_TX_PER_SEC
    "pcie_rx_mibs": 21,  # NVML_GPM_METRIC_PCIE_RX_PER_SEC
    "nvlink_rx_mibs": 60,  # NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC
    "nvlink_tx_mibs": 61,  # NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC
}

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
# Driver rounding puts utilisations a hair outside 0..100 at the edges (e.g. 100.00001 on a saturated GPU,
# -0.0 idle); values further out are counter wrap or a driver bug, never stored as a percentage.
PCT_SLACK = 0.5


@dataclass
class _Gpu:
    handle: Any
    metrics: list[str]
    previous: Any  # two GPM sample buffers (nvmlGpmSample_t), swapped after each read
    current: Any
    primed: bool = False  # ``previous`` holds a sample the next read can compare with


class GpmReader:
    """GPM readings per GPU, for the GPUs (NVML handles) the system engine samples.

    ``unsupported`` lists (position, reason) for each GPU that cannot report GPM: the engine says so once.
    ``read()`` gives, per GPU, the fields of the interval since the previous ``read()`` (empty the first
    time, and for a GPU without GPM).
    """

    def __init__(self, nv: Any, handles: list[Any]) -> None:
        self.nv = nv
        self.gpus: list[_Gpu | None] = []
        self.unsupported: list[tuple[int, str]] = []
        self.dropped: dict[int, list[str]] = {}
        """Per GPU: metrics it answered NotSupported (not reported by that GPU), asked no more."""
        needed = ("nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmMetricsGet")
        missing_api = [n for n in needed if not hasattr(nv, n)]
        for i, h in enumerate(handles):
            if missing_api:
                self.gpus.append(None)
                self.unsupported.append((i, "this nvidia-ml-py has no GPM functions (upgrade nvidia-ml-py)"))
                continue
            try:
                ok = bool(nv.nvmlGpmQueryDeviceSupport(h).isSupportedDevice)
            except nv.NVMLError as e:
                ok, why = False, f"NVML: {e}"
            else:
                why = "GPM is Hopper and newer (NVML: device not supported)"
            if not ok:
                self.gpus.append(None)
                self.unsupported.append((i, why))
                continue
            try:
                g = _Gpu(h, list(METRICS), nv.nvmlGpmSampleAlloc(), nv.nvmlGpmSampleAlloc())
            except nv.NVMLError as e:
                self.gpus.append(None)
                self.unsupported.append((i, f"NVML could not allocate GPM samples: {e}"))
                continue
            self.gpus.append(g)
        self._request = self._new_request()

    def _new_request(self) -> Any:
        """One metrics-get struct reused for every call (it is ~20 KiB: not rebuilt per sample)."""
        if not hasattr(self.nv, "c_nvmlGpmMetricsGet_t"):
            return None
        return self.nv.c_nvmlGpmMetricsGet_t()

    @property
    def available(self) -> bool:
        return any(g is not None for g in self.gpus)

    def read(self) -> list[dict[str, float]]:
        """Per GPU (in handle order), the GPM fields over the interval since the last read."""
        out: list[dict[str, float]] = []
        for i, g in enumerate(self.gpus):
            if g is None:
                out.append({})
                continue
            try:
                self.nv.nvmlGpmSampleGet(g.handle, g.current)
            except self.nv.NVMLError:
                # One failed sample (e.g. a GPU reset in progress): no reading now, and the next sample
                # starts a new interval, so no value ever spans the gap.
                g.primed = False
                out.append({})
                continue
            out.append(self._metrics(i, g) if g.primed else {})
            g.previous, g.current, g.primed = g.current, g.previous, True
        return out

    def _metrics(self, i: int, g: _Gpu) -> dict[str, float]:
        nv, req = self.nv, self._request
        if req is None or not g.metrics:
            return {}
        req.version = nv.NVML_GPM_METRICS_GET_VERSION
        req.numMetrics = len(g.metrics)
        req.sample1, req.sample2 = g.previous, g.current
        for k, name in enumerate(g.metrics):
            req.metrics[k].metricId = METRICS[name]
        try:
            nv.nvmlGpmMetricsGet(req)
        except nv.NVMLError:
            return {}
        got: dict[str, float] = {}
        drop: list[str] = []
        for k, name in enumerate(g.metrics):
            m = req.metrics[k]
            if m.nvmlReturn == NVML_ERROR_NOT_SUPPORTED:
                drop.append(name)  # stays so (e.g. NVLink on a PCIe card): stop asking
                continue
            if m.nvmlReturn != NVML_SUCCESS:
                continue  # this interval only
            v = float(m.value)
            if name.endswith("_pct"):
                if not -PCT_SLACK <= v <= 100 + PCT_SLACK:
                    continue  # out of range: not a percentage; leave the field out this time
                v = min(100.0, max(0.0, v))
            elif not v >= 0.0 or v == float("inf"):
                continue
            got[name] = round(v, 2)
        if drop:
            g.metrics = [m for m in g.metrics if m not in drop]
            self.dropped.setdefault(i, []).extend(drop)
        return got

    def close(self) -> None:
        free = getattr(self.nv, "nvmlGpmSampleFree", None)
        for g in self.gpus:
            if g is None or free is None:
                continue
            for s in (g.previous, g.current):
                if s is not None:
                    try:
                        free(s)
                    except Exception:
                        pass
        self.gpus = []
