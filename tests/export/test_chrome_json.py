"""The trace-event JSON form: every event carries the fields its phase requires (the Trace Event Format
document), counts equal the session's, slices sit at the recorded times (relative to the session start,
in microseconds), flows bind a launch call to its kernel."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from gpufl.contract import events
from gpufl.export import chrome_json
from gpufl.export.source import find_sessions

CAPTURES = sorted((Path(__file__).resolve().parents[2] / "examples" / "captures").iterdir())

REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "B": {"name", "ph", "ts", "pid", "tid"},
    "E": {"ph", "ts", "pid", "tid"},
    "C": {"name", "ph", "ts", "pid", "args"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "s": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "f": {"name", "cat", "ph", "ts", "pid", "tid", "id", "bp"},
    "M": {"name", "ph", "pid", "args"},
}


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_every_event_has_its_phases_fields_and_the_counts_match(capture: Path) -> None:
    (s,) = find_sessions(capture).values()
    out = io.StringIO()
    counts = chrome_json.export(s, out)
    doc = json.loads(out.getvalue())
    assert doc["displayTimeUnit"] == "ns"
    t0 = doc["otherData"]["start_ns"]
    evs: list[dict[str, Any]] = doc["traceEvents"]
    for e in evs:
        assert REQUIRED[e["ph"]] <= set(e), e
        if e["ph"] == "M" and e["name"] == "thread_name":
            assert "tid" in e
        if e["ph"] == "i":
            assert e["s"] in ("g", "p", "t")
    device = list(s.records("device"))
    start = device[0]
    assert isinstance(start, events.SessionStart) and start.start_ns == t0
    kernels = [r for r in device if isinstance(r, events.Kernel)]
    x = [e for e in evs if e["ph"] == "X" and e["cat"] == "kernel"]
    assert len(x) == counts.kernels == len(kernels)
    assert sorted((round(e["ts"] * 1000), round(e["dur"] * 1000)) for e in x) == sorted(
        (k.start_ns - t0, k.end_ns - k.start_ns) for k in kernels
    )
    assert sum(e["ph"] == "X" and e["cat"] == "memcpy" for e in evs) == counts.memcpys
    assert sum(e["ph"] == "X" and e["cat"] == "memset" for e in evs) == counts.memsets
    assert sum(e["ph"] == "B" for e in evs) == sum(e["ph"] == "E" for e in evs) == counts.scopes
    assert sum(e["ph"] == "C" for e in evs) == counts.counters
    starts = {e["id"]: e for e in evs if e["ph"] == "s"}
    finishes = {e["id"]: e for e in evs if e["ph"] == "f"}
    assert set(starts) == set(finishes) and len(starts) == counts.launches
    for fid, f in finishes.items():
        assert starts[fid]["ts"] <= f["ts"]  # a launch call precedes its kernel
        assert f["pid"] >= chrome_json.GPU_PID_BASE > starts[fid]["pid"]
