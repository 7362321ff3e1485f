"""Rules over the system stream's GPU samples (NVML and NVML GPM): throttling, memory near capacity, and
SMs left idle while NVML calls the GPU busy. Pure, as rules.py."""

from __future__ import annotations

from gpufl.insights.facts import GpuPoint, SessionFacts
from gpufl.insights.verdict import Fact, Insight, Involved, NotChecked

# ---- thresholds ---------------------------------------------------------------------------------------

THROTTLE_BITS: dict[int, str] = {
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}
"""NVML clocks-event reasons that lower clocks under load (nvmlClocksEventReason*); idle, application
clocks, sync boost and display clocks are not throttling and are ignored."""
THROTTLE_CRITICAL_BITS = 0x8 | 0x40 | 0x80
"""Hardware slowdowns: the GPU protects itself (over temperature, power brake): critical."""

MEMORY_NEAR_CAPACITY = 0.95
"""Used / total device memory at or over 95 %: the next allocation spike fails, or the caching allocator
frees and retries (synchronising the device) to avoid failing."""
MEMORY_CRITICAL = 0.99

SM_UNDERUSED_BUSY_PCT = 50.0
"""NVML's utilisation at or over 50 %: a kernel was running most of the sample period — the GPU looks busy."""
SM_UNDERUSED_ACTIVE_PCT = 50.0
"""…while GPM saw fewer than half the SMs active over the interval: the kernels do not fill the GPU (grids
smaller than the SM count, one-block kernels, or short kernels with launch gaps between them)."""
SM_UNDERUSED_MIN_SAMPLES = 3
"""At least three such samples (3 s at the default interval): a moment is not a pattern."""
SM_UNDERUSED_MIN_SHARE = 0.2
"""…and at least a fifth of the busy samples: a phase of the run, judged apart from the others (a session
whose GEMMs fill the GPU can still have a data-loading phase that does not)."""


def _reasons(p: GpuPoint) -> int:
    bits = (p.throttle_reasons or 0) & sum(THROTTLE_BITS)
    if p.throttle_reasons is None:  # only the booleans reported
        bits |= 0x20 if p.throttle_therm else 0
        bits |= 0x4 if p.throttle_pwr else 0
    return bits


def throttling(f: SessionFacts) -> list[Insight]:
    points = [p for p in f.gpu_points if p.throttle_reasons is not None or p.throttle_pwr is not None]
    if not points:
        raise NotChecked("no NVML throttle reasons in the system stream")
    out = []
    for dev in sorted({p.device_id for p in points}):
        mine = [p for p in points if p.device_id == dev]
        hit = [p for p in mine if _reasons(p)]
        if not hit:
            continue
        bits = 0
        counts: dict[str, int] = {}
        for p in hit:
            bits |= _reasons(p)
            for b, name in THROTTLE_BITS.items():
                if _reasons(p) & b:
                    counts[name] = counts.get(name, 0) + 1
        facts = [
            Fact("throttled samples", len(hit), "count"),
            Fact("samples", len(mine), "count"),
            *(Fact(name, n, "count") for name, n in counts.items()),
        ]
        clocks = [p.clk_sm_mhz for p in hit if p.clk_sm_mhz is not None]
        if clocks:
            facts.append(Fact("lowest SM clock while throttled", min(clocks), "mhz"))
        temps = [p.temp_c for p in hit if p.temp_c is not None]
        if temps:
            facts.append(Fact("highest temperature while throttled", max(temps), "celsius"))
        power = [p.power_mw for p in hit if p.power_mw is not None]
        if power:
            facts.append(Fact("highest power while throttled", max(power), "mw"))
        out.append(
            Insight(
                "throttling",
                "critical" if bits & THROTTLE_CRITICAL_BITS else "warning",
                f"GPU {dev} throttled in {len(hit)} of {len(mine)} samples: {', '.join(counts)}",
                "Clocks were lowered under load: check cooling and airflow, the power limit (nvidia-smi -q -d "
                "POWER) and other jobs on the node; compare timings only between runs with the same clocks.",
                hit[0].ts_ns,
                hit[-1].ts_ns,
                dev,
                facts,
                [
                    Involved(
                        "sample",
                        f"sample at {p.ts_ns}",
                        [Fact("reasons", _reasons(p), "count")],
                        p.ts_ns,
                        p.ts_ns,
                    )
                    for p in hit[:5]
                ],
            )
        )
    return out


def memory_near_capacity(f: SessionFacts) -> list[Insight]:
    points = [p for p in f.gpu_points if p.mem_used_mib is not None and p.mem_total_mib]
    if not points:
        raise NotChecked("no NVML memory readings in the system stream")
    out = []
    for dev in sorted({p.device_id for p in points}):
        mine = [p for p in points if p.device_id == dev]
        assert all(p.mem_used_mib is not None and p.mem_total_mib for p in mine)
        share = {id(p): (p.mem_used_mib or 0.0) / (p.mem_total_mib or 1.0) for p in mine}
        hit = [p for p in mine if share[id(p)] >= MEMORY_NEAR_CAPACITY]
        if not hit:
            continue
        peak = max(hit, key=lambda p: share[id(p)])
        out.append(
            Insight(
                "memory_near_capacity",
                "critical" if share[id(peak)] >= MEMORY_CRITICAL else "warning",
                f"GPU {dev} memory at {round(100 * share[id(peak)], 1)} % of capacity "
                f"({peak.mem_used_mib:,.0f} of {peak.mem_total_mib:,.0f} MiB)",
                "Leave headroom: smaller batches or activation checkpointing, free cached blocks you no longer "
                "need, or watch for a leak if usage only grows.",
                hit[0].ts_ns,
                hit[-1].ts_ns,
                dev,
                [
                    Fact("peak used", peak.mem_used_mib or 0.0, "mib"),
                    Fact("total", peak.mem_total_mib or 0.0, "mib"),
                    Fact("peak share", round(100 * share[id(peak)], 1), "pct"),
                    Fact("samples at or over the threshold", len(hit), "count"),
                    Fact("samples", len(mine), "count"),
                ],
                [Involved("sample", f"peak at {peak.ts_ns}", [], peak.ts_ns, peak.ts_ns)],
            )
        )
    return out


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 1)


def sm_underused(f: SessionFacts) -> list[Insight]:
    """NVML calls the GPU busy (a kernel was running) while GPM saw most SMs idle, in enough samples."""
    points = [p for p in f.gpu_points if p.sm_active_pct is not None and p.util_gpu_pct is not None]
    if not points:
        raise NotChecked(
            "no GPU-activity readings (NVML GPM: Hopper and newer GPUs, sessions of contract v4 and later)"
        )
    out = []
    for dev in sorted({p.device_id for p in points}):
        mine = [p for p in points if p.device_id == dev]
        busy = [p for p in mine if (p.util_gpu_pct or 0.0) >= SM_UNDERUSED_BUSY_PCT]
        low = [p for p in busy if (p.sm_active_pct or 0.0) < SM_UNDERUSED_ACTIVE_PCT]
        if len(low) < SM_UNDERUSED_MIN_SAMPLES or len(low) < SM_UNDERUSED_MIN_SHARE * len(busy):
            continue
        util = _mean([p.util_gpu_pct or 0.0 for p in low])
        active = _mean([p.sm_active_pct or 0.0 for p in low])
        facts = [
            Fact("NVML utilisation, mean over these samples", util, "pct"),
            Fact("SMs active (GPM), mean over the same samples", active, "pct"),
            Fact("samples busy with SMs mostly idle", len(low), "count"),
            Fact("busy samples", len(busy), "count"),
            Fact("samples", len(mine), "count"),
        ]
        for label, attr in (
            ("SM occupancy (GPM)", "sm_occupancy_pct"),
            ("tensor pipes active (GPM)", "tensor_active_pct"),
            ("DRAM bandwidth (GPM)", "dram_bw_pct"),
        ):
            vals = [v for p in low if (v := getattr(p, attr)) is not None]
            if vals:
                facts.append(Fact(f"{label}, mean", _mean(vals), "pct"))
        sms = f.sm_count.get(dev)
        if sms:
            facts.append(Fact("SMs on the GPU", sms, "count"))
        out.append(
            Insight(
                "sm_underused",
                "warning",
                f"GPU {dev} read {util} % busy (NVML) in {len(low)} samples while only {active} % of its SMs "
                "were active (GPM)",
                "The kernels do not fill the GPU: look for grids smaller than the SM count (the Kernels tab's "
                "grid and occupancy), many tiny kernels with launch gaps between them (CUDA graphs or "
                "torch.compile fuse them), or one stream where independent work could overlap on others.",
                low[0].ts_ns,
                low[-1].ts_ns,
                dev,
                facts,
                [
                    Involved(
                        "sample",
                        f"sample at {p.ts_ns}",
                        [
                            Fact("NVML utilisation", p.util_gpu_pct or 0.0, "pct"),
                            Fact("SMs active", p.sm_active_pct or 0.0, "pct"),
                        ],
                        p.ts_ns,
                        p.ts_ns,
                    )
                    for p in sorted(low, key=lambda p: p.sm_active_pct or 0.0)[:5]
                ],
            )
        )
    return out
