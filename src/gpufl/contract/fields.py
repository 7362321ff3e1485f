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


def _kind(t: mi.Type) -> tuple[Kind, bool]:
    if isinstance(t, mi.Metadata):
        return _kind(t.type)
    nullable = False
    if isinstance(t, mi.UnionType):
        rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
        nullable = len(rest) < len(t.types)
        if len(rest) != 1:
            return "other", nullable
        t = rest[0]
        if isinstance(t, mi.Metadata):
            t = t.type
    if isinstance(t, mi.IntType):
        return "int", nullable
    if isinstance(t, mi.FloatType):
        return "float", nullable
    if isinstance(t, mi.StrType) or (
        isinstance(t, mi.LiteralType) and all(isinstance(v, str) for v in t.values)
    ):
        return "str", nullable
    return "other", nullable


@cache
def field_specs(cls: type[msgspec.Struct]) -> tuple[FieldSpec, ...]:
    """The fields of ``cls`` in the contract's order (``Record``'s first: session_id, stream, seq)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    out = []
    for f in info.fields:
        kind, nullable = _kind(f.type)
        out.append(FieldSpec(f.name, kind, nullable, f.required))
    return tuple(out)


def own_fields(cls: type[ev.Record]) -> tuple[FieldSpec, ...]:
    """The fields of a record type beyond ``Record``'s (session_id, stream, seq)."""
    common = {f.name for f in field_specs(ev.Record)}
    return tuple(f for f in field_specs(cls) if f.name not in common)
