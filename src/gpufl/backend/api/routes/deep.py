"""The deep engines' endpoints (contract v6): divergence and stall reasons per session, scope path, kernel and
source line. Read role, like every session query."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from gpufl.backend.api import schemas as S
from gpufl.backend.api.errors import NOT_FOUND
from gpufl.backend.api.routes.sessions import I64, NAME_MAX, SessionId
from gpufl.backend.deps import ReadRole, StoreDep
from gpufl.backend.store import NotFound

router = APIRouter(tags=["query"])
ScopeId = Annotated[int, Path(ge=-I64, le=I64)]


def _exists(store: StoreDep, sid: str) -> None:
    if not store.session_exists(sid):
        raise HTTPException(404, f"session {sid!r} not found")


@router.get(
    "/sessions/{session_id}/deep", response_model=S.DeepSummary, dependencies=[ReadRole], responses=NOT_FOUND
)
def deep_summary(
    store: StoreDep,
    session_id: SessionId,
    ranges_limit: Annotated[int, Query(ge=0, le=10_000)] = 200,
) -> S.DeepSummary:
    """Per scope path and per kernel: divergence, instructions, stall-reason histogram; the deep ranges and
    what they lost (dropped samples, a full buffer, engine errors). ``has_data`` false: no deep engine ran."""
    _exists(store, session_id)
    return S.DeepSummary.model_validate(store.deep_summary(session_id, ranges_limit))


@router.get(
    "/sessions/{session_id}/deep/scopes/{scope_id}",
    response_model=S.DeepScopeDetail,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def deep_scope(
    store: StoreDep,
    session_id: SessionId,
    scope_id: ScopeId,
    instances_limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
) -> S.DeepScopeDetail:
    """One scope path: per kernel, and per instance (with its range) per kernel."""
    _exists(store, session_id)
    try:
        return S.DeepScopeDetail.model_validate(store.deep_scope(session_id, scope_id, instances_limit))
    except NotFound:
        raise HTTPException(404, f"scope {scope_id} not found in session {session_id!r}") from None


@router.get(
    "/sessions/{session_id}/deep/lines",
    response_model=S.DeepLines,
    dependencies=[ReadRole],
    responses=NOT_FOUND,
)
def deep_lines(
    store: StoreDep,
    session_id: SessionId,
    kernel: Annotated[str, Query(min_length=1, max_length=NAME_MAX)],
    scope_id: Annotated[int | None, Query(ge=-I64, le=I64)] = None,
    by: Literal["line", "pc"] = "line",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> S.DeepLines:
    """One kernel (by demangled name) per source line or PC, hottest first (PC samples, then instructions),
    with divergence and the top stall reasons per row; ``scope_id``: that scope path's samples only."""
    _exists(store, session_id)
    try:
        return S.DeepLines.model_validate(store.deep_lines(session_id, kernel, scope_id, by, limit))
    except NotFound:
        raise HTTPException(
            404, f"no deep-engine sample of kernel {kernel!r} in session {session_id!r}"
        ) from None
