"""Known GPU activity for checking GPU-activity metrics (NVML GPM) against Nsight Compute: phases of
``--seconds`` each, the GPU kept saturated by one kind of kernel.

    python examples/workloads/gpu_activity.py --phases idle,memory,gemm --seconds 4 [--gpufl --log-dir D]

- ``idle``: nothing on the GPU.
- ``memory``: an elementwise kernel over 1 GiB (``torch.mul(x, 2, out=y)``: read 1 GiB, write 1 GiB) —
  DRAM-bound, no tensor pipes. (Not ``y.copy_(x)``: that is a device-to-device memcpy, no kernel for
  Nsight Compute to measure.)
- ``gemm``: bf16 8192² matmuls — tensor pipes busy, DRAM mostly idle.
- ``tiny``: one-block kernels back to back (``x.add_(1)`` on 1,024 floats) — NVML's utilisation reads
  "busy" (a kernel is running most of the time) while almost every SM is idle.

With ``--iters N`` each busy phase runs N kernels instead of a duration (for ``ncu --launch-count``).
With ``--gpufl`` the run is recorded (``gpufl.scope`` per phase, so phases line up with the series).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def phase(kind: str, seconds: float, iters: int | None) -> int:
    if kind == "idle":
        time.sleep(seconds)
        return 0
    if kind == "memory":
        x = torch.empty(1 << 28, dtype=torch.float32, device="cuda").fill_(1.0)  # 1 GiB
        y = torch.empty_like(x)
        step = lambda: torch.mul(x, 2.0, out=y)  # noqa: E731
    elif kind == "gemm":
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        step = lambda: a @ b  # noqa: E731
    elif kind == "tiny":
        t = torch.zeros(1024, device="cuda")
        step = lambda: t.add_(1.0)  # noqa: E731
    else:
        raise SystemExit(f"unknown phase {kind!r}")
    torch.cuda.synchronize()
    n = 0
    t_end = time.monotonic() + seconds
    while (iters is not None and n < iters) or (iters is None and time.monotonic() < t_end):
        for _ in range(256 if kind == "tiny" else 8):  # queue a few at a time: the GPU never waits on Python
            step()
            n += 1
        torch.cuda.synchronize()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phases", default="idle,memory,gemm")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--gpufl", action="store_true")
    ap.add_argument("--log-dir", default="./gpufl-logs")
    ap.add_argument("--app-name", default="gpu_activity")
    ap.add_argument("--interval", type=float, default=None, help="system sampling interval, seconds")
    args = ap.parse_args()
    torch.cuda.init()
    gpufl = None
    if args.gpufl:
        import gpufl as _g

        gpufl = _g
        opts = {} if args.interval is None else {"system_interval_s": args.interval}
        gpufl.init(app_name=args.app_name, log_dir=args.log_dir, **opts)
    for kind in args.phases.split(","):
        t0 = time.time_ns()
        if gpufl is not None:
            with gpufl.scope(f"phase:{kind}"):
                n = phase(kind, args.seconds, args.iters)
        else:
            n = phase(kind, args.seconds, args.iters)
        print(f"phase {kind}: {n} kernels, {t0} .. {time.time_ns()} ns", file=sys.stderr, flush=True)
    if gpufl is not None:
        gpufl.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
