"""Query endpoints: sessions, hosts, kernels, memcpy, memsets, scopes, system metrics (the deep engines' are
in ``deep``)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel

from gpufl.backend.api import schemas as S
from gpufl.backend.api import shape
from gpufl.backend.api.capture import CaptureWindows
from gpufl.backend.api.errors import BAD_CURSOR, NOT_FOUND
from gpufl.backend.api.timeline import LaunchTimeline
from gpufl.backend.deps import AdminRole, ReadRole, StoreDep
from gpufl.backend.store import NotFound, PageCursor, SqlStore

router = APIRouter(tags=["query"])


def fast_json(data: Any) -> Response:
    """The store's dict, encoded by msgspec. For the heavy endpoints: FastAPI would validate and serialise
    thousands of rows through pydantic; the response_model still documents the shape (and the API tests
    validate these responses against it)."""
    return Response(msgspec.json.encode(data), media_type="application/json")


I64 = 2**63 - 1
Ns = Annotated[int | None, Query(ge=0, le=I64)]
SmallInt = Annotated[int | None, Query(ge=-(2**31), le=2**31 - 1)]
SessionId = Annotated[str, Path(min_length=1, max_length=64)]
AnyI64 = Annotated[int | None, Query(ge=-I64, le=I64)]
"""A CUDA stream id or scope id filter: any 64-bit integer."""
CursorParam = Annotated[str | None, Query(max_length=512)]
NAME_MAX = 5_200
"""A kernel-name filter's longest, in characters: demangled C++ template names run past 4 KiB in real captures
(torch.randn's ``distribution_elementwise_grid_stride_kernel`` in examples/captures/phases is 5,114). Bounded so
that any such request still parses (with a 64-character session id and the other parameters): the server
reads request targets up to 64 KiB, and a character can take
12 bytes percent-encoded (4 of UTF-8, each %XX). Longer names cannot be asked for by name over GET."""
PageLimit = Annotated[int, Query(ge=1, le=10_000)]
_DECIMAL = re.compile(r"[0-9]{1,20}", re.ASCII)


def encode_cursor(c: PageCursor | None) -> str | None:
    if c is None:
        return None
    return base64.urlsafe_b64encode(json.dumps([c.key, c.tie]).encode()).decode().rstrip("=")


def decode_cursor(text: str | None, tie_type: type) -> PageCursor | None:
    if text is None:
        return None
    try:
        key, tie = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(key, int) or not isinstance(tie, tie_type) or abs(key) > I64:
            raise ValueError
        if isinstance(tie, int) and abs(tie) > I64:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(400, "invalid cursor") from None
    return PageCursor(int(key), tie if isinstance(tie, int) else str(tie))


def _exists(store: StoreDep, sid: str) -> None:
    if not store.session_exists(sid):
        raise HTTPException(404, f"session {sid!r} not found")


@router.get("/sessions", response_model=S.SessionPage, dependencies=[ReadRole], responses=BAD_CURSOR)
def list_sessions(
    store: StoreDep,
    host: Annotated[str | None, Query(max_length=256)] = None,
    app: Annotated[str | None, Query(max_length=256)] = None,
    since: Ns = None,
    until: Ns = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: CursorParam = None,
) -> BaseModel:
    items, nxt = store.list_sessions(host, app, since, until, limit, decode_cursor(cursor, str))
    return S.SessionPage(
        items=[S.SessionItem(**shape.session_item(i)) for i in items], next_cursor=encode_cursor(nxt)
    )


@router.get("/hosts", response_model=S.HostsResponse, dependencies=[ReadRole])
def hosts(store: StoreDep) -> S.HostsResponse:
    return S.HostsResponse.model_validate({"hosts": store.hosts()})


@router.get(
    "/sessions/{session_id}", response_model=S.SessionDetail, dependencies=[ReadRole], responses=NOT_FOUND
)
def session_detail(store: StoreDep, session_id: SessionId) -> S.SessionDetail:
    try:
        return S.SessionDetail.model_validate(store.session_detail(session_id))
    except NotFound:
        raise HTTPException(404, f"session {session_id!r} not found") from None


@router.get(
    "/sessions/{session_id}/capture-windows",
    response_model=CaptureWindows,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def capture_windows(store: StoreDep, session_id: SessionId) -> CaptureWindows:
    """When kernel tracing was on: the session's capture mode and its capture_window records."""
    try:
        return CaptureWindows.model_validate(store.capture_windows(session_id))
    except NotFound:
        raise HTTPException(404, f"session {session_id!r} not found") from None


@router.delete(
    "/sessions/{session_id}", response_model=S.Deleted, dependencies=[AdminRole], responses=NOT_FOUND
)
def delete_session(store: StoreDep, session_id: SessionId) -> S.Deleted:
    if not store.delete_session(session_id):
        raise HTTPException(404, f"session {session_id!r} not found")
    return S.Deleted(deleted=True)


@router.get(
    "/sessions/{session_id}/kernels",
    response_model=S.KernelPage | S.KernelTimeline,
    dependencies=[ReadRole],
    responses={**NOT_FOUND, **BAD_CURSOR},
)
def kernels(
    store: StoreDep,
    session_id: SessionId,
    start_ns: Ns = None,
    end_ns: Ns = None,
    device: SmallInt = None,
    stream: AnyI64 = None,
    name: Annotated[str | None, Query(max_length=NAME_MAX)] = None,
    scope: AnyI64 = None,
    resolution_ns: Annotated[int | None, Query(ge=1, le=I64)] = None,
    limit: PageLimit = 1000,
    cursor: CursorParam = None,
) -> Response:
    # Two answers under one path (kept for the UI and API clients): with resolution_ns, the kernel timeline
    # (KernelTimeline, level of detail); without, a page of kernels (KernelPage). A comment, not a docstring:
    # FastAPI would put a docstring into the OpenAPI document, from which the UI's types are generated.
    _exists(store, session_id)
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise HTTPException(422, "end_ns is before start_ns")
    if resolution_ns is not None:
        return _kernel_timeline(store, session_id, start_ns, end_ns, resolution_ns, device, stream, name)
    items, nxt = store.kernels(
        session_id, start_ns, end_ns, device, stream, name, scope, limit, decode_cursor(cursor, int)
    )
    return fast_json({"items": [shape.activity_item(r) for r in items], "next_cursor": encode_cursor(nxt)})


def _kernel_timeline(
    store: SqlStore,
    session_id: str,
    start_ns: int | None,
    end_ns: int | None,
    resolution_ns: int,
    device: int | None,
    stream_id: int | None,
    name: str | None,
) -> Response:
    if start_ns is None or end_ns is None:
        raise HTTPException(422, "resolution_ns needs start_ns and end_ns")
    if (end_ns - start_ns) // resolution_ns > 100_000:
        raise HTTPException(422, "window / resolution_ns exceeds 100000 buckets")
    body = store.kernel_timeline_json(
        session_id, start_ns, end_ns, resolution_ns, device, stream_id, name=name
    )
    return Response(body, media_type="application/json")


@router.get(
    "/sessions/{session_id}/memory/timeline",
    response_model=S.MemoryTimeline,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def memory_timeline(
    store: StoreDep,
    session_id: SessionId,
    start_ns: Annotated[int, Query(ge=0, le=I64)],
    end_ns: Annotated[int, Query(ge=0, le=I64)],
    resolution_ns: Annotated[int, Query(ge=1, le=I64)],
) -> Response:
    # The memory lane's level of detail: copies and memsets per bucket and kind, each counted.
    _exists(store, session_id)
    if end_ns < start_ns:
        raise HTTPException(422, "end_ns is before start_ns")
    if (end_ns - start_ns) // resolution_ns > 100_000:
        raise HTTPException(422, "window / resolution_ns exceeds 100000 buckets")
    return fast_json(store.memory_timeline(session_id, start_ns, end_ns, resolution_ns))


@router.get(
    "/sessions/{session_id}/launches",
    response_model=LaunchTimeline,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def launch_timeline(
    store: StoreDep,
    session_id: SessionId,
    start_ns: Annotated[int, Query(ge=0, le=I64)],
    end_ns: Annotated[int, Query(ge=0, le=I64)],
    resolution_ns: Annotated[int, Query(ge=1, le=I64)],
) -> Response:
    # The threads' launch-API calls per bucket and thread, each counted (the thread tracks' level of detail).
    _exists(store, session_id)
    if end_ns < start_ns:
        raise HTTPException(422, "end_ns is before start_ns")
    if (end_ns - start_ns) // resolution_ns > 100_000:
        raise HTTPException(422, "window / resolution_ns exceeds 100000 buckets")
    return fast_json(store.launch_timeline(session_id, start_ns, end_ns, resolution_ns))


@router.get(
    "/sessions/{session_id}/range",
    response_model=S.RangeSummary,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def range_summary(
    store: StoreDep,
    session_id: SessionId,
    start_ns: Annotated[int, Query(ge=0, le=I64)],
    end_ns: Annotated[int, Query(ge=0, le=I64)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> Response:
    # A selected time range (the timeline's area selection): per kernel name, copy kind and scope path.
    _exists(store, session_id)
    if end_ns <= start_ns:
        raise HTTPException(422, "end_ns must be after start_ns")
    return fast_json(store.range_summary(session_id, start_ns, end_ns, limit))


@router.get(
    "/sessions/{session_id}/search",
    response_model=S.SearchResult,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def search(
    store: StoreDep,
    session_id: SessionId,
    text: Annotated[str, Query(min_length=1, max_length=NAME_MAX)],
    at_ns: Annotated[int, Query(ge=0, le=I64)],
    direction: Literal["next", "prev"] = "next",
    at_kind: Literal["kernel", "scope"] | None = None,
    at_id: Annotated[int | None, Query(ge=0, le=I64)] = None,
) -> Response:
    # Kernels and scope instances whose name contains the text: counts, and the next/previous from at_ns.
    # at_kind + at_id: the match the search stands on (at at_ns), so instances that start at the same ns
    # are stepped through one by one, in (start, kind, id) order, each once.
    _exists(store, session_id)
    if (at_kind is None) != (at_id is None):
        raise HTTPException(422, "at_kind and at_id go together")
    at = (at_kind, at_id) if at_kind is not None and at_id is not None else None
    return fast_json(store.search(session_id, text, at_ns, backward=direction == "prev", at=at))


@router.get(
    "/sessions/{session_id}/kernels/summary",
    response_model=S.KernelSummary,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def kernel_summary(
    store: StoreDep,
    session_id: SessionId,
    sort: Literal["total", "count", "mean", "max", "p95", "name"] = "total",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    start_ns: Ns = None,
    end_ns: Ns = None,
) -> Response:
    # With start_ns/end_ns: only the kernels overlapping that window (each counted whole).
    _exists(store, session_id)
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise HTTPException(422, "end_ns is before start_ns")
    return fast_json(store.kernel_summary(session_id, sort, limit, start_ns, end_ns))


@router.get(
    "/sessions/{session_id}/kernels/histogram",
    response_model=S.KernelHistogram,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def kernel_histogram(
    store: StoreDep,
    session_id: SessionId,
    name: Annotated[str, Query(max_length=NAME_MAX)],
    start_ns: Ns = None,
    end_ns: Ns = None,
) -> Response:
    _exists(store, session_id)
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise HTTPException(422, "end_ns is before start_ns")
    return fast_json(store.kernel_histogram(session_id, name, start_ns, end_ns))


@router.get(
    "/sessions/{session_id}/kernels/{kernel_id}",
    response_model=S.KernelDetail,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def kernel_detail(
    store: StoreDep, session_id: SessionId, kernel_id: Annotated[str, Path(max_length=20)]
) -> BaseModel:
    # ASCII digits only: str.isdigit() also accepts '²' or '٣', which int() refuses or reads as 3.
    if not _DECIMAL.fullmatch(kernel_id) or int(kernel_id) > I64:
        raise HTTPException(404, f"kernel {kernel_id!r} not found")
    try:
        return S.KernelDetail.model_validate(shape.activity_item(store.kernel(session_id, int(kernel_id))))
    except NotFound:
        raise HTTPException(404, f"kernel {kernel_id!r} not found in session {session_id!r}") from None


def _activity_route(table: str, model: type[BaseModel], path: str) -> None:
    """GET copies or memsets: the same window, filters and cursor as raw kernels."""

    def handler(
        store: StoreDep,
        session_id: SessionId,
        start_ns: Ns = None,
        end_ns: Ns = None,
        device: SmallInt = None,
        stream: AnyI64 = None,
        scope: AnyI64 = None,
        limit: PageLimit = 1000,
        cursor: CursorParam = None,
    ) -> Response:
        _exists(store, session_id)
        page = store.memcpys if table == "memcpys" else store.memsets
        items, nxt = page(
            session_id, start_ns, end_ns, device, stream, scope, limit, decode_cursor(cursor, int)
        )
        return fast_json(
            {"items": [shape.activity_item(r) for r in items], "next_cursor": encode_cursor(nxt)}
        )

    handler.__name__ = path  # the OpenAPI operation id, as before
    router.get(
        f"/sessions/{{session_id}}/{path}",
        response_model=model,
        dependencies=[ReadRole],
        responses={**NOT_FOUND, **BAD_CURSOR},
    )(handler)


_activity_route("memcpys", S.MemcpyPage, "memcpy")
_activity_route("memsets", S.MemsetPage, "memsets")


@router.get(
    "/sessions/{session_id}/scopes", response_model=S.ScopeTree, dependencies=[ReadRole], responses=NOT_FOUND
)
def scopes(store: StoreDep, session_id: SessionId) -> S.ScopeTree:
    _exists(store, session_id)
    return S.ScopeTree.model_validate({"roots": store.scope_tree(session_id)})


# Registered before /scopes/{scope_id}/... (different segment counts today, but keep the literal path first).
@router.get(
    "/sessions/{session_id}/scopes/instances",
    response_model=S.ScopeInstancePage,
    dependencies=[ReadRole],
    responses={**NOT_FOUND, **BAD_CURSOR},
)
def scope_instances(
    store: StoreDep,
    session_id: SessionId,
    start_ns: Ns = None,
    end_ns: Ns = None,
    min_dur_ns: Ns = None,
    scope: AnyI64 = None,
    limit: PageLimit = 1000,
    cursor: CursorParam = None,
) -> Response:
    # scope: only the instances of that scope path (its scope_id in the tree).
    _exists(store, session_id)
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise HTTPException(422, "end_ns is before start_ns")
    items, nxt = store.scope_instances(
        session_id, start_ns, end_ns, min_dur_ns, limit, decode_cursor(cursor, int), scope
    )
    return fast_json({"items": items, "next_cursor": encode_cursor(nxt)})


@router.get(
    "/sessions/{session_id}/scopes/{scope_id}/kernels",
    response_model=S.ScopeKernels,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def scope_kernels(
    store: StoreDep,
    session_id: SessionId,
    scope_id: Annotated[int, Path(ge=-I64, le=I64)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> S.ScopeKernels:
    """Kernels of a scope and the scopes under it, grouped by name: what the scope costs on the GPU."""
    _exists(store, session_id)
    try:
        return S.ScopeKernels.model_validate(store.scope_kernels(session_id, scope_id, limit))
    except NotFound:
        raise HTTPException(404, f"scope {scope_id} not found in session {session_id!r}") from None


@router.get(
    "/sessions/{session_id}/system",
    response_model=S.SystemResponse,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def system(
    store: StoreDep,
    session_id: SessionId,
    metric: Annotated[str | None, Query(max_length=128)] = None,
    device: SmallInt = None,
    start_ns: Ns = None,
    end_ns: Ns = None,
    points: Annotated[int, Query(ge=1, le=10_000)] = 300,
) -> Response:
    _exists(store, session_id)
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise HTTPException(422, "end_ns must be after start_ns")
    return fast_json(store.system(session_id, metric, device, start_ns, end_ns, points))
