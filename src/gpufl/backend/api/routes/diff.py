"""``GET /diff?base=&target=``: one stored session against another (``gpufl.diff``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, HTTPException, Query

from gpufl.backend.api import schemas as S
from gpufl.backend.api.errors import NOT_FOUND
from gpufl.backend.deps import ReadRole, StoreDep
from gpufl.backend.store import NotFound
from gpufl.diff.compare import MIN_EFFECT, compare
from gpufl.diff.profile import STEP_SCOPE

router = APIRouter(tags=["query"])

SessionParam = Annotated[str, Query(min_length=1, max_length=64, description="a session id")]


@router.get("/diff", response_model=S.Diff, dependencies=[ReadRole], responses=NOT_FOUND)
def diff(
    store: StoreDep,
    base: SessionParam,
    target: SessionParam,
    min_effect: Annotated[
        float, Query(ge=0, lt=10, description="smallest relative change called a change (0.05 = 5%)")
    ] = MIN_EFFECT,
    step_scope: Annotated[
        str, Query(min_length=1, max_length=256, description="top-level scope name that marks a step")
    ] = STEP_SCOPE,
    limit: Annotated[int, Query(ge=1, le=100_000, description="rows returned, by impact")] = 1000,
) -> S.Diff:
    """Per kernel name, scope path, copy direction/size and memset size: count and time on each side
    (per step when both sides mark steps), the change, and a label tested against noise; totals."""
    try:
        b = store.diff_profile(base, step_scope)
        t = store.diff_profile(target, step_scope)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    out = msgspec.to_builtins(compare(b, t, min_effect))
    out["rows_total"] = len(out["rows"])
    out["rows"] = out["rows"][:limit]
    return S.Diff.model_validate(out)
