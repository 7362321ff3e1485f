"""What a capture mode costs the profiled program, in one process (#21's bars: on-demand ≤ +0.5 %, windows ≤ +1 %).

A fresh process per mode moves by 5–10 % on the lent VMs (docs/benchmarks.md, session 14), so this bench
alternates in one process (bench/alternating.py): a gpufl session open for a block, then none for a block,
each adjacent pair giving a ratio of median step times. The session is opened and closed between blocks
(``gpufl.init`` … ``gpufl.shutdown``), never timed; the first steps after an open are dropped (``--settle``) so a
block measures the steady state.

    python3 bench/capture_overhead.py --capture on-demand [--workload launch] [--seconds 120] [--block 3]
    python3 bench/capture_overhead.py --capture continuous   # the in-window cost

``--capture``: ``on-demand`` (no request: the bar's ≤ +0.5 %), ``continuous`` (tracing throughout: what a
window costs while open), or any mode ``gpufl.init(capture=…)`` takes. A ``windows:ON/PERIOD`` session's cost is
on-demand's plus ON/PERIOD of continuous's (its windows are continuous tracing, its gaps on-demand), so the
two runs give the windows bar without 2-minute blocks. ``--engines`` defaults to the session default
(tracing, system).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alternating import HEADER, WORKLOADS, make_step, pair_stats, summary_line, time_block


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", default="on-demand")
    ap.add_argument("--engines", default="tracing,system")
    ap.add_argument("--workload", choices=WORKLOADS, default="gpt")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--block", type=float, default=3.0)
    ap.add_argument("--settle", type=int, default=5, help="steps dropped after a session opens")
    ap.add_argument("--log-dir", default=None)
    ap.add_argument("--json")
    args = ap.parse_args()
    import gpufl

    log_root = Path(args.log_dir or tempfile.mkdtemp(prefix="gpufl-capture-overhead-"))
    step = make_step(args.workload)
    blocks: list[dict[str, Any]] = []
    notices: set[str] = set()
    end = time.monotonic() + args.seconds
    on = False
    while time.monotonic() < end:
        if on:
            gpufl.init(
                app_name="capture_overhead",
                log_dir=str(log_root / f"block{len(blocks)}"),
                engines=args.engines,
                capture=args.capture,
            )
            session = gpufl.active_session()
            for _ in range(args.settle):
                step()
        block = time_block(step, args.block)
        block["session"] = on
        if on:
            if session is not None:
                notices.update(n.code for n in session.notices)
            gpufl.shutdown()
        blocks.append(block)
        on = not on
    blocks = blocks[2:]  # one warm-up block of each kind
    out = {
        "capture": args.capture,
        "engines": args.engines,
        "workload": args.workload,
        **pair_stats(blocks, "session"),
        "notices": sorted(notices),
    }
    print(
        f"capture {args.capture}, engines {args.engines}, workload {args.workload}, blocks of {args.block:g} s"
    )
    print(f"{HEADER}{'step ms gpufl':>15}{'none':>8}")
    print(f"{summary_line(out['ratios'])}{out['step_ms_on']:>15.3f}{out['step_ms_off']:>8.3f}")
    print(
        f"launching thread CPU per step, session/none: {100 * (out['launch_thread_cpu_ratio_median'] - 1):+.2f}%"
    )
    print(f"notices: {', '.join(out['notices']) or 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "blocks": blocks}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
