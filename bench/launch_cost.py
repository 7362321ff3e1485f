"""What tracing costs per kernel launch, in nanoseconds of the launching thread, on a CPU-bound launch loop.

The GPT-style bench steps are 15–25 ms with a ±10 % spread between processes on the lent machines, which
hides the 1–2 % this path aims at. Here each block is thousands of back-to-back launches of a tiny kernel
(the GPU idles, the CPU is the bottleneck), so the block time divided by the launch count is the launching
thread's cost per launch. Each mode runs in a fresh process, modes interleaved over several rounds: switching
CUPTI parts off inside a running process does not take their cost away (a process whose callbacks and
activity kinds were all switched off again still paid ~1 µs per launch over one that never had gpufl), so
only whole processes compare. The modes use the native path's diagnostic switches (``config.NativeOptions``).

Two launch paths: ``add`` (``x.add_(1)`` on one element: the runtime's cudaLaunchKernel) and ``mm``
(a 64×64 fp16 matmul: cuBLASLt, which launches through the driver API).

    python bench/launch_cost.py [--rounds 5] [--cycles 10] [--launches 10000]

Prints ns per launch per configuration and the difference to the bare processes; ``--json`` keeps it all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples/workloads"))
from harness import InstructionCounter

# Fresh process per mode; the environment switches are the native path's diagnostics (see config.NativeOptions).
MODES: dict[str, dict[str, str] | None] = {
    "bare (no gpufl)": None,
    "gpufl (driver callbacks)": {},
    "gpufl, no periodic flush": {"GPUFL_NATIVE_FLUSH_MS": "0"},
    "activity only, no subscriber": {"GPUFL_NATIVE_SUBSCRIBE": "0"},
    "activity only, no subscriber, no periodic flush": {
        "GPUFL_NATIVE_SUBSCRIBE": "0",
        "GPUFL_NATIVE_FLUSH_MS": "0",
    },
    "subscriber, nothing enabled": {
        "GPUFL_NATIVE_DOMAINS": "none",
        "GPUFL_NATIVE_NVTX": "0",
        "GPUFL_NATIVE_ACTIVITY": "0",
    },
}


def child(args: argparse.Namespace) -> None:
    import torch

    x = torch.zeros(1, device="cuda")
    a = torch.randn(64, 64, device="cuda", dtype=torch.float16)
    b = torch.randn(64, 64, device="cuda", dtype=torch.float16)
    c = torch.empty(64, 64, device="cuda", dtype=torch.float16)
    loops = {"add": lambda: x.add_(1.0), "mm": lambda: torch.mm(a, b, out=c)}

    counter = InstructionCounter()
    instr: dict[str, list[float]] = {w: [] for w in loops}

    def block(fn, n: int, w: str = "") -> float:  # type: ignore[no-untyped-def]
        torch.cuda.synchronize()
        i0 = counter.read()
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        dt = (time.perf_counter_ns() - t0) / n
        i1 = counter.read()
        if w and i0 is not None and i1 is not None:
            instr[w].append((i1 - i0) / n)
        return dt

    native = None
    if args.child != "bare (no gpufl)":
        import gpufl
        from gpufl.client import _native  # type: ignore[attr-defined]

        gpufl.init(app_name="launch-cost", log_dir=tempfile.mkdtemp(), engines="tracing")
        native = _native
    for fn in loops.values():
        block(fn, 2000)  # warm-up: cuBLAS handles, allocator, code paths
    res: dict[str, list[float]] = {w: [] for w in loops}
    for _ in range(args.cycles):
        for w, fn in loops.items():
            block(fn, 200)  # settle after switching loops
            res[w].append(block(fn, args.launches, w))
    out: dict[str, object] = {"mode": args.child, "ns_per_launch": res, "instructions_per_launch": instr}
    if native is not None:
        import gpufl

        gpufl.shutdown()
        out["stats"] = native.stats()
    print("RESULT " + json.dumps(out), flush=True)


def probe() -> dict[str, object]:
    info: dict[str, object] = {"node": os.uname().nodename, "cpus": os.cpu_count()}
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            info["clocksource"] = f.read().strip()
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    n = 200_000
    t0 = time.perf_counter_ns()
    for _ in range(n):
        time.clock_gettime_ns(time.CLOCK_REALTIME)
    info["python_clock_gettime_ns"] = round((time.perf_counter_ns() - t0) / n, 1)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--launches", type=int, default=10000)
    ap.add_argument("--json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    info = probe()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    base = [sys.executable, __file__, "--cycles", str(args.cycles), "--launches", str(args.launches)]
    runs: list[dict] = []  # type: ignore[type-arg]
    for _ in range(args.rounds):
        for mode, env in MODES.items():
            p = subprocess.run(
                [*base, "--child", mode],
                capture_output=True,
                text=True,
                timeout=600,
                env={**os.environ, **(env or {})},
            )
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"{mode}: failed (exit {p.returncode})\n{p.stderr[-2000:]}", flush=True)
                continue
            runs.append(json.loads(line[7:]))
    workloads = ["add", "mm"]
    print(f"\nns per launch: per process the median of {args.cycles} blocks of {args.launches} launches;")
    print(f"median and min of those over {args.rounds} processes per mode; Δ = difference of medians to bare")
    print(
        f"{'mode':<50}"
        + "".join(f"{w + ' median':>12}{'min':>8}{'Δ':>8}" for w in workloads)
        + "   kernels joined"
    )
    per_mode: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for w in workloads:
            per_mode.setdefault(r["mode"], {}).setdefault(w, []).append(
                statistics.median(r["ns_per_launch"][w])
            )
    bare = {
        w: statistics.median(per_mode.get("bare (no gpufl)", {}).get(w, [float("nan")])) for w in workloads
    }
    for mode in MODES:
        if mode not in per_mode:
            continue
        cells = ""
        for w in workloads:
            v = per_mode[mode][w]
            cells += f"{statistics.median(v):>12.0f}{min(v):>8.0f}{statistics.median(v) - bare[w]:>+8.0f}"
        joined = [
            (r["stats"]["matched"], r["stats"]["kernels"]) for r in runs if r["mode"] == mode and "stats" in r
        ]
        jtxt = f"   {sum(j for j, _ in joined)}/{sum(k for _, k in joined)}" if joined else ""
        print(f"{mode:<50}{cells}{jtxt}")
    ins: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for w in workloads:
            v = r.get("instructions_per_launch", {}).get(w)
            if v:
                ins.setdefault(r["mode"], {}).setdefault(w, []).append(statistics.median(v))
    if ins:
        print(
            "\nuser-space instructions per launch on the launching thread (perf counter; steady where time drifts)"
        )
        print(f"{'mode':<50}" + "".join(f"{w + ' median':>12}{'min–max':>16}{'Δ':>8}" for w in workloads))
        ib = {w: statistics.median(ins.get("bare (no gpufl)", {}).get(w, [float("nan")])) for w in workloads}
        for mode in MODES:
            if mode not in ins:
                continue
            cells = ""
            for w in workloads:
                v = ins[mode].get(w, [float("nan")])
                cells += f"{statistics.median(v):>12.0f}{f'{min(v):.0f}–{max(v):.0f}':>16}{statistics.median(v) - ib[w]:>+8.0f}"
            print(f"{mode:<50}{cells}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "runs": runs}, f)


if __name__ == "__main__":
    main()
