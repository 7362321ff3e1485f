"""Client overhead on a GPU: no profiler vs gpufl vs torch.profiler on the GPT-style training run.

A fresh process per mode, modes interleaved for N rounds (these machines are noisy: compare within one
run), median and min–max of the per-run median step time, time spent at exit, bytes per kernel record.

    python bench/client_overhead.py --rounds 5 --steps 100 [--modes none,gpufl,torch-profiler]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = ROOT / "examples/workloads/gpt_train.py"


def run_once(mode: str, steps: int, log_root: Path, idx: int) -> dict:
    log_dir = log_root / f"{mode}-{idx}"
    result = log_root / f"{mode}-{idx}.json"
    cmd = [sys.executable, str(WORKLOAD), "--mode", mode, "--steps", str(steps), "--log-dir", str(log_dir)]
    cmd += ["--result", str(result)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(result.read_text())
    kernels = 0
    device_bytes = 0
    for p in log_dir.glob("*.device.*.log") if log_dir.exists() else []:
        data = p.read_bytes()
        device_bytes += len(data)
        for line in data.splitlines():
            if line.startswith(b'{"type":"kernel"'):
                kernels += 1
    res["kernels"] = kernels
    res["kernel_line_bytes"] = _kernel_line_bytes(log_dir) if kernels else None
    return res


def _kernel_line_bytes(log_dir: Path) -> float:
    sizes = [
        len(line)
        for p in log_dir.glob("*.device.*.log")
        for line in p.read_bytes().splitlines()
        if line.startswith(b'{"type":"kernel"')
    ]
    return statistics.median(sizes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--modes", default="none,gpufl,torch-profiler")
    ap.add_argument("--json", help="write all raw results here")
    args = ap.parse_args()
    modes = args.modes.split(",")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for m in modes:
                results[m].append(run_once(m, args.steps, Path(tmp), r))
                print(
                    f"round {r} {m}: {results[m][-1]['median_ms']:.2f} ms/step", file=sys.stderr, flush=True
                )
    base = statistics.median(x["median_ms"] for x in results[modes[0]])
    print(f"\nGPT-style run, {args.steps} steps, {args.rounds} interleaved rounds, fresh process per mode")
    print(f"machine: {os.uname().nodename} {_gpu_name()}")
    print(
        f"{'mode':<16}{'median ms/step':>16}{'min–max':>18}{'overhead':>10}{'exit s':>9}{'kernels/run':>13}{'B/kernel':>10}"
    )
    for m in modes:
        meds = [x["median_ms"] for x in results[m]]
        med = statistics.median(meds)
        exit_s = statistics.median(x["exit_s"] for x in results[m])
        kern = results[m][0]["kernels"]
        kb = results[m][0]["kernel_line_bytes"]
        print(
            f"{m:<16}{med:>16.2f}{min(meds):>9.2f}–{max(meds):<8.2f}{100 * (med / base - 1):>+9.1f}%"
            f"{exit_s:>9.2f}{kern:>13}{(f'{kb:.0f}' if kb else '-'):>10}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


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
