"""The store's answers as typed rows: what a query found, in the store's terms (a record's seq, its start and
end, whether every stream ended). The API layer (``gpufl.backend.api.shape``) makes the response models'
shapes from them (a string id, a duration, ``cut_short`` beside ``ended``), and the response models themselves
(``api/schemas.py``): a field added to a row here is selected, served and documented in the OpenAPI document
(hence the UI's generated types) with no other list to edit. Field order is the order of the SELECT that fills
a row (``activity.py`` builds its column lists from these fields)."""

from __future__ import annotations

from typing import Any

import msgspec


class Session(msgspec.Struct):
    session_id: str
    host: str | None
    """None until the session_start record has arrived (records may come first)."""
    app: str | None
    pid: int | None
    job_id: str | None
    start_ns: int | None
    """From session_start; None until it has arrived."""
    end_ns: int | None
    """Latest session_end ``end_ns``; None while no stream has ended."""
    last_ns: int
    """Newest timestamp seen on any stream (what a live session's timeline extends to)."""
    gpus: list[str]
    """GPU names from session_start's devices."""
    kernels: int
    memcpys: int
    records: int
    """Records stored, all streams."""
    ended: bool
    """Every stream that sent records also sent its session_end."""


class Activity(msgspec.Struct):
    """What kernels, copies and memsets share: the activity record's common fields
    (``gpufl.contract.events.Activity``) and the scope and call stack they were launched in. The API adds to
    each its id (the seq on the device stream, as a string) and its duration."""

    seq: int
    device_id: int
    stream_id: int
    corr_id: int
    start_ns: int
    end_ns: int
    scope_inst: int | None
    stack_id: int | None


class Kernel(Activity):
    name: str | None
    """Demangled name from the launch dict entry; None if that entry has not arrived."""
    launch_id: int
    graph_id: int | None
    thread_id: int | None


class KernelDetail(Kernel):
    mangled: str | None
    api_start_ns: int | None
    api_dur_ns: int | None
    graph_node_id: int | None
    launch: dict[str, Any] | None
    """The LaunchConfig (grid, block, registers, shared memory, occupancy, limiting_resource...)."""
    stack: list[dict[str, Any]] | None
    """Innermost frame first (file, line, function); None if the kernel has no stack or its dict entry has not
    arrived."""
    scope: dict[str, Any] | None
    """The innermost scope: its inst, path_id and path."""


class Copy(Activity):
    bytes: int
    copy_kind: str
    src_kind: str
    dst_kind: str
    throughput_gbps: float | None
    mode: str | None
    """sync (the calling thread waited) or async; null before contract v3."""
    thread_id: int | None
    api_lead_ns: int | None
    """The copy call's entry, this long before start_ns (null: not recorded)."""
    api_dur_ns: int | None


class Memset(Activity):
    bytes: int
    value: int
    mem_kind: str


def columns(row: type[msgspec.Struct]) -> tuple[str, ...]:
    """A row type's fields, the columns its SELECT lists in order."""
    return tuple(f.name for f in msgspec.structs.fields(row))
