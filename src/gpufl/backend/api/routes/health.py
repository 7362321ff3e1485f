"""Liveness (public) and Prometheus metrics (role read)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpufl.backend.deps import ReadRole, StoreDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(store: StoreDep) -> dict[str, str]:
    store.schema_version()  # a round trip: the store is reachable
    return {"status": "ok", "engine": store.engine}


@router.get("/metrics", dependencies=[ReadRole])
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
