"""torch.compile(mode="reduce-overhead") — CUDA graphs — on the GPT model's forward pass (#21's framework case).

    python examples/workloads/compiled_loop.py --steps 20 --iters 100 --mode none

Each step replays the compiled graph ``--iters`` times between device synchronisations; the kernels run from
graph replays, which gpufl records as graph-launched kernels. Warm-up steps compile and capture the graph.
Modes: see harness.py (``torch-profiler-cuda`` gives the reference kernel count per step).
"""

from __future__ import annotations

import sys

import torch
from gpt_train import MiniGPT
from harness import Run, arguments


def main() -> int:
    args = arguments(__doc__ or "", steps=20, warmup=3, app="compiled_loop", iters=100)
    run = Run(args)
    torch.manual_seed(0)
    model = MiniGPT().cuda().eval().half()
    step = torch.compile(model, mode="reduce-overhead")
    data = torch.randint(0, 8192, (16, 256), device="cuda")
    with torch.no_grad():
        for _ in run.steps(torch.cuda.synchronize):
            with run.scope("step"):
                for _ in range(args.iters):
                    out = step(data)
                    out = out.clone()  # a graph's outputs are overwritten by its next replay
    res = run.finish(iters_per_step=args.iters)
    print(f"{res['median_ms'] * 1000 / args.iters:.2f} us/iter", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
