"""The real deep-engine capture (examples/captures/deep_truth: PC sampling recorded on the lent H200, #19; the
SASS engine has not recorded on a GPU yet, so the capture has no SASS metrics) through the HTTP ingest path:
the API's stall histograms (and divergence, where SASS metrics are present) equal what the capture's own lines
give, divergence is "not reported" (null) where they are absent, the figures its README states hold, and the
ranges' losses are summed, not hidden."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from gpufl.contract import events as ev
from gpufl.contract.deep import SASS_INST, SASS_THREAD_INST

from .conftest import Api

CAPTURE = Path(__file__).resolve().parents[2] / "examples" / "captures" / "deep_truth"
pytestmark = pytest.mark.skipif(not CAPTURE.is_dir(), reason="examples/captures/deep_truth not committed yet")


def _lines() -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for f in sorted(CAPTURE.glob("*.log")):
        seg = ev.parse_segment_name(f.name)
        assert seg is not None, f.name
        out[seg.stream] += [ln for ln in f.read_bytes().splitlines() if ln.strip()]
    return out


def _ingest(api: Api) -> tuple[str, list[dict]]:
    lines = _lines()
    for stream, ls in lines.items():
        for i in range(0, len(ls), 1000):
            r = api.post_events(stream, b"\n".join(ls[i : i + 1000]))
            assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    recs = [json.loads(ln) for ln in lines["scope"]]
    return recs[0]["session_id"], recs


def test_divergence_and_stalls_per_kernel_equal_the_capture(api: Api) -> None:
    sid, recs = _ingest(api)
    names = {r["id"]: r["value"] for r in recs if r["type"] == "dict" and r["kind"] == "kernel"}
    inst: Counter[str] = Counter()
    thread: Counter[str] = Counter()
    stalls: dict[str, Counter[str]] = defaultdict(Counter)
    for r in recs:
        if r["type"] != "profile_sample":
            continue
        k = names.get(r.get("kernel_name_id"), r.get("function_name"))
        if r["source"] == "sass_metric" and r.get("metric_name") == SASS_INST:
            inst[k] += r["metric_value"]
        elif r["source"] == "sass_metric" and r.get("metric_name") == SASS_THREAD_INST:
            thread[k] += r["metric_value"]
        elif r["source"] == "pc_sampling":
            stalls[k][r.get("stall_reason") or "(not reported)"] += r["sample_count"]
    assert inst or stalls, "the capture has deep-engine samples"
    s = api.get(f"/sessions/{sid}/deep").json()
    assert s["has_data"]
    got = {k["kernel"]: k for k in s["kernels"]}
    assert set(got) == set(inst) | set(stalls)
    for k in got:
        want = thread[k] / inst[k] if inst.get(k) else None
        assert got[k]["divergence"] == (pytest.approx(want, rel=1e-12) if want is not None else None), k
    for k, c in stalls.items():
        listed = {x["reason"]: x["samples"] for x in got[k]["stalls"] + got[k]["not_issued"]}
        assert listed == dict(c), k  # every reason listed, the not-issued subsets apart

    # the README's figures (beside ncu): the top-3 shares per kernel, of the samples less the not-issued subsets
    def top3(kernel: str) -> list[tuple[str, float]]:
        k = next(v for n, v in got.items() if n and n.startswith(kernel + "("))
        return [
            (x["reason"].removeprefix("smsp__pcsamp_warps_issue_stalled_"), round(100 * x["share"], 1))
            for x in k["stalls"][:3]
        ]

    assert top3("mem_bound") == [("long_scoreboard", 96.4), ("wait", 2.0), ("selected", 0.9)]
    assert top3("compute_bound") == [("not_selected", 82.3), ("selected", 13.7), ("math_pipe_throttle", 1.8)]
    ranges = [r for r in recs if r["type"] == "profile_range"]
    t = s["range_totals"]
    assert t["ranges"] == len(ranges)
    assert t["pc_dropped"] == (
        sum(r["pc_dropped"] for r in ranges if "pc_dropped" in r)
        if any("pc_dropped" in r for r in ranges)
        else None
    )
    assert t["error_ranges"] == sum(1 for r in ranges if r.get("error"))
