"""The rules: one function per rule, each reading ``SessionFacts`` and returning its insights (none when the
session is clear of it) or raising ``NotChecked`` when the facts it needs were not recorded. Pure: no I/O.

Every threshold is a named constant with the reason for its value. Evidence carries the numbers the rule
judged on, the kernels / copies / threads / phases involved and a time range [start_ns, end_ns] (CLOCK_REALTIME
ns) that the UI opens the timeline at.

Warp divergence and the top stall reason read the deep engines' samples (``deep_rules``): not checked on
sessions without them. The synchronisation rule needs contract v3's ``sync`` records and copy modes: on older sessions it is not
checked.
"""

from __future__ import annotations

from collections.abc import Callable

from gpufl.insights.deep_rules import stall_reasons, warp_divergence
from gpufl.insights.facts import DeviceIdle, Phase, SessionFacts, SyncGroup
from gpufl.insights.gpu_rules import memory_near_capacity, sm_underused, throttling
from gpufl.insights.verdict import SEVERITY_ORDER, Fact, Insight, Involved, NotChecked, RuleStatus

__all__ = ["RULES", "Fact", "Insight", "Involved", "NotChecked", "RuleStatus", "run_rules"]

# ---- thresholds ---------------------------------------------------------------------------------------

SYNC_REFILL_SHARE = 0.10
"""Share of the activity window the GPU spent idle right after context synchronisations, waiting for the
host to queue more: a tenth of the run lost to draining the queue is worth removing the syncs for."""
SYNC_MIN_REFILL_NS = 10_000_000
"""And at least 10 ms in all: a few syncs at a program's edges (warm-up, the end) are not a pattern."""
SYNC_MIN_SYNCS = 10
"""Synchronisations a pattern needs: fewer are a program's deliberate barriers."""
SYNC_COPY_SHARE = 0.05
"""Share of the activity window spent in copies whose call made the host wait (cudaMemcpy, pageable
sources): the host could have queued other work meanwhile."""
SYNC_COPY_MIN = 10
"""Synchronous copies a pattern needs (a model upload at start is one-off)."""

LAUNCH_BOUND_MIN_KERNELS = 20
"""Kernels a phase must hold to be called launch-bound: a handful of launches is not a launch rate."""
LAUNCH_BOUND_HOST_WAIT = 0.25
"""Share of a phase the GPU spent waiting for the host: a quarter of the time idle for want of work is a
throughput loss worth acting on (HTA flags host wait as the first thing to remove)."""
LAUNCH_BOUND_MEAN_KERNEL_NS = 50_000
"""Mean kernel duration at or under which kernels are "short": 50 µs is ten launch costs (~5 µs each on
the H100 captures' ``api_dur_ns``), so the host must launch without pause to keep up."""
MAX_PHASE_INSIGHTS = 5
"""Launch-bound phases reported, most host wait first (the rest are counted in the last one's evidence)."""

GPU_IDLE_FRACTION = 0.2
"""Share of a device's activity window idle at which the idle rule fires: a fifth of the run lost."""
GPU_IDLE_WARNING = 0.5
"""Idle share at which it is a warning: the GPU idles more than it works."""
GPU_IDLE_MIN_NS = 20_000_000
"""Idle time under 20 ms is not worth a finding, whatever its share (a micro-benchmark's start-up)."""

PAGEABLE_MIN_BYTES = 1 << 20
"""Pageable bytes under 1 MiB in a whole session cost too little to mention: the driver's staging copy of
a few small transfers is lost in launch noise."""

TINY_KERNEL_NS = 10_000
"""A kernel shorter than 10 µs costs about as much to launch as to run (launch calls take ~5 µs on the H100
captures): the work a CUDA graph or a fused kernel would save."""
TINY_MIN_COUNT = 1_000
"""Tiny launches needed to fire: fewer cost at most a few milliseconds of launch time."""
TINY_MIN_SHARE = 0.3
"""Share of all launches that must be tiny: a few tiny kernels among large ones are not a pattern."""

LOW_OCCUPANCY = 0.25
"""Theoretical occupancy under a quarter of the SM's warps leaves little to hide memory latency with
(CUDA's best-practice guide: latency hiding needs many resident warps)."""
OCCUPANCY_MIN_SHARE = 0.05
"""A configuration must take at least 5 % of the kernel time for its occupancy to matter."""
MAX_OCCUPANCY_INSIGHTS = 5


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _timed(label: str, ns: int, timed: int, of: int) -> Fact:
    """An API time, or "not reported" where no record carried it (never a made-up 0)."""
    if not timed:
        return Fact(label, "not reported", "text")
    return Fact(label if timed == of else f"{label} ({timed:,} of {of:,} timed)", ns, "ns")


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.1f} ms"


# ---- the rules ----------------------------------------------------------------------------------------


def launch_bound(f: SessionFacts) -> list[Insight]:
    if not f.phases:
        raise NotChecked("no kernels")
    if not f.api_timed:
        raise NotChecked("no launch API timing recorded (api_lead_ns / api_dur_ns)")
    hits: list[Phase] = []
    for p in f.phases:
        width = p.end_ns - p.start_ns
        if (
            p.kernels >= LAUNCH_BOUND_MIN_KERNELS
            and p.host_ns >= LAUNCH_BOUND_HOST_WAIT * width
            and p.kernel_ns <= LAUNCH_BOUND_MEAN_KERNEL_NS * p.kernels
        ):
            hits.append(p)
    # Adjacent launch-bound phases of one device are one phase of the run.
    merged: list[list[Phase]] = []
    for p in hits:
        last = merged[-1][-1] if merged else None
        if last is not None and last.device_id == p.device_id and last.index + 1 == p.index:
            merged[-1].append(p)
        else:
            merged.append([p])
    merged.sort(key=lambda run: -sum(p.host_ns for p in run))
    out = []
    for run in merged[:MAX_PHASE_INSIGHTS]:
        start, end = run[0].start_ns, run[-1].end_ns
        kernels = sum(p.kernels for p in run)
        kernel_ns = sum(p.kernel_ns for p in run)
        host_ns = sum(p.host_ns for p in run)
        threads: dict[int | None, list[int]] = {}
        for p in run:
            for t in p.threads:
                acc = threads.setdefault(t.thread_id, [0, 0, 0, 0])
                acc[0] += t.launches
                acc[1] += t.api_ns
                acc[2] += t.kernel_ns
                acc[3] += t.api_timed
        involved = [
            Involved(
                "thread",
                f"thread {tid}" if tid is not None else "thread not reported",
                [
                    Fact("launches", n, "count"),
                    _timed("time in launch calls", api, timed, n),
                    Fact("GPU time of its kernels", kns, "ns"),
                ],
            )
            for tid, (n, api, kns, timed) in sorted(threads.items(), key=lambda kv: -kv[1][0])
        ]
        out.append(
            Insight(
                "launch_bound",
                "warning",
                f"Launch-bound for {_ms(end - start)}: the GPU waited for the host "
                f"{_pct(host_ns, end - start)} % of the time between {kernels:,} short kernels",
                "Launch fewer, larger kernels: capture the loop in a CUDA graph (torch.compile "
                'mode="reduce-overhead", torch.cuda.graphs) or fuse the small operations.',
                start,
                end,
                run[0].device_id,
                [
                    Fact("kernels", kernels, "count"),
                    Fact("mean kernel duration", kernel_ns // max(kernels, 1), "ns"),
                    Fact("GPU waiting for the host", host_ns, "ns"),
                    Fact("host wait share", _pct(host_ns, end - start), "pct"),
                    Fact("phase length", end - start, "ns"),
                ],
                involved,
            )
        )
    return out


def _idle_insight(d: DeviceIdle) -> Insight | None:
    span = d.last_ns - d.first_ns
    if span <= 0 or d.idle_ns < GPU_IDLE_MIN_NS or d.idle_ns < GPU_IDLE_FRACTION * span:
        return None
    share = _pct(d.idle_ns, span)
    parts = {
        "waiting for the host": d.host_ns,
        "launch latency": d.launch_ns,
        "waiting for another stream, event or synchronisation": d.other_ns,
        "cause not recorded (no API timing)": d.unknown_ns,
    }
    main = max(parts, key=lambda k: parts[k])
    suggestion = (
        "The host is the bottleneck: profile the CPU side between launches (data loading, Python "
        "overhead, synchronising calls such as .item() or .cpu()), and overlap it with GPU work."
        if main == "waiting for the host"
        else "Work was queued but waited: look for cross-stream waits and synchronisations that serialise "
        "the streams, and overlap independent work on separate streams."
    )
    return Insight(
        "gpu_idle",
        "warning" if d.idle_ns >= GPU_IDLE_WARNING * span else "info",
        f"GPU {d.device_id} idle {share} % of its active window ({_ms(d.idle_ns)} of {_ms(span)}), mostly {main}",
        suggestion,
        d.first_ns,
        d.last_ns,
        d.device_id,
        [
            Fact("idle", d.idle_ns, "ns"),
            Fact("idle share", share, "pct"),
            *(Fact(k, v, "ns") for k, v in parts.items()),
            Fact("idle gaps", d.gaps, "count"),
        ],
        [
            Involved(
                "gap",
                f"gap of {_ms(g.end_ns - g.start_ns)}",
                [Fact("length", g.end_ns - g.start_ns, "ns")],
                g.start_ns,
                g.end_ns,
            )
            for g in d.longest
        ],
    )


def gpu_idle(f: SessionFacts) -> list[Insight]:
    if not f.idle:
        raise NotChecked("no GPU activity")
    return [i for d in f.idle if (i := _idle_insight(d)) is not None]


def pageable_copies(f: SessionFacts) -> list[Insight]:
    groups = [c for c in f.copies if "Pageable" in (c.src_kind, c.dst_kind)]
    total = sum(c.bytes for c in groups)
    if total < PAGEABLE_MIN_BYTES:
        return []
    pinned = [c for c in f.copies if "Pinned" in (c.src_kind, c.dst_kind)]
    facts = [
        Fact("pageable copies", sum(c.count for c in groups), "count"),
        Fact("pageable bytes", total, "bytes"),
        Fact("GPU time of pageable copies", sum(c.dur_ns for c in groups), "ns"),
        _timed(
            "host time in their API calls",
            sum(c.api_ns for c in groups),
            sum(c.api_timed for c in groups),
            sum(c.count for c in groups),
        ),
    ]
    pin_ns = sum(c.dur_ns for c in pinned)
    # Small pinned copies measure latency, not bandwidth: compare only with a pinned volume worth the name.
    if pin_ns and sum(c.bytes for c in pinned) >= PAGEABLE_MIN_BYTES:
        facts.append(
            Fact("pinned copies' throughput", round(sum(c.bytes for c in pinned) / pin_ns, 2), "gbps")
        )
    involved = [
        Involved(
            "copy",
            f"{c.copy_kind} {c.src_kind}→{c.dst_kind}",
            [
                Fact("copies", c.count, "count"),
                Fact("bytes", c.bytes, "bytes"),
                Fact("GPU time", c.dur_ns, "ns"),
                Fact("throughput", round(c.bytes / c.dur_ns, 2) if c.dur_ns else 0.0, "gbps"),
            ],
            c.first_ns,
            c.last_ns,
        )
        for c in sorted(groups, key=lambda c: -c.bytes)
    ]
    return [
        Insight(
            "pageable_copy",
            "warning",
            f"{sum(c.count for c in groups):,} copies ({total / 2**20:,.1f} MiB) to or from pageable host memory",
            "Pin the host buffers (torch: pin_memory=True in the DataLoader, tensor.pin_memory(); "
            "cudaHostAlloc / cudaHostRegister) so copies go by DMA, asynchronously, without a staging copy.",
            min(c.first_ns for c in groups),
            max(c.last_ns for c in groups),
            None,
            facts,
            involved,
        )
    ]


def tiny_kernels(f: SessionFacts) -> list[Insight]:
    t = f.tiny
    if not f.kernels:
        raise NotChecked("no kernels")
    if t.count < TINY_MIN_COUNT or t.count < TINY_MIN_SHARE * f.kernels or t.first_ns is None:
        return []
    assert t.last_ns is not None
    return [
        Insight(
            "tiny_kernels",
            "warning" if t.api_timed and t.api_ns >= t.kernel_ns else "info",
            f"{t.count:,} kernels shorter than {TINY_KERNEL_NS // 1000} µs ({_pct(t.count, f.kernels)} % of launches) "
            "outside CUDA graphs",
            "Remove the launches: capture the repeated sequence in a CUDA graph, or fuse the small kernels "
            "(torch.compile, a fused optimizer such as fused=True, custom fused kernels).",
            t.first_ns,
            t.last_ns,
            None,
            [
                Fact("tiny kernels", t.count, "count"),
                Fact("share of launches", _pct(t.count, f.kernels), "pct"),
                Fact("their GPU time", t.kernel_ns, "ns"),
                _timed("host time launching them", t.api_ns, t.api_timed, t.count),
            ],
            [
                Involved(
                    "kernel",
                    g.name,
                    [
                        Fact("launches", g.count, "count"),
                        Fact("GPU time", g.kernel_ns, "ns"),
                        _timed("launch API time", g.api_ns, g.api_timed, g.count),
                    ],
                )
                for g in t.top
            ],
        )
    ]


def low_occupancy(f: SessionFacts) -> list[Insight]:
    if not f.launches:
        raise NotChecked("no kernels")
    known = [u for u in f.launches if u.occupancy is not None]
    if not known:
        raise NotChecked("no occupancy recorded in the launch configurations")
    out = []
    for u in sorted(known, key=lambda u: (-u.kernel_ns, u.name, u.first_ns)):
        assert u.occupancy is not None
        if u.occupancy >= LOW_OCCUPANCY or u.kernel_ns < OCCUPANCY_MIN_SHARE * f.kernel_ns:
            continue
        limiter = u.limiter or "not reported"
        facts = [
            Fact("theoretical occupancy", round(100 * u.occupancy, 1), "pct"),
            Fact("limited by", limiter, "text"),
            Fact("share of kernel time", _pct(u.kernel_ns, f.kernel_ns), "pct"),
            Fact("launches", u.count, "count"),
        ]
        if u.num_regs is not None:
            facts.append(Fact("registers per thread", u.num_regs, "count"))
        if u.shared_bytes is not None:
            facts.append(Fact("shared memory per block", u.shared_bytes, "bytes"))
        if u.block is not None:
            facts.append(Fact("block", "×".join(map(str, u.block)), "text"))
        if u.grid is not None:
            facts.append(Fact("grid", "×".join(map(str, u.grid)), "text"))
        how = {
            "registers": "cap registers (__launch_bounds__, -maxrregcount) or split the kernel",
            "shared_memory": "use less shared memory per block (smaller tiles) or raise the carve-out",
            "warps": "use larger blocks",
            "blocks": "use larger blocks: the SM's block limit is reached before its warp limit",
        }.get(limiter, "check the launch configuration")
        out.append(
            Insight(
                "low_occupancy",
                "info",
                f"{u.name[:80]}: {round(100 * u.occupancy)} % theoretical occupancy, limited by {limiter}",
                f"Raise the resident warps per SM: {how}; verify with Nsight Compute that latency is the limit.",
                u.first_ns,
                u.last_ns,
                u.device_id,
                facts,
                [Involved("kernel", u.name, [Fact("GPU time", u.kernel_ns, "ns")], u.first_ns, u.last_ns)],
            )
        )
    return out[:MAX_OCCUPANCY_INSIGHTS]


def _window(f: SessionFacts) -> tuple[int, int, int]:
    """(summed per-device activity window, first start, last end) over every device."""
    if not f.idle:
        return 0, 0, 0
    return (
        sum(d.last_ns - d.first_ns for d in f.idle),
        min(d.first_ns for d in f.idle),
        max(d.last_ns for d in f.idle),
    )


def _sync_involved(g: SyncGroup) -> Involved:
    waits = g.sync_kind != "stream_wait_event"
    return Involved(
        "sync",
        {
            "context": "device/context synchronise",
            "stream": "stream synchronise",
            "event": "event synchronise",
        }.get(g.sync_kind, "stream wait event"),
        [
            Fact("calls", g.count, "count"),
            Fact("host waited" if waits else "call time", g.wait_ns, "ns"),
        ],
        g.first_ns,
        g.last_ns,
    )


def synchronisation(f: SessionFacts) -> list[Insight]:
    if f.schema_version is not None and f.schema_version < 3:
        raise NotChecked(
            f"the session was recorded with contract v{f.schema_version}: synchronisation calls and copy modes "
            "are recorded from v3 on"
        )
    window, first, last = _window(f)
    out: list[Insight] = []
    r = f.refill
    if (
        f.syncs_recorded
        and window
        and r.syncs >= SYNC_MIN_SYNCS
        and r.refill_ns >= SYNC_MIN_REFILL_NS
        and r.refill_ns >= SYNC_REFILL_SHARE * window
    ):
        ctx = [g for g in f.syncs if g.sync_kind == "context"]
        out.append(
            Insight(
                "synchronisation",
                "warning",
                f"Device synchronisations drained the GPU {r.syncs:,} times: idle {_pct(r.refill_ns, window)} % "
                "of the run until the host queued more",
                "Take the synchronisations out of the loop (torch.cuda.synchronize(), .item(), .cpu(), "
                "printing tensors): queue the next step's work first, read results a step late, or use events "
                "and non_blocking copies so the GPU is never empty while the host works.",
                min((g.first_ns for g in ctx), default=first),
                max((g.last_ns for g in ctx), default=last),
                None,
                [
                    Fact("idle gaps after synchronisations", r.syncs, "count"),
                    Fact("GPU idle after them", r.refill_ns, "ns"),
                    Fact("share of the activity window", _pct(r.refill_ns, window), "pct"),
                    Fact("mean idle after one", r.refill_ns // max(r.syncs, 1), "ns"),
                    Fact("longest", r.longest_ns, "ns"),
                    Fact("host waiting in synchronisations", sum(g.wait_ns for g in ctx), "ns"),
                ],
                [_sync_involved(g) for g in sorted(f.syncs, key=lambda g: -g.count)],
            )
        )
    c = f.sync_copies
    if window and c.count >= SYNC_COPY_MIN and c.dur_ns >= SYNC_COPY_SHARE * window:
        out.append(
            Insight(
                "synchronisation",
                "info",
                f"{c.count:,} copies made the host wait ({c.dur_ns / 1e6:,.1f} ms, "
                f"{_pct(c.dur_ns, window)} % of the run)",
                "Use cudaMemcpyAsync / tensor.to(device, non_blocking=True) from pinned memory, so the host "
                "queues the copy and goes on.",
                c.first_ns if c.first_ns is not None else first,
                c.last_ns if c.last_ns is not None else last,
                None,
                [
                    Fact("synchronous copies", c.count, "count"),
                    Fact("bytes", c.bytes, "bytes"),
                    Fact("their GPU time", c.dur_ns, "ns"),
                    Fact("share of the activity window", _pct(c.dur_ns, window), "pct"),
                ],
                [],
            )
        )
    if not out and not f.syncs_recorded:
        raise NotChecked(
            "synchronisation calls were not recorded (off by default, as recording them costs every launch; "
            "GPUFL_SYNCS=1 or gpufl.init(syncs=True) records them); synchronous copies were checked: clear"
        )
    return out


RULES: dict[str, Callable[[SessionFacts], list[Insight]]] = {
    "launch_bound": launch_bound,
    "gpu_idle": gpu_idle,
    "pageable_copy": pageable_copies,
    "tiny_kernels": tiny_kernels,
    "low_occupancy": low_occupancy,
    "throttling": throttling,
    "memory_near_capacity": memory_near_capacity,
    "sm_underused": sm_underused,
    "synchronisation": synchronisation,
    "warp_divergence": warp_divergence,
    "stall_reason": stall_reasons,
}


def run_rules(f: SessionFacts) -> tuple[list[Insight], list[RuleStatus]]:
    """Every rule over one session: the insights, most severe first, and each rule's status."""
    found: list[Insight] = []
    status: list[RuleStatus] = []
    for name, rule in RULES.items():
        try:
            got = rule(f)
        except NotChecked as e:
            status.append(RuleStatus(name, "not_checked", str(e)))
            continue
        found += got
        status.append(RuleStatus(name, "fired" if got else "clear"))
    found.sort(key=lambda i: (SEVERITY_ORDER[i.severity], i.start_ns))
    return found, status
