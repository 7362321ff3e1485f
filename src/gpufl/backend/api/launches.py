"""Response models of GET /sessions/{id}/launches: the launch-API calls per thread (the timeline's thread
tracks and the flow from a call to what it launched). Apart from ``schemas`` to keep each module small."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class LaunchCall(BaseModel):
    kind: Literal["kernel", "memcpy"]
    """What the call launched."""
    id: str
    """The kernel's or copy's id (as KernelRow / MemcpyRow)."""
    corr_id: int
    """CUPTI's correlation id: the call and the activity it launched share it."""
    name: str | None
    """The kernel's name, or the copy kind."""
    device_id: int
    stream_id: int
    gpu_start_ns: int
    """When the launched activity started on the GPU."""
    start_ns: int
    """Call entry (CPU, CLOCK_REALTIME ns)."""
    end_ns: int
    """Call exit; equal to start_ns when the record has no api_dur_ns."""


class LaunchBucket(BaseModel):
    t_ns: int
    """Bucket start; the bucket holds the calls entered in [t_ns, t_ns + bucket_ns)."""
    thread_id: int
    count: int
    busy_ns: int
    """Sum of those calls' durations."""
    longest: LaunchCall


class LaunchTimeline(BaseModel):
    start_ns: int
    end_ns: int
    bucket_ns: int
    total: int
    """Calls overlapping the window (every one is counted in a bucket)."""
    buckets: list[LaunchBucket]
