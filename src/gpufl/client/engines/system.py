"""System engine: a ``system_sample`` per interval with per-GPU NVML metrics and host CPU/RAM.

Runs on its own daemon thread, never on the application's. NVML calls take a driver lock, so the interval
defaults to 1 s and slow calls (process lists) are never made. Each field is read on its own: an NVML
error (e.g. fan speed NotSupported on an H100 SXM) gives null for that field, never a lost sample. Without
NVML (no GPU, no driver, no nvidia-ml-py) host metrics are still recorded and one notice says why.

PCIe throughput is the exception to "every field every sample": nvmlDeviceGetPcieThroughput measures the link
over a ~20 ms window and blocks that long, per direction and GPU. It is read on the sampler thread (never
the application's) in every Nth sample only (``PcieSchedule``), N chosen so these reads take at most 5% of
the sampler's time; the other samples leave the PCIe fields out. A GPU that cannot report it gets one notice.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from gpufl.client.engines import EngineUnavailable
from gpufl.client.engines.gpm import GpmReader
from gpufl.contract import events

if TYPE_CHECKING:
    from gpufl.client.engines import EngineHost

MIB = 1024 * 1024


class HostProbe:
    """CPU % (since the previous call) and RAM from /proc; null fields where /proc is absent."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = self._cpu_times()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    @staticmethod
    def _cpu_times() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", "rb") as f:
                parts = f.readline().split()[1:]
        except OSError:
            return None
        vals = [int(p) for p in parts]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return idle, sum(vals)

    def sample(self) -> events.HostSample:
        cpu_pct = None
        now = self._cpu_times()
        if now is not None and self._last is not None:
            d_idle, d_total = now[0] - self._last[0], now[1] - self._last[1]
            if d_total > 0:
                cpu_pct = round(100.0 * (1.0 - d_idle / d_total), 2)
        self._last = now
        used = total = None
        try:
            info: dict[str, int] = {}
            with open("/proc/meminfo", "rb") as f:
                for line in f:
                    k, v = line.split(b":", 1)
                    info[k.decode()] = int(v.split()[0]) * 1024
            total = info["MemTotal"] / MIB
            used = (info["MemTotal"] - info.get("MemAvailable", info.get("MemFree", 0))) / MIB
        except (OSError, KeyError, ValueError):
            pass
        rss = None
        try:
            with open("/proc/self/statm", "rb") as f:
                rss = int(f.read().split()[1]) * self._page / MIB
        except (OSError, ValueError, IndexError):
            pass
        return events.HostSample(
            cpu_pct=cpu_pct,
            ram_used_mib=_r(used),
            ram_total_mib=_r(total),
            proc_rss_mib=_r(rss),
        )


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def cuda_ordinals(
    nvml: list[tuple[str | None, str | None, str | None]], visible: str | None, order: str | None
) -> list[int] | None:
    """NVML indices of the devices CUDA gives this process, by CUDA ordinal — so system samples carry the
    same device ids as kernels. ``nvml``: (uuid, name, PCI bus id) per NVML index; ``visible`` / ``order``:
    CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER. Read from the environment, without initialising CUDA in the
    process (which would break a later fork that uses CUDA). None where the order cannot be known without
    CUDA: numeric indices under "fastest first" (CUDA's default) over GPUs of different models, or MIG
    instances. Assumed: CUDA enumerates every GPU NVML sees (a GPU too old for the installed CUDA would
    shift the indices)."""
    # CUDA's PCI_BUS_ID order; also its "fastest first" order on GPUs of one model (ties go by bus id)
    base = sorted(range(len(nvml)), key=lambda i: ((nvml[i][2] or "").lower(), i))
    entries = [e.strip() for e in visible.split(",")] if visible is not None else None
    numeric = entries is None or any(e.lstrip("-").isdigit() for e in entries)
    fastest_first = (order or "FASTEST_FIRST").strip().upper() != "PCI_BUS_ID"
    if numeric and fastest_first and len({n for _, n, _ in nvml}) > 1:
        return None
    if entries is None:
        return base
    out: list[int] = []
    for entry in entries:
        # CUDA reads the list up to the first entry it cannot use, and ignores the rest.
        if entry.upper().startswith("MIG-"):
            return None
        if entry.lstrip("-").isdigit():
            i = int(entry)
            if not 0 <= i < len(base) or base[i] in out:
                break
            out.append(base[i])
            continue
        want = entry if entry.upper().startswith("GPU-") else "GPU-" + entry
        hits = [i for i in base if (nvml[i][0] or "").lower().startswith(want.lower())]
        if len(hits) != 1 or hits[0] in out:
            break
        out.append(hits[0])
    return out


class NvmlProbe:
    """Per-GPU NVML readings. Construction raises EngineUnavailable when NVML cannot be used.

    Device ids are CUDA ordinals (``cuda_ordinals``): only the GPUs CUDA gives this process are sampled.
    Where the mapping cannot be known, every GPU is sampled under its NVML index, and ``ids_are_nvml``
    says so (the engine writes a notice)."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError:
            raise EngineUnavailable(
                "nvml_missing",
                "nvidia-ml-py is not installed (pip install 'gpu-flight[cuda]'); host metrics only",
            ) from None
        self.nv = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise EngineUnavailable(
                "nvml_init_failed", f"NVML could not start ({e}): no GPU or driver"
            ) from None
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self._unsupported: set[tuple[int, str]] = set()
        self.handles = handles
        ident = [
            (self._get(i, "uuid", partial(_call_str, pynvml.nvmlDeviceGetUUID, h)),
             self._get(i, "name", partial(_call_str, pynvml.nvmlDeviceGetName, h)),
             self._get(i, "pci", partial(_pci_bus_id, pynvml, h)))
            for i, h in enumerate(handles)
        ]  # fmt: skip
        picked = cuda_ordinals(
            ident, os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("CUDA_DEVICE_ORDER")
        )
        self.ids_are_nvml = picked is None
        self.nvml_index = list(range(len(handles))) if picked is None else picked
        self.handles = [handles[i] for i in self.nvml_index]
        self._unsupported = set()  # keyed by the position in self.handles from here on

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass

    def _get(self, idx: int, field: str, fn: Callable[[], Any]) -> Any:
        if (idx, field) in self._unsupported:
            return None
        try:
            return fn()
        except self.nv.NVMLError as e:
            # NotSupported never changes: stop asking (each call costs a driver lock).
            if getattr(e, "value", None) == self.nv.NVML_ERROR_NOT_SUPPORTED:
                self._unsupported.add((idx, field))
            return None

    def devices(self) -> list[events.DeviceProperties]:
        nv = self.nv
        out = []
        for i, h in enumerate(self.handles):
            mem = self._get(i, "mem", partial(nv.nvmlDeviceGetMemoryInfo, h))
            cc = self._get(i, "cc", partial(nv.nvmlDeviceGetCudaComputeCapability, h))
            out.append(
                events.DeviceProperties(
                    device_id=i,
                    name=self._get(i, "name", partial(_call_str, nv.nvmlDeviceGetName, h)),
                    uuid=self._get(i, "uuid", partial(_call_str, nv.nvmlDeviceGetUUID, h)),
                    pci_bus_id=self._get(i, "pci", partial(_pci_bus_id, nv, h)),
                    compute_capability=tuple(cc) if cc else None,
                    total_memory_bytes=mem.total if mem else None,
                    clock_sm_max_mhz=self._get(
                        i, "maxsm", partial(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM)
                    ),
                    clock_mem_max_mhz=self._get(
                        i, "maxmem", partial(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_MEM)
                    ),
                    power_limit_mw=self._get(i, "plimit", partial(nv.nvmlDeviceGetEnforcedPowerLimit, h)),
                )
            )
        return out

    def driver_version(self) -> str | None:
        try:
            return _s(self.nv.nvmlSystemGetDriverVersion())
        except self.nv.NVMLError:
            return None

    def pcie(self) -> tuple[list[tuple[int | None, int | None]], list[tuple[int, str]]]:
        """PCIe (rx, tx) KB/s per GPU, and (device, why) for each GPU that could not report it this time.
        Blocks ~20 ms per call (two per GPU): NVML measures the link over that window."""
        nv = self.nv
        out: list[tuple[int | None, int | None]] = []
        missing: list[tuple[int, str]] = []
        for i, h in enumerate(self.handles):
            pair: list[int | None] = []
            for field, counter in (
                ("pcie_rx", nv.NVML_PCIE_UTIL_RX_BYTES),
                ("pcie_tx", nv.NVML_PCIE_UTIL_TX_BYTES),
            ):
                if (i, field) in self._unsupported:
                    pair.append(None)
                    continue
                try:
                    pair.append(int(nv.nvmlDeviceGetPcieThroughput(h, counter)))
                except nv.NVMLError as e:
                    if getattr(e, "value", None) == nv.NVML_ERROR_NOT_SUPPORTED:
                        self._unsupported.add((i, field))
                    missing.append((i, f"{field}: {e}"))
                    pair.append(None)
            out.append((pair[0], pair[1]))
        return out, missing

    def sample(
        self,
        pcie: list[tuple[int | None, int | None]] | None = None,
        activity: list[dict[str, float]] | None = None,
    ) -> list[events.GpuSample]:
        """One reading per GPU; ``pcie``: that sample's PCIe readings, from ``pcie()`` (None: not read now);
        ``activity``: its GPM fields per GPU, from ``GpmReader.read()``."""
        nv = self.nv
        out = []
        for i, h in enumerate(self.handles):
            util = self._get(i, "util", partial(nv.nvmlDeviceGetUtilizationRates, h))
            mem = self._get(i, "mem", partial(nv.nvmlDeviceGetMemoryInfo, h))
            reasons = self._get(i, "thr", partial(nv.nvmlDeviceGetCurrentClocksEventReasons, h))
            pwr_mask = getattr(nv, "nvmlClocksEventReasonSwPowerCap", 0x4) | getattr(
                nv, "nvmlClocksEventReasonHwPowerBrakeSlowdown", 0x80
            )
            therm_mask = getattr(nv, "nvmlClocksEventReasonSwThermalSlowdown", 0x20) | getattr(
                nv, "nvmlClocksEventReasonHwThermalSlowdown", 0x40
            )
            s = events.GpuSample(
                device_id=i,
                util_gpu_pct=util.gpu if util else None,
                util_mem_pct=util.memory if util else None,
                mem_used_mib=_r(mem.used / MIB) if mem else None,
                mem_free_mib=_r(mem.free / MIB) if mem else None,
                mem_total_mib=_r(mem.total / MIB) if mem else None,
                temp_c=self._get(i, "temp", partial(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)),
                power_mw=self._get(i, "power", partial(nv.nvmlDeviceGetPowerUsage, h)),
                energy_mj=self._get(i, "energy", partial(nv.nvmlDeviceGetTotalEnergyConsumption, h)),
                fan_pct=self._get(i, "fan", partial(nv.nvmlDeviceGetFanSpeed, h)),
                clk_gfx_mhz=self._get(i, "cg", partial(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_GRAPHICS)),
                clk_sm_mhz=self._get(i, "cs", partial(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)),
                clk_mem_mhz=self._get(i, "cm", partial(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM)),
                throttle_reasons=reasons,
                throttle_pwr=bool(reasons & pwr_mask) if reasons is not None else None,
                throttle_therm=bool(reasons & therm_mask) if reasons is not None else None,
                pcie_rx_kbs=pcie[i][0] if pcie else None,
                pcie_tx_kbs=pcie[i][1] if pcie else None,
                **(activity[i] if activity else {}),
            )
            out.append(s)
        return out


def _call_str(fn: Callable[..., Any], *args: Any) -> str:
    return _s(fn(*args))


def _pci_bus_id(nv: Any, h: Any) -> str:
    return _s(nv.nvmlDeviceGetPciInfo(h).busId)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class PcieSchedule:
    """Which system samples read PCIe throughput: every ``every``-th, starting with the first, where
    ``every`` grows so that these reads (timed as they happen) stay within ``budget`` of the sampler's
    time. Never fewer than ``min_every`` samples apart."""

    def __init__(self, interval_s: float, min_every: int = 5, budget: float = 0.05) -> None:
        self.interval_s = interval_s
        self.min_every = max(1, min_every)
        self.budget = budget
        self.every = self.min_every
        self._count = 0

    def due(self) -> bool:
        due = self._count % self.every == 0
        self._count += 1
        return due

    def took(self, seconds: float) -> None:
        """Time one PCIe read of every GPU took: space the reads so that they cost at most ``budget``."""
        need = math.ceil(seconds / (self.budget * self.interval_s)) if seconds > 0 else 1
        self.every = max(self.min_every, need)


class SystemEngine:
    name = "system"
    device_writer = "python"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.nvml: NvmlProbe | None = None
        self.host = HostProbe()
        self.samples = 0
        self.pcie: PcieSchedule | None = None
        self._pcie_noted: set[int] = set()
        self.gpm: GpmReader | None = None
        self._gpm_noted: dict[int, int] = {}

    def prepare(self, session: EngineHost) -> dict[str, Any]:
        self.session = session
        self.interval = session.options.system_interval_s
        try:
            self.nvml = NvmlProbe()
        except EngineUnavailable as e:
            # Host metrics still run: say once what is missing, and go on.
            session.notice(
                e.code,
                f"GPU metrics (utilisation, memory, clocks, power, PCIe throughput) not reported: {e}",
                engine=self.name,
                level="info",
            )
            return {}
        self.pcie = PcieSchedule(self.interval)
        if self.nvml.ids_are_nvml:
            session.notice(
                "nvml_device_ids",
                "GPU metrics are labelled with NVML indices, which may differ from the CUDA device ids of "
                "kernels here (GPUs of different models with CUDA_DEVICE_ORDER unset, or MIG); "
                "set CUDA_DEVICE_ORDER=PCI_BUS_ID to align them",
                engine=self.name,
                level="info",
            )
        if session.options.gpm:
            self._start_gpm(session)
        return {"devices": self.nvml.devices(), "driver_version": self.nvml.driver_version()}

    def _start_gpm(self, session: EngineHost) -> None:
        assert self.nvml is not None
        try:
            self.gpm = GpmReader(self.nvml.nv, self.nvml.handles)
        except Exception as e:  # NVML's GPM entry points missing from an old driver, or failing oddly
            self.gpm = None
            session.notice(
                "gpm_unavailable",
                f"GPU activity (NVML GPM) not reported: {e!r}",
                engine=self.name,
                level="info",
            )
            return
        for device, why in self.gpm.unsupported:
            session.notice(
                "gpm_unsupported",
                f"GPU activity (SM active, tensor pipes, DRAM bandwidth; NVML GPM) not reported by GPU {device}: "
                f"{why}",
                engine=self.name,
                level="info",
            )
        if not self.gpm.available:
            self.gpm.close()
            self.gpm = None

    def _gpm_read(self) -> list[dict[str, float]] | None:
        if self.gpm is None:
            return None
        activity = self.gpm.read()
        for device, dropped in self.gpm.dropped.items():
            if len(dropped) > self._gpm_noted.get(device, 0):  # once per metric: NotSupported stays so
                self.session.notice(
                    "gpm_metric_not_reported",
                    f"GPU {device} does not report {', '.join(dropped[self._gpm_noted.get(device, 0) :])} "
                    "(NVML GPM NotSupported)",
                    engine=self.name,
                    level="info",
                )
                self._gpm_noted[device] = len(dropped)
        return activity

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpufl-system", daemon=True)
        self._thread.start()

    def sample_once(self, pcie_due: bool = False) -> events.SystemSample:
        pcie = None
        if self.nvml and self.pcie and pcie_due:
            t0 = time.monotonic()
            pcie, missing = self.nvml.pcie()
            self.pcie.took(time.monotonic() - t0)
            for device, why in missing:
                if device not in self._pcie_noted:  # once per GPU: NotSupported stays so
                    self._pcie_noted.add(device)
                    self.session.notice(
                        "pcie_not_reported",
                        f"PCIe throughput not reported by GPU {device} (NVML {why})",
                        engine=self.name,
                        level="info",
                    )
        gpus = self.nvml.sample(pcie, self._gpm_read()) if self.nvml else []
        return events.SystemSample(
            session_id=self.session.session_id,
            stream="system",
            ts_ns=time.time_ns(),
            host=self.host.sample(),
            gpus=gpus,
        )

    def _run(self) -> None:
        w = self.session.writers["system"]
        next_t = time.monotonic()
        watchdog = self.session.watchdog
        while not self._stop.is_set():
            try:
                due = self.pcie.due() if self.pcie else False
                with watchdog.busy("NVML sampler"):  # NVML takes a driver lock: a wedged driver stalls here
                    sample = self.sample_once(pcie_due=due)
                if self._stop.is_set():
                    break
                w.emit(sample)
                self.samples += 1
            except Exception as e:  # keep sampling; one bad read must not end the engine
                self.session.notice("system_sample_failed", f"system sample failed: {e!r}", engine=self.name)
            next_t += self.interval
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def scope_enter(self, inst: int) -> None:
        pass

    def scope_exit(self, inst: int) -> None:
        pass

    def disable(self) -> None:
        """The watchdog: stop sampling, without waiting for a snapshot in progress."""
        self._stop.set()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            # One last sample so short programs still have a point at their end.
            try:
                self.session.writers["system"].emit(self.sample_once())
            except Exception:
                pass
        if self.gpm:
            self.gpm.close()
        if self.nvml:
            self.nvml.close()
        return {}
