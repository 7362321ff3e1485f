"""Client overhead on a GPU: no profiler vs gpufl (native / with stacks / cupti-python) vs torch.profiler.

Two workloads (``--workload``): ``gpt`` — the GPT-style training run (6 layers, d 512, ctx 256, batch 16,
fp16 autocast, AdamW) — and ``loop`` — a launch-bound 1024² matmul + relu loop. A fresh process per mode,
modes interleaved for N rounds (these machines are noisy: compare within one run), median and min–max of the
per-run median step time, time spent at exit, bytes per kernel record.

With ``torch-profiler-cuda`` among the modes, a fidelity table compares gpufl's kernels in the measured
window with torch.profiler's: kernels per step, and for each kernel name with ≥ 100 instances the median
duration (gpufl's from its first round in gpufl mode).

    python bench/client_overhead.py --workload gpt --rounds 5 --steps 60 \\
        --modes none,gpufl,gpufl-stacks,torch-profiler [--json OUT]

``--workload jax`` / ``compiled`` are #21's frameworks (a jitted JAX loop; torch.compile's CUDA graphs); mode
``gpufl-run`` starts the unmodified program under ``gpufl run`` (its capture mode from ``GPUFL_CAPTURE`` in the
mode's settings: ``gpufl-run@GPUFL_CAPTURE=windows``).

A mode may carry environment settings for its processes after ``@`` (e.g. the native path's diagnostic
switches): ``gpufl-activity-only@GPUFL_NATIVE_COPIES=0``. Separate modes by ``;`` when a setting holds commas
(``none;gpufl@GPUFL_ENGINES=system,pc_sampling``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "gpt": (ROOT / "examples/workloads/gpt_train.py", []),
    "loop": (ROOT / "examples/workloads/matmul_loop.py", ["--iters", "1000"]),
    # GPU-bound: the same model 4x wider, 8 layers, 4x the batch (~0.4 B parameters)
    "gpt-big": (
        ROOT / "examples/workloads/gpt_train.py",
        ["--d-model", "2048", "--layers", "8", "--batch", "64", "--warmup", "3"],
    ),
    # #21's frameworks, each unmodified under `gpufl run` in mode gpufl-run
    "jax": (ROOT / "examples/workloads/jax_loop.py", ["--iters", "1000"]),
    "compiled": (ROOT / "examples/workloads/compiled_loop.py", ["--iters", "100"]),
}


def run_once(
    workload: str, mode: str, steps: int, log_root: Path, idx: int, timeout: float = 900
) -> dict[str, Any]:
    script, extra = WORKLOADS[workload]
    # "gpufl-activity-only@GPUFL_NATIVE_COPIES=0@...": the harness mode, then environment settings for
    # that process (the native path's diagnostic switches)
    harness_mode, *settings = mode.split("@")
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in settings))
    label = mode.replace("@", "_").replace("=", "-").replace("/", "_per_")
    log_dir = log_root / f"{label}-{idx}"
    result = log_root / f"{label}-{idx}.json"
    cmd = [sys.executable, str(script), "--mode", harness_mode, "--steps", str(steps)]
    if harness_mode == "gpufl-run":  # the unmodified program under `gpufl run`, logs where gpufl's go
        cmd = [sys.executable, "-m", "gpufl", "run", "--log-dir", str(log_dir), "--", *cmd]
    cmd += ["--log-dir", str(log_dir), "--result", str(result), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(result.read_text())
    res["log_dir"] = str(log_dir)
    res["round"] = idx
    res["stderr_tail"] = proc.stderr[-2000:]
    stats = gpufl_kernels(log_dir, res["window_ns"]) if log_dir.exists() else None
    res["gpufl"] = stats
    return res


def gpufl_kernels(log_dir: Path, window: list[int]) -> dict[str, Any]:
    """Kernel names, counts and durations from gpufl's device stream; the window ones separately."""
    names: dict[int, str] = {}
    kernels: list[tuple[int, int, int]] = []
    sizes: list[int] = []
    path = "unknown"
    lo, hi = window
    kinds = {
        "kernel": 0,
        "memcpy": 0,
        "memset": 0,
    }  # in the window, as torch.profiler's categories count them
    for p in sorted(log_dir.glob("*.device.*.log")):
        for line in p.read_bytes().splitlines():
            if line.startswith((b'{"type":"memcpy"', b'{"type":"memset"')):
                r = json.loads(line)
                if lo <= r["start_ns"] <= hi:
                    kinds[r["type"]] += 1
            elif line.startswith(b'{"type":"kernel"'):
                sizes.append(len(line))
                r = json.loads(line)
                kernels.append((r["launch_id"], r["start_ns"], r["end_ns"]))
            elif line.startswith(b'{"type":"dict"'):
                r = json.loads(line)
                if r.get("kind") == "launch":
                    names[r["id"]] = r["launch"]["name"]
            elif line.startswith(b'{"type":"notice"') and b"native_unavailable" in line:
                path = "cupti-python"
            elif line.startswith(b'{"type":"session_start"'):
                path = "native-or-python"
    durs: dict[str, list[int]] = defaultdict(list)
    for lid, s, e in kernels:
        if lo <= s <= hi:
            durs[names.get(lid, f"launch {lid}")].append(e - s)
    kinds["kernel"] = sum(len(v) for v in durs.values())
    return {
        "total": len(kernels),
        "bytes_per_kernel": statistics.median(sizes) if sizes else None,
        "window_total": sum(len(v) for v in durs.values()),
        "by_name": {n: {"count": len(v), "median_ns": statistics.median(v)} for n, v in durs.items()},
        "kinds": kinds,
        "path": path,
    }


KINDS = ("kernel", "memcpy", "memset")


def fidelity(gpufl: list[dict[str, Any]], torch: list[dict[str, Any]], steps: int) -> list[str]:
    """gpufl's kernels vs torch.profiler's over every round: a GPU's speed differs a little from process to
    process, so each side's value is the median over its rounds (processes) of the per-round figure."""
    med = statistics.median
    names = {n for t in torch for n, v in t["by_name"].items() if v["count"] >= 100}
    out = [
        "",
        f"Fidelity vs torch.profiler (CUDA activity only, same measured steps, separate processes; median over "
        f"{len(gpufl)} gpufl and {len(torch)} torch.profiler processes of each per-process figure)",
        f"kernels per step: gpufl {med(g['window_total'] for g in gpufl) / steps:.2f}  "
        f"torch.profiler {med(t['total'] for t in torch) / steps:.2f}",
        "per step, kind by kind (gpufl / torch.profiler): "
        + ", ".join(
            f"{k} {med(g['kinds'][k] for g in gpufl) / steps:.2f} / {med(t['kinds'][k] for t in torch) / steps:.2f}"
            for k in KINDS
            if all("kinds" in x for x in (*gpufl, *torch))
        ),
        f"{'kernel (≥100 instances in torch.profiler)':<72}{'n gpufl':>9}{'n torch':>9}{'med gpufl':>11}{'med torch':>11}{'diff':>8}",
    ]
    worst = 0.0
    rows = []
    for name in names:
        t_runs = [t["by_name"][name] for t in torch if name in t["by_name"]]
        g_runs = [g["by_name"][name] for g in gpufl if name in g["by_name"]]
        tn, tm = med(r["count"] for r in t_runs), med(r["median_ns"] for r in t_runs)
        if not g_runs:
            rows.append((tn, f"{name[:70]:<72}{'-':>9}{tn:>9.0f}  (name not found in gpufl's capture)"))
            worst = float("inf")
            continue
        gn, gm = med(r["count"] for r in g_runs), med(r["median_ns"] for r in g_runs)
        diff = gm / tm - 1
        worst = max(worst, abs(diff))
        rows.append((tn, f"{name[:70]:<72}{gn:>9.0f}{tn:>9.0f}{gm:>11.0f}{tm:>11.0f}{100 * diff:>+7.2f}%"))
    out += [line for _, line in sorted(rows, key=lambda r: -r[0])]
    out.append(f"largest median difference: {100 * worst:.2f}%")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="gpt")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--modes", default="none,gpufl,torch-profiler")
    ap.add_argument("--json", help="write all raw results here")
    ap.add_argument(
        "--timeout", type=float, default=900, help="seconds one run may take before it counts as failed"
    )
    args = ap.parse_args()
    # modes split on ";" when there is one (a mode's settings may hold commas: GPUFL_ENGINES=tracing,sass)
    modes = args.modes.split(";") if ";" in args.modes else args.modes.split(",")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    failed: dict[str, int] = {m: 0 for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for m in modes:
                # one mode's crash is a finding to report, not a reason to lose every other mode's numbers
                try:
                    res = run_once(args.workload, m, args.steps, Path(tmp), r, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                    failed[m] += 1
                    print(f"round {r} {m}: FAILED {e}", file=sys.stderr, flush=True)
                    continue
                results[m].append(res)
                print(f"round {r} {m}: {res['median_ms']:.3f} ms/step", file=sys.stderr, flush=True)
    for m in [m for m in modes if failed[m]]:
        print(f"{m}: {failed[m]} of {args.rounds} runs FAILED (their tracebacks above)")
    modes = [m for m in modes if results[m]]
    if not modes:
        raise SystemExit("every run failed")
    base = statistics.median(x["median_ms"] for x in results[modes[0]])
    per = f"{args.steps} steps" + (", 1000 iterations per step" if args.workload == "loop" else "")
    print(f"\n{args.workload}: {per}, {args.rounds} interleaved rounds, fresh process per mode")
    print(f"machine: {os.uname().nodename} {_gpu_name()}")
    print(
        f"{'mode':<40}{'median ms/step':>16}{'min–max':>20}{'overhead':>10}{'exit s':>9}{'kernels/run':>13}{'B/kernel':>10}"
    )
    for m in modes:
        meds = [x["median_ms"] for x in results[m]]
        med = statistics.median(meds)
        exit_s = statistics.median(x["exit_s"] for x in results[m])
        g = results[m][0]["gpufl"]
        kern = g["total"] if g else 0
        kb = g["bytes_per_kernel"] if g else None
        print(
            f"{m:<40}{med:>16.3f}{min(meds):>10.3f}–{max(meds):<9.3f}{100 * (med / base - 1):>+9.1f}%"
            f"{exit_s:>9.2f}{kern:>13}{(f'{kb:.0f}' if kb else '-'):>10}"
        )
    # Per round, each mode over that round's baseline process: the machine's speed drifts between rounds,
    # and a ratio inside one round (processes run back to back) cancels most of that drift.
    print(f"\n{'mode':<40}{'per-round ratio vs ' + modes[0] + ' (median, then each round)':<60}")
    for m in modes[1:]:
        base_by_round = {b["round"]: b["median_ms"] for b in results[modes[0]]}
        ratios = [
            x["median_ms"] / base_by_round[x["round"]] for x in results[m] if x["round"] in base_by_round
        ]
        if not ratios:
            continue
        each = " ".join(f"{r:.3f}" for r in ratios)
        print(f"{m:<40}{100 * (statistics.median(ratios) - 1):>+7.1f}%   {each}")
    # the launching thread's CPU time per step: leaves out the time the VM's vCPU was taken away
    metric_table(results, modes, "cpu_ms", "launching thread CPU ms/step", "{:.3f}")
    # its user-space instructions per step (where the PMU is exposed): does not drift with the machine's speed
    metric_table(results, modes, "instructions_per_step", "instructions/step", "{:,.0f}")
    ref = results.get("torch-profiler-cuda")
    mine = results.get("gpufl") or results.get("gpufl-stacks")
    if ref and mine and mine[0]["gpufl"]:
        print("\n".join(fidelity([x["gpufl"] for x in mine], [x["kernels"] for x in ref], args.steps)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def metric_table(
    results: dict[str, list[dict[str, Any]]], modes: list[str], key: str, title: str, fmt: str
) -> None:
    """Median and min–max of a per-process figure for each mode, vs the first mode (when it has one)."""
    vals = {m: [x[key] for x in results[m] if x.get(key)] for m in modes}
    if not vals.get(modes[0]):
        return
    base = statistics.median(vals[modes[0]])
    print(f"\n{'mode':<40}{title:>30}{'min–max':>24}{'vs ' + modes[0]:>12}")
    for m in modes:
        if vals[m]:
            v = statistics.median(vals[m])
            span = f"{fmt.format(min(vals[m]))}–{fmt.format(max(vals[m]))}"
            print(f"{m:<40}{fmt.format(v):>30}{span:>24}{100 * (v / base - 1):>+11.1f}%")


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return "no GPU"


if __name__ == "__main__":
    main()
