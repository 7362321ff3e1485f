"""Real H100 captures (examples/captures/<name>/*.log) through the HTTP ingest path and the query API.

Expected values are recomputed from the capture's own lines, so the test holds for any capture committed.
The test fixtures' logs (tests/fixtures/<name>/*.log: a schema v1 capture, the native path's) go through
too: old logs stay readable, every line of them, whatever the contract has added since (its limits).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest

from gpufl.contract import events as ev

from .conftest import Api

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "examples" / "captures"
CAPTURES = sorted(
    p
    for d in (ROOT, REPO / "tests" / "fixtures")
    for p in (d.glob("*") if d.is_dir() else [])
    if p.is_dir() and any(p.glob("*.log"))
)


@pytest.mark.skipif(not CAPTURES, reason="no capture committed under examples/captures")
@pytest.mark.parametrize("capture", CAPTURES, ids=[f"{p.parent.name}/{p.name}" for p in CAPTURES])
def test_capture_round_trip(api: Api, capture: Path) -> None:
    lines: dict[str, list[bytes]] = defaultdict(list)
    sessions: set[str] = set()
    for f in sorted(capture.glob("*.log")):
        seg = ev.parse_segment_name(f.name)
        assert seg is not None, f.name
        sessions.add(seg.session_id)
        lines[seg.stream] += [ln for ln in f.read_bytes().splitlines() if ln.strip()]
    types = Counter(json.loads(ln)["type"] for ls in lines.values() for ln in ls)
    for stream, ls in lines.items():
        for i in range(0, len(ls), 1000):  # agent-sized batches
            r = api.post_events(stream, b"\n".join(ls[i : i + 1000]))
            assert r.status_code == 200, r.text
            assert r.json()["rejected"] == [] and r.json()["duplicates"] == 0
    (sid,) = sessions
    d = api.get(f"/sessions/{sid}").json()
    assert d["totals"]["kernels"] == types["kernel"] and d["totals"]["memcpys"] == types["memcpy"]
    assert d["totals"]["system_samples"] == types["system_sample"]
    ended = {json.loads(ln)["stream"] for ls in lines.values() for ln in ls if b'"session_end"' in ln}
    assert d["cut_short"] == (ended != set(lines))
    summary = api.get(f"/sessions/{sid}/kernels/summary", params={"limit": 10_000}).json()
    assert sum(i["count"] for i in summary["items"]) == types["kernel"]
    assert all(i["name"] for i in summary["items"])  # every launch dict entry resolved
    # the same summary read from the kernel rows (a window covering the session) agrees with the ingest-time one
    win = {"start_ns": d["header"]["start_ns"] - 1, "end_ns": 2**62}
    windowed = api.get(f"/sessions/{sid}/kernels/summary", params={"limit": 10_000, **win}).json()
    fields = ("name", "count", "total_ns", "min_ns", "max_ns", "quantiles")
    assert [[i[k] for k in fields] for i in windowed["items"]] == [
        [i[k] for k in fields] for i in summary["items"]
    ]
    for a, b in zip(windowed["items"], summary["items"], strict=True):
        assert a["p95_ns"] == pytest.approx(b["p95_ns"], rel=1e-9 if a["quantiles"] == "exact" else 0.0201)
    for item in summary["items"][:5]:  # each histogram holds every launch of its kernel
        h = api.get(f"/sessions/{sid}/kernels/histogram", params={"name": item["name"]}).json()
        assert h["count"] == item["count"] == sum(b["count"] for b in h["buckets"])
        assert h["buckets"][0]["lo_ns"] <= item["min_ns"] and item["max_ns"] < h["buckets"][-1]["hi_ns"]
    first = api.get(f"/sessions/{sid}/kernels", params={"limit": 1}).json()["items"]
    if first:
        detail = api.get(f"/sessions/{sid}/kernels/{first[0]['id']}").json()
        assert detail["launch"]["name"] == detail["name"]
    if types["scope_begin"]:
        roots = api.get(f"/sessions/{sid}/scopes").json()["roots"]
        assert sum(n["calls"] for n in roots) > 0
    if types["system_sample"]:
        series = api.get(f"/sessions/{sid}/system", params={"points": 50}).json()["series"]
        assert series and all(s["points"] for s in series)
        # every GPU reading the capture has (GPM's activity fields included) is a series with its samples'
        # count, minimum and maximum
        want: dict[tuple[str, int], list[float]] = defaultdict(list)
        for ln in lines["system"]:
            rec = ev.decode(ln)
            if isinstance(rec, ev.SystemSample):
                for g in rec.gpus:
                    for k, v in msgspec.to_builtins(g).items():
                        if k != "device_id" and v is not None:
                            want[(k, g.device_id)].append(float(v))
        got = {
            (x["metric"], x["device"]): x["points"]
            for x in api.get(f"/sessions/{sid}/system", params={"points": 1}).json()["series"]
            if x["device"] is not None
        }
        assert set(got) == set(want)
        for key, vals in want.items():
            (pt,) = got[key]
            assert (pt["n"], pt["min"], pt["max"]) == (len(vals), min(vals), max(vals)), key
