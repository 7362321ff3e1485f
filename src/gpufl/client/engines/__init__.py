"""Capture engines plug in behind one small interface.

An engine is prepared before ``session_start`` is written (so it can contribute facts to it: devices,
clock offsets, versions), started after, told about scope entry/exit, and stopped at shutdown. Any engine
may be unavailable (no GPU, no libcupti, another profiler holding CUPTI): ``prepare`` then raises
``EngineUnavailable`` with the cause, which the session reports once as a ``notice`` and goes on without it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gpufl.client.session import Session


# CUPTI delivers activity buffers when full or at this period, on both record paths: what a SIGKILL or a
# failed CUDA context can lose at most (plus the writer's flush interval). GPUFL_NATIVE_FLUSH_MS: diagnostics.
CUPTI_FLUSH_PERIOD_MS = int(os.environ.get("GPUFL_NATIVE_FLUSH_MS", "500"))


def untimed_records_message(count: int) -> str:
    """Both record paths skip activity records CUPTI delivers without timestamps (start 0 or end before
    start): after a CUDA error such as a device-side assert, the records not yet delivered come back so.
    Written, they would be kernels at 1970 that the contract refuses; skipped, they are counted here."""
    return (
        f"CUPTI delivered {count} kernel/copy/memset record(s) without timestamps (the CUDA context failed "
        f"before CUPTI read them, e.g. a device-side assert; at most the last {CUPTI_FLUSH_PERIOD_MS} ms); "
        "they were not written"
    )


class EngineUnavailable(Exception):
    """The engine cannot run here; the message names the cause and what to do about it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Engine(Protocol):
    name: str

    def prepare(self, session: Session) -> dict[str, Any]:
        """Probe; return facts for session_start (keys of SessionStart). Raise EngineUnavailable."""
        ...

    def start(self) -> None: ...

    def scope_enter(self, inst: int) -> None: ...

    def scope_exit(self, inst: int) -> None: ...

    def stop(self) -> dict[str, Any]:
        """Flush and stop; return facts for session_end (e.g. the re-measured clock)."""
        ...


def create(name: str) -> Engine:
    if name == "tracing":
        # The native record path when it can run here; else the cupti-python path, which says why.
        from gpufl.client.engines.native_tracing import NativeTracingEngine, unavailable_reason
        from gpufl.client.engines.tracing import TracingEngine

        reason = unavailable_reason()
        if reason is None:
            return NativeTracingEngine()
        return TracingEngine(native_unavailable=reason)
    if name == "system":
        from gpufl.client.engines.system import SystemEngine

        return SystemEngine()
    raise ValueError(f"unknown engine {name!r}")
