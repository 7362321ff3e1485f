"""Response models of the timeline's level-of-detail and navigation endpoints: the kernel and memory
timelines, the launch-API calls per thread (GET /sessions/{id}/launches), a selected range's statistics and
search. Apart from ``schemas`` (which re-exports them) to keep each module small."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class LodLongest(BaseModel):
    id: str
    name: str | None
    start_ns: int
    end_ns: int


class LodBucket(BaseModel):
    t_ns: int
    """Bucket start (CLOCK_REALTIME ns); the bucket covers [t_ns, t_ns + bucket_ns)."""
    device_id: int
    stream_id: int
    count: int
    """Kernels that started in the bucket."""
    busy_ns: int
    """Sum of those kernels' durations (may exceed bucket_ns when they overlap or spill over)."""
    longest: LodLongest


class KernelTimeline(BaseModel):
    start_ns: int
    end_ns: int
    bucket_ns: int
    """Width of each bucket: the requested resolution rounded to the stored level of detail."""
    buckets: list[LodBucket]


class MemoryLongest(BaseModel):
    id: str
    """The copy's or memset's id (its seq, as in MemcpyRow / MemsetRow)."""
    start_ns: int
    end_ns: int
    bytes: int


class MemoryBucket(BaseModel):
    t_ns: int
    """Bucket start (CLOCK_REALTIME ns); the bucket covers [t_ns, t_ns + bucket_ns)."""
    kind: str
    """The copy kind (HtoD, DtoH, ...) or "memset"."""
    device_id: int
    stream_id: int
    count: int
    """Copies (or memsets) of this kind on this stream that started in the bucket."""
    bytes: int
    busy_ns: int
    longest: MemoryLongest


class MemoryTimeline(BaseModel):
    start_ns: int
    end_ns: int
    bucket_ns: int
    buckets: list[MemoryBucket]


class RangeKernel(BaseModel):
    name: str | None
    count: int
    """Kernels of this name overlapping the range."""
    total_ns: int
    """Their whole durations."""
    in_range_ns: int
    """The part of those durations inside the range."""


class RangeCopy(BaseModel):
    kind: str
    """The copy kind (HtoD, DtoH, ...) or "memset"."""
    count: int
    bytes: int
    total_ns: int
    in_range_ns: int


class RangeScope(BaseModel):
    path: str
    count: int
    total_ns: int | None
    """Whole durations of the closed instances; null when every instance is open."""
    in_range_ns: int
    """Inside the range; an open instance counts up to the range's end."""
    open: int
    """Instances without a scope_end yet."""


class RangeSummary(BaseModel):
    start_ns: int
    end_ns: int
    kernels_total: int
    """Kernel names in the range (the list holds the first ``limit``, by in-range time)."""
    kernels: list[RangeKernel]
    copies_total: int
    copies: list[RangeCopy]
    scopes_total: int
    scopes: list[RangeScope]


class SearchMatch(BaseModel):
    kind: Literal["kernel", "scope"]
    id: str
    """The kernel's id, or the scope instance's inst."""
    name: str | None
    """The kernel name, or the scope path."""
    start_ns: int
    end_ns: int | None
    """Null for a scope instance still open."""
    device_id: int | None
    stream_id: int | None
    thread_id: int | None
    depth: int | None


class SearchResult(BaseModel):
    text: str
    kernels: int
    """Kernels in the session whose name contains the text (case-insensitive)."""
    scopes: int
    """Scope instances whose path contains it."""
    match: SearchMatch | None
    """The next (or previous) one from the given time; null when there is none that way."""


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
