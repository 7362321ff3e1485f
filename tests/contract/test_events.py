from __future__ import annotations

import json
from pathlib import Path

import msgspec.inspect as mi
import pytest

from gpufl.client.session import new_session_id
from gpufl.contract import events

ROOT = Path(__file__).resolve().parents[2]
T = 1_700_000_000_000_000_000  # a time inside the contract's window


def kernel(**kw: object) -> events.Kernel:
    base: dict[str, object] = dict(
        session_id="abc",
        stream="device",
        seq=5,
        launch_id=1,
        device_id=0,
        stream_id=7,
        corr_id=9,
        start_ns=T + 10,
        end_ns=T + 20,
    )
    base.update(kw)
    return events.Kernel(**base)  # type: ignore[arg-type]


def test_round_trip_every_type_through_json() -> None:
    k = kernel(api_start_ns=T + 5, api_dur_ns=3, scope_inst=2, stack_id=4, thread_id=11)
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
            b'{"type":"scope_end","session_id":"a","stream":"device","seq":1,"inst":1,"ts_ns":%d}' % T,
            "does not belong",
        ),
        (events.encode(kernel(seq=-1)), "seq must be"),
        (events.encode(kernel(start_ns=T + 30, end_ns=T + 20)), "before start_ns"),
        (events.encode(kernel(session_id="")), "session_id"),
        (b'{"type":"kernel","session_id":"a","stream":"device","seq":1}', "missing required field"),
        (events.encode(kernel(seq=2**70)), r"<= 9223372036854775807 - at `\$.seq`"),
    ],
)
def test_decode_rejects_with_reason(line: bytes, reason: str) -> None:
    with pytest.raises(events.ContractError, match=reason):
        events.decode(line)


def test_session_start_must_be_seq_zero() -> None:
    s = events.SessionStart(
        session_id="a", stream="scope", seq=3, app="x", host="h", pid=1, start_ns=T, gpufl_version="0"
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
    v1 = kernel(start_ns=T + 1_000, end_ns=T + 2_000, api_start_ns=T + 900)
    v2 = kernel(start_ns=T + 1_000, end_ns=T + 2_000, api_lead_ns=100)
    assert events.api_start_ns(v1) == events.api_start_ns(v2) == T + 900
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


def _numbers(t: mi.Type, path: str) -> list[tuple[str, mi.IntType | mi.FloatType]]:
    """Every integer and float anywhere in a contract type, with its path (a walk of msgspec.inspect)."""
    if isinstance(t, mi.IntType | mi.FloatType):
        return [(path, t)]
    if isinstance(t, mi.Metadata):
        return _numbers(t.type, path)
    if isinstance(t, mi.UnionType):
        return [n for u in t.types for n in _numbers(u, path)]
    if isinstance(t, mi.ListType):
        return _numbers(t.item_type, path + "[]")
    if isinstance(t, mi.TupleType):
        return [n for i, u in enumerate(t.item_types) for n in _numbers(u, f"{path}[{i}]")]
    if isinstance(t, mi.DictType):
        return _numbers(t.value_type, path + "{}")
    if isinstance(t, mi.StructType):
        return [n for f in t.fields for n in _numbers(f.type, f"{path}.{f.encode_name}")]
    return []


def test_every_number_in_the_contract_has_a_range_the_store_can_compute_with() -> None:
    """Every integer and float, nested ones included, carries bounds (so the decoder enforces them and the
    JSON Schema states them): integers within int64 and negatable, floats finite and small enough that
    sums of them stay finite."""
    found = [n for cls in events.EVENT_TYPES for n in _numbers(mi.type_info(cls), events.type_tag(cls))]
    assert len(found) > 100
    for path, t in found:
        assert t.ge is not None and t.le is not None and t.gt is None and t.lt is None, path
        if isinstance(t, mi.IntType):
            assert -events.I64_MAX <= t.ge <= t.le <= events.I64_MAX, path
        else:
            assert -events.FLOAT_MAX <= t.ge <= t.le <= events.FLOAT_MAX, path
    times = {p for p, t in found if (t.ge, t.le) == (events.TIME_MIN_NS, events.TIME_MAX_NS)}
    assert {"kernel.start_ns", "kernel.api_start_ns", "session_start.clock.measured_at_ns"} <= times
    # What the store computes from two of them fits in int64: end - start, start - api_lead_ns, and a
    # bucket's start (<= the timestamp).
    assert events.TIME_MAX_NS + events.SPAN_MAX_NS <= events.I64_MAX
    assert events.TIME_MIN_NS - events.SPAN_MAX_NS >= -events.I64_MAX
    assert events.TIME_MAX_NS < 2**62 and events.SPAN_MAX_NS < 2**62


@pytest.mark.parametrize(
    "field,value,reason",
    [
        ("api_lead_ns", -(2**63), r">= -3155760000000000000 - at `\$.api_lead_ns`"),
        ("api_lead_ns", events.SPAN_MAX_NS + 1, r"<= 3155760000000000000 - at `\$.api_lead_ns`"),
        ("api_dur_ns", -1, r">= 0 - at `\$.api_dur_ns`"),
        ("start_ns", events.TIME_MIN_NS - 1, r">= 946684800000000000 - at `\$.start_ns`"),
        ("end_ns", events.TIME_MAX_NS + 1, r"<= 4102444800000000000 - at `\$.end_ns`"),
        ("api_start_ns", 0, r">= 946684800000000000 - at `\$.api_start_ns`"),
        ("device_id", 2**31, r"<= 2147483647 - at `\$.device_id`"),
        ("stream_id", -1, r">= 0 - at `\$.stream_id`"),
        ("thread_id", 2**63, r"<= 9223372036854775807 - at `\$.thread_id`"),
    ],
)
def test_a_number_out_of_its_range_is_rejected_with_the_field_and_the_bound(
    field: str, value: int, reason: str
) -> None:
    doc = {**events.to_builtins(kernel()), field: value}
    if field == "end_ns":
        doc["start_ns"] = events.TIME_MAX_NS
    with pytest.raises(events.ContractError, match=reason):
        events.decode(json.dumps(doc))


def test_numbers_at_their_bounds_are_accepted() -> None:
    lo, hi = events.TIME_MIN_NS, events.TIME_MAX_NS
    for k in (
        kernel(start_ns=lo, end_ns=hi, api_lead_ns=events.SPAN_MAX_NS, api_dur_ns=events.SPAN_MAX_NS),
        kernel(start_ns=hi, end_ns=hi, api_lead_ns=-events.SPAN_MAX_NS, device_id=events.DEVICE_ID_MAX),
        kernel(start_ns=lo, end_ns=lo, api_start_ns=lo, seq=events.I64_MAX, thread_id=events.I64_MAX),
    ):
        assert events.decode(events.encode(k)) == k
    s = events.SystemSample(
        session_id="a",
        stream="system",
        seq=1,
        ts_ns=hi,
        host=events.HostSample(cpu_pct=events.FLOAT_MAX),
        gpus=[events.GpuSample(device_id=0, temp_c=-events.FLOAT_MAX, power_mw=0.0)],
    )
    assert events.decode(events.encode(s)) == s


# Rejected: a "/" splits a URL path; "." and ".." are dot-segments URL normalisation removes, and "."
# splits segment file names; "\\" is a "/" to browsers; ":" can't be in a Windows file name; the rest
# change under percent-encoding; 65 characters exceed the routes' limit.
@pytest.mark.parametrize("sid", ["a/b", ".", "..", "a.b", "a\\b", "a:b", "a b", "a%b", "é", "", "x" * 65])
def test_a_session_id_outside_the_rule_is_rejected(sid: str) -> None:
    with pytest.raises(events.ContractError, match="session_id"):
        events.decode(events.encode(kernel(session_id=sid)))


def test_session_ids_the_rule_allows_and_the_clients_ids_follow_it() -> None:
    for sid in ("-", "_", "0", "Z", "uija34qtjberfcjx", "-" + "A" * 30 + "_Zaz09" + "9" * 26 + "-"):
        assert events.decode(events.encode(kernel(session_id=sid))).session_id == sid
    assert all(events.valid_session_id(new_session_id()) for _ in range(1000))
    committed = {
        s.session_id
        for d in ("examples/captures", "tests/fixtures")
        for p in (ROOT / d).glob("*/*.log")
        if (s := events.parse_segment_name(p.name)) is not None
    }
    assert len(committed) >= 5 and all(map(events.valid_session_id, committed))


def test_decode_raises_only_its_own_error_on_deep_nesting_and_bad_text() -> None:
    start = events.to_builtins(
        events.SessionStart(
            session_id="a", stream="device", seq=0, app="x", host="h", pid=1, start_ns=T, gpufl_version="0"
        )
    )
    deep = json.dumps(start)[:-1] + ', "options": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    for bad, reason in (
        (deep, "nested too deeply"),
        ('"\ud800"', "UTF-8"),
        (b"[" * 100_000, "Expected `object`"),
    ):
        with pytest.raises(events.ContractError, match=reason):
            events.decode(bad)
