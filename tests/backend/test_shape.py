"""gpufl.backend.api.shape: the store's typed rows in the API's shapes, and the response models made from the rows.

The models are derived (``shape.model``), so these tests hold the derivation to what is served: on a real
capture (examples/captures/gpt_stacks: kernels with call stacks and scopes, copies, memsets), every shaped row
has exactly its model's fields, validates strictly, and comes back from the model unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from gpufl.backend.api import schemas as S
from gpufl.backend.api import shape
from gpufl.backend.store import SqlStore, rows
from gpufl.contract import events as ev

from .helpers import feed

CAPTURE = Path(__file__).resolve().parents[2] / "examples" / "captures" / "gpt_stacks"


@pytest.fixture
def loaded(store: SqlStore) -> tuple[SqlStore, str]:
    recs = [ev.decode(ln) for f in sorted(CAPTURE.glob("*.log")) for ln in f.read_bytes().splitlines() if ln]
    feed(store, recs)
    (sid,) = {r.session_id for r in recs}
    return store, sid


def _same(model: type[BaseModel], shaped: dict[str, Any]) -> None:
    """Served and documented agree: the same fields, and the model neither rejects nor alters a value."""
    assert set(shaped) == set(model.model_fields)
    assert model.model_validate(shaped, strict=True).model_dump() == shaped


@pytest.mark.parametrize(
    ("model", "row", "adds"),
    [
        (S.SessionItem, rows.Session, shape.SESSION_ADDS),
        (S.KernelRow, rows.Kernel, shape.ACTIVITY_ADDS),
        (S.KernelDetail, rows.KernelDetail, shape.ACTIVITY_ADDS),
        (S.MemcpyRow, rows.Copy, shape.ACTIVITY_ADDS),
        (S.MemsetRow, rows.Memset, shape.ACTIVITY_ADDS),
    ],
)
def test_model_has_the_rows_fields_and_what_shaping_adds(
    model: type[BaseModel], row: type[msgspec.Struct], adds: dict[str, Any]
) -> None:
    row_fields = {f.name: f.type for f in msgspec.structs.fields(row)}
    assert list(model.model_fields) == [*row_fields, *adds]
    for name, field in model.model_fields.items():
        assert field.is_required(), name  # a field that may be null says so in its type, never by absence
        if name in adds:
            assert field.annotation is adds[name]
        elif name not in ("stack", "scope"):  # the detail's nested models, stated more precisely than the row
            assert field.annotation == row_fields[name], name


def test_every_row_of_a_real_capture_is_its_model(loaded: tuple[SqlStore, str]) -> None:
    store, sid = loaded
    sessions, _ = store.list_sessions()
    assert [s.session_id for s in sessions] == [sid]
    _same(S.SessionItem, shape.session_item(sessions[0]))
    pages: list[tuple[type[BaseModel], list[Any]]] = [
        (S.KernelRow, store.kernels(sid, limit=10_000)[0]),
        (S.MemcpyRow, store.memcpys(sid, limit=10_000)[0]),
        (S.MemsetRow, store.memsets(sid, limit=10_000)[0]),
    ]
    for model, found in pages:
        assert found, model.__name__
        for r in found:
            _same(model, shape.activity_item(r))
    kernels = pages[0][1]
    assert [shape.activity_item(k)["id"] for k in kernels[:3]] == [str(k.seq) for k in kernels[:3]]
    assert all(shape.activity_item(k)["dur_ns"] == k.end_ns - k.start_ns for k in kernels)


def test_kernel_detail_with_stack_and_scope(loaded: tuple[SqlStore, str]) -> None:
    store, sid = loaded
    kernels, _ = store.kernels(sid, limit=10_000)
    k = next(k for k in kernels if k.stack_id is not None and k.scope_inst is not None)
    shaped = shape.activity_item(store.kernel(sid, k.seq))
    _same(S.KernelDetail, shaped)
    assert shaped["stack"] and set(shaped["stack"][0]) == {"file", "line", "function"}
    assert shaped["scope"]["inst"] == k.scope_inst and shaped["launch"]["name"] == shaped["name"]


def test_session_cut_short_is_not_ended(loaded: tuple[SqlStore, str]) -> None:
    store, _ = loaded
    (s,), _ = store.list_sessions()
    assert s.ended and shape.session_item(s)["cut_short"] is False
