"""A launch-bound loop: 1024² fp32 matmul + relu, two kernels per iteration — the overhead bench's first case.

    python examples/workloads/matmul_loop.py --steps 20 --iters 1000 --mode gpufl --log-dir ./gpufl-logs

A step is ``--iters`` iterations between device synchronisations; the bench reads µs per iteration from the
median step. Modes: see harness.py.
"""

from __future__ import annotations

import sys

import torch
from harness import Run, arguments


def main() -> int:
    args = arguments(__doc__ or "", steps=20, warmup=2, app="matmul_loop", iters=1000)
    iters = args.iters
    run = Run(args)
    a = torch.randn(1024, 1024, device="cuda")
    b = torch.randn(1024, 1024, device="cuda")
    for _ in run.steps(torch.cuda.synchronize):
        with run.scope("step"):
            for _ in range(iters):
                torch.relu(a @ b)
    res = run.finish(iters_per_step=iters)
    print(f"{res['median_ms'] * 1000 / iters:.2f} us/iter", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
