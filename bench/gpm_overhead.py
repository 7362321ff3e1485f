"""What NVML GPM sampling costs the profiled program (#20's bar: ≤ 0.5% on a launch-bound training loop).

The issue's protocol — a fresh process per mode, interleaved rounds — cannot see 0.5% on these VMs: the
launch-bound GPT loop's per-process step time drifts by ±10% between processes (docs/benchmarks.md). So this
bench measures in one process, in short blocks that alternate many times: the system engine runs throughout
(``gpufl.init(engines=["system"])``, its default 1 s interval), and the engine's GPM reader is switched on and
off between blocks of ``--block`` seconds (off: the engine's own ``gpm`` set aside, so its loop skips GPM the
way a GPU without GPM does; on: put back, so the real reader samples and the readings are written). Each
adjacent on/off pair gives a ratio of median step times; the drift, slow next to a block, cancels in the pair.

    python3 bench/gpm_overhead.py [--seconds 120] [--block 3] [--workload gpt|spin|launch] [--json out.json]

``--workload``: ``gpt`` (the bar's loop), ``launch`` or ``spin`` (bench/alternating.py says what each is; ``spin``
shows the GIL share a sampler thread can take, ``launch`` the driver's locks NVML's calls may share with kernel
launches).

The first block of each kind is dropped (warm-up). Reported: per-pair ratio (median, mean, 95% interval by
bootstrap), the launching thread's CPU time per step on/off (it leaves out time the thread waited — on the GIL,
a lock, the GPU — so a wall-time cost that it does not share is contention, not work), the GPM readings
written, and the system engine's thread CPU time per second in each kind of block.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from alternating import HEADER, WORKLOADS, make_step, pair_stats, summary_line, time_block


def system_engine() -> Any:
    from gpufl.client import session as s

    sess = s._session
    assert sess is not None, "gpufl did not start"
    for e in sess.engines:
        if hasattr(e, "gpm"):
            return e
    raise SystemExit("no system engine")


def thread_cpu(name_part: str) -> float:
    """CPU seconds of the threads whose name holds name_part (from /proc, this process)."""
    import os

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    for tid, name in names.items():
        if name_part in name and tid is not None:
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--block", type=float, default=3.0)
    ap.add_argument("--log-dir", default="/tmp/gpm-overhead")
    ap.add_argument("--workload", choices=WORKLOADS, default="gpt")
    ap.add_argument("--json")
    args = ap.parse_args()
    import gpufl

    gpufl.init(app_name="gpm_overhead", log_dir=args.log_dir, engines=["system"])
    engine = system_engine()
    reader = engine.gpm
    if reader is None:
        raise SystemExit("GPM is not available on this GPU: nothing to measure")
    step = make_step(args.workload)
    blocks: list[dict[str, Any]] = []
    end = time.monotonic() + args.seconds
    on = False
    while time.monotonic() < end:
        engine.gpm = reader if on else None
        cpu0 = thread_cpu("system")
        block = time_block(step, args.block)
        block.update(gpm=on, engine_cpu_ms_per_s=1e3 * (thread_cpu("system") - cpu0) / block["wall_s"])
        blocks.append(block)
        on = not on
    engine.gpm = reader
    gpufl.shutdown()
    blocks = blocks[2:]  # one warm-up block of each kind
    readings = sum(
        1 for p in Path(args.log_dir).glob("*.system.*.log") for line in p.read_bytes().splitlines()
        if b'"sm_active_pct"' in line
    )  # fmt: skip
    cpu = {
        k: statistics.median(b["engine_cpu_ms_per_s"] for b in blocks if b["gpm"] is k) for k in (True, False)
    }
    out = {
        "workload": args.workload,
        **pair_stats(blocks, "gpm"),
        "system_thread_cpu_ms_per_s": {"gpm_on": cpu[True], "gpm_off": cpu[False]},
        "gpm_readings_written": readings,
    }
    print(f"workload {args.workload}")
    print(f"{HEADER}{'step ms on':>12}{'off':>8}")
    print(f"{summary_line(out['ratios'])}{out['step_ms_on']:>12.3f}{out['step_ms_off']:>8.3f}")
    print(
        f"launching thread CPU per step, GPM on/off: {100 * (out['launch_thread_cpu_ratio_median'] - 1):+.2f}% (median of pairs)"
    )
    print(f"system engine thread CPU: {cpu[True]:.2f} ms/s with GPM, {cpu[False]:.2f} ms/s without; "
          f"GPM readings written: {readings}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "blocks": blocks}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
