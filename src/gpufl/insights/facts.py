"""The evidence the rules read, gathered per source (the store: ``gpufl.backend.store.insights``; log records:
``gpufl.insights.records``). Aggregates, never raw activity: a 1M-kernel session must fit in a few hundred
rows here, so the store can answer in well under a second.

GPU idle is measured per device over its activity window (first activity start to last activity end): the
device is busy while any kernel, copy or memset runs on it (overlaps counted once). Each idle gap is split
by the activity that ends it, after HTA's idle-time breakdown (host wait / kernel wait / other):

* ``host_ns``: until the host had handed that activity over (the end of its launch or copy API call, or its
  start if that came first): the GPU waited for the host;
* ``launch_ns``: after that, up to ``LAUNCH_LATENCY_NS``: the launch's own latency;
* ``other_ns``: the rest: the work was queued but waited on something else (another stream's work, an
  event, a synchronisation);
* ``unknown_ns``: the whole gap where the activity carries no API timing (memsets; records without it).

``phase_width_ns`` cuts the window into equal phases for the launch-bound rule; a gap is counted in the
phase of the activity that ends it, a kernel in the phase it starts in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LAUNCH_LATENCY_NS = 10_000
"""The part of a gap after the host's hand-over that is the launch's own latency: the time from a launch
call's return to its kernel's start on an idle GPU is a few microseconds on the H100 captures (their
``api_lead_ns - api_dur_ns`` on an empty queue); longer means the work waited for something else."""

PHASES = 100
"""The activity window is cut into this many phases for the launch-bound rule: fine enough to tell a
launch-bound part of a run from a GPU-bound one, coarse enough that each phase holds many launches."""
MIN_PHASE_NS = 10_000_000
"""No phase shorter than 10 ms: shorter phases hold too few launches to judge a launch rate."""


def phase_width_ns(first_ns: int, last_ns: int) -> int:
    """The phase width for a device's activity window, the same for every source."""
    return max(MIN_PHASE_NS, -(-(last_ns - first_ns) // PHASES))


def split_gap(gap_start: int, gap_ns: int, ready_ns: int | None) -> tuple[int, int, int, int]:
    """(host, launch, other, unknown) nanoseconds of one idle gap ending at an activity the host handed over
    at ``ready_ns`` (None: not recorded)."""
    if ready_ns is None:
        return 0, 0, 0, gap_ns
    host = min(max(ready_ns - gap_start, 0), gap_ns)
    launch = min(gap_ns - host, LAUNCH_LATENCY_NS)
    return host, launch, gap_ns - host - launch, 0


@dataclass
class Gap:
    device_id: int
    start_ns: int
    end_ns: int


@dataclass
class DeviceIdle:
    """One device's activity window and its idle time, split as the module says."""

    device_id: int
    first_ns: int
    last_ns: int
    activities: int
    idle_ns: int = 0
    host_ns: int = 0
    launch_ns: int = 0
    other_ns: int = 0
    unknown_ns: int = 0
    gaps: int = 0
    longest: list[Gap] = field(default_factory=list)
    """The longest gaps, longest first (at most ``LONGEST_GAPS``)."""


LONGEST_GAPS = 3


@dataclass
class ThreadLaunches:
    thread_id: int | None
    launches: int
    api_ns: int
    """Time inside the launch API calls (``api_dur_ns``), over the launches that carry it."""
    kernel_ns: int
    """GPU time of the kernels it launched."""
    api_timed: int = 0
    """Launches that carry ``api_dur_ns`` (0: the API time is not reported)."""


@dataclass
class Phase:
    """One phase (``phase_width_ns``) of a device's window: its kernels and the idle gaps ending in it."""

    device_id: int
    index: int
    start_ns: int
    end_ns: int
    kernels: int = 0
    kernel_ns: int = 0
    idle_ns: int = 0
    host_ns: int = 0
    threads: list[ThreadLaunches] = field(default_factory=list)


@dataclass
class KernelGroup:
    """Kernels of one name: how many, their GPU time, their launch API time (where recorded)."""

    name: str
    count: int
    kernel_ns: int
    api_ns: int = 0
    api_timed: int = 0


@dataclass
class TinyKernels:
    """Kernels shorter than ``rules.TINY_KERNEL_NS`` launched outside a CUDA graph."""

    count: int = 0
    kernel_ns: int = 0
    api_ns: int = 0
    api_timed: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    top: list[KernelGroup] = field(default_factory=list)
    """The names with the most tiny launches, most first (at most ``TOP_NAMES``)."""


TOP_NAMES = 5


@dataclass
class LaunchUse:
    """One launch configuration (a ``launch`` dict entry) and the GPU time of the kernels that used it."""

    name: str
    device_id: int
    count: int
    kernel_ns: int
    first_ns: int
    last_ns: int
    grid: tuple[int, int, int] | None = None
    block: tuple[int, int, int] | None = None
    num_regs: int | None = None
    shared_bytes: int | None = None
    """Static + dynamic shared memory per block."""
    occupancy: float | None = None
    limiter: str | None = None


@dataclass
class CopyGroup:
    """Copies of one direction and memory kinds."""

    copy_kind: str
    src_kind: str
    dst_kind: str
    count: int
    bytes: int
    dur_ns: int
    api_ns: int
    """Time the host spent in these copies' API calls (where recorded): a pageable copy blocks its caller."""
    first_ns: int
    last_ns: int
    api_timed: int = 0


@dataclass
class SyncGroup:
    """CUDA synchronisation calls of one kind (contract v3 ``sync``)."""

    sync_kind: str
    count: int
    wait_ns: int
    """Summed call durations: the host waited this long (``stream_wait_event`` makes a stream wait, not the
    host)."""
    first_ns: int
    last_ns: int


@dataclass
class Refill:
    """After context synchronisations (the device drained), the time until the next GPU work started: the GPU
    sat idle while the host prepared more."""

    syncs: int = 0
    """Idle gaps that began at a context synchronisation's return (syncs back to back share one)."""
    refill_ns: int = 0
    longest_ns: int = 0
    longest_at_ns: int = 0
    """When the longest refill began (the sync's return)."""


@dataclass
class SyncCopies:
    """Copies whose API call made the host wait (contract v3 ``mode`` = ``sync``)."""

    count: int = 0
    bytes: int = 0
    dur_ns: int = 0
    first_ns: int | None = None
    last_ns: int | None = None


@dataclass
class GpuPoint:
    """The NVML (and NVML GPM) readings of one system sample for one device (None: not reported)."""

    ts_ns: int
    device_id: int
    throttle_reasons: int | None = None
    throttle_pwr: bool | None = None
    throttle_therm: bool | None = None
    clk_sm_mhz: float | None = None
    temp_c: float | None = None
    power_mw: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    util_gpu_pct: float | None = None
    sm_active_pct: float | None = None
    """GPU activity (NVML GPM, contract v4): the interval's mean before this sample."""
    sm_occupancy_pct: float | None = None
    tensor_active_pct: float | None = None
    dram_bw_pct: float | None = None


@dataclass
class DeepLine:
    """One source line of a kernel's SASS-metric samples: warp and thread instructions executed on it."""

    source_file: str | None
    source_line: int
    inst: float
    thread_inst: float


@dataclass
class DeepKernel:
    """One kernel's deep-engine samples over the session (``gpufl.backend.store.deep``'s per-kernel sums):
    SASS instructions (None: no SASS-metric sample) and PC samples by stall reason, CUPTI's ``…_not_issued``
    subsets left out (they are part of their base reason's samples)."""

    name: str
    inst: float | None = None
    thread_inst: float | None = None
    stalls: dict[str, int] = field(default_factory=dict)
    lines: list[DeepLine] = field(default_factory=list)
    """Its most divergent source lines, most lanes lost first (at most ``DIVERGENT_LINES``; only for kernels
    under ``deep_rules.DIVERGENT_THREADS``)."""

    @property
    def divergence(self) -> float | None:
        """Average active threads per executed warp instruction (32: every lane), None where not measured."""
        return self.thread_inst / self.inst if self.inst and self.thread_inst is not None else None


DIVERGENT_LINES = 3
KERNEL_NOT_REPORTED = "kernel not reported"
"""The name of samples whose kernel neither the scope dict nor ``function_name`` names."""
NOT_ISSUED = "_not_issued"
"""CUPTI's ``…_not_issued`` reasons are subsets of their base reason's samples: never added to a total (as
``gpufl.backend.store.deep``)."""


def most_divergent(lines: list[DeepLine]) -> list[DeepLine]:
    """The lines that lost the most lanes (32 per warp instruction less the threads that ran), the same
    order for every source; lines that lost none are left out."""
    lost = [ln for ln in lines if 32 * ln.inst - ln.thread_inst > 0]
    lost.sort(key=lambda ln: (ln.thread_inst - 32 * ln.inst, ln.source_file or "", ln.source_line))
    return lost[:DIVERGENT_LINES]


@dataclass
class SessionFacts:
    session_id: str
    kernels: int = 0
    kernel_ns: int = 0
    """Sum of every kernel's duration (the share denominators)."""
    api_timed: int = 0
    """Activities that carry their launch or copy API timing (the idle split needs it)."""
    sm_count: dict[int, int] = field(default_factory=dict)
    """Per device, from session_start (absent: not reported)."""
    idle: list[DeviceIdle] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    tiny: TinyKernels = field(default_factory=TinyKernels)
    launches: list[LaunchUse] = field(default_factory=list)
    copies: list[CopyGroup] = field(default_factory=list)
    gpu_points: list[GpuPoint] = field(default_factory=list)
    system_samples: int = 0
    profile_samples: int = 0
    deep: list[DeepKernel] = field(default_factory=list)
    """Per kernel name, the deep engines' samples (empty: none recorded), by name."""
    schema_version: int | None = None
    """The writer's contract version (session_start): ``sync`` records and copy modes exist from 3 on."""
    syncs_recorded: bool = True
    """False where the client was told not to record synchronisation calls (``syncs`` off in session_start's
    options, the default from gpufl 0.8 on); v3 sessions before that recorded them always."""
    syncs: list[SyncGroup] = field(default_factory=list)
    refill: Refill = field(default_factory=Refill)
    sync_copies: SyncCopies = field(default_factory=SyncCopies)
