"""Where the native path's cost goes on the GPT-style loop, measured inside ONE process (the cross-process
spread of these machines, ±10%, hides a few percent): blocks of steps alternate between configurations
of the running native engine — nothing enabled, activity records only, launch (driver-API) callbacks only,
both (what gpufl runs), both with an empty callback body (CUPTI's own dispatch cost), both with runtime- and
driver-API callbacks, both with runtime-API callbacks only — for several cycles; the median step time of
each configuration is compared with "nothing". Caveat (bench/launch_cost.py): parts switched off in a
running process keep some of their cost, so "nothing" here is not a process without gpufl.

    python bench/native_attribution.py [--cycles 8] [--block 10]      (on a GPU, native path built)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

# (callbacks, activity, runtime-API callbacks, driver-API callbacks, empty callback body)
CONFIGS = {
    "nothing": (False, False, False, True, False),
    "activity": (False, True, False, True, False),
    "callbacks": (True, False, False, True, False),
    "both": (True, True, False, True, False),  # what gpufl runs: driver-API callbacks + activity
    "both, empty callback": (True, True, False, True, True),
    "both, runtime + driver API": (True, True, True, True, False),
    "both, runtime API only": (True, True, True, False, False),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--block", type=int, default=10)
    args = ap.parse_args()
    import torch

    import gpufl
    from alternating import make_step
    from gpufl.client import _native  # type: ignore[attr-defined]

    gpufl.init(app_name="attribution", log_dir=tempfile.mkdtemp(), engines="tracing")
    gpt_step = make_step("gpt")  # warmed up; ends with a synchronize

    def step() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        gpt_step()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for _ in range(args.cycles):
        for name, cfg in CONFIGS.items():
            _native.configure(*cfg)
            step()  # the first step after a switch is not counted
            times[name] += [step() for _ in range(args.block)]
    gpufl.shutdown()
    base = statistics.median(times["nothing"])
    print(f"GPT-style loop, one process, {args.cycles} cycles × {args.block} steps per configuration")
    print(f"machine: {os.uname().nodename} {torch.cuda.get_device_name()}")
    print(f"{'configuration':<24}{'median ms':>11}{'p25':>9}{'p75':>9}{'vs nothing':>12}")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        med = statistics.median(ts)
        print(
            f"{name:<24}{1000 * med:>11.3f}{1000 * q[0]:>9.3f}{1000 * q[2]:>9.3f}{100 * (med / base - 1):>+11.1f}%"
        )
    st = _native.stats()
    print(f"kernels {st['kernels']}, joined with a launch site {st['matched']}, not {st['unmatched']}")


if __name__ == "__main__":
    main()
