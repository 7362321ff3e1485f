"""Tracing engine, first path: CUPTI activity records through NVIDIA's ``cupti-python``.

Kernels (CONCURRENT_KERNEL), memcpy and memset records become ``kernel``/``memcpy``/``memset`` records.
A Callback-API subscription on the launch/copy/memset API calls (runtime and driver) records, per
correlation id, the launching thread, the innermost ``gpufl.scope`` open on it, the API enter time and
duration and (option ``stacks``) the Python call stack. Measured on the H100: EXTERNAL_CORRELATION records
were not produced without API activity records (which cost +20%), so scopes are attributed here instead.
Subscribing first is also how another CUPTI client (torch.profiler/Kineto, nsys) is detected: CUPTI allows
one subscriber per process on these drivers, and registering activity buffers under another client's feet
hung that client's flush (seen on the H100), so when subscribing fails the engine stays off.
GPU timestamps are mapped onto CLOCK_REALTIME with an offset measured at start and re-measured at stop.

Records arrive as Python objects on CUPTI's buffer thread, under the GIL: this path costs the launching
thread measurable time (see docs/benchmarks.md). The native record path replaces it where it is built;
this one stays as the fallback.

Safety: every failure (no libcupti, no GPU, another CUPTI subscriber such as torch.profiler or nsys)
becomes ``EngineUnavailable`` with the cause; nothing here may raise into the user's program.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from gpufl.client import capture, signals
from gpufl.client.engines import (
    EngineUnavailable,
    cuda_probe,
    handover,
    untimed_records_message,
)
from gpufl.client.engines.cuda_probe import measure_clock_offset
from gpufl.client.engines.demangle import demangle
from gpufl.client.engines.occupancy import DeviceLimits
from gpufl.client.engines.occupancy import compute as compute_occupancy
from gpufl.client.scope import current as current_scope
from gpufl.contract import events

if TYPE_CHECKING:
    from gpufl.client.engines import EngineHost

log = logging.getLogger("gpufl")

_COPY_KIND = {
    "HTOD": "HtoD",
    "DTOH": "DtoH",
    "DTOD": "DtoD",
    "HTOH": "HtoH",
    "PTOP": "PtoP",
    "HTOA": "HtoA",
    "ATOH": "AtoH",
    "ATOA": "AtoA",
    "ATOD": "AtoD",
    "DTOA": "DtoA",
}
_MEM_KIND = {
    "PAGEABLE": "Pageable",
    "PINNED": "Pinned",
    "DEVICE": "Device",
    "ARRAY": "Array",
    "MANAGED": "Managed",
    "DEVICE_STATIC": "DeviceStatic",
    "MANAGED_STATIC": "ManagedStatic",
}
# Launch sites waiting for their activity record (~200 B each). Driver calls nested in runtime calls also
# land here and never match, so the oldest are evicted: 256k bounds this at ~50 MB.
_MAX_PENDING_CORRELATIONS = 1 << 18
_ACTIVITY_KINDS = ("CONCURRENT_KERNEL", "MEMCPY", "MEMSET")
_SYNC_ACTIVITY = "SYNCHRONIZATION"  # only with Options.syncs: it costs every launch (see there)
_SYNC_KIND = {
    "EVENT_SYNCHRONIZE": "event",
    "STREAM_WAIT_EVENT": "stream_wait_event",
    "STREAM_SYNCHRONIZE": "stream",
    "CONTEXT_SYNCHRONIZE": "context",
}
_INVALID = 0xFFFFFFFF  # CUPTI_SYNCHRONIZATION_INVALID_VALUE: the call has no such stream or event
_MEMCPY_ASYNC = 1  # CUPTI_ACTIVITY_FLAG_MEMCPY_ASYNC
_RUNTIME_PREFIXES = ("cudaLaunch", "cudaGraphLaunch", "cudaMemcpy", "cudaMemset")
_DRIVER_PREFIXES = ("cuLaunch", "cuGraphLaunch", "cuMemcpy", "cuMemset")


class TracingEngine:
    name = "tracing"
    path = "cupti-python"
    device_writer = "python"

    def __init__(self, native_unavailable: str | None = None) -> None:
        self.native_unavailable = native_unavailable
        self.cupti: Any = None
        self.offset_ns = 0
        self.limits: dict[int, DeviceLimits] = {}
        # corr id -> [thread id, stack id, api enter ns, api duration ns, scope inst]; insertion-ordered
        self._sites: dict[int, list[Any]] = {}
        self._stacks = False
        self._lock = threading.Lock()
        self.records = 0
        self._flusher: threading.Thread | None = None
        self._flush_stop = threading.Event()
        self.untimed = 0  # records CUPTI delivered without timestamps (engines.untimed_records_message)
        signals.register_callback(self._api_callback)
        self.started = False
        self._subscriber: Any = None
        self._paused_at: int | None = None  # stepped aside for torch.profiler since then
        self._pause_reason = ""
        self._capturing = True  # False outside a capture window (gpufl.client.capture)

    # ---------------------------------------------------------------- lifecycle

    def prepare(self, session: EngineHost) -> dict[str, Any]:
        self.session = session
        try:
            from cupti import cupti
        except ImportError as e:
            if cuda_probe.missing_package(e):
                raise cuda_probe.unreachable(e) from None
            raise EngineUnavailable(
                "cupti_missing",
                f"cupti-python is not installed or libcupti not found ({e}); pip install 'gpu-flight[cuda]'",
            ) from None
        self.cupti = cupti
        # outside capture windows nothing is enabled (gpufl.client.capture); resume() keeps the state
        self._capturing = capture.parse(session.options.capture).mode == "continuous"
        probe = cuda_probe.probe_devices()
        self.limits = {i: d.limits for i, d in probe.devices.items()}
        facts: dict[str, Any] = probe.facts()
        clock = measure_clock_offset(cupti.get_timestamp)
        self.offset_ns = clock.offset_ns
        facts["clock"] = clock
        if self.native_unavailable:
            session.notice(
                "native_unavailable",
                f"native record path unavailable ({self.native_unavailable}); using cupti-python",
                engine=self.name,
                level="info",
            )
        return facts

    def start(self) -> None:
        cupti = self.cupti
        opts = self.session.options
        self.writer = self.session.writers["device"]  # the session chose it after prepare
        buf = opts.cupti_buffer_bytes

        def requested() -> tuple[int, int]:
            return buf, 0

        self._stacks = opts.stacks
        cuda_probe.refuse_if_torch_profiler()
        try:
            # Subscribe before touching activity buffers: failing here means another CUPTI client owns
            # this process, and we must leave its buffers alone.
            self._subscriber = cupti.subscribe(self._api_callback, None)
        except Exception as e:
            raise cuda_probe.unavailable(e, subscribing=True) from None
        try:
            if self._capturing:
                self._enable_api_callbacks()
            cupti.activity_register_callbacks(requested, self._completed)
            if opts.native.flush_ms:  # as the native path: what a kill or a failed context loses at most
                cupti.activity_flush_period(opts.native.flush_ms)
            if self._capturing:
                self._enable_activity()
        except Exception as e:
            self._disable_all()
            self._unsubscribe()
            raise cuda_probe.unavailable(e) from None
        self.started = True
        self._start_flusher()
        handover.install_torch_profiler_hook(self)

    def _enable_activity(self) -> None:
        for kind in (*_ACTIVITY_KINDS, *((_SYNC_ACTIVITY,) if self.session.options.syncs else ())):
            self.cupti.activity_enable(getattr(self.cupti.ActivityKind, kind))

    def set_capture(self, on: bool) -> None:
        """A capture window opens (on) or closes (gpufl.client.capture): the launch callbacks and activity kinds
        on or off. Stepped aside for torch.profiler, only remembered (``start`` honours it on resuming). The
        records of kernels still running at the close come with the flusher's next forced flush."""
        if on == self._capturing:
            return
        self._capturing = on
        if not self.started or self._paused_at is not None or self._subscriber is None:
            return
        if on:
            self._enable_api_callbacks()
            self._enable_activity()
            return
        self._disable_all()
        # the callbacks off one by one, as they were switched on and as the native path does (whose later windows
        # record on the H100): switching whole domains off here, later windows recorded no kernel (H100, session 11)
        self._enable_api_callbacks(False)

    def _start_flusher(self) -> None:
        """CUPTI's periodic flush returns only full buffers (its documentation; so a device-side assert a
        second after 60 kernels left them untimed on the H100): force one every period from a thread."""
        period_ms = self.session.options.native.flush_ms
        if not period_ms:
            return
        stop = self._flush_stop = threading.Event()

        def loop() -> None:
            while not stop.wait(period_ms / 1000):
                try:
                    self.cupti.activity_flush_all(1)
                except Exception as e:  # e.g. between capture windows: the next period tries again
                    log.debug("gpufl: CUPTI flush: %r", e)

        self._flusher = threading.Thread(target=loop, name="gpufl-cupti-flush", daemon=True)
        self._flusher.start()

    def _stop_flusher(self) -> None:
        if self._flusher is not None:
            self._flush_stop.set()
            self._flusher.join(5)
            self._flusher = None

    def pause(self, reason: str) -> None:
        """Step aside for torch.profiler (gpufl.client.engines.handover): flush, disable, unsubscribe."""
        if not self.started or self._paused_at is not None:
            return
        self._paused_at = time.time_ns()
        self._pause_reason = reason
        self._stop_flusher()
        try:
            self.cupti.activity_flush_all(1)
        except Exception as e:
            log.warning("gpufl: CUPTI flush failed: %r", e)
        self._disable_all()
        self._unsubscribe()
        log.warning("gpufl: %s started: gpufl's kernel tracing steps aside until it stops", reason)

    def resume(self) -> None:
        if self._paused_at is None:
            return
        self._close_gap()
        try:
            self.started = False
            self.start()
        except EngineUnavailable as e:
            handover.uninstall(self)
            handover.cupti_kept_by_profiler(self.cupti.finalize)
            self.session.notice(
                "cupti_busy",
                f"kernel tracing could not resume after {self._pause_reason} ({e}); "
                "it stays off for this session",
                engine=self.name,
            )

    def _close_gap(self) -> None:
        start, self._paused_at = self._paused_at, None
        if start is not None:
            self.writer.emit(
                events.CaptureGap(
                    session_id=self.session.session_id,
                    stream="device",
                    start_ns=start,
                    end_ns=time.time_ns(),
                    reason=self._pause_reason,
                )
            )

    def _unsubscribe(self) -> None:
        try:
            if self._subscriber is not None:
                self.cupti.unsubscribe(self._subscriber)
        except Exception:
            pass
        self._subscriber = None

    def _enable_api_callbacks(self, on: bool = True) -> None:
        cupti = self.cupti
        enabled = 0
        for domain, enum, prefixes in (
            (cupti.CallbackDomain.RUNTIME_API, cupti.RuntimeApiTraceCbid, _RUNTIME_PREFIXES),
            (cupti.CallbackDomain.DRIVER_API, cupti.DriverApiTraceCbid, _DRIVER_PREFIXES),
        ):
            for name, cbid in enum.__members__.items():
                if name.startswith(prefixes):
                    try:  # the enum lists ids this driver may not know (INVALID_PARAMETER): skip those
                        cupti.enable_callback(int(on), self._subscriber, domain, cbid)
                        enabled += 1
                    except Exception:
                        pass
        if on and enabled == 0:
            self.session.notice(
                "cupti_callbacks",
                "launch callbacks unavailable: no scope/stack attribution",
                engine=self.name,
            )

    def _api_callback(self, userdata: Any, domain: Any, cbid: Any, data: Any) -> None:
        """On the launching thread, at API enter and exit. Must be cheap and must never raise."""
        try:
            corr = data.correlation_id
            if data.callback_site == 0:  # API_ENTER
                stack_id = self._stack_id(sys._getframe(1)) if self._stacks else None
                cur = current_scope()
                sites = self._sites
                sites[corr] = [
                    threading.get_native_id(),
                    stack_id,
                    time.time_ns(),
                    0,
                    cur[0] if cur else None,
                ]
                if len(sites) > _MAX_PENDING_CORRELATIONS:
                    del sites[next(iter(sites))]
            else:
                site = self._sites.get(corr)
                if site is not None:
                    site[3] = time.time_ns() - site[2]
        except KeyboardInterrupt:  # Ctrl-C landed here past gpufl's handler (one the program set after init)
            signals.defer(signals.raise_keyboard_interrupt, signal.SIGINT)
        except Exception:
            pass

    def _stack_id(self, frame: Any) -> int:
        frames: list[tuple[str, int, str]] = []
        while frame is not None and len(frames) < 64:
            code = frame.f_code
            frames.append((code.co_filename, frame.f_lineno, code.co_name))
            frame = frame.f_back
        return self.writer.intern(
            "stack",
            tuple(frames),
            lambda: events.DictEntry(
                session_id=self.session.session_id, stream="device", kind="stack", id=0, frames=frames
            ),
        )

    def scope_enter(self, inst: int) -> None:
        pass

    def scope_exit(self, inst: int) -> None:
        pass

    def stop(self) -> dict[str, Any]:
        if self._paused_at is not None:  # shut down while torch.profiler owns CUPTI
            self._close_gap()
            self.started = False
            handover.uninstall(self)
            return {}  # no finalize: it would tear CUPTI down under the profiler
        if not self.started:
            return {}
        self._stop_flusher()
        handover.uninstall(self)
        cupti = self.cupti
        facts: dict[str, Any] = {}
        try:
            cupti.activity_flush_all(1)
        except Exception as e:
            log.warning("gpufl: CUPTI flush failed: %r", e)
        try:
            facts["clock"] = measure_clock_offset(cupti.get_timestamp)
        except Exception:
            pass
        if self.untimed:
            self.session.notice(
                "cupti_untimed_records",
                untimed_records_message(self.untimed, self.session.options.native.flush_ms),
                engine=self.name,
            )
        self._disable_all()
        self._unsubscribe()
        try:
            # Without finalize, applications stayed 10-20% slower after profiling (pytorch/pytorch#146604).
            cupti.finalize()
        except Exception as e:
            log.warning("gpufl: CUPTI finalize failed: %r", e)
        self.started = False
        return facts

    def _disable_all(self) -> None:
        cupti = self.cupti
        for kind in (*_ACTIVITY_KINDS, _SYNC_ACTIVITY):
            try:
                cupti.activity_disable(getattr(cupti.ActivityKind, kind))
            except Exception:
                pass

    # ---------------------------------------------------------------- record conversion

    def _completed(self, activities: list[Any]) -> None:
        """CUPTI's buffer thread: convert and queue. Must never raise."""
        try:
            self._convert(activities)
        except Exception as e:
            log.warning("gpufl: dropping a CUPTI buffer after a conversion error: %r", e)

    def _convert(self, activities: list[Any]) -> None:
        cupti = self.cupti
        K = cupti.ActivityKind
        kernel_kinds = (K.CONCURRENT_KERNEL, K.KERNEL)
        timed_kinds = (*kernel_kinds, K.MEMCPY, K.MEMSET, K.SYNCHRONIZATION)
        emit = self.writer.emit
        sites = self._sites
        sid = self.session.session_id
        off = self.offset_ns
        for a in activities:
            kind = a.kind
            corr = a.correlation_id
            # A graph launch is one API call for many kernels: keep its site until the buffer is done.
            site = sites.get(corr) if getattr(a, "graph_id", 0) else sites.pop(corr, None)
            scope_inst = site[4] if site else None
            if kind not in timed_kinds:
                continue
            if a.start == 0 or a.end < a.start:
                self.untimed += 1
                continue
            if kind in kernel_kinds:
                rec: events.Record = events.Kernel(
                    session_id=sid,
                    stream="device",
                    launch_id=self._launch_id(a),
                    device_id=a.device_id,
                    stream_id=a.stream_id,
                    corr_id=corr,
                    start_ns=a.start + off,
                    end_ns=a.end + off,
                    graph_id=a.graph_id or None,
                    graph_node_id=a.graph_node_id or None,
                    scope_inst=scope_inst,
                    thread_id=site[0] if site else None,
                    stack_id=site[1] if site else None,
                    api_lead_ns=a.start + off - site[2] if site else None,
                    api_dur_ns=site[3] if site and site[3] else None,
                )
            elif kind == K.SYNCHRONIZATION:
                rec = events.Sync(
                    session_id=sid,
                    stream="device",
                    sync_kind=_enum_name(cupti.ActivitySynchronizationType, a.type, _SYNC_KIND),  # type: ignore[arg-type]
                    start_ns=a.start + off,
                    end_ns=a.end + off,
                    corr_id=corr,
                    context_id=a.context_id,
                    stream_id=a.stream_id if a.stream_id != _INVALID else None,
                    event_id=a.cuda_event_id if a.cuda_event_id != _INVALID else None,
                )
            elif kind in (K.MEMCPY,):
                dur = a.end - a.start
                flags = getattr(a, "flags_", getattr(a, "flags", None))
                rec = events.Memcpy(
                    session_id=sid,
                    stream="device",
                    device_id=a.device_id,
                    stream_id=a.stream_id,
                    corr_id=corr,
                    start_ns=a.start + off,
                    end_ns=a.end + off,
                    bytes=a.bytes,
                    copy_kind=_enum_name(cupti.ActivityMemcpyKind, a.copy_kind, _COPY_KIND),  # type: ignore[arg-type]
                    src_kind=_enum_name(cupti.ActivityMemoryKind, a.src_kind, _MEM_KIND),  # type: ignore[arg-type]
                    dst_kind=_enum_name(cupti.ActivityMemoryKind, a.dst_kind, _MEM_KIND),  # type: ignore[arg-type]
                    throughput_gbps=round(a.bytes / dur, 3) if dur > 0 else None,
                    context_id=a.context_id,
                    graph_id=a.graph_id or None,
                    scope_inst=scope_inst,
                    mode=None if flags is None else ("async" if flags & _MEMCPY_ASYNC else "sync"),
                )
            elif kind == K.MEMSET:
                rec = events.Memset(
                    session_id=sid,
                    stream="device",
                    device_id=a.device_id,
                    stream_id=a.stream_id,
                    corr_id=corr,
                    start_ns=a.start + off,
                    end_ns=a.end + off,
                    bytes=a.bytes,
                    value=a.value,
                    mem_kind=_enum_name(cupti.ActivityMemoryKind, a.memory_kind, _MEM_KIND),  # type: ignore[arg-type]
                    context_id=a.context_id,
                    graph_id=a.graph_id or None,
                    scope_inst=scope_inst,
                )
            else:
                continue
            self.records += 1
            emit(rec)

    def _launch_id(self, a: Any) -> int:
        grid = (a.grid_x, a.grid_y, a.grid_z)
        block = (a.block_x, a.block_y, a.block_z)
        key = (
            a.name,
            a.device_id,
            a.context_id,
            grid,
            block,
            a.registers_per_thread,
            a.static_shared_memory,
            a.dynamic_shared_memory,
            a.local_memory_per_thread,
        )
        return self.writer.intern("launch", key, lambda: self._launch_entry(a, grid, block))

    def _launch_entry(
        self, a: Any, grid: tuple[int, int, int], block: tuple[int, int, int]
    ) -> events.DictEntry:
        smem = a.static_shared_memory + a.dynamic_shared_memory
        occ = None
        lim = self.limits.get(a.device_id)
        if lim is not None:
            occ = compute_occupancy(lim, block[0] * block[1] * block[2], a.registers_per_thread, smem)
        cache = getattr(a, "cache_config", None)
        cfg = getattr(cache, "config", None)
        launch = events.LaunchConfig(
            name=demangle(a.name),
            mangled=a.name,
            device_id=a.device_id,
            context_id=a.context_id,
            grid=grid,
            block=block,
            num_regs=a.registers_per_thread,
            static_shared_bytes=a.static_shared_memory,
            dyn_shared_bytes=a.dynamic_shared_memory,
            local_bytes=a.local_memory_per_thread,
            occupancy=occ.occupancy if occ else None,
            reg_occupancy=occ.reg_occupancy if occ else None,
            smem_occupancy=occ.smem_occupancy if occ else None,
            warp_occupancy=occ.warp_occupancy if occ else None,
            block_occupancy=occ.block_occupancy if occ else None,
            limiting_resource=occ.limiting_resource if occ else None,  # type: ignore[arg-type]
            max_active_blocks=occ.max_active_blocks if occ else None,
            cache_config_requested=getattr(cfg, "requested", None),
            cache_config_executed=getattr(cfg, "executed", None),
            shared_mem_config_bytes=getattr(a, "shared_memory_executed", None),
        )
        return events.DictEntry(
            session_id=self.session.session_id, stream="device", kind="launch", id=0, launch=launch
        )


def _enum_name(enum: Any, value: int, names: dict[str, str]) -> str:
    try:
        return names.get(enum(value).name, "unknown")
    except ValueError:
        return "unknown"
