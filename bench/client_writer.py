"""Client writer: caller-side cost per record, sustained records/s with zero drops, bytes per kernel.

    python bench/client_writer.py [--records 2000000]

Caller cost is what the user's thread pays per ``emit`` (timed in batches of 100 to stay above the
clock's resolution). Sustained rate: one producer thread emits kernel records as fast as it can into a
queue of the default size; the rate counts only if nothing was dropped.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from gpufl.client.config import Options
from gpufl.client.writer import SegmentFiles, StreamWriter
from gpufl.contract import events

ROOT = Path(__file__).resolve().parents[1]


def kernel(i: int) -> events.Kernel:
    return events.Kernel(
        session_id="uija34qtjberfcjx",
        stream="device",
        launch_id=i % 40,
        device_id=0,
        stream_id=7,
        corr_id=i,
        start_ns=1_795_599_240_848_791_432 + i * 1000,
        end_ns=1_795_599_240_848_801_432 + i * 1000,
        scope_inst=i // 100,
        thread_id=1869,
    )


def writer(tmp: str, queue: int) -> StreamWriter:
    o = Options()
    w = StreamWriter(
        SegmentFiles(tmp, "bench", "bench", "uija34qtjberfcjx"),
        "device",
        queue_size=queue,
        segment_max_bytes=o.segment_max_bytes,
        segment_max_age_s=o.segment_max_age_s,
        flush_interval_s=o.flush_interval_s,
    )
    w.start()
    return w


def caller_cost(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        w = writer(tmp, Options().queue_size)
        recs = [kernel(i) for i in range(n)]
        per: list[float] = []
        emit = w.emit
        for b in range(0, n, 100):
            t0 = time.perf_counter_ns()
            for r in recs[b : b + 100]:
                emit(r)
            per.append((time.perf_counter_ns() - t0) / 100 / 1000)
            if b % 20000 == 0:
                time.sleep(0.002)  # let the writer keep up: this measures the caller, not back-pressure
        w.close(None)
        per.sort()
        return statistics.median(per), per[int(len(per) * 0.99)]


def sustained(n: int) -> tuple[float, int]:
    """The rate the writer sustains (seq, dict records, encoding, writes, rotation): records are built
    beforehand (building them is the capture engine's cost, on its own thread), emitted as fast as the
    caller can, pausing whenever the default-sized queue is over half full; nothing may be dropped."""
    recs = [kernel(i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        queue = Options().queue_size
        w = writer(tmp, queue)
        half = queue // 2
        q = w._q
        emit = w.emit
        t0 = time.perf_counter()
        for b in range(0, n, 1024):
            for r in recs[b : b + 1024]:
                emit(r)
            while len(q) > half:
                time.sleep(0.0005)
        w.close(None)
        dt = time.perf_counter() - t0
        return n / dt, w.dropped_total


def capture_bytes() -> tuple[float, float]:
    lines = [
        line
        for p in (ROOT / "examples/captures/gpt_train").glob("*.device.*.log")
        for line in p.read_bytes().splitlines()
        if line.startswith(b'{"type":"kernel"')
    ]
    raw = b"\n".join(lines) + b"\n"
    return len(raw) / len(lines), len(gzip.compress(raw, 6)) / len(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    med, p99 = caller_cost(min(args.records, 500_000))
    rate, drops = sustained(args.records)
    raw_b, gz_b = capture_bytes()
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"{'metric':<44}{'value':>14}{'target':>12}")
    print(f"{'caller cost per emit, median (µs)':<44}{med:>14.2f}{'≤ 2':>12}")
    print(f"{'caller cost per emit, p99 (µs)':<44}{p99:>14.2f}{'':>12}")
    print(f"{'sustained records/s, writer (zero drops)':<44}{rate:>14,.0f}{'≥ 400,000':>12}")
    print(f"{'records dropped in that run':<44}{drops:>14}{'0':>12}")
    print(f"{'bytes per kernel line (H100 capture)':<44}{raw_b:>14.0f}{'≤ 300':>12}")
    print(f"{'gzip bytes per kernel line (H100 capture)':<44}{gz_b:>14.1f}{'':>12}")


if __name__ == "__main__":
    main()
