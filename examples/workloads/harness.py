"""What the overhead bench needs from a workload, shared by gpt_train.py and matmul_loop.py.

Modes (one per process: the bench starts a fresh one each time):
  none               no profiler
  gpufl              gpufl.init() — the native record path where built, else cupti-python
  gpufl-stacks       the same with a Python call stack on every launch
  gpufl-python       the cupti-python path (GPUFL_NATIVE=0), for comparison
  torch-profiler     torch.profiler, CPU + CUDA activities, its post-processing paid at exit
  torch-profiler-cuda  torch.profiler, CUDA activity only, over the measured steps: the fidelity reference
                       (kernels per step and per-name durations, written to the result)
  gpufl-run          no profiler inside the program: bench/client_overhead.py starts it under ``gpufl run``
                     (an unmodified program, as a user would run JAX or a compiled model)
  seed-trace, seed-pc-sampling, seed-sass
                     the seed project's published client (``gpufl==1.2.1``, which shares our package name:
                     install it apart and put only it on PYTHONPATH, e.g. ``seed-sass@PYTHONPATH=/tmp/seed``)
                     with its Trace, PcSampling or SassMetrics engine — for #19's side-by-side costs
The measured window (after warm-up) is written to the result as CLOCK_REALTIME ns so the bench can compare
gpufl's kernels in it with torch.profiler's.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

MODES = [
    "none",
    "gpufl",
    "gpufl-stacks",
    "gpufl-python",
    "gpufl-activity-only",  # diagnostics: the native path without launch callbacks
    "gpufl-callbacks-only",  # diagnostics: the native path without activity records
    "torch-profiler",
    "torch-profiler-cuda",
    "gpufl-run",
    "seed-trace",
    "seed-pc-sampling",
    "seed-sass",
]
SEED_ENGINES = {"seed-trace": "Trace", "seed-pc-sampling": "PcSampling", "seed-sass": "SassMetrics"}


def arguments(
    description: str,
    steps: int,
    warmup: int,
    app: str,
    iters: int | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(ap)  # the workload's own options (model shape, dtype)
    if iters is not None:
        ap.add_argument("--iters", type=int, default=iters, help="iterations per step")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--mode", choices=MODES, default="gpufl")
    ap.add_argument("--log-dir", default="./gpufl-logs")
    ap.add_argument("--app-name", default=app)
    ap.add_argument(
        "--result", help="write timings (and, for torch-profiler-cuda, kernel stats) here as JSON"
    )
    return ap.parse_args()


class InstructionCounter:
    """User-space instructions retired by the creating thread (``perf_event_open``), a noise-free companion
    to step times on machines whose speed drifts: unlike time, it does not move with the host's load or the
    CPU's clock. ``read()`` is None where the PMU is not exposed (then only times are reported)."""

    def __init__(self) -> None:
        self.fd = -1
        try:
            attr = bytearray(64)  # struct perf_event_attr, PERF_ATTR_SIZE_VER0
            # type HARDWARE, size, config INSTRUCTIONS; flags: exclude_kernel | exclude_hv
            struct.pack_into("IIQ", attr, 0, 0, 64, 1)
            struct.pack_into("Q", attr, 40, (1 << 5) | (1 << 6))
            buf = ctypes.create_string_buffer(bytes(attr), 64)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            fd = libc.syscall(298, buf, 0, -1, -1, 0)  # __NR_perf_event_open on x86_64
            self.fd = int(fd) if fd >= 0 else -1
        except (OSError, AttributeError, struct.error):
            self.fd = -1

    def read(self) -> int | None:
        if self.fd < 0:
            return None
        return int.from_bytes(os.read(self.fd, 8), "little")


class Run:
    """Starts the chosen profiler, times steps, and writes the result."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.gpufl: Any = None
        self.seed = False
        if args.mode == "gpufl-python":
            os.environ["GPUFL_NATIVE"] = "0"
        if args.mode == "gpufl-activity-only":
            os.environ["GPUFL_NATIVE_CALLBACKS"] = "0"
        if args.mode == "gpufl-callbacks-only":
            os.environ["GPUFL_NATIVE_ACTIVITY"] = "0"
        if args.mode.startswith("gpufl"):
            import gpufl

            self.gpufl = gpufl
            gpufl.init(app_name=args.app_name, log_dir=args.log_dir, stacks=args.mode == "gpufl-stacks")
        if args.mode in SEED_ENGINES:
            import gpufl

            self.gpufl = gpufl
            self.seed = True
            # its own log layout, in a folder of its own so nothing reads it as ours
            seed_dir = args.log_dir.rstrip("/") + "-seed"
            os.makedirs(seed_dir, exist_ok=True)
            engine = getattr(gpufl.ProfilingEngine, SEED_ENGINES[args.mode])
            gpufl.init(args.app_name, os.path.join(seed_dir, args.app_name), profiling_engine=engine)
        self.prof: Any = None
        if args.mode == "torch-profiler":
            from torch.profiler import ProfilerActivity, profile

            self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self.prof.__enter__()
        self.times: list[float] = []
        self.window: list[int] = []
        self.counter = InstructionCounter()
        self.instructions: list[int] = []
        self.cpu: list[float] = []

    def scope(self, name: str) -> contextlib.AbstractContextManager[object]:
        if self.seed:
            return self.gpufl.Scope(name)  # type: ignore[no-any-return]
        return self.gpufl.scope(name) if self.gpufl else contextlib.nullcontext()

    def steps(self, sync: Callable[[], None]) -> Iterator[int]:
        """Yields step numbers; times each measured step between device synchronisations."""
        a = self.args
        for step in range(a.warmup + a.steps):
            if step == a.warmup:
                sync()
                self.window.append(time.time_ns())
                if a.mode == "torch-profiler-cuda":
                    from torch.profiler import ProfilerActivity, profile

                    self.prof = profile(activities=[ProfilerActivity.CUDA])
                    self.prof.__enter__()
            sync()
            i0 = self.counter.read()
            c0 = time.thread_time()
            t0 = time.perf_counter()
            yield step
            sync()
            if os.environ.get("GPUFL_WORKLOAD_VERBOSE"):  # progress while diagnosing a slow engine
                print(f"step {step}: {1e3 * (time.perf_counter() - t0):.1f} ms", file=sys.stderr, flush=True)
            if step >= a.warmup:
                self.times.append(time.perf_counter() - t0)
                # the launching thread's CPU time: unlike wall time, it leaves out the time the VM's vCPU
                # was taken away (these leases' wall-clock speed drifts)
                self.cpu.append(time.thread_time() - c0)
                i1 = self.counter.read()
                if i0 is not None and i1 is not None:
                    self.instructions.append(i1 - i0)
        self.window.append(time.time_ns())

    def finish(self, **extra: Any) -> dict[str, Any]:
        t_exit = time.perf_counter()
        kernels: dict[str, Any] | None = None
        if self.prof is not None:
            self.prof.__exit__(None, None, None)
            if self.args.mode == "torch-profiler-cuda":
                kernels = _kernel_stats(self.prof)
            else:
                self.prof.key_averages()  # the post-processing a user pays for to see anything
        if self.gpufl is not None:
            self.gpufl.shutdown()
        exit_s = time.perf_counter() - t_exit
        times = sorted(self.times)
        res: dict[str, Any] = {
            "mode": self.args.mode,
            "steps": len(times),
            "median_ms": 1000 * times[len(times) // 2],
            "min_ms": 1000 * times[0],
            "max_ms": 1000 * times[-1],
            "exit_s": exit_s,
            "instructions_per_step": statistics.median(self.instructions) if self.instructions else None,
            "cpu_ms": 1000 * statistics.median(self.cpu) if self.cpu else None,
            "window_ns": self.window,
            **extra,
        }
        if kernels is not None:
            res["kernels"] = kernels
        print(json.dumps({k: v for k, v in res.items() if k != "kernels"}))
        if self.args.result:
            with open(self.args.result, "w") as f:
                json.dump(res, f)
        return res


def _kernel_stats(prof: Any) -> dict[str, Any]:
    """Per kernel name: count and median duration (ns), from torch.profiler's own trace."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    durs: dict[str, list[float]] = defaultdict(list)
    kinds = {"kernel": 0, "memcpy": 0, "memset": 0}  # the CUDA events it counts, kind by kind
    for e in trace.get("traceEvents", []):
        cat = e.get("cat")
        if cat == "kernel" and "dur" in e:
            durs[e["name"]].append(float(e["dur"]) * 1000.0)
        if cat in ("kernel", "gpu_memcpy", "gpu_memset"):
            kinds[cat.removeprefix("gpu_")] += 1
    return {
        "kinds": kinds,
        "total": sum(len(v) for v in durs.values()),
        "by_name": {n: {"count": len(v), "median_ns": statistics.median(v)} for n, v in durs.items()},
    }
