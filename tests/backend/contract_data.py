"""Records built from the contract's own types and ranges (msgspec.inspect of gpufl.contract.events), not from a copy
of them: records with every field set and every number at one of its bounds, the numeric leaves of a record
with their bounds, and hypothesis strategies for valid records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from gpufl.contract import events as ev

Bound = Literal["min", "max"]
Path = tuple[str | int, ...]


def _strip(t: mi.Type) -> mi.Type:
    return _strip(t.type) if isinstance(t, mi.Metadata) else t


def _non_null(t: mi.Type) -> mi.Type:
    t = _strip(t)
    if isinstance(t, mi.UnionType):
        (only,) = [u for u in t.types if not isinstance(_strip(u), mi.NoneType)]
        return _strip(only)
    return t


def full_value(t: mi.Type, bound: Bound) -> Any:
    """A JSON value of type ``t`` with every optional field set and every number at ``bound``."""
    t = _non_null(t)
    if isinstance(t, mi.IntType | mi.FloatType):
        v = t.ge if bound == "min" else t.le
        return float(v) if isinstance(t, mi.FloatType) else v
    if isinstance(t, mi.StrType):
        return "x" * max(1, t.min_length or 0)
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.LiteralType):
        return t.values[0] if bound == "min" else t.values[-1]
    if isinstance(t, mi.ListType):
        return [full_value(t.item_type, bound)]
    if isinstance(t, mi.TupleType):
        return [full_value(u, bound) for u in t.item_types]
    if isinstance(t, mi.DictType):
        return {"k": full_value(t.value_type, bound) if not isinstance(t.value_type, mi.AnyType) else 1}
    if isinstance(t, mi.StructType):
        return {f.encode_name: full_value(f.type, bound) for f in t.fields}
    raise TypeError(f"no value for {t!r}")


def full_record(cls: type[ev.Record], sid: str, seq: int, bound: Bound) -> dict[str, Any]:
    """A valid record of ``cls`` as a JSON document: every field set, every number at ``bound`` (times at
    the window's start or end, so that end >= start holds)."""
    doc: dict[str, Any] = full_value(mi.type_info(cls), bound)
    tag = ev.type_tag(cls)
    doc["type"] = tag
    doc["session_id"] = sid
    doc["stream"] = next(s for s in ev.STREAMS if tag in ev.STREAM_TYPES[s])
    doc["seq"] = 0 if cls is ev.SessionStart else seq
    return doc


def numeric_leaves(
    t: mi.Type, doc: Any, path: Path = (), field: str = ""
) -> Iterator[tuple[Path, str, mi.IntType | mi.FloatType]]:
    """The numbers present in ``doc`` (a JSON value of type ``t``), each with its path, the name of the
    struct field holding it, and its type."""
    if doc is None:
        return
    t = _non_null(t)
    if isinstance(t, mi.IntType | mi.FloatType):
        yield path, field, t
    elif isinstance(t, mi.ListType):
        for i, v in enumerate(doc):
            yield from numeric_leaves(t.item_type, v, (*path, i), field)
    elif isinstance(t, mi.TupleType):
        for i, (u, v) in enumerate(zip(t.item_types, doc, strict=True)):
            yield from numeric_leaves(u, v, (*path, i), field)
    elif isinstance(t, mi.DictType):
        for k, v in doc.items():
            yield from numeric_leaves(t.value_type, v, (*path, k), field)
    elif isinstance(t, mi.StructType):
        for f in t.fields:
            if f.encode_name in doc:
                yield from numeric_leaves(f.type, doc[f.encode_name], (*path, f.encode_name), f.encode_name)


def outside(t: mi.IntType | mi.FloatType) -> list[int | float]:
    """Values just outside each bound."""
    assert t.ge is not None and t.le is not None
    if isinstance(t, mi.FloatType):
        return [t.ge - max(1e-6, abs(t.ge) * 1e-6), t.le + max(1e-6, abs(t.le) * 1e-6)]
    return [t.ge - 1, t.le + 1]


def put(doc: Any, path: Path, value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


# --------------------------------------------------------------------------------------------------
# hypothesis: valid values from the contract's ranges
# --------------------------------------------------------------------------------------------------

# Text the store keeps as it is (a NUL is refused by the backend: PostgreSQL text can't hold one).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | TEXT
SESSION_IDS = st.from_regex(ev.SESSION_ID_PATTERN, fullmatch=True)


def values(t: mi.Type) -> st.SearchStrategy[Any]:
    """JSON values of type ``t`` within the contract's ranges (the hypothesis side of ``full_value``)."""
    t = _strip(t)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(values(u) for u in t.types))
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.IntType):
        return st.integers(t.ge, t.le)
    if isinstance(t, mi.FloatType):
        return st.floats(t.ge, t.le, allow_nan=False)
    if isinstance(t, mi.StrType):
        return TEXT.filter(lambda s: len(s) >= (t.min_length or 0))
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.ListType):
        return st.lists(values(t.item_type), max_size=2)
    if isinstance(t, mi.TupleType):
        return st.tuples(*(values(u) for u in t.item_types)).map(list)
    if isinstance(t, mi.DictType):
        inner = JSON_LEAF if isinstance(t.value_type, mi.AnyType) else values(t.value_type)
        return st.dictionaries(TEXT, inner, max_size=2)
    if isinstance(t, mi.StructType):
        return st.fixed_dictionaries({f.encode_name: values(f.type) for f in t.fields})
    raise TypeError(f"no strategy for {t!r}")


@st.composite
def record(draw: st.DrawFn, cls: type[ev.Record], sid: str, seq: int, **fixed: Any) -> ev.Record:
    """A valid record of ``cls`` (every field drawn within its range; ``fixed`` fields as given), with the
    contract's semantic rules applied: end >= start, seq 0 for session_start."""
    doc: dict[str, Any] = draw(values(mi.type_info(cls)))
    doc.update(fixed)
    if doc.get("start_ns") is not None and doc.get("end_ns") is not None and doc["end_ns"] < doc["start_ns"]:
        doc["start_ns"], doc["end_ns"] = doc["end_ns"], doc["start_ns"]
    tag = ev.type_tag(cls)
    doc.update(
        type=tag,
        session_id=sid,
        stream=next(s for s in ev.STREAMS if tag in ev.STREAM_TYPES[s]),
        seq=0 if cls is ev.SessionStart else seq,
    )
    rec = ev.decode(msgspec.json.encode(doc))
    assert isinstance(rec, cls)
    return rec
