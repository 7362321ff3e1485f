"""Diff benchmark: p50 / p95 of ``GET /diff`` between two 1M-kernel sessions on the embedded store (DuckDB).

    PYTHONPATH=src .venv/bin/python bench/diff.py [--kernels 1000000] [--runs 20]

Two sessions are built from the committed captures ``diff_base`` and ``diff_layer_removed`` (device streams:
kernels, copies, memsets, launch dict entries), each tiled until it holds ``--kernels`` kernels (``bench/insights.py``'s
tiling: timestamps shifted by the capture's span, seqs renumbered), ingested through ``ingest_raws`` into a fresh
DuckDB file. The route's function (both sessions' profiles in SQL, the comparison, the response model) is timed
``--runs`` times; one answer over the running app's HTTP is timed for the record. Prints a table.
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

from fastapi.testclient import TestClient

from gpufl.backend import auth
from gpufl.backend.api.routes import diff as route
from gpufl.backend.app import create_app
from gpufl.backend.config import Settings
from gpufl.backend.ingest import ingest_raws
from gpufl.backend.store import open_store
from insights import tiled  # bench/insights.py: the same tiling

ROOT = Path(__file__).resolve().parent.parent
BATCH = 50_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    caps = ROOT / "examples" / "captures"
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"duckdb:///{tmp}/store.duckdb")
        t = time.perf_counter()
        for sid, cap in (("benchbase", "diff_base"), ("benchtarget", "diff_layer_removed")):
            dev, _ = tiled(caps / cap, sid, args.kernels)
            for i in range(0, len(dev), BATCH):
                ingest_raws(store, "device", dev[i : i + BATCH])
        print(f"ingested in {time.perf_counter() - t:.1f} s")
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            answer = route.diff(store, "benchbase", "benchtarget")
            times.append(time.perf_counter() - t)
        settings = Settings()
        app = create_app(settings, store, start_jobs=False)
        token = auth.create_key(store, auth.Role.read, "bench")[1]
        with TestClient(app) as client:
            t = time.perf_counter()
            r = client.get(
                "/api/v1/diff",
                params={"base": "benchbase", "target": "benchtarget"},
                headers={"Authorization": f"Bearer {token}"},
            )
            http_s = time.perf_counter() - t
            assert r.status_code == 200, r.text
        store.close()
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times) + 0.5) - 1)]
    print(
        f"\nmachine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print(f"sessions: 2 × {args.kernels:,} kernels, {args.runs} runs")
    print(f"{'what':<48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    print(
        f"{'diff (two profiles in SQL, compare, model)':<48} {1e3 * statistics.median(times):>8.0f} "
        f"{1e3 * p95:>8.0f} {1e3 * times[-1]:>8.0f}"
    )
    print(f"{'one answer over the app (TestClient)':<48} {1e3 * http_s:>8.0f}")
    print(f"\nrows {answer.rows_total}, {answer.counts}")


if __name__ == "__main__":
    main()
