"""The record types as data: each field's name, scalar kind and whether it may be null, read from the structs
in ``events`` (msgspec's introspection), for the parts that derive from the contract rather than list its
fields again: the store's record tables (``gpufl.backend.store.schema``), a converter that fills a record
from a source's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import msgspec
from msgspec import inspect as mi

from gpufl.contract import events as ev

Kind = Literal["int", "float", "str", "other"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    """``int``, ``float``, ``str`` (strings and string literals) or ``other`` (lists, objects, structs)."""
    nullable: bool
    required: bool
    ge: int | float | None = None
    """The range of a number (the contract's ``Meta``); None where unbounded or not a number."""
    le: int | float | None = None


def _spec(name: str, t: mi.Type, required: bool) -> FieldSpec:
    if isinstance(t, mi.Metadata):
        t = t.type
    nullable = False
    if isinstance(t, mi.UnionType):
        rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
        nullable = len(rest) < len(t.types)
        if len(rest) != 1:
            return FieldSpec(name, "other", nullable, required)
        t = rest[0]
        if isinstance(t, mi.Metadata):
            t = t.type
    if isinstance(t, mi.IntType):
        return FieldSpec(name, "int", nullable, required, t.ge, t.le)
    if isinstance(t, mi.FloatType):
        return FieldSpec(name, "float", nullable, required, t.ge, t.le)
    if isinstance(t, mi.StrType) or (
        isinstance(t, mi.LiteralType) and all(isinstance(v, str) for v in t.values)
    ):
        return FieldSpec(name, "str", nullable, required)
    return FieldSpec(name, "other", nullable, required)


@cache
def field_specs(cls: type[msgspec.Struct]) -> tuple[FieldSpec, ...]:
    """The fields of ``cls`` in the contract's order (``Record``'s first: session_id, stream, seq)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return tuple(_spec(f.name, f.type, f.required) for f in info.fields)


def own_fields(cls: type[ev.Record]) -> tuple[FieldSpec, ...]:
    """The fields of a record type beyond ``Record``'s (session_id, stream, seq)."""
    common = {f.name for f in field_specs(ev.Record)}
    return tuple(f for f in field_specs(cls) if f.name not in common)


def timestamps(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    """The fields of ``cls`` that are points on the session's time axis (typed ``events.Ns``): what a replay
    shifts, unlike durations and leads."""
    return tuple(f.name for f in field_specs(cls) if f.kind == "int" and f.ge == ev.TIME_MIN_NS)
