"""Capture engines plug in behind one small interface.

An engine is created with the session's options, prepared before ``session_start`` is written (so it can contribute facts to it: devices,
clock offsets, versions), started after, told about scope entry/exit, and stopped at shutdown. Any engine
may be unavailable (no GPU, no libcupti, another profiler holding CUPTI): ``prepare`` then raises
``EngineUnavailable`` with the cause, which the session reports once as a ``notice`` and goes on without it.

Engines see the session only as an ``EngineHost`` (options, id, writers, notices, watchdog), so this package
never imports the session module; the session imports the engines.

A new engine: a module here with a class satisfying ``Engine``, a name in ``create`` (and in
``config.Options.validate``); docs/client-internals.md says more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gpufl.client.config import Options
    from gpufl.client.watchdog import Watchdog
    from gpufl.client.writer import RecordWriter


def untimed_records_message(count: int, flush_ms: int) -> str:
    """Both record paths skip activity records CUPTI delivers without timestamps (start 0 or end before
    start): after a CUDA error such as a device-side assert, the records not yet delivered come back so.
    Written, they would be kernels at 1970 that the contract refuses; skipped, they are counted here."""
    return (
        f"CUPTI delivered {count} activity record(s) (kernels, copies, memsets, synchronisations) without "
        f"timestamps: after a CUDA error such as a device-side assert, those of the last {flush_ms} ms at most; "
        "a few at the end of a normal run also come so. They were not written"
    )


class EngineUnavailable(Exception):
    """The engine cannot run here; the message names the cause and what to do about it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class EngineHost(Protocol):
    """What an engine may use of its session (gpufl.client.session.Session is one)."""

    options: Options
    session_id: str
    writers: dict[str, RecordWriter]
    watchdog: Watchdog

    def notice(
        self, code: str, message: str, *, engine: str | None = None, level: str = "warning"
    ) -> None: ...


class Engine(Protocol):
    name: str
    device_writer: str
    """The device stream's writer this engine needs: "python" (StreamWriter) or "native" (the C writer the
    native record path appends to). The session chooses the writer from it once, after preparing."""

    def prepare(self, session: EngineHost) -> dict[str, Any]:
        """Probe; return facts for session_start (keys of SessionStart). Raise EngineUnavailable."""
        ...

    def start(self) -> None: ...

    def scope_enter(self, inst: int) -> None: ...

    def scope_exit(self, inst: int) -> None: ...

    def stop(self) -> dict[str, Any]:
        """Flush and stop; return facts for session_end (e.g. the re-measured clock)."""
        ...


def planned(names: tuple[str, ...] | list[str]) -> list[str]:
    """The engines to create for ``Options.engines``: ``sass`` and ``pc_sampling`` are one engine, ``deep``
    (both run over the same deep ranges, in the native record path)."""
    out: list[str] = []
    for n in names:
        n = "deep" if n in ("sass", "pc_sampling") else n
        if n not in out:
            out.append(n)
    # after tracing, whatever the order asked: engines stop in reverse, and the deep engines' CUPTI teardown
    # must come before tracing's (which may finalize CUPTI)
    if "deep" in out and "tracing" in out and out.index("deep") < out.index("tracing"):
        out.remove("deep")
        out.insert(out.index("tracing") + 1, "deep")
    return out


def create(name: str, options: Options) -> Engine:
    if name == "deep":
        from gpufl.client.engines.deep import DeepEngine

        return DeepEngine("sass" in options.engines, "pc_sampling" in options.engines)
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
    if name == "pm_sampling":
        from gpufl.client.engines.pm_sampling import PmSamplingEngine

        return PmSamplingEngine()
    raise ValueError(f"unknown engine {name!r}")
