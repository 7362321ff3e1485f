"""The FastAPI application factory."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufl.backend.api.routes import admin, events, health, keys, sessions
from gpufl.backend.auth import AuthError
from gpufl.backend.core.config import Settings
from gpufl.backend.guard import AuthBeforeBody
from gpufl.backend.limits import MemoryBudget
from gpufl.backend.metrics import Metrics
from gpufl.backend.retention import RetentionJob
from gpufl.backend.store import SqlStore

log = logging.getLogger("gpufl.backend")

API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).parent / "static"

_NOT_BUILT = """<!doctype html><html><head><title>GPU Flight</title></head><body>
<h1>GPU Flight backend</h1><p>The web UI is not built. Build the frontend into
<code>src/gpufl/backend/static/</code>. The API is at <code>/api/v1</code>
(<a href="/api/v1/docs">docs</a>).</p></body></html>"""


class LatencyMiddleware:
    """Records each request's latency by route template (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], path, str(status[0])).observe(
                time.perf_counter() - t0
            )


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def create_app(settings: Settings, store: SqlStore, *, start_jobs: bool = True) -> FastAPI:
    """``store`` is opened by the caller (so the CLI can report an unreachable database before serving);
    ``start_jobs`` runs retention and the Kafka bridge in the background while the app is up."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs: list[Any] = []
        if start_jobs and (settings.retention_days is not None or settings.max_store_bytes is not None):
            jobs.append(
                RetentionJob(
                    store,
                    settings.retention_days,
                    settings.max_store_bytes,
                    settings.retention_interval_s,
                    metrics,
                )
            )
        if start_jobs and settings.kafka_brokers:
            from gpufl.backend.kafka_bridge import KafkaBridge

            jobs.append(KafkaBridge(store, settings, metrics))
        for j in jobs:
            j.start()
        try:
            yield
        finally:
            for j in reversed(jobs):
                j.stop()

    app = FastAPI(
        title="GPU Flight backend",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    app.state.inflight = 0
    app.state.ingest_budget = MemoryBudget(settings.max_inflight_bytes)  # ingest memory (limits.py)
    app.add_middleware(AuthBeforeBody)  # inside the latency middleware: its 401/403s are timed too
    app.add_middleware(LatencyMiddleware, metrics=metrics)

    @app.exception_handler(AuthError)
    async def on_auth(_: Request, exc: AuthError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return _error(422, "invalid request", detail=jsonable_encoder(errors))

    @app.exception_handler(Exception)
    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error(500, "internal error")

    api = APIRouter(prefix=API_PREFIX)
    for r in (events.router, sessions.router, keys.router, admin.router):
        api.include_router(r)
    app.include_router(api)
    app.include_router(health.router)

    @app.get("/{path:path}", include_in_schema=False)
    def ui(path: str) -> Response:
        # The UI is public; anything under /api is an API path and never falls through to the SPA.
        if path == "api" or path.startswith("api/"):
            return _error(404, f"no such endpoint /{path}")
        if not (STATIC_DIR / "index.html").is_file():
            if path == "":
                return HTMLResponse(_NOT_BUILT)
            return _error(404, "not found (UI not built)")
        target = (STATIC_DIR / path).resolve()
        if path and target.is_file() and target.is_relative_to(STATIC_DIR.resolve()):
            return FileResponse(target)
        return FileResponse(STATIC_DIR / "index.html")

    return app
