"""GPU and host metrics of the shipped sessions on the agent's ``/metrics`` (issue #29).

The agent reads every session's system stream anyway; this collector keeps the latest NVML/host sample per
bounded label set and exposes it in Prometheus/OpenMetrics form, so a fleet scraped by Prometheus needs no
second exporter. See docs/prometheus.md for the metric table.

Label sets are bounded by construction: a GPU series is keyed by (host, app, job, GPU index, UUID, model,
PCI bus id) and never by session, so 100 sessions of one app on one host share the series of one. When
two sessions of one key report the same GPU, the newer sample (``ts_ns``) wins.

Nothing is invented: a value is exactly the last sample's field, scaled to Prometheus base units (MiB to
bytes, mW to W, MHz to Hz, percent to ratio) or, in dcgm mode, to dcgm-exporter's units. A field the
sample lacks (null: NotSupported, e.g. the fan of an H100 SXM) gives no series, never 0.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpufl.agent.discovery import Segment
from gpufl.contract.events import (
    ContractError,
    DeviceProperties,
    GpuSample,
    HostSample,
    SessionEnd,
    SessionStart,
    SystemSample,
    decode,
    segment_name,
)

log = logging.getLogger("gpufl.agent")

MIB = float(1 << 20)
NAME_MODES = ("gpufl", "dcgm", "both", "off")


@dataclass(frozen=True)
class Field:
    """One sample field and the metric(s) it becomes."""

    attr: str
    name: str
    """The gpufl_ name (counters without ``_total``: the exposition appends it)."""
    scale: float
    """Recorded unit to the Prometheus base unit."""
    help: str
    counter: bool = False
    dcgm: str | None = None
    """The dcgm-exporter name of the same reading, if it has one."""
    dcgm_scale: float = 1.0
    """Recorded unit to dcgm-exporter's unit."""


# The contract's GpuSample fields (src/gpufl/contract/events.py), in its order. dcgm-exporter's units:
# percent for utilisation, MiB for framebuffer, W for power, mJ for energy, MHz for clocks, KB/s for PCIe.
GPU_FIELDS: tuple[Field, ...] = (
    Field("util_gpu_pct", "gpufl_gpu_utilization_ratio", 0.01, "GPU utilisation (NVML), 0..1",
          dcgm="DCGM_FI_DEV_GPU_UTIL"),
    Field("util_mem_pct", "gpufl_gpu_memory_utilization_ratio", 0.01,
          "Memory controller utilisation (NVML), 0..1", dcgm="DCGM_FI_DEV_MEM_COPY_UTIL"),
    Field("mem_used_mib", "gpufl_gpu_memory_used_bytes", MIB, "Framebuffer memory used",
          dcgm="DCGM_FI_DEV_FB_USED"),
    Field("mem_free_mib", "gpufl_gpu_memory_free_bytes", MIB, "Framebuffer memory free",
          dcgm="DCGM_FI_DEV_FB_FREE"),
    Field("mem_total_mib", "gpufl_gpu_memory_total_bytes", MIB, "Framebuffer memory total",
          dcgm="DCGM_FI_DEV_FB_TOTAL"),
    Field("temp_c", "gpufl_gpu_temperature_celsius", 1.0, "GPU temperature", dcgm="DCGM_FI_DEV_GPU_TEMP"),
    Field("power_mw", "gpufl_gpu_power_watts", 1e-3, "Power draw", dcgm="DCGM_FI_DEV_POWER_USAGE",
          dcgm_scale=1e-3),
    Field("energy_mj", "gpufl_gpu_energy_joules", 1e-3, "Energy since the driver was loaded", counter=True,
          dcgm="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
    Field("fan_pct", "gpufl_gpu_fan_speed_ratio", 0.01, "Fan speed, 0..1", dcgm="DCGM_FI_DEV_FAN_SPEED"),
    Field("clk_gfx_mhz", "gpufl_gpu_clock_graphics_hertz", 1e6, "Graphics clock"),
    Field("clk_sm_mhz", "gpufl_gpu_clock_sm_hertz", 1e6, "SM clock", dcgm="DCGM_FI_DEV_SM_CLOCK"),
    Field("clk_mem_mhz", "gpufl_gpu_clock_memory_hertz", 1e6, "Memory clock", dcgm="DCGM_FI_DEV_MEM_CLOCK"),
    Field("throttle_reasons", "gpufl_gpu_clocks_event_reasons", 1.0,
          "NVML clocks-event (throttle) reasons bitmask", dcgm="DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"),
    Field("throttle_pwr", "gpufl_gpu_throttle_power", 1.0,
          "1 while clocks are held down by a power cap or power brake, else 0"),
    Field("throttle_therm", "gpufl_gpu_throttle_thermal", 1.0,
          "1 while clocks are held down by a thermal slowdown, else 0"),
    # NVML reports PCIe throughput in KB/s, its KB being 1024 bytes.
    Field("pcie_rx_kbs", "gpufl_gpu_pcie_rx_bytes_per_second", 1024.0, "PCIe receive throughput",
          dcgm="DCGM_FI_DEV_PCIE_RX_THROUGHPUT"),
    Field("pcie_tx_kbs", "gpufl_gpu_pcie_tx_bytes_per_second", 1024.0, "PCIe transmit throughput",
          dcgm="DCGM_FI_DEV_PCIE_TX_THROUGHPUT"),
    # GPU activity (NVML GPM, contract v4), the mean over the client's last sampling interval. dcgm-exporter
    # reports its profiling fields (DCGM_FI_PROF_*, the same hardware counters) as ratios 0..1 and link
    # traffic in bytes/s.
    *(Field(attr, f"gpufl_gpu_{name}_ratio", 0.01, f"{what} (NVML GPM), 0..1", dcgm=dcgm, dcgm_scale=0.01)
      for attr, name, what, dcgm in (
        ("gr_engine_active_pct", "graphics_engine_active", "Time a context was active",
         "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
        ("sm_active_pct", "sm_active", "SMs busy, share of SMs x time", "DCGM_FI_PROF_SM_ACTIVE"),
        ("sm_occupancy_pct", "sm_occupancy", "Resident warps, share of the maximum",
         "DCGM_FI_PROF_SM_OCCUPANCY"),
        ("tensor_active_pct", "tensor_active", "Any tensor pipe active", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"),
        ("tensor_hmma_active_pct", "tensor_hmma_active", "Half-precision tensor pipe active",
         "DCGM_FI_PROF_PIPE_TENSOR_HMMA_ACTIVE"),
        ("tensor_imma_active_pct", "tensor_imma_active", "Integer tensor pipe active",
         "DCGM_FI_PROF_PIPE_TENSOR_IMMA_ACTIVE"),
        ("tensor_dfma_active_pct", "tensor_dfma_active", "FP64 tensor pipe active",
         "DCGM_FI_PROF_PIPE_TENSOR_DFMA_ACTIVE"),
        ("fp64_active_pct", "fp64_active", "FP64 pipe active", "DCGM_FI_PROF_PIPE_FP64_ACTIVE"),
        ("fp32_active_pct", "fp32_active", "FP32 pipe active", "DCGM_FI_PROF_PIPE_FP32_ACTIVE"),
        ("fp16_active_pct", "fp16_active", "FP16 pipe active", "DCGM_FI_PROF_PIPE_FP16_ACTIVE"),
        ("int_active_pct", "integer_active", "Integer pipe active", "DCGM_FI_PROF_PIPE_INT_ACTIVE"),
        ("dram_bw_pct", "dram_bandwidth", "DRAM bandwidth used, share of the maximum",
         "DCGM_FI_PROF_DRAM_ACTIVE"),
    )),
    *(Field(attr, f"gpufl_gpu_{name}_bytes_per_second", MIB, f"{what} (NVML GPM)", dcgm=dcgm, dcgm_scale=MIB)
      for attr, name, what, dcgm in (
        ("pcie_rx_mibs", "pcie_rx_mean", "PCIe receive, mean over the sampling interval",
         "DCGM_FI_PROF_PCIE_RX_BYTES"),
        ("pcie_tx_mibs", "pcie_tx_mean", "PCIe transmit, mean over the sampling interval",
         "DCGM_FI_PROF_PCIE_TX_BYTES"),
        ("nvlink_rx_mibs", "nvlink_rx", "NVLink receive, all links", "DCGM_FI_PROF_NVLINK_RX_BYTES"),
        ("nvlink_tx_mibs", "nvlink_tx", "NVLink transmit, all links", "DCGM_FI_PROF_NVLINK_TX_BYTES"),
    )),
)  # fmt: skip

HOST_FIELDS: tuple[Field, ...] = (
    Field("cpu_pct", "gpufl_host_cpu_utilization_ratio", 0.01, "Host CPU utilisation (all cores), 0..1"),
    Field("ram_used_mib", "gpufl_host_memory_used_bytes", MIB, "Host memory used"),
    Field("ram_total_mib", "gpufl_host_memory_total_bytes", MIB, "Host memory total"),
    Field("proc_rss_mib", "gpufl_app_resident_memory_bytes", MIB,
          "Resident memory of the recorded process (the newest session's of the app)"),
)  # fmt: skip

GPU_LABELS = ("host", "app", "job_id", "gpu", "uuid", "model", "pci_bus_id")
# dcgm-exporter's label names for the same values, so its dashboards' selectors keep working.
DCGM_GPU_LABELS = ("Hostname", "app", "job_id", "gpu", "UUID", "modelName", "pci_bus_id")
HOST_LABELS = ("host", "app", "job_id")

# Label values in the order of HOST_LABELS / GPU_LABELS.
HostKey = tuple[str, ...]
GpuKey = tuple[str, ...]


@dataclass
class _Session:
    key: HostKey
    devices: dict[int, DeviceProperties]
    ended: bool = False


@dataclass
class _Latest:
    ts_ns: int
    values: dict[str, float]
    seen: float
    """Agent monotonic time it was read: what the TTL counts from (a replayed capture's ts_ns is old)."""


@dataclass
class _State:
    gpus: dict[GpuKey, _Latest] = field(default_factory=dict)
    hosts: dict[HostKey, _Latest] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)


def _values(sample: GpuSample | HostSample, fields: Iterable[Field]) -> dict[str, float]:
    out = {}
    for f in fields:
        v = getattr(sample, f.attr)
        if v is not None:  # null = not supported / not read: no series rather than a made-up 0
            out[f.attr] = float(v)
    return out


class SystemMetrics(Collector):
    """Latest system-stream readings per bounded label set; a prometheus_client collector.

    ``observe`` is called by the agent's reader with each run of complete system-stream lines it reads;
    ``collect`` by the metrics server's thread.
    """

    def __init__(
        self, names: str = "gpufl", ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if names not in NAME_MODES:
            raise ValueError(f"names must be one of {', '.join(NAME_MODES)}, not {names!r}")
        self.names = names
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._s = _State()
        self._failed = False

    # ---------------------------------------------------------------- reading side

    def observe(self, seg: Segment, data: bytes) -> None:
        """Take the records of ``data``: complete JSONL lines the reader read from system segment ``seg``.
        Never raises: a fault here must not stop the shipping (logged once, then at debug level)."""
        if self.names == "off" or not data:
            return
        try:
            self._observe(os.path.dirname(seg.path), seg.host, seg.app, seg.session_id, data)
        except Exception:
            log.log(
                logging.DEBUG if self._failed else logging.ERROR, "GPU metrics: reading failed", exc_info=True
            )
            self._failed = True

    def _observe(self, folder: str, host: str, app: str, session_id: str, data: bytes) -> None:
        now = self._clock()
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                rec = decode(line)
            except ContractError:
                continue  # the agent dead-letters or ships it; it is no reading either way
            if isinstance(rec, SessionStart):
                self._start(rec)
            elif isinstance(rec, SystemSample):
                self._sample(self._session(folder, host, app, session_id), rec, now)
            elif isinstance(rec, SessionEnd):
                with self._lock:
                    sess = self._s.sessions.get(session_id)
                    if sess is not None:
                        sess.ended = True
        self._expire(now)

    def _start(self, rec: SessionStart) -> None:
        sess = _Session((rec.host, rec.app, rec.job_id or ""), {d.device_id: d for d in rec.devices})
        with self._lock:
            self._s.sessions[rec.session_id] = sess
            self._s.last_seen[rec.session_id] = self._clock()

    def _session(self, folder: str, host: str, app: str, session_id: str) -> _Session:
        with self._lock:
            sess = self._s.sessions.get(session_id)
        if sess is not None:
            return sess
        # The agent resumed past this session's session_start (a restart with a cursor): read it again
        # from the stream's first segment for its job id and GPU identities.
        path = os.path.join(folder, segment_name(host, app, session_id, "system", 0))
        try:
            with open(path, "rb") as f:
                first = f.readline(1 << 20)
            rec = decode(first)
        except (OSError, ContractError):
            rec = None
        if isinstance(rec, SessionStart) and rec.session_id == session_id:
            self._start(rec)
        else:
            # Segment 0 deleted by the session byte cap: host and app from the file name, no job or GPU
            # identities (those labels stay empty).
            with self._lock:
                self._s.sessions[session_id] = _Session((host, app, ""), {})
        with self._lock:
            return self._s.sessions[session_id]

    def _sample(self, sess: _Session, rec: SystemSample, now: float) -> None:
        host, app, job = sess.key
        with self._lock:
            self._s.last_seen[rec.session_id] = now
            if rec.host is not None:
                self._put(self._s.hosts, sess.key, rec.ts_ns, _values(rec.host, HOST_FIELDS), now)
            for g in rec.gpus:
                dev = sess.devices.get(g.device_id)
                key: GpuKey = (
                    host,
                    app,
                    job,
                    str(g.device_id),
                    (dev.uuid or "") if dev else "",
                    (dev.name or "") if dev else "",
                    (dev.pci_bus_id or "") if dev else "",
                )
                self._put(self._s.gpus, key, rec.ts_ns, _values(g, GPU_FIELDS), now)

    @staticmethod
    def _put(
        table: dict[tuple[str, ...], _Latest],
        key: tuple[str, ...],
        ts_ns: int,
        values: dict[str, float],
        now: float,
    ) -> None:
        cur = table.get(key)
        if cur is not None and cur.ts_ns > ts_ns:
            return  # an older sample of another session of this key: the newer reading stands
        table[key] = _Latest(ts_ns, values, now)

    def _expire(self, now: float) -> None:
        """Forget readings and sessions not heard of for ``ttl`` seconds, and ended sessions: memory and
        series stay bounded by what is live, and a GPU no session samples any more stops reporting."""
        cut = now - self.ttl
        with self._lock:
            for table in (self._s.gpus, self._s.hosts):
                for k in [k for k, v in table.items() if v.seen < cut]:
                    del table[k]
            for sid in [s for s, t in self._s.last_seen.items() if t < cut]:
                del self._s.last_seen[sid]
                self._s.sessions.pop(sid, None)

    # ---------------------------------------------------------------- exposition side

    def describe(self) -> list[Metric]:
        return []  # families appear with the first sample; no duplicate check against the registry

    def collect(self) -> Iterator[Metric]:
        if self.names == "off":
            return
        self._expire(self._clock())
        with self._lock:
            gpus = [(k, v.values) for k, v in self._s.gpus.items()]
            hosts = [(k, v.values, v.ts_ns) for k, v in self._s.hosts.items()]
            running: dict[HostKey, int] = {}
            for sess in self._s.sessions.values():
                if not sess.ended:
                    running[sess.key] = running.get(sess.key, 0) + 1
        gpufl = self.names in ("gpufl", "both")
        dcgm = self.names in ("dcgm", "both")
        for f in GPU_FIELDS:
            have = [(k, v[f.attr]) for k, v in gpus if f.attr in v]
            if not have:
                continue
            if gpufl:
                fam: Metric
                if f.counter:
                    fam = CounterMetricFamily(f.name, f.help, labels=GPU_LABELS)
                else:
                    fam = GaugeMetricFamily(f.name, f.help, labels=GPU_LABELS)
                for k, v in have:
                    fam.add_metric(list(k), v * f.scale)
                yield fam
            if dcgm and f.dcgm is not None:
                # A gauge even for energy: dcgm-exporter's counter has no _total suffix, which an
                # OpenMetrics counter must have, and dashboards query the bare name.
                dfam = GaugeMetricFamily(
                    f.dcgm, f.help + " (dcgm-exporter name and unit)", labels=DCGM_GPU_LABELS
                )
                for k, v in have:
                    dfam.add_metric(list(k), v * f.dcgm_scale)
                yield dfam
        for f in HOST_FIELDS:
            hv = [(k, v[f.attr]) for k, v, _ in hosts if f.attr in v]
            if hv:
                fam = GaugeMetricFamily(f.name, f.help, labels=HOST_LABELS)
                for k, val in hv:
                    fam.add_metric(list(k), val * f.scale)
                yield fam
        if hosts:
            ts = GaugeMetricFamily(
                "gpufl_system_sample_timestamp_seconds",
                "Time of the newest system sample read (the client's clock, Unix seconds)",
                labels=HOST_LABELS,
            )
            for k, _, ts_ns in hosts:
                ts.add_metric(list(k), ts_ns / 1e9)
            yield ts
        keys = {k for k, _, _ in hosts} | {k[:3] for k, _ in gpus} | set(running)
        if keys:
            fam = GaugeMetricFamily(
                "gpufl_sessions_running",
                "Sessions of this host/app/job whose system stream has not ended (heard of within the TTL)",
                labels=HOST_LABELS,
            )
            for hk in sorted(keys):
                fam.add_metric(list(hk), float(running.get(hk, 0)))
            yield fam
