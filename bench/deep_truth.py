"""The deep engines against Nsight Compute on kernels of known behaviour (issue #19's ground-truth bars).

    python bench/deep_truth.py LOG_DIR [--ncu-divergence ncu.csv] [--ncu-stalls ncu_stalls.csv] [--json out.json]

LOG_DIR is a recording of ``examples/workloads/deep_truth.py --gpufl --engines ...`` (each kernel in its own
deep scope). Prints, per kernel: gpufl's divergence (thread / warp instructions executed, SASS metrics) beside
ncu's ``smsp__thread_inst_executed_per_inst_executed.ratio``, and the top-3 PC-sampling stall reasons with their
shares beside ncu's sampled warp states (``smsp__pcsamp_warps_issue_stalled_*``); and per range the samples
taken and dropped. The CSVs are ncu's ``--csv`` output (``--page raw`` for the stalls).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

from gpufl.contract import events as ev
from gpufl.contract.deep import SASS_INST, SASS_THREAD_INST

PREFIX = "smsp__pcsamp_warps_issue_stalled_"


def short_kernel(name: str) -> str:
    m = re.search(r"(div_\w+|mem_bound|compute_bound)", name)
    return m.group(1) if m else name


def read_gpufl(log_dir: Path) -> dict[str, Any]:
    kernels: dict[int, str] = {}
    inst: collections.Counter[str] = collections.Counter()
    thread: collections.Counter[str] = collections.Counter()
    stalls: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    ranges: list[dict[str, Any]] = []
    lines: dict[str, set[int]] = collections.defaultdict(set)
    for seg in sorted(log_dir.rglob("*.scope.*.log")):
        for raw in seg.read_bytes().splitlines():
            if not raw.strip():
                continue
            r = ev.decode(raw)
            if isinstance(r, ev.DictEntry) and r.kind == "kernel":
                kernels[r.id] = r.value or r.mangled or "?"
            elif isinstance(r, ev.ProfileSample):
                k = short_kernel(
                    kernels.get(r.kernel_name_id, r.function_name or "?")
                    if r.kernel_name_id is not None
                    else (r.function_name or "?")
                )
                if r.source_line:
                    lines[k].add(r.source_line)
                if r.source == "sass_metric" and r.metric_name == SASS_INST:
                    inst[k] += int(r.metric_value or 0)
                elif r.source == "sass_metric" and r.metric_name == SASS_THREAD_INST:
                    thread[k] += int(r.metric_value or 0)
                elif r.source == "pc_sampling" and not (r.stall_reason or "").endswith("_not_issued"):
                    # X_not_issued counts the samples of state X in which no warp issued: a subset of X
                    stalls[k][(r.stall_reason or "?").removeprefix(PREFIX)] += r.sample_count or 0
            elif isinstance(r, ev.ProfileRange):
                ranges.append(ev.to_builtins(r))
    div = {k: thread[k] / inst[k] for k in inst if inst[k]}
    return {
        "divergence": div,
        "stalls": stalls,
        "ranges": ranges,
        "lines": {k: len(v) for k, v in lines.items()},
    }


def read_ncu(path: Path | None) -> list[dict[str, str]]:
    if path is None or not path.exists():
        return []
    text = path.read_text(errors="replace")
    start = text.find('"ID"')
    return list(csv.DictReader(text[start:].splitlines())) if start >= 0 else []


def ncu_divergence(rows: list[dict[str, str]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        if r.get("Metric Name") == "smsp__thread_inst_executed_per_inst_executed.ratio":
            out[short_kernel(r.get("Kernel Name", ""))] = float(r["Metric Value"].replace(",", ""))
    return out


def ncu_stalls(rows: list[dict[str, str]]) -> dict[str, collections.Counter[str]]:
    """--page raw: one row per kernel, a column per metric; the sampled stall counts are the pcsamp columns."""
    out: dict[str, collections.Counter[str]] = {}
    for r in rows:
        name = r.get("Kernel Name", "")
        if not name or name == "Kernel Name":
            continue
        c: collections.Counter[str] = collections.Counter()
        for col, val in r.items():
            if col and col.startswith(PREFIX) and not col.endswith("_not_issued") and val:
                try:
                    c[col.removeprefix(PREFIX)] += int(float(val.replace(",", "")))
                except ValueError:
                    pass
        out[short_kernel(name)] = c
    return out


def top(c: collections.Counter[str], n: int = 3) -> list[tuple[str, float]]:
    total = sum(c.values()) or 1
    return [(k, 100.0 * v / total) for k, v in c.most_common(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log_dir", type=Path)
    ap.add_argument("--ncu-divergence", type=Path)
    ap.add_argument("--ncu-stalls", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    g = read_gpufl(a.log_dir)
    nd = ncu_divergence(read_ncu(a.ncu_divergence))
    ns = ncu_stalls(read_ncu(a.ncu_stalls))
    print(f"{'kernel':16} {'gpufl div':>10} {'ncu div':>8} {'diff %':>7}  lines")
    for k in sorted(set(g["divergence"]) | set(nd)):
        gv, nv = g["divergence"].get(k), nd.get(k)
        diff = f"{100 * (gv - nv) / nv:+.2f}" if gv and nv else "-"
        print(f"{k:16} {gv or 0:10.3f} {nv or 0:8.3f} {diff:>7}  {g['lines'].get(k, 0)}")
    print()
    for k in sorted(set(g["stalls"]) | set(ns)):
        print(f"{k}: gpufl {sum(g['stalls'].get(k, {}).values())} samples, ncu {sum(ns.get(k, {}).values())}")
        gt, nt = top(g["stalls"].get(k, collections.Counter())), top(ns.get(k, collections.Counter()))
        for i in range(3):
            gs = f"{gt[i][0]} {gt[i][1]:.1f}%" if i < len(gt) else "-"
            nss = f"{nt[i][0]} {nt[i][1]:.1f}%" if i < len(nt) else "-"
            print(f"   {i + 1}. gpufl {gs:40} ncu {nss}")
    print()
    for r in g["ranges"]:
        keep = (
            "scope_inst",
            "engines",
            "pc_samples",
            "pc_dropped",
            "pc_buffer_full",
            "pc_records",
            "sass_records",
            "sass_dropped",
            "error",
        )
        print("range", {k: r.get(k) for k in keep if r.get(k) is not None})
    if a.json:
        out = {
            "gpufl": {"divergence": g["divergence"], "stalls": {k: dict(v) for k, v in g["stalls"].items()}},
            "ncu": {"divergence": nd, "stalls": {k: dict(v) for k, v in ns.items()}},
            "ranges": g["ranges"],
        }
        a.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
