"""Shapes of the capture API: ``GET /sessions/{id}/capture-windows`` (contract v5: when kernel tracing was on)
and remote capture (``/captures``, the agents' ``/agent/captures``; issue #22). Its own module: the query
API's other shapes are in ``schemas``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class CaptureWindows(BaseModel):
    """When kernel tracing was on. Outside every window of a session whose ``mode`` is not ``continuous``,
    kernels were not recorded: readers must say so rather than show an idle GPU."""

    session_id: str
    mode: str | None
    """The session's capture mode: ``continuous`` (traced throughout; every session before contract v5),
    ``windows``, ``on-demand`` or ``steps``; None until its session_start arrives."""
    windows: list[dict[str, Any]]
    """capture_window records, every field, by start time."""


# ---- remote capture (issue #22) ---------------------------------------------------------------------

CaptureEngine = Literal["tracing", "sass", "pc_sampling"]
SessionState = Literal["delivered", "running", "done", "failed"]
RequestState = Literal["requested", "expired", "delivered", "running", "done", "failed"]


class CaptureRequestBody(BaseModel):
    """``POST /captures``: capture ``seconds`` of ``engines`` on every live session of ``app`` on the hosts
    matching ``host`` (a shell glob), optionally of one ``job_id``."""

    app: str = Field(min_length=1, max_length=200)
    host: str = Field(default="*", min_length=1, max_length=200)
    job_id: str | None = Field(default=None, min_length=1, max_length=200)
    engines: list[CaptureEngine] = Field(default=["tracing"], min_length=1, max_length=3)
    seconds: float = Field(default=10.0, gt=0, le=600)
    expires_s: float = Field(default=60.0, gt=0, le=3600)
    """Agents hand the request on until then; sessions that start later are not asked."""


class CaptureSession(BaseModel):
    session_id: str
    host: str | None
    """The agent's host; for a session known by its answer alone, its own (None until its start arrives)."""
    app: str | None
    """None until the session's records are stored."""
    job_id: str | None
    status: SessionState
    """``delivered`` (the agent wrote the control file), ``running`` (the session opened or extended a window),
    ``done`` (its capture_window is stored, or it traces continuously), ``failed`` (``reason``)."""
    reason: str | None
    """Why failed: the session's refusal (``window_open``, ``engine_unavailable``, ``budget_spent``,
    ``remote_capture_disabled``), ``not delivered: …`` (the agent could not write the file), ``no_answer``
    (nothing came back after the request expired); ``continuous`` for a done session that traces throughout;
    ``session_not_stored`` while none of its records are stored."""
    delivered_ns: int | None
    """When the agent reported it; None for a session that answered before (or without) its agent's report."""
    start_ns: int | None
    """The session's start (its session_start), None until stored: the timeline's origin for ``window``."""
    answer: dict[str, Any] | None
    """The session's capture_request record (contract v7; None before it arrives, or from older clients)."""
    window: dict[str, Any] | None
    """The capture_window record whose trigger.request_id is this request's id."""


class CaptureInfo(BaseModel):
    id: str
    app: str
    host_glob: str
    job_id: str | None
    engines: list[str]
    seconds: float
    requester: str
    created_ns: int
    expires_ns: int
    expired: bool
    status: RequestState
    """``requested`` (no agent has handed it on yet), ``expired`` (none did before it expired), else the least
    advanced of its sessions' (``done`` once every session is done or failed, some done)."""
    sessions: list[CaptureSession]


class CaptureList(BaseModel):
    items: list[CaptureInfo]


class AgentCapture(BaseModel):
    """What an agent needs of a request: which sessions to hand it to and the control file's fields."""

    id: str
    app: str
    job_id: str | None
    engines: list[str]
    seconds: float
    requester: str
    created_ns: int
    expires_ns: int


class AgentCaptures(BaseModel):
    items: list[AgentCapture]


class Delivery(BaseModel):
    session_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    error: str | None = Field(default=None, max_length=200)
    """Why the control file could not be written (None: written)."""


class DeliveryReport(BaseModel):
    host: str = Field(min_length=1, max_length=255)
    sessions: list[Delivery] = Field(max_length=100)
    """At most 100 a report (an agent sends more in several): any valid body, its strings escaped to 12 bytes a
    character at worst, stays well under the API's 1 MiB."""


class DeliveryAck(BaseModel):
    recorded: int
