"""The contract's checks agree in their three forms (gpufl.contract.checks): per record, per column, in SQL."""

from __future__ import annotations

import json

import duckdb
import msgspec
import pytest

from gpufl.contract import checks
from gpufl.contract import events as ev

T0 = 1_700_000_000_000_000_000

_GOOD: dict[str, dict[str, object]] = {
    "kernel": dict(launch_id=1, device_id=0, stream_id=7, corr_id=1, start_ns=T0, end_ns=T0 + 10),
    "memcpy": dict(
        device_id=0, stream_id=7, corr_id=1, start_ns=T0, end_ns=T0 + 10, bytes=8, copy_kind="HtoD"
    ),
    "scope_begin": dict(inst=1, path_id=1, depth=0, ts_ns=T0, thread_id=1),
    "capture_gap": dict(start_ns=T0, end_ns=T0 + 5, reason="profiler"),
}
_STREAM = {"kernel": "device", "memcpy": "device", "scope_begin": "scope", "capture_gap": "device"}

# (field, value, posted to another stream?): each breaks one rule, or none (None)
_MUTATIONS: list[tuple[str | None, object, bool]] = [
    (None, None, False),
    ("end_ns", T0 - 1, False),
    ("seq", -1, False),  # out of the decoder's range
    ("seq", ..., False),  # absent: the writer's "not stamped yet" (-1), which the rules refuse
    ("session_id", "a.b", False),
    ("stream", "scope", False),
    (None, None, True),
    ("end_ns", None, False),  # an optional end (capture_gap) that is null: nothing to order
]


def _record(tag: str, field: str | None, value: object) -> bytes:
    doc: dict[str, object] = {"type": tag, "session_id": "s1", "stream": _STREAM[tag], "seq": 3, **_GOOD[tag]}
    if value is ...:
        del doc[str(field)]
    elif field is not None:
        doc[field] = value
    return json.dumps(doc).encode()


def _row_ok(raw: bytes, stream: str) -> bool:
    try:
        checks.check_posted(raw, stream)
    except ev.ContractError:
        return False
    return True


def _columns_ok(raw: bytes, stream: str) -> bool | None:
    try:
        rec = msgspec.json.decode(raw, type=ev.Event)
    except msgspec.ValidationError:
        return None  # the decoder's verdict (a type or range), before any rule
    cols = dict(
        zip((f.name for f in msgspec.structs.fields(rec)), zip(msgspec.structs.astuple(rec)), strict=True)
    )
    return checks.columns_ok(type(rec), [rec], cols, stream)


def _sql_ok(raw: bytes, stream: str) -> bool | None:
    rec = msgspec.json.decode(raw, type=ev.Event)
    violations = checks.sql_violations(type(rec), stream)
    if violations is None:
        return None
    con = duckdb.connect()
    row = ev.to_builtins(rec)
    names = [f.name for f in msgspec.structs.fields(rec) if not isinstance(row[f.name], (list, dict))]
    con.execute(
        f"CREATE TABLE b ({', '.join(f'{n} VARCHAR' if isinstance(row[n], str) else f'{n} BIGINT' for n in names)})"
    )
    con.execute(f"INSERT INTO b VALUES ({', '.join('?' * len(names))})", [row[n] for n in names])
    counts = con.execute(f"SELECT {', '.join(violations.values())} FROM b").fetchone()
    assert counts is not None
    return not any(counts) and ev.valid_session_id(rec.session_id)


@pytest.mark.parametrize("tag", sorted(_GOOD))
@pytest.mark.parametrize(
    "mutation", _MUTATIONS, ids=lambda m: f"{m[0]}={m[1]!r}/{'other' if m[2] else 'own'}"
)
def test_row_column_and_sql_forms_agree(tag: str, mutation: tuple[str | None, object, bool]) -> None:
    field, value, elsewhere = mutation
    if field == "end_ns" and value is None and tag != "capture_gap":
        pytest.skip("end_ns is required here: the decoder refuses null")
    if field is not None and (field not in _GOOD[tag] and field not in ("seq", "session_id", "stream")):
        pytest.skip(f"{tag} has no {field}")
    if field == "stream" and value == _STREAM[tag]:
        pytest.skip(f"{tag} is on that stream")
    raw = _record(tag, field, value)
    stream = next(s for s in ev.STREAMS if s != _STREAM[tag]) if elsewhere else _STREAM[tag]
    expected = field is None or (field == "end_ns" and value is None)
    expected = expected and not elsewhere
    assert _row_ok(raw, stream) is expected
    cols = _columns_ok(raw, stream)
    assert cols is None or cols is expected
    if cols is not None and ev.type_tag(ev.TYPE_BY_TAG[tag]) in ev.STREAM_TYPES[stream]:
        sql = _sql_ok(raw, stream)
        assert sql is None or sql is expected
    if field is None and not elsewhere:
        assert cols is True and _sql_ok(raw, stream) is True  # a good record passes every form


def test_posting_rules_are_the_contract_s() -> None:
    nul = _record("kernel", "session_id", "a\u0000b").replace(b"\\u0000", b"\\u0000")
    with pytest.raises(ev.ContractError, match="NUL"):
        checks.check_posted(nul, "device")
    deep: object = 1
    for _ in range(checks.MAX_OPTIONS_DEPTH + 1):
        deep = [deep]
    start = ev.SessionStart(
        session_id="s1",
        stream="device",
        seq=0,
        app="a",
        host="h",
        pid=1,
        start_ns=T0,
        gpufl_version="x",
        options={"o": deep},
    )
    with pytest.raises(ev.ContractError, match="nested deeper"):
        checks.check_posted(ev.encode(start), "device")
    assert checks.sql_violations(ev.SessionStart, "device") is None  # its options have no SQL form
    wrong_seq = msgspec.structs.replace(start, options={}, seq=1)
    assert not checks.columns_ok(
        ev.SessionStart, [wrong_seq], {"stream": ["device"], "session_id": ["s1"], "seq": [1]}, "device"
    )
    with pytest.raises(ev.ContractError, match="session_start must have seq 0"):
        checks.check_posted(ev.encode(wrong_seq), "device")
