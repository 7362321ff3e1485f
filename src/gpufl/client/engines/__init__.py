"""Capture engines plug in behind one small interface.

An engine is prepared before ``session_start`` is written (so it can contribute facts to it: devices,
clock offsets, versions), started after, told about scope entry/exit, and stopped at shutdown. Any engine
may be unavailable (no GPU, no libcupti, another profiler holding CUPTI): ``prepare`` then raises
``EngineUnavailable`` with the cause, which the session reports once as a ``notice`` and goes on without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gpufl.client.config import Options
    from gpufl.client.session import Session


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


def create(name: str, options: Options) -> Engine:
    if name == "tracing":
        # The native record path when it can run here; else the cupti-python path, which says why.
        from gpufl.client.engines.native_tracing import NativeTracingEngine, unavailable_reason
        from gpufl.client.engines.tracing import TracingEngine

        reason = unavailable_reason(options.native)
        if reason is None:
            return NativeTracingEngine()
        return TracingEngine(native_unavailable=reason)
    if name == "system":
        from gpufl.client.engines.system import SystemEngine

        return SystemEngine()
    raise ValueError(f"unknown engine {name!r}")
