"""Where does SASS metrics patching spend its time on a real model? (#19: the GPT loop under
GPUFL_ENGINES=...,sass stalled > 75 s in its first cuBLAS launch.)

Times each first call of a list of torch ops (a custom elementwise kernel, then cuBLAS GEMMs of several
shapes, then a second call of each) under gpufl with the given engines and one SASS range for the session,
printing each as it finishes — so a run killed by `timeout` still shows how far it got.

    GPUFL_DEEP=session python3 scripts/probes/sass_gemm.py --engines sass [--log-dir DIR]
"""

from __future__ import annotations

import argparse
import time

import torch

import gpufl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="sass")
    ap.add_argument("--log-dir", default="/tmp/sass_gemm")
    ap.add_argument("--no-gpufl", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    x = torch.randn(1024, 1024, device="cuda")
    torch.cuda.synchronize()
    if not args.no_gpufl:
        gpufl.init(app_name="sass_gemm", log_dir=args.log_dir, engines=args.engines)
    print(f"init done {time.perf_counter() - t0:.2f} s", flush=True)
    h = x.half()
    ops = [
        ("relu fp32", lambda: torch.relu(x)),
        ("gemm fp32 1024", lambda: x @ x),
        ("gemm fp16 1024", lambda: h @ h),
        (
            "gemm fp16 4096x512",
            lambda: torch.randn(4096, 512, device="cuda", dtype=torch.half) @ h[:512, :512],
        ),
        ("linear fp16 (cublasLt)", lambda: torch.nn.functional.linear(h, h, h[0])),
    ]
    for rep in range(2):
        for name, op in ops:
            t = time.perf_counter()
            op()
            torch.cuda.synchronize()
            print(f"{'first' if rep == 0 else 'again'} {name}: {time.perf_counter() - t:.3f} s", flush=True)
    t = time.perf_counter()
    if not args.no_gpufl:
        gpufl.shutdown()
    print(f"shutdown {time.perf_counter() - t:.2f} s; total {time.perf_counter() - t0:.2f} s", flush=True)


if __name__ == "__main__":
    main()
