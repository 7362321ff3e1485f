"""Test helpers: feed records to a store the way the ingest path does."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec

from gpufl.backend.api import shape
from gpufl.backend.ingest import IngestResult, ingest_raws
from gpufl.backend.store import PageCursor, SqlStore
from gpufl.contract import events as ev


def feed(store: SqlStore, records: Iterable[ev.Record]) -> dict[str, IngestResult]:
    """Encode and ingest records, one batch per stream, through ingest_raws (decode + validate + store)."""
    by_stream: dict[str, list[bytes]] = defaultdict(list)
    for r in records:
        by_stream[r.stream].append(ev.encode(r))
    return {s: ingest_raws(store, s, raws) for s, raws in by_stream.items()}


def timeline(store: SqlStore, sid: str, start_ns: int, end_ns: int, resolution_ns: int) -> dict[str, Any]:
    """The kernel timeline as the API sends it (``kernel_timeline_json``), decoded."""
    out: dict[str, Any] = msgspec.json.decode(
        store.kernel_timeline_json(sid, start_ns, end_ns, resolution_ns)
    )
    return out


# The store's query families answer typed rows (gpufl.backend.store.rows); these give them in the API's
# shapes (gpufl.backend.api.shape), as the routes do, for tests that check what a client sees.


def session_page(store: SqlStore, *args: Any, **kw: Any) -> tuple[list[dict[str, Any]], PageCursor | None]:
    items, nxt = store.list_sessions(*args, **kw)
    return [shape.session_item(r) for r in items], nxt


def kernel_page(store: SqlStore, *args: Any, **kw: Any) -> tuple[list[dict[str, Any]], PageCursor | None]:
    items, nxt = store.kernels(*args, **kw)
    return [shape.activity_item(r) for r in items], nxt


def kernel_detail(store: SqlStore, sid: str, seq: int) -> dict[str, Any]:
    return shape.activity_item(store.kernel(sid, seq))


def memcpy_page(store: SqlStore, *args: Any, **kw: Any) -> tuple[list[dict[str, Any]], PageCursor | None]:
    items, nxt = store.memcpys(*args, **kw)
    return [shape.activity_item(r) for r in items], nxt


def memset_page(store: SqlStore, *args: Any, **kw: Any) -> tuple[list[dict[str, Any]], PageCursor | None]:
    items, nxt = store.memsets(*args, **kw)
    return [shape.activity_item(r) for r in items], nxt
