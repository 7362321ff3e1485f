"""POST /api/v1/events/{stream}: the ingest endpoint (contract in docs/ingest-protocol.md)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gpufl.backend.api.schemas import IngestResult
from gpufl.backend.deps import IngestRole, SettingsDep, StoreDep
from gpufl.backend.ingest import BadBody, TooLarge, decompress_if, ingest_raws, split_records
from gpufl.backend.metrics import reason_class

router = APIRouter(tags=["ingest"])


def _too_large(message: str, max_bytes: int, max_records: int) -> JSONResponse:
    return JSONResponse(
        {"error": message, "max_bytes": max_bytes, "max_records": max_records}, status_code=413
    )


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
        try:
            body = decompress_if(body, request.headers.get("content-encoding"), 4 * max_bytes)
            ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
            as_array = True if ctype == "application/json" else (False if "ndjson" in ctype else None)
            raws = split_records(body, as_array)
        except TooLarge as e:
            metrics.batches.labels("413").inc()
            return _too_large(str(e), max_bytes, max_records)
        except BadBody as e:
            metrics.batches.labels("400").inc()
            return JSONResponse(
                {"error": str(e), "stored": 0, "duplicates": 0, "rejected": []}, status_code=400
            )
        if len(raws) > max_records:
            metrics.batches.labels("413").inc()
            return _too_large(f"batch of {len(raws)} records exceeds {max_records}", max_bytes, max_records)
        if not raws:
            metrics.batches.labels("400").inc()
            return JSONResponse(
                {"error": "no records in body", "stored": 0, "duplicates": 0, "rejected": []}, status_code=400
            )
        res = await run_in_threadpool(ingest_raws, store, stream, raws)
    finally:
        app.state.inflight -= 1
    metrics.records.labels("stored", stream).inc(res.stored)
    metrics.records.labels("duplicate", stream).inc(res.duplicates)
    metrics.records.labels("rejected", stream).inc(len(res.rejected))
    for r in res.rejected:
        metrics.rejected.labels(reason_class(r.reason)).inc()
    body_out = res.as_dict()
    if res.rejected and len(res.rejected) == len(raws):
        metrics.batches.labels("400").inc()
        body_out["error"] = "every record was rejected"
        return JSONResponse(body_out, status_code=400)
    metrics.batches.labels("200").inc()
    return JSONResponse(body_out)
