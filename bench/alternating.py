"""In-process A/B in alternating blocks: the protocol for costs smaller than a fresh process's drift.

On the lent VMs a launch-bound loop's step time moves by 5–10 % from one process to the next
(docs/benchmarks.md), twenty times the 0.5 % bars of #20 and #21. In one process the drift is slow next to a
block of a few seconds, so a feature switched on and off every block, with each adjacent on/off pair giving a
ratio of median step times, cancels it. Used by bench/gpm_overhead.py (the GPM reader on/off) and
bench/capture_overhead.py (a gpufl session open/closed).

Workloads (a step each): ``gpt`` the launch-bound GPT training step (#21's loop), ``launch`` 500 tiny kernel
launches and one synchronize (launch-bound without a model's noise), ``spin`` a fixed pure-Python computation
of ~10 ms with no GPU (what a thread of ours can take from the program's thread: the GIL).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "workloads"))

WORKLOADS = ("gpt", "spin", "launch")


def make_step(workload: str) -> Callable[[], None]:
    """One step of ``workload``, warmed up (torch is imported only for the GPU workloads)."""
    if workload == "spin":

        def spin_step() -> None:
            acc = 0
            for i in range(150_000):
                acc += i * i % 7
            if acc < 0:
                raise AssertionError

        return spin_step
    import torch

    if workload == "launch":
        tiny = torch.zeros(16, device="cuda")

        def launch_step() -> None:
            for _ in range(500):
                tiny.add_(1.0)
            torch.cuda.synchronize()

        step = launch_step
    else:
        import torch.nn.functional as F
        from gpt_train import MiniGPT

        torch.manual_seed(0)
        model = MiniGPT().cuda()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
        scaler = torch.amp.GradScaler()
        data = torch.randint(0, 8192, (16, 257), device="cuda")

        def gpt_step() -> None:
            with torch.autocast("cuda", dtype=torch.float16):
                logits = model(data[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            torch.cuda.synchronize()

        step = gpt_step
    for _ in range(20):
        step()
    return step


def time_block(step: Callable[[], None], seconds: float) -> dict[str, Any]:
    """Steps for ``seconds``: the median step time and the launching thread's own CPU per step (which leaves
    out time it waited — on the GIL, a lock, the GPU — so a wall-time cost it does not share is contention)."""
    times, cpu = [], []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        s0, c0 = time.perf_counter(), time.thread_time()
        step()
        times.append(time.perf_counter() - s0)
        cpu.append(time.thread_time() - c0)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "steps": len(times),
        "launch_cpu_ms": 1e3 * statistics.median(cpu),
        "wall_s": time.monotonic() - t0,
    }


def pair_ratios(blocks: list[dict[str, Any]], key: str, flag: str) -> list[float]:
    """on/off ratios of ``key`` over adjacent blocks (0–1, 2–3, …), whichever of the two had ``flag`` on."""
    out = []
    for i in range(0, len(blocks) - 1, 2):
        a, b = blocks[i], blocks[i + 1]
        if a[flag] == b[flag]:
            raise ValueError(f"blocks {i} and {i + 1} are not an on/off pair")
        on, off = (a, b) if a[flag] else (b, a)
        out.append(on[key] / off[key])
    return out


def mean_interval(values: list[float], level: float = 0.95, draws: int = 2000) -> tuple[float, float]:
    """A bootstrap interval of the mean (seeded: the same pairs print the same interval)."""
    rng = random.Random(0)
    boots = sorted(statistics.mean(rng.choices(values, k=len(values))) for _ in range(draws))
    cut = int(draws * (1 - level) / 2)
    return boots[cut], boots[draws - 1 - cut]


def pair_stats(blocks: list[dict[str, Any]], flag: str) -> dict[str, Any]:
    """What both benches report of their pairs: step-time ratios on/off (median, mean, its interval), the
    median step on and off, and the launching thread's CPU ratio."""
    pairs = pair_ratios(blocks, "median_ms", flag)
    lo, hi = mean_interval(pairs)
    return {
        "pairs": len(pairs),
        "ratio_median": statistics.median(pairs),
        "ratio_mean": statistics.mean(pairs),
        "ratio_mean_95": [lo, hi],
        "step_ms_on": statistics.median(b["median_ms"] for b in blocks if b[flag]),
        "step_ms_off": statistics.median(b["median_ms"] for b in blocks if not b[flag]),
        "launch_thread_cpu_ratio_median": statistics.median(pair_ratios(blocks, "launch_cpu_ms", flag)),
        "ratios": pairs,
    }


def summary_line(pairs: list[float]) -> str:
    lo, hi = mean_interval(pairs)
    return (
        f"{len(pairs):>6}{100 * (statistics.median(pairs) - 1):>+14.2f}%{100 * (statistics.mean(pairs) - 1):>+8.2f}%"
        f"{100 * (lo - 1):>+14.2f}% … {100 * (hi - 1):+.2f}%"
    )


HEADER = f"{'pairs':>6}{'on/off median':>15}{'mean':>9}{'95% interval of the mean':>28}"
