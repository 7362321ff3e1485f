"""Response models of the query API: the shapes the UI is built against (documented in docs/api.md).

Kernel and memcpy ids are the record's ``seq`` on the session's ``device`` stream, as a decimal string:
``seq`` is unique per (session, stream) and never reused, so the id is stable across re-deliveries,
restarts and engines, and the UI can deep-link ``/sessions/{session_id}/kernels/{kernel_id}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from gpufl.backend.api import shape

# The deep engines' models (contract v6) are their own module too.
from gpufl.backend.api.deep import DeepKernel as DeepKernel
from gpufl.backend.api.deep import DeepLine as DeepLine
from gpufl.backend.api.deep import DeepLines as DeepLines
from gpufl.backend.api.deep import DeepRange as DeepRange
from gpufl.backend.api.deep import DeepScope as DeepScope
from gpufl.backend.api.deep import DeepScopeDetail as DeepScopeDetail
from gpufl.backend.api.deep import DeepSummary as DeepSummary

# The run-vs-run diff's models (#26) are their own module; re-exported here with the rest.
from gpufl.backend.api.diff_schemas import Diff as Diff
from gpufl.backend.api.diff_schemas import DiffNoise as DiffNoise
from gpufl.backend.api.diff_schemas import DiffRow as DiffRow
from gpufl.backend.api.diff_schemas import DiffSessionRef as DiffSessionRef
from gpufl.backend.api.diff_schemas import DiffSide as DiffSide
from gpufl.backend.api.diff_schemas import DiffTotal as DiffTotal

# The timeline's response models live in their own module; re-exported here, where the routes look.
from gpufl.backend.api.timeline import (  # noqa: F401
    KernelTimeline,
    LodBucket,
    LodLongest,
    MemoryBucket,
    MemoryLongest,
    MemoryTimeline,
    RangeCopy,
    RangeKernel,
    RangeScope,
    RangeSummary,
    SearchMatch,
    SearchResult,
)
from gpufl.backend.store import rows

# The ingest answer is the protocol's: one definition for backend and agent.
from gpufl.contract.protocol import IngestResult as IngestResult
from gpufl.contract.protocol import Rejection as Rejection


class ErrorBody(BaseModel):
    error: str


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """422: a parameter or body the API does not take. ``detail`` lists pydantic's findings, when it made
    them (a rule checked by the route itself gives ``error`` alone)."""

    error: str
    detail: list[ValidationErrorItem] | None = None


class TooLargeBody(BaseModel):
    """413 from ingest: the batch is over a limit; split it."""

    error: str
    max_bytes: int
    max_records: int


# ---- ingest ------------------------------------------------------------------------------------------


# ---- sessions ----------------------------------------------------------------------------------------


SessionItem = shape.model("SessionItem", rows.Session, shape.SESSION_ADDS)
"""A session in the list: ``rows.Session``'s fields (what each means is said there) and ``cut_short``: some
stream has records but no session_end (killed, or still running)."""


SessionPage = shape.page("SessionPage", SessionItem)
"""Pass ``next_cursor`` as ``cursor`` to get the next page; None on the last page."""


class AppNode(BaseModel):
    app: str
    sessions: int
    last_start_ns: int | None


class HostNode(BaseModel):
    host: str
    sessions: int
    apps: list[AppNode]


class HostsResponse(BaseModel):
    hosts: list[HostNode]


class StreamStatus(BaseModel):
    stream: str
    received: int
    """Distinct records stored for this stream."""
    first_ns: int | None
    last_ns: int | None
    ended: bool
    end_reason: str | None
    written: int | None
    """Records the writer says it wrote (session_end.records); None before session_end."""
    missing: int | None
    """written - received: records lost in transport (or not yet delivered)."""
    dropped: int
    """Records the writer dropped because its queue was full."""


class SessionTotals(BaseModel):
    kernels: int
    memcpys: int
    memsets: int
    scope_instances: int
    profile_samples: int
    system_samples: int
    gpu_time_ns: int
    """Sum of kernel durations."""


class SessionDetail(BaseModel):
    session_id: str
    header: dict[str, Any] | None
    """The session_start record, every field (None until it arrives)."""
    devices: list[dict[str, Any]]
    streams: list[StreamStatus]
    totals: SessionTotals
    dropped: int
    """Records dropped by the writer, all streams."""
    cut_short: bool
    notices: list[dict[str, Any]]
    """notice and capture_gap records, oldest first."""


# ---- kernels / memcpy --------------------------------------------------------------------------------


# The rows of kernels, copies and memsets are the store's typed rows (``gpufl.backend.store.rows``, where each
# field is explained) with their id and duration (``shape.ACTIVITY_ADDS``): a field added to a row is served
# and documented without being listed here.
KernelRow = shape.model("KernelRow", rows.Kernel, shape.ACTIVITY_ADDS)


KernelPage = shape.page("KernelPage", KernelRow)


class StackFrame(BaseModel):
    file: str
    line: int
    function: str


class ScopeRef(BaseModel):
    inst: int
    path_id: int | None
    path: str | None


KernelDetail = shape.model(
    "KernelDetail",
    rows.KernelDetail,
    shape.ACTIVITY_ADDS,
    types={"stack": list[StackFrame] | None, "scope": ScopeRef | None},
)
"""One kernel with its launch configuration (grid, block, registers, shared memory, occupancy,
limiting_resource...), its call stack (innermost frame first) and its innermost scope."""


class KernelSummaryRow(BaseModel):
    name: str | None
    count: int
    total_ns: int
    mean_ns: float
    min_ns: int
    p50_ns: float
    p95_ns: float
    max_ns: int
    share: float
    """total_ns / GPU time of all kernels of the session (0..1)."""
    quantiles: Literal["exact", "sketch"] = "sketch"
    """How p50/p95 were found: ``exact`` from every duration (names seen at most 10,000 times; linear
    interpolation between closest ranks, numpy's default), ``sketch`` from the mergeable log-bucket sketch
    (relative error ≤ 1 %)."""


class KernelSummary(BaseModel):
    gpu_time_ns: int
    start_ns: int | None = None
    end_ns: int | None = None
    """The window asked for (None: the whole session). With a window, the rows cover the kernels that
    overlap it, each counted whole (its full duration, even where it sticks out of the window)."""
    items: list[KernelSummaryRow]


class HistogramBucket(BaseModel):
    lo_ns: int
    hi_ns: int
    """The bucket holds the durations d with lo_ns <= d < hi_ns."""
    count: int


class KernelHistogram(BaseModel):
    name: str
    count: int
    """Kernels of that name (overlapping the window, when one was given)."""
    start_ns: int | None
    end_ns: int | None
    per_octave: int
    """Buckets per doubling of the duration (edges floor(2 ** (k / per_octave)) ns)."""
    buckets: list[HistogramBucket]
    """From the shortest duration's bucket to the longest's, empty buckets included."""


MemcpyRow = shape.model("MemcpyRow", rows.Copy, shape.ACTIVITY_ADDS)


MemcpyPage = shape.page("MemcpyPage", MemcpyRow)


MemsetRow = shape.model("MemsetRow", rows.Memset, shape.ACTIVITY_ADDS)


MemsetPage = shape.page("MemsetPage", MemsetRow)


# ---- scopes ------------------------------------------------------------------------------------------


class ScopeNode(BaseModel):
    scope_id: int
    """The scope path's dict id (use it in /scopes/{scope_id}/kernels and /deep/scopes/{scope_id})."""
    path: str
    name: str
    """Last path component."""
    depth: int
    calls: int
    wall_total_ns: int
    """Sum over closed instances of (scope_end - scope_begin)."""
    wall_mean_ns: float
    open_calls: int
    """Instances without scope_end (still open, or session cut short)."""
    wall_min_ns: int | None = None
    """Shortest closed call (None: none closed)."""
    wall_p50_ns: float | None = None
    """Median closed call, exact (linear interpolation); None past 200,000 scope instances in the session."""
    wall_max_ns: int | None = None
    """Longest closed call: a first call far above the median is warm-up a mean would hide."""
    gpu_ns: int
    """Kernel time launched directly in this scope (innermost scope = this one)."""
    gpu_total_ns: int
    """gpu_ns of this node and all its descendants."""
    kernels: int
    kernels_total: int
    children: list[ScopeNode]


class ScopeKernelRow(BaseModel):
    name: str | None
    count: int
    """Kernels of this name launched in the scope or in a scope under it."""
    total_ns: int
    mean_ns: float
    min_ns: int
    max_ns: int
    self_count: int
    """Of ``count``, launched directly in the scope (not in a child)."""
    self_ns: int
    share: float
    """total_ns / gpu_ns of the scope (0..1)."""


class ScopeKernels(BaseModel):
    scope_id: int
    path: str
    kernels: int
    """Kernels launched in the scope and the scopes under it."""
    gpu_ns: int
    names: int
    """Distinct kernel names (``items`` holds at most ``limit`` of them, the most time first)."""
    items: list[ScopeKernelRow]


class ScopeTree(BaseModel):
    roots: list[ScopeNode]


class ScopeInstance(BaseModel):
    inst: int
    """Session-wide instance id (kernels launched inside carry it as ``scope_inst``)."""
    scope_id: int
    """The scope path's dict id (as in the scope tree)."""
    path: str
    """Full path, e.g. ``train/forward`` (``#<scope_id>`` while the dict entry has not arrived)."""
    name: str
    """Last path component."""
    depth: int
    parent_inst: int | None
    thread_id: int
    start_ns: int
    """scope_begin time."""
    end_ns: int | None
    """scope_end time; None while the instance is open (no scope_end stored)."""


class ScopeInstancePage(BaseModel):
    items: list[ScopeInstance]
    next_cursor: str | None


# ---- system ------------------------------------------------------------------------------------------


class SeriesPoint(BaseModel):
    t_ns: int
    """Bucket start."""
    min: float
    max: float
    mean: float
    n: int
    """Samples in the bucket (1: the point is one sample, not a mean)."""
    bits: int | None
    """For bitmask metrics (throttle_reasons): the OR of the bucket's masks (every bit set in any sample)."""


class SystemSeries(BaseModel):
    metric: str
    device: int | None
    """GPU device_id, or None for host metrics (cpu_pct, ram_used_mib, ...)."""
    points: list[SeriesPoint]


class SystemResponse(BaseModel):
    start_ns: int | None
    end_ns: int | None
    bucket_ns: int
    series: list[SystemSeries]


# ---- keys / admin ------------------------------------------------------------------------------------


class KeyCreate(BaseModel):
    role: str
    name: str


class KeyCreated(BaseModel):
    id: str
    name: str
    role: str
    token: str
    host_glob: str | None = None
    """The hosts an ingest key may name on the agent routes; None: any host."""


class KeyInfo(BaseModel):
    id: str
    name: str
    role: str
    created_ns: int
    revoked_ns: int | None
    host_glob: str | None = None
    """The hosts an ingest key may name on the agent routes; None: any host."""


class KeyList(BaseModel):
    items: list[KeyInfo]


class PruneResult(BaseModel):
    deleted: list[str]
    """Session ids removed."""
    reasons: dict[str, str]
    """session id -> 'age' or 'size'."""


class Deleted(BaseModel):
    deleted: bool


# ---- archive (#23) -----------------------------------------------------------------------------------


class ArchivedSessionItem(BaseModel):
    host: str
    app: str
    session_id: str
    segments: int
    bytes: int
    """Compressed, as stored in the archive."""
    last_modified_ns: int
    """The newest segment's upload time (the S3 server's clock)."""
    in_store: bool
    """Whether the store holds any record of the session (a restore adds only what it lacks)."""


class ArchivePage(BaseModel):
    configured: bool
    """False: the backend has no archive (GPUFL_ARCHIVE_URL); the lists are empty."""
    url: str | None
    can_restore: bool
    """Whether the caller's key may restore (the admin role): the UI offers the action or says why not."""
    archived: int
    """Sessions in the archive, all pages, before the in_store filter."""
    not_in_store: int
    """Of those, the ones the store does not hold."""
    items: list[ArchivedSessionItem]
    next_cursor: str | None
    """Pass as ``cursor`` to get the next page; None on the last page."""


class RestoreJobInfo(BaseModel):
    id: str
    session_id: str
    host: str
    app: str
    status: Literal["running", "done", "failed"]
    segments: int
    """Archived segments of the session; 0 until they are downloaded."""
    segments_done: int
    stored: int
    duplicates: int
    """Records the store held already (a restore of a session it holds adds only what it lacks)."""
    rejected: int
    notes: list[str]
    """The first rejection reasons (``rejected`` counts them all)."""
    reason: str | None
    """Why a failed job failed."""
    started_ns: int
    ended_ns: int | None


class RestoreJobList(BaseModel):
    items: list[RestoreJobInfo]
    """This backend process's restore jobs, newest first (a restart forgets them)."""


class ArchiveErrorBody(BaseModel):
    """502: the archive cannot be read; ``kind`` says why: connect, auth, bucket, config (the backend's
    archive settings) or error."""

    error: str
    kind: str


# ---- insights ----------------------------------------------------------------------------------------


class InsightFact(BaseModel):
    """One number the rule judged on. ``unit`` says how to read ``value``: ns, bytes, count, pct (0-100),
    mhz, celsius, mw, mib, gbps (10^9 bytes/s), or text (a word, or "not reported")."""

    label: str
    value: int | float | str
    unit: Literal["ns", "bytes", "count", "pct", "mhz", "celsius", "mw", "mib", "gbps", "text"]


class InsightInvolved(BaseModel):
    """A kernel, copy group, launching thread, idle gap or system sample the insight is about."""

    kind: Literal["kernel", "copy", "thread", "gap", "sample", "sync", "line"]
    name: str
    facts: list[InsightFact]
    start_ns: int | None
    end_ns: int | None


class Insight(BaseModel):
    rule: str
    severity: Literal["info", "warning", "critical"]
    title: str
    suggestion: str
    start_ns: int
    """The time range the evidence covers (CLOCK_REALTIME ns): where the timeline opens."""
    end_ns: int
    device_id: int | None
    facts: list[InsightFact]
    involved: list[InsightInvolved]


class RuleState(BaseModel):
    rule: str
    status: Literal["fired", "clear", "not_checked"]
    reason: str
    """Why a rule was not checked (the data it needs was not recorded); empty otherwise."""


class InsightCounts(BaseModel):
    critical: int
    warning: int
    info: int


class Insights(BaseModel):
    session_id: str
    items: list[Insight]
    """Most severe first, then by start time."""
    counts: InsightCounts
    rules: list[RuleState]
    """Every rule, fired or not: a rule that could not run says so (nothing hidden)."""
