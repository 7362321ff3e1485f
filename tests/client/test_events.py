from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufl import events

ROOT = Path(__file__).resolve().parents[2]


def kernel(**kw: object) -> events.Kernel:
    base: dict[str, object] = dict(
        session_id="abc",
        stream="device",
        seq=5,
        launch_id=1,
        device_id=0,
        stream_id=7,
        corr_id=9,
        start_ns=10,
        end_ns=20,
    )
    base.update(kw)
    return events.Kernel(**base)  # type: ignore[arg-type]


def test_round_trip_every_type_through_json() -> None:
    k = kernel(api_start_ns=5, api_dur_ns=3, scope_inst=2, stack_id=4, thread_id=11)
    assert events.decode(events.encode(k)) == k
    d = events.DictEntry(
        session_id="abc",
        stream="device",
        seq=1,
        kind="launch",
        id=1,
        launch=events.LaunchConfig(name="f", device_id=0, grid=(1, 2, 3), block=(4, 5, 6), num_regs=32),
    )
    assert events.decode(events.encode(d)) == d


def test_defaults_are_omitted_and_restored() -> None:
    k = kernel()
    line = events.encode(k)
    assert b"scope_inst" not in line and b"api_start_ns" not in line
    full = events.to_builtins(events.decode(line))
    assert full["scope_inst"] is None and full["type"] == "kernel"


@pytest.mark.parametrize(
    "line,reason",
    [
        (b'{"type":"kernel"', "malformed JSON"),
        (b'{"type":"nope","session_id":"a","stream":"device","seq":0}', "Invalid value 'nope'"),
        (
            b'{"type":"scope_end","session_id":"a","stream":"device","seq":1,"inst":1,"ts_ns":1}',
            "does not belong",
        ),
        (events.encode(kernel(seq=-1)), "seq must be"),
        (events.encode(kernel(start_ns=30, end_ns=20)), "before start_ns"),
        (events.encode(kernel(session_id="")), "session_id"),
        (b'{"type":"kernel","session_id":"a","stream":"device","seq":1}', "missing required field"),
        (events.encode(kernel(seq=2**70)), "seq must be"),
    ],
)
def test_decode_rejects_with_reason(line: bytes, reason: str) -> None:
    with pytest.raises(events.ContractError, match=reason):
        events.decode(line)


def test_session_start_must_be_seq_zero() -> None:
    s = events.SessionStart(
        session_id="a", stream="scope", seq=3, app="x", host="h", pid=1, start_ns=1, gpufl_version="0"
    )
    with pytest.raises(events.ContractError, match="seq 0"):
        events.decode(events.encode(s))


def test_kernel_record_size() -> None:
    """≤ 300 B per kernel record with every field a stream launch can carry (launch-API lead and duration,
    thread, stack, scope) at the magnitudes of a session of a few million kernels (7-digit seq and
    correlation ids); and the committed H100 capture's lines (median) too. Past 10M kernels with 7-digit
    thread ids it is 302 B; a graph-replayed kernel adds graph_id/graph_node_id (~40 B)."""
    k = kernel(
        session_id="uija34qtjberfcjx",
        seq=2_345_678,
        launch_id=1234,
        stream_id=7,
        corr_id=2_345_678,
        start_ns=1_795_599_240_848_791_432,
        end_ns=1_795_599_240_848_802_696,
        api_lead_ns=10_871,
        api_dur_ns=10_712,
        thread_id=123_456,
        stack_id=12_345,
        scope_inst=123_456,
    )
    assert len(events.encode(k)) <= 300
    lines = [
        line
        for p in (ROOT / "examples/captures/gpt_train").glob("*.device.*.log")
        for line in p.read_bytes().splitlines()
        if line.startswith(b'{"type":"kernel"')
    ]
    assert len(lines) > 1000
    assert sorted(map(len, lines))[len(lines) // 2] <= 300


def test_api_start_from_either_schema_version() -> None:
    v1 = kernel(start_ns=1_000, end_ns=2_000, api_start_ns=900)
    v2 = kernel(start_ns=1_000, end_ns=2_000, api_lead_ns=100)
    assert events.api_start_ns(v1) == events.api_start_ns(v2) == 900
    assert events.api_start_ns(kernel()) is None
    assert b"api_start_ns" not in events.encode(v2)


def test_segment_names_round_trip_and_sanitise() -> None:
    name = events.segment_name("gpu node.01", "my app!", "sid", "device", 12)
    assert name == "gpu_node_01.my_app_.sid.device.000012.log"
    parsed = events.parse_segment_name(name)
    assert parsed == events.SegmentName("gpu_node_01", "my_app_", "sid", "device", 12)
    assert events.parse_segment_name("x.y.z.other.000001.log") is None
    assert events.parse_segment_name("notes.txt") is None


def test_committed_json_schema_matches_the_module() -> None:
    committed = json.loads((ROOT / "docs/event-schema.json").read_text())
    assert committed == events.json_schema(), "regenerate with: gpufl schema > docs/event-schema.json"


def test_every_type_is_on_some_stream_and_refs_are_known() -> None:
    on_streams = set().union(*events.STREAM_TYPES.values())
    assert on_streams == set(events.TYPE_BY_TAG)
    for tag, refs in events.DICT_REFS.items():
        fields = {f.encode_name for f in __import__("msgspec").structs.fields(events.TYPE_BY_TAG[tag])}
        assert {attr for attr, _ in refs} <= fields
