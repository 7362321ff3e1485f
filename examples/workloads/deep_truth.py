"""Kernels of known behaviour for checking the deep engines against Nsight Compute (issue #19).

    python examples/workloads/deep_truth.py [--kernels uniform,parity,...] [--launches N] [--gpufl --engines E]

Builds ``cuda/deep_truth.cu`` with nvcc (``-lineinfo``, once, into ``--build-dir``) and runs each kernel
``--launches`` times inside ``gpufl.scope(<kernel>, deep=True)`` when ``--gpufl`` is given, so every scope holds one
kernel. Without ``--gpufl`` it runs bare, which is how ``ncu`` measures the same kernels:

    ncu --clock-control none --metrics smsp__thread_inst_executed_per_inst_executed.ratio \\
        python examples/workloads/deep_truth.py --launches 1
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
from pathlib import Path

KERNELS = ["uniform", "parity", "quad", "early_exit", "mem_bound", "compute_bound"]
SOURCE = Path(__file__).resolve().parent / "cuda" / "deep_truth.cu"


def build(build_dir: Path, arch: str) -> Path:
    lib = build_dir / f"libdeep_truth_{arch}.so"
    if not lib.exists() or lib.stat().st_mtime < SOURCE.stat().st_mtime:
        build_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "nvcc",
            "-O3",
            "-lineinfo",
            f"-arch={arch}",
            "-shared",
            "-Xcompiler",
            "-fPIC",
            str(SOURCE),
            "-o",
            str(lib),
        ]
        subprocess.run(cmd, check=True)
    return lib


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", default=",".join(KERNELS))
    ap.add_argument("--launches", type=int, default=1)
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--build-dir", default=os.environ.get("DEEP_TRUTH_BUILD", "/tmp/deep_truth"))
    ap.add_argument("--floats", type=int, default=1 << 26, help="mem_bound's array length (floats)")
    ap.add_argument("--gpufl", action="store_true")
    ap.add_argument("--engines", default=None, help="gpufl engines, e.g. tracing,sass or pc_sampling")
    ap.add_argument("--log-dir", default="./gpufl-logs")
    ap.add_argument("--app-name", default="deep_truth")
    args = ap.parse_args()
    lib = ctypes.CDLL(str(build(Path(args.build_dir), args.arch)))
    lib.deep_truth_setup.argtypes = [ctypes.c_size_t]
    lib.deep_truth_run.argtypes = [ctypes.c_int, ctypes.c_int]
    gpufl = None
    if args.gpufl:
        import gpufl as _g

        gpufl = _g
        opts = {} if args.engines is None else {"engines": args.engines}
        gpufl.init(app_name=args.app_name, log_dir=args.log_dir, stacks=True, **opts)
    rc = lib.deep_truth_setup(args.floats)
    if rc:
        raise SystemExit(f"deep_truth_setup: CUDA error {rc}")
    for name in args.kernels.split(","):
        kind = KERNELS.index(name)
        if gpufl is not None:
            with gpufl.scope(name, deep=True):
                rc = lib.deep_truth_run(kind, args.launches)
        else:
            rc = lib.deep_truth_run(kind, args.launches)
        if rc:
            raise SystemExit(f"{name}: CUDA error {rc}")
        print(f"{name}: {args.launches} launches", file=sys.stderr, flush=True)
    if gpufl is not None:
        gpufl.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
