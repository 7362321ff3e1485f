"""The store's typed rows (``gpufl.backend.store.rows``) in the shapes of the response models: a record's id
(its seq as a decimal string, stable across re-deliveries and engines), its duration, and a session's
``cut_short`` (the negation of ``ended``, kept for the UI). Dicts, because the heavy endpoints encode them with
msgspec directly (``routes.sessions.fast_json``).

The response models of these rows are made here too (``model``), from the row's fields and what the shaping
adds, so a field added to a row reaches the API and its OpenAPI document (and the UI's generated types)
without being listed again."""

from __future__ import annotations

from types import GenericAlias
from typing import Any

import msgspec
from pydantic import BaseModel, create_model

from gpufl.backend.store import rows

ACTIVITY_ADDS: dict[str, Any] = {"id": str, "dur_ns": int}
"""What ``activity_item`` adds to a kernel's, copy's or memset's row: its stable id and its duration."""

SESSION_ADDS: dict[str, Any] = {"cut_short": bool}
"""What ``session_item`` adds to a session's row."""


def model(
    name: str, row: type[msgspec.Struct], adds: dict[str, Any], types: dict[str, Any] | None = None
) -> type[BaseModel]:
    """The response model of a shaped row: every field of ``row`` with its declared type, then ``adds`` (what the
    shaping computes), each required (a field that may be null says so in its type, as in the row). ``types``
    states a field more precisely than the row does (a nested model where the row holds plain dicts)."""
    hints = {f.name: f.type for f in msgspec.structs.fields(row)}
    hints.update(adds)
    if types and not types.keys() <= hints.keys():
        raise ValueError(f"{name}: no field {sorted(types.keys() - hints.keys())} to state a type for")
    hints.update(types or {})
    fields: dict[str, Any] = {n: (t, ...) for n, t in hints.items()}
    made: type[BaseModel] = create_model(name, __module__=__name__, **fields)
    return made


def page(name: str, item: type[BaseModel]) -> type[BaseModel]:
    """A page of ``item``: the items and the cursor of the next page (None on the last page)."""
    fields: dict[str, Any] = {"items": (GenericAlias(list, (item,)), ...), "next_cursor": (str | None, ...)}
    made: type[BaseModel] = create_model(name, __module__=__name__, **fields)
    return made


def session_item(r: rows.Session) -> dict[str, Any]:
    out = msgspec.structs.asdict(r)
    out["cut_short"] = not r.ended
    return out


def activity_item(r: rows.Kernel | rows.KernelDetail | rows.Copy | rows.Memset) -> dict[str, Any]:
    """A kernel, copy or memset: every column of its row, its id and its duration. (The id goes last: building
    the dict from ``asdict`` alone costs what a literal did, half of copying it into a dict that starts with
    the id, on pages of up to 10,000 rows.)"""
    out = msgspec.structs.asdict(r)
    out["id"] = str(r.seq)
    out["dur_ns"] = r.end_ns - r.start_ns
    return out
