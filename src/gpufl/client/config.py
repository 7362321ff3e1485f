"""Client options: every ``gpufl.init`` argument also has a ``GPUFL_*`` environment variable, so a program
can be profiled without editing it (``gpufl run`` sets them)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gpufl.client.capture import parse as parse_capture

DEFAULT_ENGINES = ("tracing", "system")


def _env_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _flag_off(value: str) -> bool:
    """A diagnostic switch that is on unless its variable starts with 0 (as the C side always read it)."""
    return not value.startswith("0")


def _flag_on(value: str) -> bool:
    return value.startswith("1")


def _leading_int(value: str) -> int:
    """atoi: the leading digits, 0 without any (a diagnostic must never stop gpufl.init)."""
    digits = ""
    for c in value.strip():
        if not c.isdigit():
            break
        digits += c
    return int(digits) if digits else 0


@dataclass
class NativeOptions:
    """How the native record path runs (``gpufl.client._native``; NativeOptions in native/gpufl_native.h).

    All but ``enabled`` are diagnostics for attributing cost (``bench/launch_cost.py``,
    ``bench/client_overhead.py``, docs/troubleshooting.md), not for production. Each has a ``GPUFL_NATIVE_*``
    variable, read once at ``gpufl.init``; the C side receives them once per start and, with the defaults,
    tests at most one flag per launch callback and one per activity buffer. The injection build
    (``gpufl run -- ./app``) reads the same variables itself (native/inject.c).
    """

    enabled: bool = True
    """``GPUFL_NATIVE``: 0/false/no/off selects the cupti-python path."""
    flush_ms: int = 500
    """``GPUFL_NATIVE_FLUSH_MS``: CUPTI delivers activity buffers at least this often (0: when full)."""
    subscribe: bool = True
    """``GPUFL_NATIVE_SUBSCRIBE=0``: no CUPTI subscriber, so no callbacks of any domain (activity only)."""
    callbacks: bool = True
    """``GPUFL_NATIVE_CALLBACKS=0``: no launch callbacks (no scope/stack/thread attribution)."""
    domains: str = "driver"
    """``GPUFL_NATIVE_DOMAINS``: the launch callbacks' API domains, e.g. ``runtime,driver``."""
    activity: bool = True
    """``GPUFL_NATIVE_ACTIVITY=0``: no activity records (kernels, copies)."""
    nvtx: bool = True
    """``GPUFL_NATIVE_NVTX=0``: NVTX ranges are not turned into scopes."""
    kernel_kind: str = "concurrent"
    """``GPUFL_NATIVE_KERNEL_KIND=serial``: CUPTI_ACTIVITY_KIND_KERNEL, which serialises kernels."""
    copies: bool = True
    """``GPUFL_NATIVE_COPIES=0``: no memcpy/memset activity (kernels only)."""
    discard: bool = False
    """``GPUFL_NATIVE_DISCARD=1``: CUPTI's buffers are freed unread (CUPTI without gpufl's processing)."""
    host_pinned: bool = False
    """``GPUFL_NATIVE_HOST_PINNED=1``: CUPTI's device-side timestamp buffers in pinned host memory."""
    device_buffer_mb: int = 0
    """``GPUFL_NATIVE_DEVICE_BUFFER_MB``: their size (0: CUPTI's default)."""
    dump_dir: str = ""
    """``GPUFL_NATIVE_DUMP_DIR``: write CUPTI's raw activity buffers here (the no-GPU test fixtures)."""

    _ENV: ClassVar[dict[str, tuple[str, Any]]] = {
        "enabled": ("GPUFL_NATIVE", lambda v: v.strip().lower() not in ("0", "false", "no", "off")),
        "flush_ms": ("GPUFL_NATIVE_FLUSH_MS", int),
        "subscribe": ("GPUFL_NATIVE_SUBSCRIBE", _flag_off),
        "callbacks": ("GPUFL_NATIVE_CALLBACKS", _flag_off),
        "domains": ("GPUFL_NATIVE_DOMAINS", str),
        "activity": ("GPUFL_NATIVE_ACTIVITY", _flag_off),
        "nvtx": ("GPUFL_NATIVE_NVTX", _flag_off),
        "kernel_kind": ("GPUFL_NATIVE_KERNEL_KIND", str),
        "copies": ("GPUFL_NATIVE_COPIES", _flag_off),
        "discard": ("GPUFL_NATIVE_DISCARD", _flag_on),
        "host_pinned": ("GPUFL_NATIVE_HOST_PINNED", _flag_on),
        "device_buffer_mb": ("GPUFL_NATIVE_DEVICE_BUFFER_MB", _leading_int),
        "dump_dir": ("GPUFL_NATIVE_DUMP_DIR", str),
    }

    @classmethod
    def from_env(cls) -> NativeOptions:
        opts = cls()
        for name, (var, parse) in cls._ENV.items():
            raw = os.environ.get(var)
            if raw is not None:
                try:
                    setattr(opts, name, parse(raw))
                except ValueError as e:
                    raise ValueError(f"{var}={raw!r}: {e}") from None
        return opts

    def start_kwargs(self) -> dict[str, Any]:
        """The keyword options of ``_native.start`` (the C NativeOptions' diagnostics)."""
        return {
            "subscribe": self.subscribe,
            "callbacks": self.callbacks,
            "runtime": "runtime" in self.domains,
            "driver": "driver" in self.domains,
            "activity": self.activity,
            "nvtx": self.nvtx,
            "serial_kernels": self.kernel_kind == "serial",
            "copies": self.copies,
            "discard": self.discard,
            "host_pinned": self.host_pinned,
            "device_buffer_mb": max(0, self.device_buffer_mb),
            "dump_dir": self.dump_dir or None,
        }


@dataclass
class Options:
    app_name: str = ""
    log_dir: str = "./gpufl-logs"
    enabled: bool = True
    engines: tuple[str, ...] = DEFAULT_ENGINES
    """Engines to start: ``tracing`` (CUPTI kernels/copies), ``system`` (NVML + host metrics), and the deep
    engines ``sass`` (SASS metrics: warp divergence) and ``pc_sampling`` (stall reasons), off by default;
    ``pm_sampling`` probes CUPTI's PM sampling and says in a notice whether it works here (docs/log-format.md)."""
    system_interval_s: float = 1.0
    syncs: bool = False
    """Record CUDA synchronisation calls (``sync`` records: what the insights' synchronisation rule reads).
    Off by default: with CUPTI's synchronisation activity on, every kernel launch costs more (+20 points
    on a launch-bound GPT loop on the H100, docs/benchmarks.md). Copies' sync/async mode is recorded always."""
    gpm: bool = True
    """GPU activity (SM active, tensor pipes, DRAM bandwidth, PCIe/NVLink) from NVML GPM in each system
    sample, where the GPU supports it (Hopper and newer): off the application's threads, no CUPTI."""
    segment_max_bytes: int = 64 * 1024 * 1024
    segment_max_age_s: float = 600.0
    session_max_bytes: int = 0
    """Cap on the session's total bytes on disk; 0 = unlimited. Oldest closed segments are deleted."""
    queue_size: int = 262_144
    """Records each stream's queue holds before it drops (and counts) new ones."""
    flush_interval_s: float = 0.05
    """How often writers hand queued records to the OS: bounds what a SIGKILL can lose."""
    stacks: bool = False
    """Capture the Python call stack of every kernel launch (costly on the cupti-python path)."""
    job_id: str | None = None
    cupti_buffer_bytes: int = 8 * 1024 * 1024
    watchdog_s: float = 10.0
    """A gpufl thread step (a log write, an NVML snapshot) busy longer than this disables gpufl for the
    session, so the program never waits on it; 0 turns the watchdog off."""
    capture: str = "continuous"
    """When kernels are traced (gpufl.client.capture, docs/capture-modes.md): ``continuous``, ``windows[:ON/PERIOD]``
    (``windows`` = 2 s of every 60 s), ``on-demand`` (only when a trigger asks), ``steps:FIRST-LAST``."""
    deep: str = "scopes"
    """What the deep engines (``sass``, ``pc_sampling`` in ``engines``) cover: ``scopes`` — each outermost
    ``gpufl.scope(..., deep=True)`` — or ``session``, one range from the first CUDA work to shutdown."""
    pc_sampling_period: int = 10
    """PC sampling takes one sample every 2**this cycles per SM sub-partition (CUPTI allows 5..31). At 10 the
    stall shares of deep_truth's compute-bound kernel were within 1.2 points of Nsight Compute's on the H200;
    at 12 they were 12 points off (docs/benchmarks.md)."""
    deep_timeout_s: float = 30.0
    """A deep range that takes longer than this to close disables the deep engines (the program goes on)."""
    capture_seconds: float = 10.0
    """How long a window lasts when its trigger names no duration (SIGUSR2, a control file without one)."""
    remote_capture: bool = True
    """Act on control-file requests (remote capture, issue #22); off: each is answered ``refused``
    (``remote_capture_disabled``)."""
    remote_capture_budget_s: float = 120.0
    """Seconds of windows that control-file requests may ask for in any hour; past it they are refused
    (``budget_spent``)."""
    nvtx_domains: str = "default,named"
    """Which NVTX domains' ranges become scopes (native record path): ``default`` (ranges of no domain, where
    PyTorch and most programs annotate), ``named`` (every named domain except frameworks' internal ones: XLA's
    ``TSL``), ``all``, or domain names, comma-separated. The ranges of the others are counted per domain and
    reported once in a notice (``nvtx_domains_left_out``): XLA opens ~30 per jitted call, and made into scopes
    they cost a fast JAX loop +150–270 % (docs/capture-modes.md)."""
    native: NativeOptions = field(default_factory=NativeOptions)
    """The native record path's options (``GPUFL_NATIVE*``): see NativeOptions."""
    extra: dict[str, Any] = field(default_factory=dict)

    # name -> (environment variable, parser)
    _ENV: ClassVar[dict[str, tuple[str, Any]]] = {
        "app_name": ("GPUFL_APP_NAME", str),
        "log_dir": ("GPUFL_LOG_DIR", str),
        "enabled": ("GPUFL_ENABLED", _env_bool),
        "engines": ("GPUFL_ENGINES", lambda v: tuple(e.strip() for e in v.split(",") if e.strip())),
        "system_interval_s": ("GPUFL_SYSTEM_INTERVAL", float),
        "gpm": ("GPUFL_GPM", _env_bool),
        "syncs": ("GPUFL_SYNCS", _env_bool),
        "segment_max_bytes": ("GPUFL_SEGMENT_MAX_BYTES", int),
        "segment_max_age_s": ("GPUFL_SEGMENT_MAX_AGE", float),
        "session_max_bytes": ("GPUFL_SESSION_MAX_BYTES", int),
        "queue_size": ("GPUFL_QUEUE_SIZE", int),
        "flush_interval_s": ("GPUFL_FLUSH_INTERVAL", float),
        "stacks": ("GPUFL_STACKS", _env_bool),
        "job_id": ("GPUFL_JOB_ID", str),
        "cupti_buffer_bytes": ("GPUFL_CUPTI_BUFFER_BYTES", int),
        "watchdog_s": ("GPUFL_WATCHDOG_S", float),
        "capture": ("GPUFL_CAPTURE", str),
        "capture_seconds": ("GPUFL_CAPTURE_SECONDS", float),
        "remote_capture": ("GPUFL_REMOTE_CAPTURE", _env_bool),
        "remote_capture_budget_s": ("GPUFL_REMOTE_CAPTURE_BUDGET", float),
        "deep": ("GPUFL_DEEP", str),
        "pc_sampling_period": ("GPUFL_PC_SAMPLING_PERIOD", int),
        "deep_timeout_s": ("GPUFL_DEEP_TIMEOUT_S", float),
        "nvtx_domains": ("GPUFL_NVTX_DOMAINS", str),
    }

    @classmethod
    def resolve(cls, **kwargs: Any) -> Options:
        """Explicit arguments win over environment variables, which win over defaults."""
        opts = cls()
        for name, (var, parse) in cls._ENV.items():
            raw = os.environ.get(var)
            if raw is not None:
                try:
                    setattr(opts, name, parse(raw))
                except ValueError as e:
                    raise ValueError(f"{var}={raw!r}: {e}") from None
        opts.native = NativeOptions.from_env()
        known = {f.name for f in dataclasses.fields(cls)}
        for name, value in kwargs.items():
            if value is None:
                continue
            if name not in known:
                opts.extra[name] = value
                continue
            if name == "native" and isinstance(value, dict):
                value = dataclasses.replace(opts.native, **value)
            if name == "engines" and isinstance(value, str):
                value = tuple(e.strip() for e in value.split(",") if e.strip())
            setattr(opts, name, value)
        if not opts.app_name:
            opts.app_name = _default_app_name()
        if not opts.job_id:
            opts.job_id = os.environ.get("TORCHELASTIC_RUN_ID") or None
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.segment_max_bytes < 1024:
            raise ValueError("segment_max_bytes must be at least 1024")
        if self.queue_size < 16:
            raise ValueError("queue_size must be at least 16")
        if self.system_interval_s <= 0 or self.flush_interval_s <= 0:
            raise ValueError("intervals must be positive")
        self.capture = parse_capture(self.capture).text  # ValueError says what is wanted
        if self.capture_seconds <= 0:
            raise ValueError("capture_seconds must be positive")
        if self.remote_capture_budget_s < 0:
            raise ValueError("remote_capture_budget_s must not be negative")
        if self.deep not in ("scopes", "session"):
            raise ValueError("deep must be 'scopes' or 'session'")
        if not 5 <= self.pc_sampling_period <= 31:
            raise ValueError("pc_sampling_period must be 5..31 (2**n cycles)")
        if self.deep_timeout_s <= 0:
            raise ValueError("deep_timeout_s must be positive")
        unknown = set(self.engines) - {"tracing", "system", "sass", "pc_sampling", "pm_sampling"}
        if unknown:
            raise ValueError(f"unknown engine(s): {', '.join(sorted(unknown))}")

    def as_record(self) -> dict[str, Any]:
        """The options as written into session_start."""
        d = dataclasses.asdict(self)
        d["engines"] = list(self.engines)
        if self.native == NativeOptions():  # recorded only when a diagnostic is set, so logs say so
            del d["native"]
        if self.capture == "continuous":  # as every session before contract v5 (readers: absent = continuous)
            del d["capture"], d["capture_seconds"], d["remote_capture"], d["remote_capture_budget_s"]
        return d


def _default_app_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    base = os.path.basename(argv0)
    if base in ("-c", "-m", ""):
        base = "python"
    return base.rsplit(".", 1)[0] if base.endswith(".py") else base
