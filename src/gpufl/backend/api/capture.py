"""Response model of ``GET /sessions/{id}/capture-windows`` (contract v5): when kernel tracing was on. Its own
module: the query API's other shapes are in ``schemas``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class CaptureWindows(BaseModel):
    """When kernel tracing was on. Outside every window of a session whose ``mode`` is not ``continuous``,
    kernels were not recorded: readers must say so rather than show an idle GPU."""

    session_id: str
    mode: str | None
    """The session's capture mode: ``continuous`` (traced throughout; every session before contract v5),
    ``windows``, ``on-demand`` or ``steps``; None until its session_start arrives."""
    windows: list[dict[str, Any]]
    """capture_window records, every field, by start time."""
