"""``GET /sessions/{id}/insights``: the insight rules (``gpufl.insights``) over one stored session."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import weakref
from collections import OrderedDict

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from gpufl.backend.api import schemas as S
from gpufl.backend.api.errors import NOT_FOUND
from gpufl.backend.api.routes.sessions import SessionId
from gpufl.backend.deps import ReadRole, StoreDep
from gpufl.backend.store import NotFound, SqlStore
from gpufl.insights.rules import run_rules

router = APIRouter(tags=["query"])

CACHE_SESSIONS = 256
"""Answers kept per backend process: the session list asks for every listed session's count, and a stored
session's answer changes only when records arrive (the key holds the session's ingest state)."""
_cache: OrderedDict[tuple[int, str, tuple[object, ...]], S.Insights] = OrderedDict()
_lock = threading.Lock()


_computations: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
"""One insight computation at a time per server (per event loop: a semaphore belongs to one). The facts read
every activity row of a session (4 s at 10M kernels on 2 cores), and the session list asks for every listed
session at once: computed together they would take every core from the timeline's tile queries the user is
waiting for, and each would hold a worker thread. Waiting here holds no thread; a request that waited finds
its answer cached when the one before it was for the same session."""


def _key(store: SqlStore, sid: str) -> tuple[int, str, tuple[object, ...]]:
    """An answer holds until the session's records change (its ingest state)."""
    return (id(store), sid, store.ingest_state(sid))


def cached(key: tuple[int, str, tuple[object, ...]]) -> S.Insights | None:
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
        return hit


def insights(store: SqlStore, sid: str) -> S.Insights:
    key = _key(store, sid)
    hit = cached(key)
    if hit is not None:
        return hit
    found, status = run_rules(store.insight_facts(sid))
    counts = {s: sum(1 for i in found if i.severity == s) for s in ("critical", "warning", "info")}
    out = S.Insights.model_validate(
        {
            "session_id": sid,
            "items": [dataclasses.asdict(i) for i in found],
            "counts": counts,
            "rules": [dataclasses.asdict(r) for r in status],
        }
    )
    with _lock:
        _cache[key] = out
        while len(_cache) > CACHE_SESSIONS:
            _cache.popitem(last=False)
    return out


@router.get(
    "/sessions/{session_id}/insights", response_model=S.Insights, dependencies=[ReadRole], responses=NOT_FOUND
)
async def session_insights(store: StoreDep, session_id: SessionId) -> S.Insights:
    try:
        hit = cached(await run_in_threadpool(_key, store, session_id))
        if hit is not None:
            return hit
        loop = asyncio.get_running_loop()
        one = _computations.get(loop)
        if one is None:
            one = _computations[loop] = asyncio.Semaphore(1)
        async with one:
            return await run_in_threadpool(insights, store, session_id)
    except NotFound:
        raise HTTPException(404, f"session {session_id!r} not found") from None
