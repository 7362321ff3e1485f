"""Remote capture (issue #22): operators request captures; agents poll for those addressed to their host and
report the sessions they handed each to; everyone who reads sees each session's status.

- ``POST /captures`` (operator or admin), ``GET /captures`` and ``GET /captures/{id}`` (read, operator, admin).
- ``GET /agent/captures`` and ``POST /agent/captures/{id}/deliveries`` (ingest or admin): an agent's ingest
  key reads only the open requests whose host glob matches the host it names, and reports deliveries only for
  requests that match that host; a key bound to hosts (``keys create --host-glob``) may name only those (403).
  A long poll (``wait_s``) answers as soon as a request arrives: this backend rings a bell when one is made
  here, and checks the store twice a second for those made through another backend sharing it. With Kafka configured, each request is also published to the control topic for agents
  that ship over Kafka (``capture_topic``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from gpufl.backend.api.capture import (
    AgentCapture,
    AgentCaptures,
    CaptureInfo,
    CaptureList,
    CaptureRequestBody,
    DeliveryAck,
    DeliveryReport,
)
from gpufl.backend.api.errors import NOT_FOUND
from gpufl.backend.api.schemas import ErrorBody
from gpufl.backend.auth import host_allowed
from gpufl.backend.capture_topic import CaptureTopic
from gpufl.backend.deps import AUTHENTICATED, IngestRole, OperatorRole, ReadRole, StoreDep
from gpufl.backend.store import NotFound, SqlStore
from gpufl.backend.store.captures import host_matches

router = APIRouter(tags=["captures"])

CaptureId = Annotated[str, Path(pattern=r"^cap-[0-9a-f]{16}$")]
NOT_JSON: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A body that is not JSON text (e.g. not UTF-8)"}
}
POLL_STORE_S = 0.5
"""How often a long poll looks in the store for requests made through another backend."""


class _Bell:
    """Wakes this backend's long polls when a request is made here (one event per ring)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def ring(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


def _bell(request: Request) -> _Bell:
    bell = getattr(request.app.state, "capture_bell", None)
    if bell is None:
        bell = request.app.state.capture_bell = _Bell()
    return bell


@router.post("/captures", response_model=CaptureInfo, responses=NOT_JSON, dependencies=[OperatorRole])
async def request_capture(request: Request, store: StoreDep, body: CaptureRequestBody) -> CaptureInfo:
    now = time.time_ns()
    key_id, role = request.scope[AUTHENTICATED]
    rid = f"cap-{secrets.token_hex(8)}"
    req = {
        "id": rid,
        "app": body.app,
        "host_glob": body.host,
        "job_id": body.job_id,
        "engines": list(dict.fromkeys(body.engines)),
        "seconds": body.seconds,
        "requester": f"{role}:{key_id}",
        "created_ns": now,
        "expires_ns": now + int(body.expires_s * 1e9),
    }
    await run_in_threadpool(store.add_capture, req)
    _bell(request).ring()
    settings = request.app.state.settings
    if settings.kafka_brokers:  # agents shipping over Kafka read requests from the control topic
        topic = getattr(request.app.state, "capture_topic", None)
        if topic is None:
            topic = request.app.state.capture_topic = CaptureTopic(settings)
        await run_in_threadpool(topic.publish, req)
    return CaptureInfo(**await run_in_threadpool(store.capture, rid))


@router.get("/captures", response_model=CaptureList, dependencies=[ReadRole])
def list_captures(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> CaptureList:
    return CaptureList(items=[CaptureInfo(**c) for c in store.list_captures(limit)])


@router.get(
    "/captures/{capture_id}", response_model=CaptureInfo, responses=NOT_FOUND, dependencies=[ReadRole]
)
def get_capture(store: StoreDep, capture_id: CaptureId) -> CaptureInfo:
    try:
        return CaptureInfo(**store.capture(capture_id))
    except NotFound:
        raise HTTPException(404, f"no capture request {capture_id!r}") from None


def _check_host(request: Request, store: SqlStore, host: str) -> None:
    """403 when the request's key is bound to hosts (``keys create --host-glob``) and ``host`` is not one of them."""
    key_id, _role = request.scope[AUTHENTICATED]
    why = host_allowed(store, key_id, host)
    if why is not None:
        raise HTTPException(403, why)


@router.get("/agent/captures", response_model=AgentCaptures, dependencies=[IngestRole])
async def agent_captures(
    request: Request,
    store: StoreDep,
    host: Annotated[str, Query(min_length=1, max_length=255)],
    since_ns: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    wait_s: Annotated[float, Query(ge=0, le=30)] = 0,
) -> AgentCaptures:
    """The open requests for ``host`` made after ``since_ns`` (the newest ``created_ns`` the agent has seen),
    oldest first; with ``wait_s``, waits up to that long for one. A key bound to hosts names only those (403)."""
    await run_in_threadpool(_check_host, request, store, host)
    deadline = time.monotonic() + wait_s
    while True:
        bell = _bell(request).event
        found = await run_in_threadpool(store.open_captures, host, since_ns)
        left = deadline - time.monotonic()
        if found or left <= 0 or await request.is_disconnected():
            return AgentCaptures(
                items=[AgentCapture(**{k: r[k] for k in AgentCapture.model_fields}) for r in found]
            )
        try:
            await asyncio.wait_for(bell.wait(), min(POLL_STORE_S, left))
        except TimeoutError:
            pass


@router.post(
    "/agent/captures/{capture_id}/deliveries", response_model=DeliveryAck, responses={**NOT_FOUND, **NOT_JSON},
    dependencies=[IngestRole],
)  # fmt: skip
def report_deliveries(
    request: Request, store: StoreDep, capture_id: CaptureId, body: DeliveryReport
) -> DeliveryAck:
    """The agent on ``host`` wrote the control file for these sessions (or could not: ``error``)."""
    _check_host(request, store, body.host)
    try:
        req = store.get_capture_request(capture_id)
    except NotFound:
        raise HTTPException(404, f"no capture request {capture_id!r}") from None
    if not host_matches(req["host_glob"], body.host):
        raise HTTPException(403, f"capture {capture_id} is not addressed to host {body.host!r}")
    n = store.add_deliveries(capture_id, body.host, [(d.session_id, d.error) for d in body.sessions])
    return DeliveryAck(recorded=n)
