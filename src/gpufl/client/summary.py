"""``gpufl summary <log folder | segment | session id>``: a terminal report straight from the logs, no
backend needed (like ``nsys stats``): top kernels, copies, scopes and GPU utilisation per session."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from gpufl.contract import events


def _sessions(target: Path, session: str | None) -> dict[str, dict[str, list[events.Record]]]:
    files = [target] if target.is_file() else sorted(target.glob("*.log"))
    out: dict[str, dict[str, list[events.Record]]] = defaultdict(lambda: {s: [] for s in events.STREAMS})
    for path in files:
        name = events.parse_segment_name(path.name)
        if name is None or (session and name.session_id != session):
            continue
        for line in path.read_bytes().split(b"\n")[:-1]:
            try:
                rec = events.decode(line)
            except events.ContractError:
                continue  # the agent dead-letters bad lines; a report skips them
            out[name.session_id][name.stream].append(rec)
    return out


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.3f}"


def report(streams: dict[str, list[events.Record]], top: int, out: list[str]) -> None:
    dev, scope, system = streams["device"], streams["scope"], streams["system"]
    start = next((r for r in dev + scope + system if isinstance(r, events.SessionStart)), None)
    ended = any(isinstance(r, events.SessionEnd) for r in dev)
    if start:
        gpus = ", ".join(d.name or "?" for d in start.devices) or "no GPU"
        out.append(f"Session {start.session_id}: {start.app} on {start.host} (pid {start.pid}), {gpus}")
    out.append("" if ended else "  (no session_end: the session was cut short)")
    launches = {r.id: r.launch for r in dev if isinstance(r, events.DictEntry) and r.launch}
    by_name: dict[str, list[int]] = defaultdict(list)
    for r in dev:
        if isinstance(r, events.Kernel):
            lc = launches.get(r.launch_id)
            by_name[lc.name if lc else f"launch#{r.launch_id}"].append(r.end_ns - r.start_ns)
    total = sum(sum(v) for v in by_name.values()) or 1
    out.append(f"Kernels: {sum(len(v) for v in by_name.values()):,} launches, {_ms(total)} ms GPU time")
    out.append(f"  {'share':>6} {'total ms':>12} {'count':>8} {'mean µs':>10} {'p95 µs':>10}  name")
    for name, d in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]:
        d.sort()
        out.append(
            f"  {100 * sum(d) / total:>5.1f}% {_ms(sum(d)):>12} {len(d):>8} {statistics.fmean(d) / 1e3:>10.2f}"
            f" {d[int(0.95 * (len(d) - 1))] / 1e3:>10.2f}  {name[:90]}"
        )
    copies: dict[tuple[str, str, str], list[events.Memcpy]] = defaultdict(list)
    for r in dev:
        if isinstance(r, events.Memcpy):
            copies[(r.copy_kind, r.src_kind, r.dst_kind)].append(r)
    if copies:
        out.append("Memory copies:")
        out.append(f"  {'kind':<26} {'count':>7} {'MiB':>10} {'ms':>10} {'GB/s':>8}")
        for (kind, src, dst), cs in sorted(copies.items(), key=lambda kv: -sum(c.bytes for c in kv[1])):
            nbytes = sum(c.bytes for c in cs)
            t = sum(c.end_ns - c.start_ns for c in cs)
            out.append(
                f"  {f'{kind} {src}→{dst}':<26} {len(cs):>7} {nbytes / 2**20:>10.1f} {_ms(t):>10}"
                f" {nbytes / t if t else 0:>8.2f}"
            )
    paths = {r.id: r.value for r in scope if isinstance(r, events.DictEntry) and r.kind == "scope"}
    begins = {r.inst: r for r in scope if isinstance(r, events.ScopeBegin)}
    ends = {r.inst: r.ts_ns for r in scope if isinstance(r, events.ScopeEnd)}
    gpu: dict[int, int] = defaultdict(int)
    for r in dev:
        if isinstance(r, (events.Kernel, events.Memcpy, events.Memset)) and r.scope_inst is not None:
            gpu[r.scope_inst] += r.end_ns - r.start_ns
    agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for inst, begin in begins.items():
        a = agg[paths.get(begin.path_id) or "?"]
        a[0] += 1
        a[1] += ends.get(inst, begin.ts_ns) - begin.ts_ns
        a[2] += gpu.get(inst, 0)
    if agg:
        out.append("Scopes:")
        out.append(f"  {'calls':>7} {'wall ms':>12} {'GPU ms':>12}  path")
        for path, (calls, wall, gpu_ns) in sorted(agg.items()):
            out.append(f"  {calls:>7} {_ms(wall):>12} {_ms(gpu_ns):>12}  {path}")
    samples = [g for r in system if isinstance(r, events.SystemSample) for g in r.gpus]
    per_dev: dict[int, list[float]] = defaultdict(list)
    for g in samples:
        if g.util_gpu_pct is not None:
            per_dev[g.device_id].append(g.util_gpu_pct)
    for dev_id, u in sorted(per_dev.items()):
        out.append(
            f"GPU {dev_id} utilisation: mean {statistics.fmean(u):.0f}%, max {max(u):.0f}% ({len(u)} samples)"
        )
    out.append("")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpufl summary", description=__doc__)
    ap.add_argument("target", help="a log folder, a segment file, or a session id inside --log-dir")
    ap.add_argument("--log-dir", default="./gpufl-logs")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    target = Path(args.target)
    session = None
    if not target.exists():
        session, target = args.target, Path(args.log_dir)
    if not target.exists():
        print(f"gpufl summary: no such folder or file: {target}", file=sys.stderr)
        return 2
    sessions = _sessions(target, session)
    if not sessions:
        print(f"gpufl summary: no gpufl segments found in {target}", file=sys.stderr)
        return 1
    lines: list[str] = []
    for streams in sessions.values():
        report(streams, args.top, lines)
    print("\n".join(lines))
    return 0
