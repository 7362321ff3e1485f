"""store/rows.py against the contract: the rows of kernels, copies and memsets serve every field of their
record, with the contract's type and nullability, but the ones stated here as not served. A field added to
``events.Kernel`` (or Memcpy, Memset) fails this test until its row serves it (and then the API does:
test_shape.py) or it is added below, with the reason, as not served."""

from __future__ import annotations

import msgspec
import pytest

from gpufl.backend.store import rows
from gpufl.contract import events as ev
from gpufl.contract import fields

# Which stream and session a row is of, the query says; these fields are never a row's.
KEYS = {"session_id", "stream"}

NOT_SERVED: dict[type[ev.Record], set[str]] = {
    # served folded into the detail's api_start_ns (start_ns - api_lead_ns, or v1's own api_start_ns)
    ev.Kernel: {"api_lead_ns"},
    # stored, not served yet: peer copies' devices, the context, the graph, v1's absolute api_start_ns
    # and the scope depth (the scope instance is served)
    ev.Memcpy: {"src_device_id", "dst_device_id", "context_id", "graph_id", "api_start_ns", "scope_depth"},
    ev.Memset: {"context_id", "graph_id", "thread_id", "scope_depth"},
}

ROWS: dict[type[ev.Record], type[msgspec.Struct]] = {
    ev.Kernel: rows.KernelDetail,
    ev.Memcpy: rows.Copy,
    ev.Memset: rows.Memset,
}

_PY = {"int": int, "float": float, "str": str}


@pytest.mark.parametrize("record", list(ROWS), ids=lambda c: c.__name__)
def test_row_serves_its_records_fields(record: type[ev.Record]) -> None:
    row = {f.name: f.type for f in msgspec.structs.fields(ROWS[record])}
    contract = {f.name: f for f in fields.field_specs(record) if f.name not in KEYS}
    assert NOT_SERVED[record] <= contract.keys()  # a stale entry here is a field the contract dropped
    assert {n for n in contract if n not in row} == NOT_SERVED[record]
    for name, spec in contract.items():
        if name in row:
            want = _PY[spec.kind] | None if spec.nullable else _PY[spec.kind]
            assert row[name] == want, name


def test_every_activity_row_leads_with_the_activity_fields() -> None:
    common = rows.columns(rows.Activity)
    names = {f.name for f in fields.field_specs(ev.Activity)} - KEYS
    assert names <= set(common)  # the contract's common fields are the shared row's
    for row in (rows.Kernel, rows.Copy, rows.Memset):
        assert rows.columns(row)[: len(common)] == common
