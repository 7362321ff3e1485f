"""The FastAPI application factory."""

from __future__ import annotations

import logging
import re
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

from gpufl.backend.api.errors import API_ERRORS
from gpufl.backend.api.routes import (
    admin,
    archive,
    captures,
    deep,
    diff,
    events,
    export,
    health,
    insights,
    keys,
    sessions,
)
from gpufl.backend.archive import Archive
from gpufl.backend.auth import AuthError
from gpufl.backend.config import Settings
from gpufl.backend.guard import AuthBeforeBody
from gpufl.backend.limits import MemoryBudget
from gpufl.backend.metrics import Metrics
from gpufl.backend.ratelimit import RateLimited, RateLimiter
from gpufl.backend.retention import RetentionJob
from gpufl.backend.store import SqlStore

log = logging.getLogger("gpufl.backend")

API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).parent / "static"

_NOT_BUILT = """<!doctype html><html><head><title>GPU Flight</title></head><body>
<h1>GPU Flight backend</h1><p>The web UI is not built. Build the frontend into
<code>src/gpufl/backend/static/</code> (<code>cd frontend &amp;&amp; npm run build</code>; the wheels that
<code>scripts/build_wheels.sh</code> makes carry it built). The API is at <code>/api/v1</code>
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


# ---- static paths (issue #16) -------------------------------------------------------------------------
# The SPA fallback stats the requested path. A NUL made stat() raise ValueError and a name over NAME_MAX
# raised ENAMETOOLONG: each was a 500 with two tracebacks in the log (~34 KB a request, a log-flooding
# vector). Such paths are checked first: no built file has them, and no UI route is that long.
STATIC_MAX_NAME_BYTES = 255
"""Longest path segment (UTF-8 bytes): Linux's NAME_MAX."""
STATIC_MAX_PATH_BYTES = 1024
"""Longest path (UTF-8 bytes): far above any UI route (/sessions/<64-char id>/kernels/<20 digits>)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def static_path_problem(path: str) -> tuple[int, str] | None:
    """(status, message) when the SPA fallback cannot serve ``path``: 400 for control characters (NUL...),
    404 for names or paths longer than a file system takes."""
    if _CONTROL.search(path):
        return 400, "invalid character in path"
    if len(path.encode()) > STATIC_MAX_PATH_BYTES:
        return 404, f"not found (path longer than {STATIC_MAX_PATH_BYTES} bytes)"
    if any(len(seg.encode()) > STATIC_MAX_NAME_BYTES for seg in path.split("/")):
        return 404, f"not found (a path segment is longer than {STATIC_MAX_NAME_BYTES} bytes)"
    return None


# ---- end static paths ------------------------------------------------------------------------------------


# ---- unexpected errors (issue #16) ------------------------------------------------------------------
class UnhandledErrorMiddleware:
    """Any exception no handler took becomes a JSON 500, logged once with its traceback, and the
    connection stays open.

    Not ``app.exception_handler(Exception)``: Starlette runs that one in its outermost error middleware,
    which answers and then re-raises, so uvicorn logged a second traceback and closed the keep-alive
    connection (the client found out when its next request failed). Swallowing the error here, inside, is
    what keeps the connection. If the response had already started, no 500 can be sent: the error is
    logged and uvicorn closes the connection, as it must for a truncated response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _error(500, "internal error")(scope, receive, send)


# ---- end unexpected errors -----------------------------------------------------------------------------


# ---- 405 Allow (issue #16) -------------------------------------------------------------------------------
def allowed_methods(app: FastAPI, path: str) -> str | None:
    """Every method the API takes at ``path``, for a 405's Allow header. Starlette names only those of the
    first route whose path matched, and each method of a path is its own route here (GET and DELETE
    /sessions/{id}), so its Allow left methods out. Read from the OpenAPI document's path templates."""
    patterns: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allow_patterns", None)
    if patterns is None:
        patterns = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"),
                {m.upper() for m in ops},
            )
            for p, ops in app.openapi()["paths"].items()
        ]
        app.state.allow_patterns = patterns
    methods = set().union(*(ms for rx, ms in patterns if rx.match(path)))
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods)) or None


# ---- end 405 Allow ----------------------------------------------------------------------------------------


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
                    settings.retention_quiet_s,
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
    app.state.archive = Archive(settings, store, metrics)  # the agents' raw-log archive, if configured (#23)
    app.state.ingest_budget = MemoryBudget(settings.max_inflight_bytes)  # ingest memory (limits.py)
    app.add_middleware(AuthBeforeBody)  # inside the latency middleware: its 401/403s are timed too
    # Inside LatencyMiddleware (added after it = outside), so the latency metric sees the 500.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(LatencyMiddleware, metrics=metrics)

    @app.exception_handler(AuthError)
    async def on_auth(_: Request, exc: AuthError) -> JSONResponse:
        return _error(exc.status, exc.message)

    # Per-key rate limits (issue #16): the buckets live as long as the app; deps.require takes tokens.
    app.state.rate_limits = {
        "ingest": RateLimiter("ingest", settings.rate_limit_ingest, settings.rate_limit_ingest_burst),
        "query": RateLimiter("query", settings.rate_limit_query, settings.rate_limit_query_burst),
    }

    @app.exception_handler(RateLimited)
    async def on_rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)}
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. 405's Allow (RFC 9110 requires it)
        if exc.status_code == 405 and (allow := allowed_methods(app, request.url.path)):
            response.headers["Allow"] = allow
        return response

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return _error(422, "invalid request", detail=jsonable_encoder(errors))

    # Every /api/v1 operation documents the errors any of them may answer (api/errors.py).
    api = APIRouter(prefix=API_PREFIX, responses=API_ERRORS)
    for r in (
        events.router,
        sessions.router,
        deep.router,
        insights.router,
        diff.router,
        export.router,
        keys.router,
        admin.router,
        archive.router,
        captures.router,
    ):
        api.include_router(r)
    app.include_router(api)
    app.include_router(health.router)

    @app.get("/{path:path}", include_in_schema=False)
    def ui(path: str) -> Response:
        # The UI is public; anything under /api is an API path and never falls through to the SPA.
        if path == "api" or path.startswith("api/"):
            # A GET on a path the API serves with other methods: 405, not "no such endpoint".
            if allow := allowed_methods(app, f"/{path}"):
                return JSONResponse(
                    {"error": "Method Not Allowed"}, status_code=405, headers={"Allow": allow}
                )
            return _error(404, f"no such endpoint /{path}")
        if not (STATIC_DIR / "index.html").is_file():
            if path == "":
                return HTMLResponse(_NOT_BUILT)
            return _error(404, "not found (UI not built)")
        problem = static_path_problem(path)
        if problem is not None:
            return _error(*problem)
        try:
            target = (STATIC_DIR / path).resolve()
            is_file = bool(path) and target.is_file() and target.is_relative_to(STATIC_DIR.resolve())
        except OSError:  # e.g. ELOOP, EACCES: not a file we can serve, and not worth a traceback
            return _error(404, "not found")
        if is_file:
            return FileResponse(target)
        return FileResponse(STATIC_DIR / "index.html")

    return app
