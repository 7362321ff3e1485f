"""Property (hypothesis): the contract's decoder raises nothing but ContractError, its documented error,
whatever it is given: arbitrary bytes and text, real log lines with bytes flipped, cut or inserted, and JSON
objects shaped like records with arbitrary values. What it accepts encodes back to the same record.

Bounded in time: 600 byte strings and 200 texts, ~1.5 s on two busy cores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufl.contract import events

ROOT = Path(__file__).resolve().parents[2]


def _real_lines() -> list[bytes]:
    """The first line of each record type in a committed capture (one of each)."""
    seen: dict[bytes, bytes] = {}
    for p in sorted((ROOT / "examples/captures/gpt_train").glob("*.log")):
        for line in p.read_bytes().splitlines():
            kind = line[: line.find(b",")]
            seen.setdefault(kind, line)
    assert len(seen) >= 8
    return list(seen.values())


REAL = _real_lines()
FIELDS = sorted(
    {f.encode_name for t in events.EVENT_TYPES for f in msgspec.structs.fields(t)} | {"type", "k"}
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([-(2**63), 2**63 - 1, 2**63, 2**64, -1, 0, events.TIME_MIN_NS, events.TIME_MAX_NS])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(sorted(events.TYPE_BY_TAG) + list(events.STREAMS)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real line with a few edits: a byte replaced, a run inserted or deleted, or cut short."""
    line = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(line)))
        op = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if op == "set" and i < len(line):
            line[i] = draw(st.integers(0, 255))
        elif op == "insert":
            line[i:i] = draw(
                st.binary(min_size=1, max_size=8) | st.sampled_from([b"-", b"9" * 20, b"\\u0000"])
            )
        elif op == "delete":
            del line[i : i + draw(st.integers(1, 8))]
        else:
            del line[i:]
    return bytes(line)


@st.composite
def record_like(draw: st.DrawFn) -> bytes:
    """A real record with some fields replaced by arbitrary JSON values (types and ranges both wrong or
    right), or fields added."""
    doc: dict[str, Any] = json.loads(draw(st.sampled_from(REAL)))
    for key in draw(st.lists(st.sampled_from([*doc, *FIELDS]), min_size=1, max_size=3)):
        doc[key] = draw(JSON)
    return json.dumps(doc).encode()


INPUTS = st.one_of(
    st.binary(max_size=300), mutated(), record_like(), JSON.map(lambda v: json.dumps(v).encode())
)


def _decode_is_total(data: bytes | str) -> None:
    try:
        rec = events.decode(data)
    except events.ContractError:
        return
    assert events.decode(events.encode(rec)) == rec


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(INPUTS)
def test_decode_raises_only_contract_error_on_any_bytes(data: bytes) -> None:
    _decode_is_total(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | INPUTS.map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_decode_raises_only_contract_error_on_any_text(text: str) -> None:
    _decode_is_total(text)
