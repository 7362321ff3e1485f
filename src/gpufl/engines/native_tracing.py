"""Tracing engine, native record path: CUPTI handled in C (``gpufl._native``), Python keeps the control plane.

What the C side does per launch and per record, and why, is in ``src/gpufl/native/_native.c``. Here: finding
libcupti, checking its version against the headers the extension was built with, device properties and the
clock offset (shared with the cupti-python path), swapping the device stream's writer for the C one, and
lifecycle. When any of that is not possible, ``unavailable_reason`` says why and the session uses the
cupti-python path (``gpufl.engines.tracing``) instead, saying so once.
"""

from __future__ import annotations

import ctypes.util
import glob
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from gpufl.engines import EngineUnavailable
from gpufl.engines.tracing import (
    _cause_code,
    _explain,
    _torch_profiler_active,
    cuda_device_limits,
    measure_clock_offset,
)
from gpufl.writer import NativeStreamWriter, StreamWriter

if TYPE_CHECKING:
    from gpufl.session import Session

log = logging.getLogger("gpufl")

# CUPTI delivers activity buffers when full or at this period: what a SIGKILL can lose at most (plus the
# writer's flush interval).
FLUSH_PERIOD_MS = 500


def libcupti_candidates() -> list[str]:
    """Where libcupti may be: $GPUFL_LIBCUPTI, NVIDIA's pip wheels, the CUDA toolkit, the loader's path."""
    out: list[str] = []
    if os.environ.get("GPUFL_LIBCUPTI"):
        out.append(os.environ["GPUFL_LIBCUPTI"])
    try:  # cuda-pathfinder knows NVIDIA's wheel and conda layouts
        from cuda.pathfinder import find_nvidia_dynamic_lib  # type: ignore[import-not-found]

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


def load_native() -> tuple[Any, str | None]:
    """(module, None) when the native path can run here, else (None, the reason). Cached."""
    global _load_result
    if _load_result is not None:
        return _load_result
    _load_result = _load()
    return _load_result


def _load() -> tuple[Any, str | None]:
    if os.environ.get("GPUFL_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "disabled by GPUFL_NATIVE=0"
    try:
        from gpufl import _native  # type: ignore[attr-defined]
    except ImportError as e:
        return None, f"the C extension is not built ({e})"
    errors: list[str] = []
    for path in libcupti_candidates():
        try:
            version = _native.load(path)
        except OSError as e:
            errors.append(str(e))
            continue
        if version < _native.BUILT_CUPTI_API_VERSION:
            return None, (
                f"libcupti at {path} has CUPTI API version {version}, older than the "
                f"{_native.BUILT_CUPTI_API_VERSION} the extension was built for"
            )
        return _native, None
    return None, "libcupti not found" + (f" ({errors[-1]})" if errors else "")


def unavailable_reason() -> str | None:
    return load_native()[1]


class NativeTracingEngine:
    name = "tracing"
    path = "native"

    def __init__(self) -> None:
        self.native: Any = None
        self.started = False
        self.offset_ns = 0

    def prepare(self, session: Session) -> dict[str, Any]:
        self.session = session
        native, reason = load_native()
        if native is None:
            raise EngineUnavailable("native_unavailable", f"native record path unavailable: {reason}")
        self.native = native
        try:
            devices = cuda_device_limits()
        except EngineUnavailable:
            raise
        except Exception as e:
            raise EngineUnavailable("no_cuda_device", f"CUDA devices could not be queried: {e!r}") from None
        if not devices:
            raise EngineUnavailable("no_cuda_device", "no CUDA device is visible")
        clock = measure_clock_offset(native.timestamp)
        self.offset_ns = clock.offset_ns
        base = session.writers["device"]
        assert isinstance(base, StreamWriter)
        self.writer = NativeStreamWriter(base)
        session.writers["device"] = self.writer
        limits = [
            (
                i,
                lim.warp_size,
                lim.max_threads_per_sm,
                lim.max_blocks_per_sm,
                lim.max_threads_per_block,
                lim.regs_per_sm,
                lim.regs_per_block,
                lim.shared_mem_per_sm,
                lim.shared_mem_per_block_optin,
                lim.reserved_shared_mem_per_block,
            )
            for i, (lim, _) in devices.items()
        ]
        native.attach(self.writer.native, limits, self.offset_ns, session.options.stacks)
        facts: dict[str, Any] = {"devices": [props for _, props in devices.values()], "clock": clock}
        try:
            from cuda.bindings import driver

            _err, ver = driver.cuDriverGetVersion()
            facts["cuda_driver_version"] = int(ver)
        except Exception:
            pass
        return facts

    def start(self) -> None:
        if _torch_profiler_active():
            raise EngineUnavailable(
                "cupti_busy",
                "torch.profiler is running and owns CUPTI in this process; kernels are not traced. "
                "Start gpufl before other profilers, or run without them",
            )
        try:
            enabled = self.native.start(self.session.options.cupti_buffer_bytes, FLUSH_PERIOD_MS)
        except RuntimeError as e:
            subscribing = str(e).startswith("cuptiSubscribe")
            raise EngineUnavailable(_cause_code(e, subscribing), _explain(e, subscribing)) from None
        if not enabled:
            self.session.notice(
                "cupti_callbacks", "launch callbacks unavailable: no scope/stack attribution", engine=self.name
            )
        self.started = True

    def scope_enter(self, inst: int) -> None:
        self.native.scope_enter(inst)

    def scope_exit(self, inst: int) -> None:
        self.native.scope_exit(inst)

    def stop(self) -> dict[str, Any]:
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
        self.stats = self.native.stats()
        self.native.detach()
        self.started = False
        return facts
