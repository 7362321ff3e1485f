"""Rules over the deep engines' samples (``SessionFacts.deep``): warp divergence from the SASS metrics and the
top stall reason from PC sampling, per kernel, weighted by the kernel's share of the GPU time. Pure, as
rules.py."""

from __future__ import annotations

from gpufl.insights.facts import DeepKernel, LaunchUse, SessionFacts
from gpufl.insights.verdict import Fact, Insight, Involved, NotChecked, Severity

# ---- thresholds ---------------------------------------------------------------------------------------

DIVERGENT_THREADS = 24.0
"""Average active threads per executed warp instruction under 24 (three quarters of the 32 lanes): over a
quarter of the SIMT width idles on the average instruction. A kernel whose only divergence is a bounds
check on its last warp stays near 32; a two-way branch by lane parity runs at 16."""
MIN_TIME_SHARE = 0.05
"""A kernel must take at least 5 % of the kernel time for its divergence or stalls to matter (as the
occupancy rule); where no kernel record names it (tracing off) its share is not reported and it is judged."""
WARNING_TIME_SHARE = 0.25
"""A kernel taking a quarter of the GPU time or more is a warning; less, information."""
STALL_MIN_SAMPLES = 100
"""PC samples a kernel needs to be judged: under 100 one sample moves a share by more than a percent."""
STALL_MIN_SHARE = 0.3
"""The dominant reason must hold at least 30 % of the kernel's samples: a flatter histogram names no single
cause to act on."""
MAX_PER_RULE = 5
"""Kernels reported per rule, most GPU time first (the rest are counted in the last one's evidence)."""

STALL_PREFIX = "smsp__pcsamp_warps_issue_stalled_"
"""CUPTI names its stall reasons with this prefix; the rules speak of the rest (``long_scoreboard``)."""
READY = frozenset({"selected", "not_selected"})
"""Warps that could issue (``selected``: issuing; ``not_selected``: eligible, another warp issued): the
scheduler was busy, the kernel is compute-saturated, not stalled."""
STALLS: dict[str, tuple[str, str]] = {
    "long_scoreboard": (
        "waiting on global or local memory (L1TEX: loads, register spills)",
        "cut or coalesce global memory traffic (reuse data through shared memory, wider loads), or raise "
        "occupancy / instruction-level parallelism to hide the latency",
    ),
    "short_scoreboard": (
        "waiting on shared memory or special math (MIO) results",
        "look for shared-memory bank conflicts and heavy transcendental use",
    ),
    "math_pipe_throttle": (
        "a math pipe is saturated",
        "the kernel is compute-bound on one pipe: use a cheaper instruction mix (lower precision, tensor cores)",
    ),
    "mio_throttle": (
        "the memory input/output queue is full (shared memory, special math, dynamic branches)",
        "issue fewer, wider shared-memory accesses and fewer special-math instructions",
    ),
    "lg_throttle": (
        "the local/global memory queue is full",
        "issue fewer, wider global memory accesses (vector loads) and avoid local-memory spills",
    ),
    "tex_throttle": ("the texture unit's queue is full", "issue fewer texture / surface fetches"),
    "barrier": (
        "waiting at a block barrier (__syncthreads)",
        "balance the work between warps before each barrier, or use fewer barriers / smaller blocks",
    ),
    "membar": ("waiting on a memory fence", "use fewer or narrower memory fences (__threadfence_block)"),
    "branch_resolving": (
        "waiting for branch targets to resolve",
        "make control flow more uniform (fewer divergent branches)",
    ),
    "no_instructions": (
        "the instruction cache missed",
        "shrink the hot loop's code (less unrolling, fewer inlined paths)",
    ),
    "imc_miss": (
        "the constant cache missed",
        "read constants uniformly across the warp, or move per-thread tables to global/shared memory",
    ),
    "wait": (
        "waiting on a fixed-latency dependency",
        "raise instruction-level parallelism (independent instructions between dependent ones)",
    ),
    "dispatch_stall": ("the dispatcher stalled", "check for pipeline conflicts in Nsight Compute"),
    "drain": ("draining memory stores at the warp's exit", "write less memory at the kernel's end"),
    "sleeping": ("warps sleeping (nanosleep, yield)", "check spin-wait loops"),
}
"""What a stall reason means and what to try (Nsight Compute's warp-state descriptions); other reasons are
named as CUPTI names them."""


def _uses(f: SessionFacts) -> dict[str, list[LaunchUse]]:
    out: dict[str, list[LaunchUse]] = {}
    for u in f.launches:
        out.setdefault(u.name, []).append(u)
    return out


def _share(uses: list[LaunchUse], f: SessionFacts) -> float | None:
    """The kernel's share of all kernels' GPU time; None where no kernel record names it."""
    if not uses or not f.kernel_ns:
        return None
    return sum(u.kernel_ns for u in uses) / f.kernel_ns


def _where(uses: list[LaunchUse], f: SessionFacts) -> tuple[int, int, int | None]:
    """The insight's time range and device: the kernel's launches, else the whole activity window."""
    if uses:
        devices = {u.device_id for u in uses}
        return (
            min(u.first_ns for u in uses),
            max(u.last_ns for u in uses),
            devices.pop() if len(devices) == 1 else None,
        )
    if f.idle:
        return min(d.first_ns for d in f.idle), max(d.last_ns for d in f.idle), None
    return 0, 0, None


def _severity(share: float | None) -> Severity:
    return "warning" if share is not None and share >= WARNING_TIME_SHARE else "info"


def _share_fact(share: float | None) -> Fact:
    if share is None:
        return Fact("share of kernel time", "not reported (no kernel record of this name)", "text")
    return Fact("share of kernel time", round(100 * share, 1), "pct")


def _weighed(hits: list[tuple[DeepKernel, float | None]]) -> list[tuple[DeepKernel, float | None]]:
    """Most GPU time first (unknown shares last), then by name."""
    return sorted(hits, key=lambda h: (-(h[1] if h[1] is not None else -1.0), h[0].name))


def _kernel_involved(k: DeepKernel, uses: list[LaunchUse]) -> Involved:
    return Involved(
        "kernel",
        k.name,
        [Fact("GPU time", sum(u.kernel_ns for u in uses), "ns")] if uses else [],
        min((u.first_ns for u in uses), default=None),
        max((u.last_ns for u in uses), default=None),
    )


def warp_divergence(f: SessionFacts) -> list[Insight]:
    measured = [k for k in f.deep if k.divergence is not None]
    if not measured:
        raise NotChecked(
            "no SASS-metric samples (the deep engines' sass engine, in a gpufl.scope(..., deep=True))"
            f" ({f.profile_samples:,} profile samples recorded)"
        )
    uses = _uses(f)
    hits = []
    for k in measured:
        share = _share(uses.get(k.name, []), f)
        assert k.divergence is not None
        if k.divergence < DIVERGENT_THREADS and (share is None or share >= MIN_TIME_SHARE):
            hits.append((k, share))
    hits = _weighed(hits)
    out = []
    for n, (k, share) in enumerate(hits[:MAX_PER_RULE]):
        assert k.divergence is not None and k.inst is not None
        mine = uses.get(k.name, [])
        start, end, dev = _where(mine, f)
        facts = [
            Fact("active threads per warp instruction", round(k.divergence, 2), "count"),
            Fact("lanes idle", round(100 * (1 - k.divergence / 32), 1), "pct"),
            _share_fact(share),
            Fact("warp instructions", round(k.inst), "count"),
        ]
        if n == MAX_PER_RULE - 1 and len(hits) > MAX_PER_RULE:
            facts.append(Fact("more divergent kernels not listed", len(hits) - MAX_PER_RULE, "count"))
        lines = [
            Involved(
                "line",
                f"{ln.source_file or 'file not reported'}:{ln.source_line}",
                [
                    Fact("active threads per warp instruction", round(ln.thread_inst / ln.inst, 2), "count"),
                    Fact("warp instructions", round(ln.inst), "count"),
                ],
            )
            for ln in k.lines
        ]
        out.append(
            Insight(
                "warp_divergence",
                _severity(share),
                f"{k.name[:80]}: {k.divergence:.1f} of 32 threads active per warp instruction",
                "Make branches uniform across a warp: branch on warp-aligned data (e.g. threadIdx.x / 32), "
                "sort or bin the work so neighbouring threads take the same path, or split the divergent "
                "paths into separate kernels.",
                start,
                end,
                dev,
                facts,
                [_kernel_involved(k, mine), *lines],
            )
        )
    return out


def stall_reasons(f: SessionFacts) -> list[Insight]:
    sampled = [k for k in f.deep if k.stalls]
    if not sampled:
        raise NotChecked(
            "no PC-sampling samples (the deep engines' pc_sampling engine, in a gpufl.scope(..., deep=True))"
            f" ({f.profile_samples:,} profile samples recorded)"
        )
    uses = _uses(f)
    hits = []
    for k in sampled:
        total = sum(k.stalls.values())
        reason, n = min(k.stalls.items(), key=lambda kv: (-kv[1], kv[0]))
        share = _share(uses.get(k.name, []), f)
        if (
            total >= STALL_MIN_SAMPLES
            and n >= STALL_MIN_SHARE * total
            and reason.removeprefix(STALL_PREFIX) not in READY
            and (share is None or share >= MIN_TIME_SHARE)
        ):
            hits.append((k, share))
    hits = _weighed(hits)
    out = []
    for i, (k, share) in enumerate(hits[:MAX_PER_RULE]):
        total = sum(k.stalls.values())
        ranked = sorted(k.stalls.items(), key=lambda kv: (-kv[1], kv[0]))
        reason = ranked[0][0].removeprefix(STALL_PREFIX)
        meaning, fix = STALLS.get(reason, (f"stalled on {reason}", "see Nsight Compute's warp-state guide"))
        mine = uses.get(k.name, [])
        start, end, dev = _where(mine, f)
        facts = [
            Fact("top stall reason", reason, "text"),
            Fact("its share of the samples", round(100 * ranked[0][1] / total, 1), "pct"),
            Fact("its samples", ranked[0][1], "count"),
            Fact("PC samples of the kernel", total, "count"),
            _share_fact(share),
        ]
        if i == MAX_PER_RULE - 1 and len(hits) > MAX_PER_RULE:
            facts.append(Fact("more stalled kernels not listed", len(hits) - MAX_PER_RULE, "count"))
        out.append(
            Insight(
                "stall_reason",
                _severity(share),
                f"{k.name[:80]}: {round(100 * ranked[0][1] / total)} % of warp samples {meaning} ({reason})",
                f"To shorten the {reason} stalls: {fix}.",
                start,
                end,
                dev,
                facts,
                [
                    _kernel_involved(k, mine),
                    *(
                        Involved(
                            "sample",
                            r.removeprefix(STALL_PREFIX),
                            [Fact("samples", c, "count"), Fact("share", round(100 * c / total, 1), "pct")],
                        )
                        for r, c in ranked[1:4]
                    ),
                ],
            )
        )
    return out
