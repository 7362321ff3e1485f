"""Admin operations: run retention now."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpufl.backend.api.schemas import PruneResult
from gpufl.backend.deps import AdminRole, SettingsDep, StoreDep
from gpufl.backend.retention import prune

router = APIRouter(tags=["admin"], dependencies=[AdminRole])


@router.post("/admin/prune", response_model=PruneResult)
def prune_now(request: Request, store: StoreDep, settings: SettingsDep) -> PruneResult:
    reasons = prune(
        store,
        settings.retention_days,
        settings.max_store_bytes,
        request.app.state.metrics,
        quiet_s=settings.retention_quiet_s,
    )
    return PruneResult(deleted=list(reasons), reasons=reasons)
