"""The store's answers as typed rows: what a query found, in the store's terms (a record's seq, its start and
end, whether every stream ended). The API layer (``gpufl.backend.api.shape``) makes the response models'
shapes from them (a string id, a duration, ``cut_short`` beside ``ended``). Field order is the order of the
SELECT that fills a row (``activity.py`` builds its column lists from these fields)."""

from __future__ import annotations

from typing import Any

import msgspec


class Session(msgspec.Struct):
    session_id: str
    host: str | None
    app: str | None
    pid: int | None
    job_id: str | None
    start_ns: int | None
    end_ns: int | None
    last_ns: int
    gpus: list[str]
    kernels: int
    memcpys: int
    records: int
    ended: bool
    """Every stream that sent records also sent its session_end."""


class Kernel(msgspec.Struct):
    seq: int
    name: str | None
    launch_id: int
    device_id: int
    stream_id: int
    corr_id: int
    start_ns: int
    end_ns: int
    scope_inst: int | None
    stack_id: int | None
    graph_id: int | None
    thread_id: int | None


class KernelDetail(Kernel):
    mangled: str | None
    api_start_ns: int | None
    api_dur_ns: int | None
    graph_node_id: int | None
    launch: dict[str, Any] | None
    stack: list[dict[str, Any]] | None
    scope: dict[str, Any] | None


class Copy(msgspec.Struct):
    seq: int
    device_id: int
    stream_id: int
    corr_id: int
    start_ns: int
    end_ns: int
    bytes: int
    copy_kind: str
    src_kind: str
    dst_kind: str
    throughput_gbps: float | None
    scope_inst: int | None
    stack_id: int | None
    mode: str | None
    thread_id: int | None
    api_lead_ns: int | None
    api_dur_ns: int | None


class Memset(msgspec.Struct):
    seq: int
    device_id: int
    stream_id: int
    corr_id: int
    start_ns: int
    end_ns: int
    bytes: int
    value: int
    mem_kind: str
    scope_inst: int | None
    stack_id: int | None


def columns(row: type[msgspec.Struct]) -> tuple[str, ...]:
    """A row type's fields, the columns its SELECT lists in order."""
    return tuple(f.name for f in msgspec.structs.fields(row))
