"""Liveness (public) and Prometheus metrics (role read)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpufl.backend.api.errors import API_ERRORS
from gpufl.backend.deps import ReadRole, StoreDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(store: StoreDep) -> dict[str, str]:
    store.schema_version()  # a round trip: the store is reachable
    return {"status": "ok", "engine": store.engine}


# The 200 is documented as text/plain (FastAPI would say application/json for a bare Response); errors
# stay JSON (a response_class would have re-labelled them text/plain too).
@router.get(
    "/metrics",
    dependencies=[ReadRole],
    response_class=Response,
    responses={
        **API_ERRORS,
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
