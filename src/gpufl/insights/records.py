"""``SessionFacts`` from a session's decoded log records (``gpufl summary``, tests): the same definitions as
the store's SQL (``gpufl.backend.store.insights``), computed in Python over every record."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable

from gpufl.contract import events as ev
from gpufl.contract.deep import SASS_INST, SASS_THREAD_INST
from gpufl.insights import deep_rules, rules
from gpufl.insights import facts as fx

Activity = ev.Kernel | ev.Memcpy | ev.Memset


def ready_ns(a: Activity) -> int | None:
    """When the host had handed the activity over: the end of its API call, or its start if earlier."""
    if isinstance(a, ev.Memset):
        return None
    entry = ev.api_start_ns(a)
    if entry is None or a.api_dur_ns is None:
        return None
    return min(entry + a.api_dur_ns, a.start_ns)


def _idle_and_phases(f: fx.SessionFacts, acts: list[Activity]) -> None:
    by_dev: dict[int, list[Activity]] = defaultdict(list)
    for a in acts:
        by_dev[a.device_id].append(a)
    for dev, mine in sorted(by_dev.items()):
        _device(f, dev, sorted(mine, key=lambda a: (a.start_ns, a.seq)))


def _device(f: fx.SessionFacts, dev: int, mine: list[Activity]) -> None:
    """One device's activities, in start order: its idle gaps and its phases."""
    first = mine[0].start_ns
    last = max(a.end_ns for a in mine)
    d = fx.DeviceIdle(dev, first, last, len(mine))
    width = fx.phase_width_ns(first, last)
    phases: dict[int, fx.Phase] = {}
    threads: dict[tuple[int, int | None], fx.ThreadLaunches] = {}

    def phase(t: int) -> fx.Phase:
        i = (t - first) // width
        if i not in phases:
            phases[i] = fx.Phase(dev, i, first + i * width, first + (i + 1) * width)
        return phases[i]

    gaps: list[fx.Gap] = []
    reach = None
    for a in mine:
        if reach is not None and a.start_ns > reach:
            gap = a.start_ns - reach
            host, launch, other, unknown = fx.split_gap(reach, gap, ready_ns(a))
            d.idle_ns += gap
            d.host_ns += host
            d.launch_ns += launch
            d.other_ns += other
            d.unknown_ns += unknown
            d.gaps += 1
            gaps.append(fx.Gap(dev, reach, a.start_ns))
            p = phase(a.start_ns)
            p.idle_ns += gap
            p.host_ns += host
        reach = a.end_ns if reach is None else max(reach, a.end_ns)
        if isinstance(a, ev.Kernel):
            p = phase(a.start_ns)
            p.kernels += 1
            p.kernel_ns += a.end_ns - a.start_ns
            t = threads.get((p.index, a.thread_id))
            if t is None:
                t = threads[(p.index, a.thread_id)] = fx.ThreadLaunches(a.thread_id, 0, 0, 0)
                p.threads.append(t)
            t.launches += 1
            t.api_ns += a.api_dur_ns or 0
            t.api_timed += a.api_dur_ns is not None
            t.kernel_ns += a.end_ns - a.start_ns
    gaps.sort(key=lambda g: (g.start_ns - g.end_ns, g.start_ns))
    d.longest = gaps[: fx.LONGEST_GAPS]
    f.idle.append(d)
    f.phases += [phases[i] for i in sorted(phases)]


def facts_from_records(session_id: str, records: Iterable[ev.Record]) -> fx.SessionFacts:
    f = fx.SessionFacts(session_id)
    launches: dict[int, ev.LaunchConfig] = {}
    acts: list[Activity] = []
    points: list[fx.GpuPoint] = []
    syncs: list[ev.Sync] = []
    samples: list[ev.ProfileSample] = []
    scope_dicts: dict[tuple[str, int], str | None] = {}
    for r in records:
        if isinstance(r, ev.Kernel | ev.Memcpy | ev.Memset):
            acts.append(r)
        elif isinstance(r, ev.Sync):
            syncs.append(r)
        elif (
            isinstance(r, ev.DictEntry)
            and r.kind == "launch"
            and r.launch is not None
            and r.stream == "device"
        ):
            launches[r.id] = r.launch
        elif isinstance(r, ev.DictEntry) and r.stream == "scope" and r.kind in ("kernel", "source_file"):
            scope_dicts[(r.kind, r.id)] = r.value
        elif isinstance(r, ev.SessionStart):
            f.schema_version = r.schema_version
            f.syncs_recorded = r.options.get("syncs", True) is not False
            for dp in r.devices:
                if dp.sm_count is not None:
                    f.sm_count[dp.device_id] = dp.sm_count
        elif isinstance(r, ev.SystemSample):
            f.system_samples += 1
            points += [
                fx.GpuPoint(
                    r.ts_ns,
                    g.device_id,
                    g.throttle_reasons,
                    g.throttle_pwr,
                    g.throttle_therm,
                    None if g.clk_sm_mhz is None else float(g.clk_sm_mhz),
                    g.temp_c,
                    g.power_mw,
                    g.mem_used_mib,
                    g.mem_total_mib,
                    g.util_gpu_pct,
                    g.sm_active_pct,
                    g.sm_occupancy_pct,
                    g.tensor_active_pct,
                    g.dram_bw_pct,
                )
                for g in r.gpus
            ]
        elif isinstance(r, ev.ProfileSample):
            f.profile_samples += 1
            samples.append(r)
    f.gpu_points = sorted(points, key=lambda p: (p.device_id, p.ts_ns))
    kernels = [a for a in acts if isinstance(a, ev.Kernel)]
    f.kernels = len(kernels)
    f.kernel_ns = sum(k.end_ns - k.start_ns for k in kernels)
    f.api_timed = sum(1 for a in acts if ready_ns(a) is not None)
    if acts:
        _idle_and_phases(f, acts)

    def name(k: ev.Kernel) -> str:
        lc = launches.get(k.launch_id)
        return lc.name if lc else f"launch#{k.launch_id}"

    tiny: dict[str, fx.KernelGroup] = {}
    uses: dict[int, fx.LaunchUse] = {}
    for k in kernels:
        dur = k.end_ns - k.start_ns
        if dur < rules.TINY_KERNEL_NS and k.graph_id is None:
            g = tiny.setdefault(name(k), fx.KernelGroup(name(k), 0, 0, 0))
            g.count += 1
            g.kernel_ns += dur
            g.api_ns += k.api_dur_ns or 0
            g.api_timed += k.api_dur_ns is not None
            t = f.tiny
            t.first_ns = k.start_ns if t.first_ns is None else min(t.first_ns, k.start_ns)
            t.last_ns = k.end_ns if t.last_ns is None else max(t.last_ns, k.end_ns)
        u = uses.get(k.launch_id)
        if u is None:
            lc = launches.get(k.launch_id)
            u = uses[k.launch_id] = fx.LaunchUse(name(k), k.device_id, 0, 0, k.start_ns, k.end_ns)
            if lc is not None:
                u.grid, u.block, u.num_regs = lc.grid, lc.block, lc.num_regs
                u.shared_bytes = lc.static_shared_bytes + lc.dyn_shared_bytes
                u.occupancy, u.limiter = lc.occupancy, lc.limiting_resource
        u.count += 1
        u.kernel_ns += dur
        u.first_ns, u.last_ns = min(u.first_ns, k.start_ns), max(u.last_ns, k.end_ns)
    f.tiny.count = sum(g.count for g in tiny.values())
    f.tiny.kernel_ns = sum(g.kernel_ns for g in tiny.values())
    f.tiny.api_ns = sum(g.api_ns for g in tiny.values())
    f.tiny.api_timed = sum(g.api_timed for g in tiny.values())
    f.tiny.top = sorted(tiny.values(), key=lambda g: (-g.count, g.name))[: fx.TOP_NAMES]
    f.launches = list(uses.values())
    groups: dict[tuple[str, str, str], fx.CopyGroup] = {}
    for c in (a for a in acts if isinstance(a, ev.Memcpy)):
        key = (c.copy_kind, c.src_kind, c.dst_kind)
        g2 = groups.get(key)
        if g2 is None:
            g2 = groups[key] = fx.CopyGroup(*key, 0, 0, 0, 0, c.start_ns, c.end_ns)
        g2.count += 1
        g2.bytes += c.bytes
        g2.dur_ns += c.end_ns - c.start_ns
        g2.api_ns += c.api_dur_ns or 0
        g2.api_timed += c.api_dur_ns is not None
        g2.first_ns, g2.last_ns = min(g2.first_ns, c.start_ns), max(g2.last_ns, c.end_ns)
    f.copies = sorted(groups.values(), key=lambda g: (g.copy_kind, g.src_kind, g.dst_kind))
    _syncs(f, syncs, acts)
    f.deep = _deep(samples, scope_dicts)
    return f


def _deep(samples: list[ev.ProfileSample], dicts: dict[tuple[str, int], str | None]) -> list[fx.DeepKernel]:
    """As the store's ``deep_summary`` kernels: per kernel name, SASS instructions and PC samples per stall
    reason (``…_not_issued`` left out), and the most divergent lines of kernels under the rule's threshold."""
    kernels: dict[str, fx.DeepKernel] = {}
    lines: dict[str, dict[tuple[str | None, int], fx.DeepLine]] = defaultdict(dict)
    for p in samples:
        named = dicts.get(("kernel", p.kernel_name_id)) if p.kernel_name_id is not None else None
        name = named or p.function_name or fx.KERNEL_NOT_REPORTED
        k = kernels.setdefault(name, fx.DeepKernel(name))
        if p.source == "pc_sampling" and p.sample_count is not None:
            reason = p.stall_reason if p.stall_reason is not None else "(not reported)"
            if not reason.endswith(fx.NOT_ISSUED):
                k.stalls[reason] = k.stalls.get(reason, 0) + p.sample_count
        elif (
            p.source == "sass_metric"
            and p.metric_value is not None
            and p.metric_name
            in (
                SASS_INST,
                SASS_THREAD_INST,
            )
        ):
            inst = p.metric_name == SASS_INST
            v = float(p.metric_value)
            if inst:
                k.inst = (k.inst or 0.0) + v
            else:
                k.thread_inst = (k.thread_inst or 0.0) + v
            if p.source_line is not None:
                file = dicts.get(("source_file", p.source_file_id)) if p.source_file_id is not None else None
                key = (file or p.source_file, p.source_line)
                ln = lines[name].setdefault(key, fx.DeepLine(key[0], key[1], 0.0, 0.0))
                if inst:
                    ln.inst += v
                else:
                    ln.thread_inst += v
    for name, k in kernels.items():
        if (
            name != fx.KERNEL_NOT_REPORTED
            and k.divergence is not None
            and k.divergence < deep_rules.DIVERGENT_THREADS
        ):
            k.lines = fx.most_divergent(list(lines[name].values()))
    return sorted(kernels.values(), key=lambda k: k.name)


def _syncs(f: fx.SessionFacts, syncs: list[ev.Sync], acts: list[Activity]) -> None:
    """Synchronisation calls by kind, the GPU's refill time after context syncs, and synchronous copies."""
    by_kind: dict[str, fx.SyncGroup] = {}
    for y in syncs:
        g = by_kind.get(y.sync_kind)
        if g is None:
            g = by_kind[y.sync_kind] = fx.SyncGroup(y.sync_kind, 0, 0, y.start_ns, y.end_ns)
        g.count += 1
        g.wait_ns += y.end_ns - y.start_ns
        g.first_ns, g.last_ns = min(g.first_ns, y.start_ns), max(g.last_ns, y.end_ns)
    f.syncs = sorted(by_kind.values(), key=lambda g: g.sync_kind)
    starts = sorted(a.start_ns for a in acts)
    # Each gap once: syncs back to back before the same next start refill one gap, from the earliest return;
    # a sync before the first activity is outside the activity window.
    refills: dict[int, int] = {}
    for y in syncs:
        if y.sync_kind != "context":
            continue
        i = bisect.bisect_left(starts, y.end_ns)
        if i == 0 or i == len(starts):
            continue  # before the first GPU work, or after the last (the program's end)
        refills[i] = min(refills.get(i, y.end_ns), y.end_ns)
    r = f.refill
    for i, end in sorted(refills.items()):
        gap = starts[i] - end
        r.syncs += 1
        r.refill_ns += gap
        if gap > r.longest_ns:
            r.longest_ns, r.longest_at_ns = gap, end
    c = f.sync_copies
    for a in acts:
        if isinstance(a, ev.Memcpy) and a.mode == "sync":
            c.count += 1
            c.bytes += a.bytes
            c.dur_ns += a.end_ns - a.start_ns
            c.first_ns = a.start_ns if c.first_ns is None else min(c.first_ns, a.start_ns)
            c.last_ns = a.end_ns if c.last_ns is None else max(c.last_ns, a.end_ns)
