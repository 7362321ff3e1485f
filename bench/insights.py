"""Insights benchmark: p50 / p95 of the insights answer on a 1M-kernel session on the embedded store (DuckDB).

    PYTHONPATH=src .venv/bin/python bench/insights.py [--kernels 1000000] [--runs 20] [--capture gpt_train]

The session is a committed capture's device stream (``examples/captures/<capture>``: kernels, copies,
memsets and launch dict entries) tiled until it holds ``--kernels`` kernels, timestamps shifted by the
capture's span and seqs renumbered, plus its system stream once. It is ingested through ``ingest_raws``
(decode, validate, store) into a fresh DuckDB file, then the answer of ``GET /sessions/{id}/insights`` is
computed ``--runs`` times with the route's cache emptied before each run (every run gathers the facts in
SQL and runs the rules), and once over the running app's HTTP for the record. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from gpufl.backend.api.routes import insights as route
from gpufl.backend.ingest import ingest_raws
from gpufl.backend.store import open_store
from gpufl.contract import events as ev
from gpufl.export.source import find_sessions

ROOT = Path(__file__).resolve().parent.parent
BATCH = 50_000


def tiled(capture: Path, sid: str, kernels: int) -> tuple[list[bytes], list[bytes]]:
    """The device stream's lines tiled to ``kernels`` kernels, and the system stream's lines (once)."""
    (session,) = find_sessions(capture).values()
    dev = list(session.records("device"))
    system = [msgspec.structs.replace(r, session_id=sid) for r in session.records("system")]
    head = [r for r in dev if isinstance(r, ev.SessionStart | ev.DictEntry)]
    acts = [r for r in dev if isinstance(r, ev.Kernel | ev.Memcpy | ev.Memset | ev.Sync)]
    per_tile = sum(isinstance(r, ev.Kernel) for r in acts)
    t0 = min(a.start_ns for a in acts)
    span = max(a.end_ns for a in acts) - t0 + 1_000
    enc = msgspec.json.Encoder()
    out = [enc.encode(msgspec.structs.replace(r, session_id=sid, seq=i)) for i, r in enumerate(head)]
    seq, made, tile = len(head), 0, 0
    while made < kernels:
        shift = tile * span
        for a in acts:
            if isinstance(a, ev.Kernel):
                if made >= kernels:
                    break
                made += 1
            kw = {"api_start_ns": a.api_start_ns + shift} if getattr(a, "api_start_ns", None) else {}
            r = msgspec.structs.replace(
                a, session_id=sid, seq=seq, start_ns=a.start_ns + shift, end_ns=a.end_ns + shift, **kw
            )
            out.append(enc.encode(r))
            seq += 1
        tile += 1
    print(f"tiled {capture.name}: {per_tile:,} kernels per tile, {tile} tiles, {seq:,} device records")
    return out, [enc.encode(r) for r in system]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--capture", default="gpt_train")
    args = ap.parse_args()
    sid = "benchinsights"
    dev, system = tiled(ROOT / "examples" / "captures" / args.capture, sid, args.kernels)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"duckdb:///{tmp}/store.duckdb")
        t = time.perf_counter()
        for i in range(0, len(dev), BATCH):
            ingest_raws(store, "device", dev[i : i + BATCH])
        ingest_raws(store, "system", system)
        print(f"ingested in {time.perf_counter() - t:.1f} s")
        times = []
        for _ in range(args.runs):
            route._cache.clear()
            t = time.perf_counter()
            answer = route.insights(store, sid)
            times.append(time.perf_counter() - t)
        route._cache.clear()
        t = time.perf_counter()
        route.insights(store, sid)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        route.insights(store, sid)
        cached = time.perf_counter() - t
        store.close()
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times) + 0.5) - 1)]
    print(
        f"\nmachine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print(f"session: {args.kernels:,} kernels ({len(dev):,} device records), {args.runs} runs")
    print(f"{'what':<44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    print(
        f"{'insights, facts gathered (cache emptied)':<44} {1e3 * statistics.median(times):>8.0f} "
        f"{1e3 * p95:>8.0f} {1e3 * times[-1]:>8.0f}"
    )
    print(f"{'insights, answer cached (same ingest state)':<44} {1e3 * cached:>8.1f}")
    print(f"\n{answer.counts.model_dump()}; cold run {1e3 * cold:.0f} ms")
    for i in answer.items:
        print(f"  {i.severity:<8} {i.rule:<22} {i.title[:90]}")


if __name__ == "__main__":
    main()
