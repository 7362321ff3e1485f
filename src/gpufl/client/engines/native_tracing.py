"""Tracing engine, native record path: CUPTI handled in C (``gpufl.client._native``), Python keeps the control plane.

What the C side does per launch and per record, and why, is in ``src/gpufl/client/native/`` (map:
docs/client-internals.md). Here: finding
libcupti, checking its version against the headers the extension was built with, device properties and the
clock offset (``cuda_probe``, shared with the cupti-python path), attaching the device stream's C writer (the
session builds it for ``device_writer = "native"``), and lifecycle. When any of that is not possible, ``unavailable_reason`` says why and the session uses the
cupti-python path (``gpufl.client.engines.tracing``) instead, saying so once.
"""

from __future__ import annotations

import collections
import ctypes.util
import glob
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from gpufl.client import capture
from gpufl.client.config import NativeOptions
from gpufl.client.engines import EngineUnavailable, cuda_probe, handover, untimed_records_message
from gpufl.client.engines.cuda_probe import measure_clock_offset
from gpufl.client.scope import current as current_scope
from gpufl.client.writer import NativeStreamWriter
from gpufl.contract import events

if TYPE_CHECKING:
    from gpufl.client.engines import EngineHost

log = logging.getLogger("gpufl")

# NVTX start/end ranges' scope instance ids: 3·2^40 + NVTX's range id (native/scopes.c); push/pop ranges count from 2^40.
NVTX_START_BASE = 3 << 40


def libcupti_candidates() -> list[str]:
    """Where libcupti may be: $GPUFL_LIBCUPTI, NVIDIA's pip wheels, the CUDA toolkit, the loader's path."""
    out: list[str] = []
    if os.environ.get("GPUFL_LIBCUPTI"):
        out.append(os.environ["GPUFL_LIBCUPTI"])
    try:  # cuda-pathfinder knows NVIDIA's wheel and conda layouts
        from cuda.pathfinder import find_nvidia_dynamic_lib

        found = find_nvidia_dynamic_lib("cupti")
        if found:
            out.append(str(found))
    except Exception:
        pass
    for base in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cuda_cupti/lib"):
            out += sorted(glob.glob(os.path.join(base, sub, "libcupti.so*")))
    for root in filter(None, (os.environ.get("CUDA_HOME"), "/usr/local/cuda")):
        out += sorted(glob.glob(os.path.join(root, "lib64", "libcupti.so*")))
        out += sorted(glob.glob(os.path.join(root, "extras/CUPTI/lib64", "libcupti.so*")))
    name = ctypes.util.find_library("cupti")
    if name:
        out.append(name)
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


_load_result: tuple[Any, str | None] | None = None
_libcupti_path: str | None = None


def load_native(enabled: bool = True) -> tuple[Any, str | None]:
    """(module, None) when the native path can run here, else (None, the reason). Cached (but for
    ``enabled``: NativeOptions.enabled, GPUFL_NATIVE)."""
    global _load_result
    if not enabled:
        return None, "disabled by GPUFL_NATIVE=0"
    if _load_result is not None:
        return _load_result
    _load_result = _load()
    return _load_result


def _load() -> tuple[Any, str | None]:
    try:
        from gpufl.client import _native  # type: ignore[attr-defined]
    except ImportError as e:
        return None, f"the C extension is not built ({e})"
    errors: list[str] = []
    for path in libcupti_candidates():
        try:
            version = _native.load(path)
        except OSError as e:
            errors.append(str(e))
            continue
        global _libcupti_path
        _libcupti_path = path
        if version < _native.BUILT_CUPTI_API_VERSION:
            return None, (
                f"libcupti at {path} has CUPTI API version {version}, older than the "
                f"{_native.BUILT_CUPTI_API_VERSION} the extension was built for"
            )
        return _native, None
    return None, "libcupti not found" + (f" ({errors[-1]})" if errors else "")


def injection_library() -> str | None:
    """The CUDA injection build of the native path (``gpufl.client._cuda_inject``), if built."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = sorted(glob.glob(os.path.join(here, "_cuda_inject*.so")))
    return found[0] if found else None


def unavailable_reason(options: NativeOptions | None = None) -> str | None:
    return load_native((options or NativeOptions()).enabled)[1]


class NativeTracingEngine:
    name = "tracing"
    path = "native"
    device_writer = "native"  # the C writer the buffer thread appends to; the session builds it

    def __init__(self) -> None:
        self.native: Any = None
        self._scopes: collections.OrderedDict[int, tuple[str, int]] = collections.OrderedDict()
        # nvtxRangeStart ranges begun and not yet ended (their end may come from any thread, or never)
        self._open_starts: set[int] = set()
        self._nvtx_thread: threading.Thread | None = None
        self._nvtx_stop = threading.Event()
        self.started = False
        self._paused_at: int | None = None
        self._pause_reason = ""
        self.offset_ns = 0
        self._lazy_domains = False
        # left-out NVTX ranges counted before a pause (a restart of tracing counts from zero): name -> (n, partial)
        self._left_out_before: dict[str, tuple[int, bool]] = {}

    def prepare(self, session: EngineHost) -> dict[str, Any]:
        self.session = session
        opts = session.options.native
        native, reason = load_native(opts.enabled)
        if native is None:
            raise EngineUnavailable("native_unavailable", f"native record path unavailable: {reason}")
        self.native = native
        probe = cuda_probe.probe_devices()
        if opts.nvtx and _libcupti_path and "NVTX_INJECTION64_PATH" not in os.environ:
            # NVTX calls reach CUPTI (and so us) only when NVTX loads it; read at the first NVTX call. Set here
            # first, no library has created an NVTX domain through CUPTI yet: every creation will be seen, so
            # the named domains' range callbacks can wait for a recorded one (nvtx_domains.c: lazy domains).
            os.environ["NVTX_INJECTION64_PATH"] = _libcupti_path
            self._lazy_domains = True
        clock = measure_clock_offset(native.timestamp)
        self.offset_ns = clock.offset_ns
        self._limits = cuda_probe.native_limits(probe.devices)
        facts: dict[str, Any] = probe.facts()
        facts["clock"] = clock
        facts["cupti_version"] = native.cupti_version()
        return facts

    def _start_native(self) -> int:
        """Start CUPTI tracing in C with the session's options; the launch callbacks enabled (-1: off)."""
        opts = self.session.options
        lazy, self._lazy_domains = self._lazy_domains, False  # a restart (after a pause) missed creations
        return int(
            self.native.start(
                opts.cupti_buffer_bytes,
                opts.native.flush_ms,
                syncs=opts.syncs,
                nvtx_domains=opts.nvtx_domains,
                nvtx_lazy_domains=lazy,
                **opts.native.start_kwargs(),
            )
        )

    def start(self) -> None:
        cuda_probe.refuse_if_torch_profiler()
        writer = self.session.writers["device"]
        assert isinstance(writer, NativeStreamWriter)  # the session's choice for device_writer = "native"
        self.writer = writer
        native = self.native
        native.reset()  # a previous session in this process (init after shutdown) starts its ids again
        if capture.parse(self.session.options.capture).mode != "continuous":
            native.capture(False)  # nothing enabled until a capture window opens
        native.attach(writer.native, self._limits, self.offset_ns, self.session.options.stacks)
        try:
            enabled = self._start_native()
        except RuntimeError as e:
            raise cuda_probe.unavailable(e, subscribing=str(e).startswith("cuptiSubscribe")) from None
        if enabled == 0:
            self.session.notice(
                "cupti_callbacks",
                "launch callbacks unavailable: no scope/stack attribution",
                engine=self.name,
            )
        # Which record path runs, said once (the cupti-python path says it by its native_unavailable notice):
        # a user of an installed wheel can see that its prebuilt extension is the one recording.
        self.session.notice(
            "record_path",
            f"native record path: CUPTI records written in C by {self.native.__name__}",
            engine=self.name,
            level="info",
        )
        self.started = True
        self._paused_at = None
        handover.install_torch_profiler_hook(self)
        self._nvtx_stop.clear()
        self._nvtx_thread = threading.Thread(target=self._nvtx_loop, name="gpufl-nvtx", daemon=True)
        self._nvtx_thread.start()

    # ---------------------------------------------------------------- NVTX ranges → scopes

    def _nvtx_loop(self) -> None:
        while not self._nvtx_stop.wait(0.1):
            self._drain_nvtx()

    def _drain_nvtx(self) -> None:
        """Write the NVTX ranges the C side queued as scope records (and thread names as dict records)."""
        try:
            evs, dropped = self.native.drain_nvtx()
            if not evs and not dropped:
                return
            sid = self.session.session_id
            scope_w = self.session.writers["scope"]
            for kind, tid, inst, parent, ts, name in evs:
                if kind == 0:
                    base = self._scopes.get(parent) if parent else None
                    clean = name.replace("/", "|") or "(unnamed NVTX range)"  # the C side names them already
                    path = f"{base[0]}/{clean}" if base else clean
                    depth = base[1] + 1 if base else 0
                    if inst >= NVTX_START_BASE:
                        if len(self._open_starts) >= 1_000_000:  # never-ended ranges: bound the memory
                            dropped += 1
                            continue
                        self._open_starts.add(inst)
                    self._remember(inst, path, depth)
                    scope_w.emit(
                        events.ScopeBegin(
                            session_id=sid, stream="scope", inst=inst,
                            path_id=scope_w.intern_string("scope", path),
                            parent_inst=parent or None, depth=depth, ts_ns=ts, thread_id=tid, tag="nvtx",
                        )
                    )  # fmt: skip
                elif kind == 1:
                    if inst >= NVTX_START_BASE:
                        if inst not in self._open_starts:
                            continue  # started before tracing (or ended twice): no begin to close
                        self._open_starts.discard(inst)
                    scope_w.emit(events.ScopeEnd(session_id=sid, stream="scope", inst=inst, ts_ns=ts))
                else:
                    self.session.writers["device"].emit(
                        events.DictEntry(session_id=sid, stream="device", kind="thread", id=tid, value=name)
                    )
            if dropped:
                self.session.notice(
                    "nvtx_dropped",
                    f"{dropped} NVTX events dropped (queue full, or over a million start/end ranges never ended)",
                    engine=self.name,
                )
        except Exception as e:  # never raise into the user's program
            log.warning("gpufl: NVTX ranges could not be written: %r", e)

    def _report_domains_left_out(self) -> None:
        """Say once how many NVTX ranges of the domains not made into scopes were seen, per domain (none is
        hidden: recording them is one setting away)."""
        try:
            counts = self._domains_left_out()
        except Exception as e:  # never raise into the user's program
            log.warning("gpufl: NVTX domain counts could not be read: %r", e)
            return
        if counts:
            each = ", ".join(_left_out(name, n, partial) for name, (n, partial) in counts.items())
            self.session.notice(
                "nvtx_domains_left_out",
                f"NVTX ranges not recorded as scopes ({each}); GPUFL_NVTX_DOMAINS="
                f"{self.session.options.nvtx_domains!r} — add a domain's name, or 'all', to record them",
                engine=self.name,
                level="info",
            )

    def _remember(self, inst: int, path: str, depth: int) -> None:
        self._scopes[inst] = (path, depth)
        while len(self._scopes) > 100_000:  # parents of ranges still queued are recent
            self._scopes.popitem(last=False)

    def _domains_left_out(self) -> dict[str, tuple[int, bool]]:
        """The C side's left-out counts added to those from before a pause (tracing restarted counts anew)."""
        out = dict(self._left_out_before)
        for name, n, partial in self.native.nvtx_domain_counts():
            n0, p0 = out.get(name, (0, False))
            out[name] = (n0 + n, p0 or partial)
        return out

    def pause(self, reason: str) -> None:
        """Step aside for another CUPTI client (torch.profiler): flush, disable, unsubscribe — not finalize,
        which would tear down CUPTI under the client that takes it over next (see stop_tracing in
        native/cupti.c); the gap is recorded when tracing resumes."""
        if not self.started or self._paused_at is not None:
            return
        self._paused_at = time.time_ns()
        self._pause_reason = reason
        self.native.stop(False)
        try:
            self._left_out_before = self._domains_left_out()
        except Exception as e:  # never raise into the user's program
            log.warning("gpufl: NVTX domain counts could not be read: %r", e)
        log.warning("gpufl: %s started: gpufl's kernel tracing steps aside until it stops", reason)

    def resume(self) -> None:
        if self._paused_at is None:
            return
        start, self._paused_at = self._paused_at, None
        gap = events.CaptureGap(
            session_id=self.session.session_id,
            stream="device",
            start_ns=start,
            end_ns=time.time_ns(),
            reason=self._pause_reason,
        )
        self.session.writers["device"].emit(gap)
        try:
            self._start_native()
        except RuntimeError as e:
            self._release()
            handover.cupti_kept_by_profiler(self.native.finalize)
            self.session.notice(
                "cupti_busy",
                f"kernel tracing could not resume after {self._pause_reason} ({e}); it stays off for this session",
                engine=self.name,
            )

    def set_capture(self, on: bool) -> None:
        """A capture window opens (on) or closes (gpufl.client.capture): the C side switches the launch/NVTX
        callbacks and activity kinds now, or, stepped aside for torch.profiler, when tracing resumes."""
        self.native.capture(on)

    def scope_enter(self, inst: int) -> None:
        self.native.scope_enter(inst)
        cur = current_scope()  # this scope: gpufl.scope sets it before telling the engines
        if cur is not None and cur[0] == inst:
            self._remember(inst, cur[1], cur[1].count("/"))

    def scope_exit(self, inst: int) -> None:
        self.native.scope_exit(inst)

    def stop(self) -> dict[str, Any]:
        if self._paused_at is not None:  # shut down while torch.profiler still runs: close the gap
            self.session.writers["device"].emit(
                events.CaptureGap(
                    session_id=self.session.session_id,
                    stream="device",
                    start_ns=self._paused_at,
                    end_ns=time.time_ns(),
                    reason=self._pause_reason,
                )
            )
            self._paused_at = None
            self._release()  # CUPTI was stopped at pause(): end the NVTX thread, let go of the writer
            return {}
        if not self.started:
            return {}
        facts: dict[str, Any] = {}
        try:
            facts["clock"] = measure_clock_offset(self.native.timestamp)
        except Exception:
            pass
        flush_err, finalize_err = self.native.stop()
        if flush_err:
            log.warning("gpufl: CUPTI flush failed: %s", flush_err)
        if finalize_err:
            log.warning("gpufl: CUPTI finalize failed: %s", finalize_err)
        self._release()
        return facts

    def _release(self) -> None:
        """After CUPTI is stopped: write the last NVTX ranges and let go of the device writer (the session
        closes it next, so the C side must not keep a reference to it)."""
        self._nvtx_stop.set()
        if self._nvtx_thread is not None:
            self._nvtx_thread.join(5)
        self._drain_nvtx()
        self._report_domains_left_out()
        self.stats = self.native.stats()
        self.native.detach()
        self.started = False
        handover.uninstall(self)
        untimed = self.stats.get("untimed", 0)
        if untimed:
            self.session.notice(
                "cupti_untimed_records",
                untimed_records_message(untimed, self.session.options.native.flush_ms),
                engine=self.name,
            )
        foreign = self.stats.get("foreign_buffers", 0)
        if foreign:  # another client's buffers reached our callback around a hand-over: counted, never freed
            self.session.notice(
                "cupti_foreign_buffers",
                f"CUPTI completed {foreign} activity buffer(s) of another CUPTI client through gpufl's "
                "callback; they were left to their owner",
                engine=self.name,
                level="info",
            )


def _left_out(name: str, ranges: int, partial: bool) -> str:
    """A left-out domain's count; where the domain-API range callbacks were off for a while (lazy domains:
    CUPTI's dispatch of a framework's ranges is what they cost, nvtx_domains.c), the count says it is partial."""
    if not partial:
        return f"{name}: {ranges:,}"
    if not ranges:
        return f"{name}: not counted (its range callbacks were off, as they cost the program)"
    return f"{name}: {ranges:,}, counted only while its range callbacks were on"
