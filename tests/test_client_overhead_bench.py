"""bench/client_overhead.py's reading of gpufl's capture, against a real one (examples/captures/memcpy_heavy,
recorded on the H100): #21 asks gpufl's and torch.profiler's counts to be compared kind by kind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import client_overhead  # noqa: E402

CAPTURE = ROOT / "examples" / "captures" / "memcpy_heavy"


def _records() -> list[dict[str, object]]:
    return [
        json.loads(ln) for p in sorted(CAPTURE.glob("*.device.*.log")) for ln in p.read_bytes().splitlines()
    ]


def test_kinds_in_the_window_count_kernels_copies_and_memsets_apart() -> None:
    recs = _records()
    every = client_overhead.gpufl_kernels(CAPTURE, [0, 2**63])
    assert (
        every["kinds"] == {k: sum(1 for r in recs if r["type"] == k) for k in client_overhead.KINDS}
        and every["kinds"]["memcpy"] > 0
    )
    # a window holding only the first half of the copies (by start time) counts only those
    starts = sorted(int(r["start_ns"]) for r in recs if r["type"] == "memcpy")  # type: ignore[call-overload]
    half = client_overhead.gpufl_kernels(CAPTURE, [0, starts[len(starts) // 2 - 1]])
    assert half["kinds"]["memcpy"] == len(starts) // 2


def test_the_fidelity_table_says_each_kind_on_both_sides() -> None:
    ours = client_overhead.gpufl_kernels(CAPTURE, [0, 2**63])
    theirs = {"total": 20, "by_name": {}, "kinds": {"kernel": 20, "memcpy": 90, "memset": 0}}
    lines = client_overhead.fidelity([ours], [theirs], 10)
    (kinds,) = [ln for ln in lines if ln.startswith("per step, kind by kind")]
    k, c = ours["kinds"]["kernel"] / 10, ours["kinds"]["memcpy"] / 10
    assert f"kernel {k:.2f} / 2.00" in kinds and f"memcpy {c:.2f} / 9.00" in kinds
