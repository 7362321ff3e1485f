"""The store's typed rows (``gpufl.backend.store.rows``) in the shapes of the response models: a record's id
(its seq as a decimal string, stable across re-deliveries and engines), its duration, and a session's
``cut_short`` (the negation of ``ended``, kept for the UI). Dicts, in the models' field order, because the
heavy endpoints encode them with msgspec directly (``routes.sessions.fast_json``)."""

from __future__ import annotations

from typing import Any

from gpufl.backend.store import rows


def session_item(r: rows.Session) -> dict[str, Any]:
    return {
        "session_id": r.session_id,
        "host": r.host,
        "app": r.app,
        "pid": r.pid,
        "job_id": r.job_id,
        "start_ns": r.start_ns,
        "end_ns": r.end_ns,
        "last_ns": r.last_ns,
        "gpus": r.gpus,
        "kernels": r.kernels,
        "memcpys": r.memcpys,
        "records": r.records,
        "ended": r.ended,
        "cut_short": not r.ended,
    }


def kernel_item(r: rows.Kernel) -> dict[str, Any]:
    return {
        "id": str(r.seq),
        "seq": r.seq,
        "name": r.name,
        "launch_id": r.launch_id,
        "device_id": r.device_id,
        "stream_id": r.stream_id,
        "corr_id": r.corr_id,
        "start_ns": r.start_ns,
        "end_ns": r.end_ns,
        "dur_ns": r.end_ns - r.start_ns,
        "scope_inst": r.scope_inst,
        "stack_id": r.stack_id,
        "graph_id": r.graph_id,
        "thread_id": r.thread_id,
    }


def kernel_detail(r: rows.KernelDetail) -> dict[str, Any]:
    return {
        **kernel_item(r),
        "mangled": r.mangled,
        "api_start_ns": r.api_start_ns,
        "api_dur_ns": r.api_dur_ns,
        "graph_node_id": r.graph_node_id,
        "launch": r.launch,
        "stack": r.stack,
        "scope": r.scope,
    }


def activity_item(r: rows.Copy | rows.Memset) -> dict[str, Any]:
    """A copy or memset: its id, every column of its row, its duration."""
    out: dict[str, Any] = {"id": str(r.seq)}
    for name in r.__struct_fields__:
        out[name] = getattr(r, name)
    out["dur_ns"] = r.end_ns - r.start_ns
    return out
