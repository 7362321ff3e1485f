"""bench/alternating.py: the in-process A/B protocol's arithmetic (a pair read the wrong way round would print
a cost as a saving), and bench/capture_overhead.py end to end on the pure-Python workload (no GPU here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import alternating  # noqa: E402


def test_pairs_are_on_over_off_whichever_came_first() -> None:
    blocks = [
        {"on": False, "ms": 10.0},
        {"on": True, "ms": 11.0},
        {"on": True, "ms": 12.0},
        {"on": False, "ms": 10.0},
    ]
    assert alternating.pair_ratios(blocks, "ms", "on") == pytest.approx([1.1, 1.2])


def test_blocks_that_are_not_an_on_off_pair_are_refused() -> None:
    with pytest.raises(ValueError, match="not an on/off pair"):
        alternating.pair_ratios([{"on": True, "ms": 1.0}, {"on": True, "ms": 1.0}], "ms", "on")


def test_the_interval_holds_the_mean_and_narrows_with_more_pairs() -> None:
    few = [0.98, 1.03, 1.01, 0.99, 1.02]
    lo, hi = alternating.mean_interval(few)
    assert lo < sum(few) / len(few) < hi
    lo2, hi2 = alternating.mean_interval(few * 20)
    assert hi2 - lo2 < (hi - lo) / 2


def test_capture_overhead_runs_and_writes_its_pairs(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/capture_overhead.py"), "--workload", "spin", "--seconds", "3",
         "--block", "0.25", "--capture", "on-demand", "--log-dir", str(tmp_path / "logs"), "--json", str(out)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["pairs"] == len(res["blocks"]) // 2 >= 3
    assert [b["session"] for b in res["blocks"]][:4] == [False, True, False, True]
    assert len(list((tmp_path / "logs").iterdir())) >= res["pairs"]  # a session per "on" block
