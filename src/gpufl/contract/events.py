"""The event contract: the one definition of every record that client, agent, backend and UI share.

Every record is one JSON object on one line carrying ``type``, ``session_id``, ``stream`` and ``seq``.
``seq`` is stamped per stream by that stream's single writer (0, 1, 2, ... with no gaps), so
``(session_id, stream, seq)`` identifies a record everywhere downstream and a gap means transport loss.

All ``*_ns`` fields are CLOCK_REALTIME nanoseconds (GPU timestamps are mapped onto that axis by the
capture engine), so streams, processes and hosts share one time axis.

Absent fields take their schema default (``null`` for optional values): the writer omits defaults to
keep a kernel record small, and a reader must treat a missing field exactly like its default. Values that
are unknown are null, never invented.

Every number has a range and every session id a form, stated below (``Limits``) and in the JSON Schema: what
the store can compute with and the API can address. A record outside them is rejected with the reason.

Repeated strings (kernel names, call stacks, scope paths) are ``dict`` records referred to by id. A
stream's writer emits the ``dict`` record once per segment before its first use in that segment, so every
segment decodes on its own. Ids are per (session, stream, kind).

The structs below are msgspec Structs: the same definitions give the fast encoder used by the writer,
the validating decoder used by the backend, and the JSON Schema in ``docs/event-schema.json``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from gpufl.contract import capture, deep, segments
from gpufl.contract.limits import (  # noqa: F401  (re-exported: readers look for them here)
    DEVICE_ID_MAX,
    FLOAT_MAX,
    I64_MAX,
    SESSION_ID_PATTERN,
    SPAN_MAX_NS,
    STEP_SCOPE,
    TIME_MAX_NS,
    TIME_MIN_NS,
    U32,
    Count,
    DeviceId,
    DictKind,
    Fraction,
    Id,
    Lead,
    Measure,
    Ns,
    Offset,
    Real,
    Record,
    SessionId,
    Span,
    Stream,
    Version,
    valid_session_id,
)

# Segment file names (and the three streams) are their own module; re-exported here, where readers look.
SEGMENT_SUFFIX = segments.SEGMENT_SUFFIX
STREAMS = segments.STREAMS
SegmentName = segments.SegmentName
parse_segment_name = segments.parse_segment_name
safe_name = segments.safe_name
segment_name = segments.segment_name
# The capture_window record (v5) is its own module too.
CaptureWindow = capture.CaptureWindow
CaptureTrigger = capture.CaptureTrigger
CaptureRequest = capture.CaptureRequest  # v7
# The deep engines' profile_range record (v6) too.
ProfileRange = deep.ProfileRange

SCHEMA_VERSION = 7
"""Bumped on any change of meaning; readers accept every version up to their own.
v2: kernels and copies carry the launch-API entry as ``api_lead_ns`` (a duration before ``start_ns``) instead
of the absolute ``api_start_ns`` (16 bytes less per line); v1's ``api_start_ns`` stays readable.
v3: ``sync`` records (CUDA synchronisation calls) and a copy's ``mode`` (async / sync); v1 and v2 sessions have
neither, which readers say ("not recorded") rather than read as none happened.
v4: a GPU sample's activity fields from NVML GPM (``sm_active_pct`` … ``nvlink_tx_mibs``), each the mean over
the interval since the previous sample; earlier sessions have none, which readers say ("not recorded").
v5: ``capture_window`` records (device stream): a session in a capture mode other than ``continuous`` traced
kernels only inside them; before v5 every session traced continuously.
v6: the deep engines (SASS metrics, PC sampling): ``profile_range`` records (scope stream) state what each deep
range's ``profile_sample`` records are a share of and what was lost; a sample names its kernel by
``kernel_name_id`` and its source file by ``source_file_id`` (dict kind ``source_file``) instead of the strings
``function_name`` / ``source_file``, which stay readable.
v7: ``capture_request`` records (device stream): a session's answer to a control-file request (opened,
extended, refused and why), which remote capture (issue #22) reports back; earlier sessions wrote none.

The limits below (numeric ranges, the session id's form) came after v2 without a bump: they change no field's
meaning and exclude only values no writer produced (every committed capture passes them,
tests/backend/test_captures.py); a version says how to read a session."""


# ---- Records present on every stream -------------------------------------------------------------


class DeviceProperties(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Static properties of one visible GPU (inputs for occupancy and for the UI's header)."""

    device_id: DeviceId
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    compute_capability: tuple[Count, Count] | None = None
    sm_count: Count | None = None
    total_memory_bytes: Count | None = None
    max_threads_per_sm: Count | None = None
    max_blocks_per_sm: Count | None = None
    max_threads_per_block: Count | None = None
    regs_per_sm: Count | None = None
    regs_per_block: Count | None = None
    shared_mem_per_sm: Count | None = None
    shared_mem_per_block_optin: Count | None = None
    reserved_shared_mem_per_block: Count | None = None
    warp_size: Count | None = None
    clock_sm_max_mhz: Count | None = None
    clock_mem_max_mhz: Count | None = None
    power_limit_mw: Count | None = None


class ClockSync(msgspec.Struct, omit_defaults=True, kw_only=True):
    """How GPU timestamps were mapped to CLOCK_REALTIME: realtime_ns = gpu_ns + offset_ns."""

    offset_ns: Offset
    measured_at_ns: Ns
    uncertainty_ns: Span | None = None


class SessionStart(Record, tag="session_start", kw_only=True):
    """``seq`` 0 of every stream: who, where, what and with which options."""

    app: str
    host: str
    pid: Count
    argv: list[str] = []
    start_ns: Ns
    gpufl_version: str
    schema_version: Version = 1
    """The contract version that wrote this session. Writers always set it; it is absent only in v1 logs
    (written while it equalled the default then), hence the default 1."""
    job_id: str | None = None
    options: dict[str, Any] = {}
    devices: list[DeviceProperties] = []
    driver_version: str | None = None
    cuda_driver_version: Count | None = None
    cupti_version: Count | None = None
    clock: ClockSync | None = None


class SessionEnd(Record, tag="session_end", kw_only=True):
    """Last record of every stream. Its absence marks a session cut short (e.g. SIGKILL)."""

    end_ns: Ns
    reason: Literal["shutdown", "atexit", "signal"] = "shutdown"
    records: Count
    """Records written on this stream, this one included."""
    dropped: Count = 0
    """Records this stream dropped because its queue was full (each also reported by a ``dropped``)."""
    clock: ClockSync | None = None
    """The GPU clock offset re-measured at shutdown (compare with session_start's)."""


class DictEntry(Record, tag="dict", kw_only=True):
    """An interned value. ``kernel``: demangled name in ``value`` (+ ``mangled``); ``scope``: the path;
    ``thread``: the name; ``stack``: ``frames``; ``launch``: ``launch``."""

    kind: DictKind
    id: Id
    value: str | None = None
    mangled: str | None = None
    frames: list[tuple[str, Count, str]] | None = None
    """For ``stack``: (file, line, function) from the innermost frame outwards."""
    launch: LaunchConfig | None = None


class Dropped(Record, tag="dropped", kw_only=True):
    """The writer's queue was full: ``count`` records were dropped between first_ns and last_ns."""

    count: Count
    first_ns: Ns
    last_ns: Ns
    by_type: dict[str, Count] = {}


class SegmentsDeleted(Record, tag="segments_deleted", kw_only=True):
    """The session's byte cap was exceeded and these closed segments were deleted, oldest first."""

    files: list[str]
    bytes: Count
    ts_ns: Ns


class Notice(Record, tag="notice", kw_only=True):
    """Something the user should know (an engine unavailable, a capture gap), said once, with its cause."""

    ts_ns: Ns
    level: Literal["info", "warning", "error"] = "warning"
    code: str
    message: str
    engine: str | None = None


class CaptureGap(Record, tag="capture_gap", kw_only=True):
    """The tracing engine stepped aside (another profiler took CUPTI): nothing was captured in between."""

    start_ns: Ns
    end_ns: Ns | None = None
    reason: str


# ---- Device stream: CUPTI activity ---------------------------------------------------------------

Limiter = Literal["registers", "shared_memory", "warps", "blocks"]


class LaunchConfig(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What a kernel launch asked for and what the GPU can fit: interned, since a training loop repeats a
    handful of configurations millions of times (and occupancy is computed once per configuration)."""

    name: str
    """Demangled kernel name."""
    mangled: str | None = None
    device_id: DeviceId
    context_id: Id | None = None
    grid: tuple[Count, Count, Count]
    block: tuple[Count, Count, Count]
    num_regs: Count
    static_shared_bytes: Count = 0
    dyn_shared_bytes: Count = 0
    local_bytes: Count = 0
    """Local memory per thread."""
    const_bytes: Count | None = None
    occupancy: Fraction | None = None
    """Theoretical occupancy: active warps per SM / max warps per SM."""
    reg_occupancy: Fraction | None = None
    smem_occupancy: Fraction | None = None
    warp_occupancy: Fraction | None = None
    block_occupancy: Fraction | None = None
    limiting_resource: Limiter | None = None
    max_active_blocks: Count | None = None
    """Max resident blocks per SM for this configuration."""
    cache_config_requested: Count | None = None
    cache_config_executed: Count | None = None
    shared_mem_config_bytes: Count | None = None


class Activity(Record, kw_only=True):
    """What kernels, copies and memsets share: the GPU and CUDA stream they ran on, the CUPTI correlation id of
    the API call that launched them, and when they ran. Not a record type of its own."""

    device_id: DeviceId
    stream_id: Id
    """The CUDA stream (``stream`` is the log stream the record is written to)."""
    corr_id: Id
    start_ns: Ns
    end_ns: Ns


class Kernel(Activity, tag="kernel", kw_only=True):
    launch_id: Id
    """``dict`` id (kind ``launch``): name, grid/block, registers, shared/local memory, occupancy."""
    api_lead_ns: Lead | None = None
    """How long before ``start_ns`` the launch API call was entered (CPU side): see ``api_start_ns()``."""
    api_dur_ns: Span | None = None
    """How long the launch API call took: api exit = api start + api_dur_ns. The native path times the CUDA
    driver call (which the runtime's launch functions wrap), the cupti-python path the outermost call."""
    api_start_ns: Ns | None = None
    """Schema v1 only: the absolute launch-API entry time (v2 writers send ``api_lead_ns``)."""
    graph_id: Id | None = None
    graph_node_id: Id | None = None
    thread_id: Id | None = None
    """OS thread id that launched the kernel, where known."""
    stack_id: Id | None = None
    """``dict`` id (kind ``stack``) of the CPU call stack that launched it."""
    scope_inst: Id | None = None
    """Instance id of the innermost ``gpufl.scope`` open on the launching thread (scope stream's ``inst``)."""


CopyKind = Literal["HtoD", "DtoH", "DtoD", "HtoH", "PtoP", "HtoA", "AtoH", "AtoA", "AtoD", "DtoA", "unknown"]
MemKind = Literal[
    "Pageable", "Pinned", "Device", "Array", "Managed", "DeviceStatic", "ManagedStatic", "unknown"
]


class Memcpy(Activity, tag="memcpy", kw_only=True):
    bytes: Count
    copy_kind: CopyKind
    src_kind: MemKind = "unknown"
    dst_kind: MemKind = "unknown"
    src_device_id: DeviceId | None = None
    dst_device_id: DeviceId | None = None
    throughput_gbps: Measure | None = None
    """bytes / duration in GB/s (10^9 bytes per second); null for a zero-length interval."""
    context_id: Id | None = None
    graph_id: Id | None = None
    api_lead_ns: Lead | None = None
    api_dur_ns: Span | None = None
    api_start_ns: Ns | None = None
    """Schema v1 only (v2: ``api_lead_ns``)."""
    thread_id: Id | None = None
    stack_id: Id | None = None
    scope_inst: Id | None = None
    scope_depth: Count | None = None
    mode: Literal["async", "sync"] | None = None
    """v3, CUPTI's MEMCPY_ASYNC flag: ``sync``, the calling thread waited for the copy; null before v3."""


SyncKind = Literal["event", "stream_wait_event", "stream", "context", "unknown"]


class Sync(Record, tag="sync", kw_only=True):
    """A CUDA synchronisation call (v3; CUPTI's synchronisation activity): ``event``, ``stream`` (the stream or event
    waited on), ``context`` (cudaDeviceSynchronize, ``tensor.item()``): the calling thread waited from ``start_ns``
    to ``end_ns``; ``stream_wait_event``: a stream waits, not the host."""

    sync_kind: SyncKind
    start_ns: Ns
    end_ns: Ns
    corr_id: Id
    context_id: Id | None = None
    stream_id: Id | None = None
    event_id: Id | None = None


class Memset(Activity, tag="memset", kw_only=True):
    bytes: Count
    value: U32 = 0
    mem_kind: MemKind = "unknown"
    context_id: Id | None = None
    graph_id: Id | None = None
    thread_id: Id | None = None
    stack_id: Id | None = None
    scope_inst: Id | None = None
    scope_depth: Count | None = None


# ---- Scope stream --------------------------------------------------------------------------------


class ScopeBegin(Record, tag="scope_begin", kw_only=True):
    inst: Id
    """Session-wide instance id; GPU work launched inside carries it as ``scope_inst``."""
    path_id: Id
    """``dict`` id (kind ``scope``) of the full path, e.g. ``train/forward``."""
    parent_inst: Id | None = None
    depth: Count
    ts_ns: Ns
    thread_id: Id
    tag: str | None = None


class ScopeEnd(Record, tag="scope_end", kw_only=True):
    inst: Id
    ts_ns: Ns
    error: str | None = None
    """Exception type name when the scope was left by an exception."""


class ProfileSample(Record, tag="profile_sample", kw_only=True):
    """A deep-engine sample attributed to a scope: a SASS metric per PC (``metric_name`` is one of
    ``deep.SASS_INST`` / ``deep.SASS_THREAD_INST``, ``metric_value`` its count over the range), or one PC's
    samples of one stall reason (``stall_reason``: CUPTI's own name for it, ``sample_count``). Every sample of
    a range (v6) shares its ``scope_inst`` with the range's ``profile_range``."""

    source: Literal["sass_metric", "pc_sampling"]
    scope_inst: Id | None = None
    device_id: DeviceId
    kernel_name_id: Id | None = None
    """``dict`` id (kind ``kernel``) on the scope stream."""
    function_name: str | None = None
    pc_offset: Count | None = None
    source_file: str | None = None
    source_file_id: Id | None = None
    """``dict`` id (kind ``source_file``) on the scope stream: the file the PC's line is in (v6)."""
    source_line: Count | None = None
    metric_name: str | None = None
    metric_value: Real | None = None
    stall_reason: str | None = None
    sample_count: Count | None = None
    ts_ns: Ns | None = None


# ---- System stream -------------------------------------------------------------------------------


class GpuSample(msgspec.Struct, omit_defaults=True, kw_only=True):
    device_id: DeviceId
    util_gpu_pct: Measure | None = None
    util_mem_pct: Measure | None = None
    mem_used_mib: Measure | None = None
    mem_free_mib: Measure | None = None
    mem_total_mib: Measure | None = None
    temp_c: Real | None = None
    power_mw: Measure | None = None
    energy_mj: Count | None = None
    """Total energy since driver load, millijoules."""
    fan_pct: Measure | None = None
    clk_gfx_mhz: Count | None = None
    clk_sm_mhz: Count | None = None
    clk_mem_mhz: Count | None = None
    throttle_reasons: Count | None = None
    """NVML clocks-event reasons bitmask."""
    throttle_pwr: bool | None = None
    throttle_therm: bool | None = None
    pcie_rx_kbs: Measure | None = None
    pcie_tx_kbs: Measure | None = None
    # v4: GPU activity from NVML GPM (GPU Performance Monitoring, Hopper and newer): hardware counters read by
    # the driver without CUPTI's profiler lock, each the mean over the interval since the previous sample
    # (absent from a session's first sample, and where the GPU does not report it). DCGM's profiling
    # metrics of the same name (DCGM_FI_PROF_*) come from these counters.
    gr_engine_active_pct: Measure | None = None
    """Time any graphics/compute context was active on the GPU, % (GPM graphics util)."""
    sm_active_pct: Measure | None = None
    """SMs busy (at least one warp resident), % of SMs × time — unlike util_gpu_pct, which reads 100 for a
    kernel that keeps one SM busy."""
    sm_occupancy_pct: Measure | None = None
    """Resident warps, % of the SMs' theoretical maximum × time."""
    tensor_active_pct: Measure | None = None
    """Any tensor pipe active, % of time (all SMs)."""
    tensor_hmma_active_pct: Measure | None = None
    """Half-precision (fp16/bf16/tf32) tensor pipe active, %."""
    tensor_imma_active_pct: Measure | None = None
    """Integer tensor pipe active, %."""
    tensor_dfma_active_pct: Measure | None = None
    """FP64 tensor pipe active, %."""
    fp64_active_pct: Measure | None = None
    """Non-tensor FP64 pipe active, %."""
    fp32_active_pct: Measure | None = None
    """Non-tensor FP32 pipe active, %."""
    fp16_active_pct: Measure | None = None
    """Non-tensor FP16 pipe active, %."""
    int_active_pct: Measure | None = None
    """Integer pipe active, %."""
    dram_bw_pct: Measure | None = None
    """DRAM bandwidth used, % of the theoretical maximum."""
    pcie_rx_mibs: Measure | None = None
    """PCIe traffic to the GPU over the interval, MiB/s (GPM; ``pcie_rx_kbs`` is NVML's 20 ms reading)."""
    pcie_tx_mibs: Measure | None = None
    """PCIe traffic from the GPU over the interval, MiB/s."""
    nvlink_rx_mibs: Measure | None = None
    """NVLink receive over all links, MiB/s."""
    nvlink_tx_mibs: Measure | None = None
    """NVLink transmit over all links, MiB/s."""


class HostSample(msgspec.Struct, omit_defaults=True, kw_only=True):
    cpu_pct: Measure | None = None
    ram_used_mib: Measure | None = None
    ram_total_mib: Measure | None = None
    proc_rss_mib: Measure | None = None


class SystemSample(Record, tag="system_sample", kw_only=True):
    ts_ns: Ns
    host: HostSample | None = None
    gpus: list[GpuSample] = []


# ---- The contract as data: which records go on which stream, and which fields refer to dict ids ----

Event = (
    SessionStart
    | SessionEnd
    | DictEntry
    | Dropped
    | SegmentsDeleted
    | Notice
    | CaptureGap
    | CaptureWindow
    | CaptureRequest
    | Kernel
    | Memcpy
    | Memset
    | Sync
    | ScopeBegin
    | ScopeEnd
    | ProfileSample
    | ProfileRange
    | SystemSample
)

EVENT_TYPES: tuple[type[Record], ...] = (
    SessionStart,
    SessionEnd,
    DictEntry,
    Dropped,
    SegmentsDeleted,
    Notice,
    CaptureGap,
    CaptureWindow,
    CaptureRequest,
    Kernel,
    Memcpy,
    Memset,
    Sync,
    ScopeBegin,
    ScopeEnd,
    ProfileSample,
    ProfileRange,
    SystemSample,
)

COMMON_TYPES = frozenset({"session_start", "session_end", "dict", "dropped", "segments_deleted", "notice"})
STREAM_TYPES: dict[str, frozenset[str]] = {
    "device": COMMON_TYPES
    | {"kernel", "memcpy", "memset", "sync", "capture_gap", "capture_window", "capture_request"},
    "scope": COMMON_TYPES | {"scope_begin", "scope_end", "profile_sample", "profile_range"},
    "system": COMMON_TYPES | {"system_sample"},
}

# Fields holding dict ids, per record type: (field, dict kind). The writer emits the dict record before
# the first record in a segment that uses it; readers resolve with it.
DICT_REFS: dict[str, tuple[tuple[str, str], ...]] = {
    "kernel": (("launch_id", "launch"), ("stack_id", "stack")),
    "memcpy": (("stack_id", "stack"),),
    "memset": (("stack_id", "stack"),),
    "scope_begin": (("path_id", "scope"),),
    "profile_sample": (("kernel_name_id", "kernel"), ("source_file_id", "source_file")),
}


# The span of the session's time axis each record type covers, as its (first, last) time fields: what the
# store keeps per stream as first_ns / last_ns (``dict`` and ``profile_sample`` cover none).
TIME_SPAN: dict[str, tuple[str, str]] = {
    "kernel": ("start_ns", "end_ns"),
    "memcpy": ("start_ns", "end_ns"),
    "memset": ("start_ns", "end_ns"),
    "sync": ("start_ns", "end_ns"),
    "scope_begin": ("ts_ns", "ts_ns"),
    "scope_end": ("ts_ns", "ts_ns"),
    "system_sample": ("ts_ns", "ts_ns"),
    "session_start": ("start_ns", "start_ns"),
    "session_end": ("end_ns", "end_ns"),
    "dropped": ("first_ns", "first_ns"),
    "segments_deleted": ("ts_ns", "ts_ns"),
    "notice": ("ts_ns", "ts_ns"),
    "capture_gap": ("start_ns", "start_ns"),
    "capture_window": ("start_ns", "end_ns"),
    "capture_request": ("ts_ns", "ts_ns"),
    "profile_range": ("start_ns", "end_ns"),
}

# Pairs of time fields in order: where a record has both (and both are set), the second is not before the
# first. ``check`` states it per record; ``gpufl.contract.checks`` per column and in SQL.
ORDERED: tuple[tuple[str, str], ...] = (("start_ns", "end_ns"),)

# Record types whose seq is fixed: a stream's session_start is its first record.
FIXED_SEQ: dict[str, int] = {"session_start": 0}


def type_tag(cls: type[Record]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


TYPE_BY_TAG: dict[str, type[Record]] = {type_tag(c): c for c in EVENT_TYPES}

# ---- Encoding, decoding and validation -----------------------------------------------------------

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Event)


def encode(record: Record) -> bytes:
    """One record as JSON bytes (no newline)."""
    return _encoder.encode(record)


def encode_lines(records: Iterable[Record]) -> bytes:
    buf = bytearray()
    for r in records:
        _encoder.encode_into(r, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


class ContractError(ValueError):
    """A record that does not satisfy the event contract, with the reason."""


def decode(line: bytes | str) -> Record:
    """Decode and validate one JSON line into its typed record, or raise ContractError with the reason.
    ContractError is the only exception it raises, whatever the input."""
    try:
        rec: Record = _decoder.decode(line)
    except msgspec.ValidationError as e:
        raise ContractError(str(e)) from None
    except msgspec.DecodeError as e:
        raise ContractError(f"malformed JSON: {e}") from None
    except RecursionError:  # msgspec's depth guard (e.g. deeply nested session_start options)
        raise ContractError("malformed JSON: nested too deeply") from None
    except UnicodeEncodeError:  # a str holding a lone surrogate, which no UTF-8 line can
        raise ContractError("malformed JSON: not valid UTF-8 text") from None
    check(rec)
    return rec


def check(rec: Record) -> None:
    """Semantic checks the types and ranges alone cannot express (the decoder checked those). Raises
    ContractError."""
    tag = type_tag(type(rec))
    if tag not in STREAM_TYPES[rec.stream]:
        raise ContractError(f"record type {tag!r} does not belong on stream {rec.stream!r}")
    if rec.seq < 0:  # absent: the writer's "not stamped yet"
        raise ContractError(f"seq must be a non-negative 64-bit integer, got {rec.seq}")
    if not valid_session_id(rec.session_id):
        raise ContractError(f"session_id {rec.session_id!r} does not match {SESSION_ID_PATTERN}")
    fixed = FIXED_SEQ.get(tag)
    if fixed is not None and rec.seq != fixed:
        raise ContractError(f"{tag} must have seq {fixed}")
    for first, last in ORDERED:
        start = getattr(rec, first, None)
        end = getattr(rec, last, None)
        if isinstance(start, int) and isinstance(end, int) and end < start:
            raise ContractError(f"{last} ({end}) is before {first} ({start})")


def api_start_ns(rec: Kernel | Memcpy) -> int | None:
    """When the launch API call was entered, from either schema version."""
    if rec.api_start_ns is not None:
        return rec.api_start_ns
    return None if rec.api_lead_ns is None else rec.start_ns - rec.api_lead_ns


def to_builtins(rec: Record) -> dict[str, Any]:
    """The record as plain JSON-compatible Python values, defaults included."""
    out: dict[str, Any] = msgspec.to_builtins(rec)
    # to_builtins honours omit_defaults; fill the defaults back so consumers see every field.
    for field in msgspec.structs.fields(type(rec)):
        if field.encode_name not in out:
            out[field.encode_name] = msgspec.to_builtins(getattr(rec, field.name))
    out["type"] = type_tag(type(rec))
    return out


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of one log line, generated from the structs above."""
    schema: dict[str, Any] = _clean_descriptions(msgspec.json.schema(Event))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"GPU Flight log record (schema version {SCHEMA_VERSION})"
    return schema


def _clean_descriptions(node: Any) -> Any:
    """Docstrings as ``inspect.cleandoc`` leaves them: msgspec releases differ in whether they dedent the
    lines after the first (0.23 does), and the committed schema must not depend on which one is installed."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _clean_descriptions(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node
