"""POST /api/v1/events/{stream}: the ingest endpoint (contract in docs/ingest-protocol.md)."""

from __future__ import annotations

import asyncio
import email.message
import traceback
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gpufl.backend.api.schemas import ErrorBody
from gpufl.backend.config import Settings
from gpufl.backend.deps import IngestRole, SettingsDep, StoreDep
from gpufl.backend.ingest import (
    REDELIVER_HEADER,
    BadBody,
    IngestResult,
    TooLarge,
    decompress_if,
    ingest_body,
)
from gpufl.backend.limits import OverBudget, Reservation, decode_cost, release_memory
from gpufl.backend.metrics import Metrics, reason_class
from gpufl.backend.store import SqlStore

router = APIRouter(tags=["ingest"])

_NDJSON = frozenset({"application/x-ndjson", "application/ndjson"})
_ACCEPTED = "application/x-ndjson (one record per line) or application/json (a JSON array of records)"


class Unsupported(ValueError):
    """A Content-Type or Content-Encoding the endpoint does not read (→ 415)."""


def body_format(content_type: str | None) -> bool | None:
    """Whether the body is a JSON array (True) or NDJSON (False), from its Content-Type; None without one
    (told apart by its first non-blank byte). Any other media type, or a charset other than UTF-8 (RFC
    8259 8.1), raises Unsupported: reading XML or a form as NDJSON stores what the sender did not mean."""
    if content_type is None or not content_type.strip():
        return None
    media = content_type.partition(";")[0].strip().lower()
    msg = email.message.Message()
    msg["content-type"] = content_type
    charset = msg.get_param("charset")
    if media not in _NDJSON and media != "application/json":
        raise Unsupported(f"unsupported Content-Type {content_type[:100]!r}: send {_ACCEPTED}")
    if isinstance(charset, str) and charset.strip().lower() not in ("utf-8", "utf8"):
        raise Unsupported(f"unsupported Content-Type {content_type[:100]!r}: JSON is UTF-8; send {_ACCEPTED}")
    return media == "application/json"


def _check_encoding(encoding: str | None) -> None:
    if (encoding or "").strip().lower() not in ("", "identity", "gzip", "x-gzip"):
        raise Unsupported(
            f"unsupported Content-Encoding {(encoding or '')[:100]!r}: send gzip or no Content-Encoding"
        )


def _too_large(message: str, settings: Settings) -> JSONResponse:
    return JSONResponse(
        {
            "error": message,
            "max_bytes": settings.max_body_bytes,
            "max_records": settings.max_batch_records,
            "max_sessions": settings.max_batch_sessions,
            "max_decompressed_bytes": settings.max_decompressed_bytes,
            "max_inflight_bytes": settings.max_inflight_bytes,
        },
        status_code=413,
    )


def _ingest(
    store: SqlStore,
    stream: str,
    body: bytes,
    encoding: str | None,
    as_array: bool | None,
    settings: Settings,
    held: Reservation,
    redeliver: bool = False,
) -> IngestResult:
    # While decompressing, each slice holds twice its bytes (itself, and its share of the text they are
    # joined into); then what the decode takes is held in one step (all of it or nothing: concurrent
    # requests that each took part of it could all end refused).
    text = decompress_if(
        body, encoding, settings.max_decompressed_bytes, lambda piece: held.add(2 * len(piece), wait=True)
    )
    held.grow_to(decode_cost(text), wait=True)
    return ingest_body(
        store, stream, text, as_array, settings.max_batch_records, redeliver, settings.max_batch_sessions
    )


_REDELIVER_VALUES = {"1": True, "true": True, "0": False, "false": False}


def _refused(e: Exception, settings: Settings, metrics: Metrics) -> JSONResponse:
    if isinstance(e, OverBudget) and not e.alone:
        metrics.batches.labels("503").inc()
        return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": "1"})
    if isinstance(e, (OverBudget, TooLarge)):
        metrics.batches.labels("413").inc()
        return _too_large(str(e), settings)
    metrics.batches.labels("400").inc()
    return JSONResponse({"error": str(e), "stored": 0, "duplicates": 0, "rejected": []}, status_code=400)


@router.post(
    "/events/{stream}",
    response_model=IngestResult,
    dependencies=[IngestRole],
    responses={
        400: {},
        413: {},
        415: {
            "model": ErrorBody,
            "description": "A Content-Type or Content-Encoding the endpoint does not read",
        },
        503: {},
    },
)
async def post_events(
    stream: Literal["device", "scope", "system"], request: Request, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    app = request.app
    metrics = app.state.metrics
    max_bytes = settings.max_body_bytes
    encoding = request.headers.get("content-encoding")
    try:
        # Checked before a byte of the body is read (the token was, by the role dependency).
        as_array = body_format(request.headers.get("content-type"))
        _check_encoding(encoding)
    except Unsupported as e:
        metrics.batches.labels("415").inc()
        return JSONResponse({"error": str(e)}, status_code=415)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        metrics.batches.labels("413").inc()
        return _too_large(f"body of {declared} bytes exceeds {max_bytes}", settings)
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
    held = Reservation(app.state.ingest_budget)
    app.state.inflight += 1
    try:
        if declared is not None and declared.isdigit():
            held.grow_to(int(declared))  # what is coming: refused now rather than half-way through it
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                metrics.batches.labels("413").inc()
                return _too_large(f"body exceeds {max_bytes} bytes", settings)
            held.grow_to(size)
            chunks.append(chunk)
        body = b"".join(chunks)
        del chunks
        # Everything from decompression on runs in a worker thread, off the event loop.
        res = await run_in_threadpool(
            _ingest, store, stream, body, encoding, as_array, settings, held, redeliver
        )
    except (OverBudget, TooLarge, BadBody) as e:
        # The exception's traceback holds the frames it passed, and with them the body, its decompressed
        # slices or text; anyio keeps the exception in a future that those frames reference, a cycle only
        # the cyclic GC frees (rarely, on an idle backend: measured 130-330 MB left resident after 8 refused
        # requests). Free the frames' locals now.
        traceback.clear_frames(e.__traceback__)
        e.__traceback__ = None
        body = b""
        return _refused(e, settings, metrics)
    finally:
        app.state.inflight -= 1
        if held.release():
            # Off the event loop, a second after the last big ingest ended (its frames and response are
            # gone by then), and again once the idle worker threads have retired (anyio: after 10 s idle),
            # whose per-thread leftovers (DuckDB cursors among them) only the cyclic GC frees: measured
            # ~35 MB back on the process test.
            loop = asyncio.get_running_loop()
            for delay in (1.0, 15.0):
                loop.call_later(delay, loop.run_in_executor, None, release_memory)
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


post_events.own_body_limits = True  # type: ignore[attr-defined]  # guard.AuthBeforeBody: no 1 MiB cap
