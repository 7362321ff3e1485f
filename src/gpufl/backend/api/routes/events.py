"""POST /api/v1/events/{stream}: the ingest endpoint (contract in docs/ingest-protocol.md)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gpufl.backend.api.schemas import IngestResult
from gpufl.backend.core.config import Settings
from gpufl.backend.deps import IngestRole, SettingsDep, StoreDep
from gpufl.backend.ingest import (
    REDELIVER_HEADER,
    BadBody,
    BatchResult,
    TooLarge,
    decompress_if,
    ingest_body,
)
from gpufl.backend.metrics import reason_class
from gpufl.backend.store import SqlStore

router = APIRouter(tags=["ingest"])


def _too_large(message: str, max_bytes: int, max_records: int) -> JSONResponse:
    return JSONResponse(
        {"error": message, "max_bytes": max_bytes, "max_records": max_records}, status_code=413
    )


def _ingest(
    store: SqlStore,
    stream: str,
    body: bytes,
    encoding: str | None,
    as_array: bool | None,
    settings: Settings,
    redeliver: bool = False,
) -> BatchResult:
    body = decompress_if(body, encoding, 4 * settings.max_body_bytes)
    return ingest_body(store, stream, body, as_array, settings.max_batch_records, redeliver)


_REDELIVER_VALUES = {"1": True, "true": True, "0": False, "false": False}


@router.post(
    "/events/{stream}",
    response_model=IngestResult,
    dependencies=[IngestRole],
    responses={400: {}, 413: {}, 503: {}},
)
async def post_events(
    stream: Literal["device", "scope", "system"], request: Request, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    app = request.app
    metrics = app.state.metrics
    max_bytes, max_records = settings.max_body_bytes, settings.max_batch_records
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        metrics.batches.labels("413").inc()
        return _too_large(f"body of {declared} bytes exceeds {max_bytes}", max_bytes, max_records)
    # A deliberate re-delivery of whole sessions (docs/ingest-protocol.md): a value we don't know is an
    # error, not silently "unmarked", which would have the re-delivery refused record by record.
    redeliver = _REDELIVER_VALUES.get((request.headers.get(REDELIVER_HEADER) or "0").strip().lower())
    if redeliver is None:
        metrics.batches.labels("400").inc()
        return JSONResponse(
            {"error": f"{REDELIVER_HEADER} must be 1 or 0", "stored": 0, "duplicates": 0, "rejected": []},
            status_code=400,
        )
    if app.state.inflight >= settings.max_inflight_ingests:
        metrics.batches.labels("503").inc()
        return JSONResponse(
            {"error": "backend busy, retry later"}, status_code=503, headers={"Retry-After": "1"}
        )
    app.state.inflight += 1
    try:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                metrics.batches.labels("413").inc()
                return _too_large(f"body exceeds {max_bytes} bytes", max_bytes, max_records)
            chunks.append(chunk)
        body = b"".join(chunks)
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        as_array = True if ctype == "application/json" else (False if "ndjson" in ctype else None)
        try:
            # Everything from decompression on runs in a worker thread, off the event loop.
            res = await run_in_threadpool(
                _ingest,
                store,
                stream,
                body,
                request.headers.get("content-encoding"),
                as_array,
                settings,
                redeliver,
            )
        except TooLarge as e:
            metrics.batches.labels("413").inc()
            return _too_large(str(e), max_bytes, max_records)
        except BadBody as e:
            metrics.batches.labels("400").inc()
            return JSONResponse(
                {"error": str(e), "stored": 0, "duplicates": 0, "rejected": []}, status_code=400
            )
    finally:
        app.state.inflight -= 1
    metrics.records.labels("stored", stream).inc(res.stored)
    metrics.records.labels("duplicate", stream).inc(res.duplicates)
    metrics.records.labels("rejected", stream).inc(len(res.rejected))
    for r in res.rejected:
        metrics.rejected.labels(reason_class(r.reason)).inc()
    body_out = res.as_dict()
    if res.rejected and not res.stored and not res.duplicates:  # every record is one of the three
        metrics.batches.labels("400").inc()
        body_out["error"] = "every record was rejected"
        return JSONResponse(body_out, status_code=400)
    metrics.batches.labels("200").inc()
    return JSONResponse(body_out)
