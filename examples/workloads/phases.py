"""Three deliberate phases in each step, for the insights' launch-bound and synchronisation rules (issue #27).

``launch_bound``: many tiny elementwise kernels on a 4,096-element tensor, each a few microseconds of GPU work
behind a launch that costs more on the host, so the GPU waits between kernels. ``gpu_bound``: a few large bf16
matrix multiplications queued back to back, so the GPU never waits for the host. ``sync_bound`` (with
``--syncs N``): N times a small matmul, ``torch.cuda.synchronize()``, then ~0.3 ms of host work, so the GPU
sits idle after every synchronisation until the host queues more. The committed capture
(examples/captures/phases) was recorded with this script on the lent GPU.

    python examples/workloads/phases.py --steps 4 --warmup 1 --log-dir ./gpufl-logs
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from harness import Run, arguments


def host_work(ns: int) -> None:
    """Busy host work for about ``ns`` nanoseconds (what a loop does with a result it synchronised for)."""
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def main() -> int:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--tiny", type=int, default=1000, help="tiny kernels per step (default 1000)")
        ap.add_argument("--matmuls", type=int, default=20, help="large matmuls per step (default 20)")
        ap.add_argument("--n", type=int, default=8192, help="matrix side of the large matmuls (default 8192)")
        ap.add_argument(
            "--syncs", type=int, default=0, help="synchronised small matmuls per step (default 0)"
        )

    args = arguments(__doc__ or "", steps=4, warmup=1, app="phases", extra=options)
    run = Run(args)
    dev = "cuda"
    small = torch.zeros(4096, device=dev)
    a = torch.randn(args.n, args.n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(args.n, args.n, device=dev, dtype=torch.bfloat16)
    small_m = torch.randn(256, 256, device=dev)
    m = small_m
    for _ in run.steps(torch.cuda.synchronize):
        with run.scope("step"):
            with run.scope("launch_bound"):
                for _ in range(args.tiny):
                    small.add_(1.0)
                torch.cuda.synchronize()
            with run.scope("gpu_bound"):
                for _ in range(args.matmuls):
                    c = a @ b
                torch.cuda.synchronize()
            if args.syncs:
                with run.scope("sync_bound"):
                    for _ in range(args.syncs):
                        m = small_m @ small_m
                        torch.cuda.synchronize()
                        host_work(300_000)
    run.finish(check=float(small[0]), c=float(c[0, 0]), m=float(m[0, 0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
