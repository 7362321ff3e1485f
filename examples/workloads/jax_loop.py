"""A JAX/XLA launch-bound loop: a jitted 2048² matmul + tanh, ``--iters`` per step (#21's framework case).

    python examples/workloads/jax_loop.py --steps 20 --iters 1000 --mode none
    python -m gpufl run --log-dir ./gpufl-logs -- python examples/workloads/jax_loop.py --mode none

XLA opens NVTX ranges around its thunks (issue #21 counted ~30 per iteration on the H200): under ``gpufl run``
they reach gpufl's NVTX path, which is what this workload measures. The program itself never imports gpufl
(bench/client_overhead.py's ``gpufl-run`` mode starts it under ``gpufl run``). A step is ``--iters`` iterations
between ``block_until_ready`` calls.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from harness import Run, arguments


def main() -> int:
    args = arguments(__doc__ or "", steps=20, warmup=3, app="jax_loop", iters=1000)
    run = Run(args)
    key = jax.random.PRNGKey(0)
    a = jax.random.normal(key, (2048, 2048), dtype=jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (2048, 2048), dtype=jnp.float32) / 2048

    @jax.jit
    def f(x: jax.Array) -> jax.Array:
        return jnp.tanh(x @ b)

    x = f(a)
    x.block_until_ready()
    state = {"x": x}

    def sync() -> None:
        state["x"].block_until_ready()

    for _ in run.steps(sync):
        y = state["x"]
        for _ in range(args.iters):
            y = f(y)
        state["x"] = y
    res = run.finish(iters_per_step=args.iters)
    print(f"{res['median_ms'] * 1000 / args.iters:.2f} us/iter", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
