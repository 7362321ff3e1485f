"""The committed H100 captures (examples/captures) are real and complete: they decode under the contract,
and carry what the dashboard shows (demangled names, occupancy with its limiter, scopes with GPU time,
pageable and pinned copies)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from gpufl.client.replay import read_capture
from gpufl.contract import events

CAPTURES = Path(__file__).resolve().parents[2] / "examples/captures"


def load(name: str) -> dict[str, list[events.Record]]:
    return read_capture(CAPTURES / name)


@pytest.mark.parametrize("name", ["gpt_train", "memcpy_heavy", "multistream"])
def test_capture_is_complete_and_valid(name: str) -> None:
    streams = load(name)
    for stream, recs in streams.items():
        assert [r.seq for r in recs] == list(range(len(recs))), stream
        assert isinstance(recs[0], events.SessionStart) and isinstance(recs[-1], events.SessionEnd)
        assert recs[-1].records == len(recs) and recs[-1].dropped == 0
    start = streams["device"][0]
    assert isinstance(start, events.SessionStart)
    assert (
        start.devices
        and start.devices[0].name == "NVIDIA H100 80GB HBM3"
        and start.devices[0].sm_count == 132
    )
    assert start.clock is not None
    assert start.schema_version == 2  # re-recorded with the native record path (v3 captures: sync_stall, …)


def test_contract_v1_logs_stay_readable_as_what_they_are() -> None:
    """A capture recorded by contract v1 (the cupti-python path, before api_lead_ns): still valid, still v1."""
    streams = read_capture(Path(__file__).resolve().parents[1] / "fixtures/v1_memcpy_heavy")
    for stream, recs in streams.items():
        assert [r.seq for r in recs] == list(range(len(recs))), stream
        assert isinstance(recs[-1], events.SessionEnd) and recs[-1].records == len(recs)
    start = streams["device"][0]
    assert isinstance(start, events.SessionStart) and start.schema_version == 1
    copies = [r for r in streams["device"] if isinstance(r, events.Memcpy)]
    assert len(copies) == 100 and {c.src_kind for c in copies} >= {"Pageable", "Pinned"}
    samples = [r for r in streams["system"] if isinstance(r, events.SystemSample)]
    assert samples and samples[0].gpus and samples[0].gpus[0].mem_total_mib
    assert samples[0].gpus[0].fan_pct is None, "H100 SXM has no fan: null, not invented"


def test_gpt_capture_names_occupancy_and_scopes() -> None:
    s = load("gpt_train")
    launches = {r.id: r.launch for r in s["device"] if isinstance(r, events.DictEntry) and r.launch}
    kernels = [r for r in s["device"] if isinstance(r, events.Kernel)]
    assert len(kernels) > 5000
    names = {launches[k.launch_id].name for k in kernels}
    assert any(n.startswith("void at::native::") for n in names), "demangled"
    assert all(launches[k.launch_id].mangled for k in kernels)
    for lc in launches.values():
        assert lc.occupancy is not None and 0 < lc.occupancy <= 1
        assert lc.limiting_resource in ("registers", "shared_memory", "warps", "blocks")
    begins = {r.inst: r for r in s["scope"] if isinstance(r, events.ScopeBegin)}
    paths = {r.id: r.value for r in s["scope"] if isinstance(r, events.DictEntry)}
    gpu_ns: dict[str, int] = defaultdict(int)
    for k in kernels:
        if k.scope_inst in begins:
            gpu_ns[paths[begins[k.scope_inst].path_id]] += k.end_ns - k.start_ns
    for phase in ("step/forward", "step/backward", "step/optimizer"):
        assert gpu_ns[phase] > 0, (phase, dict(gpu_ns))
    assert sum(k.scope_inst is not None for k in kernels) / len(kernels) > 0.99


def test_memcpy_capture_has_pageable_and_pinned_copies_with_throughput() -> None:
    s = load("memcpy_heavy")
    copies = [r for r in s["device"] if isinstance(r, events.Memcpy)]
    kinds = {(c.copy_kind, c.src_kind, c.dst_kind) for c in copies}
    assert ("HtoD", "Pageable", "Device") in kinds and ("HtoD", "Pinned", "Device") in kinds
    assert ("DtoH", "Device", "Pinned") in kinds and ("DtoD", "Device", "Device") in kinds
    big = [c for c in copies if c.bytes >= 64 << 20 and c.copy_kind == "HtoD"]
    assert big and all(c.throughput_gbps and c.throughput_gbps > 1 for c in big)
    assert all(c.scope_inst is not None for c in copies)


def test_multistream_capture_has_streams_threads_and_graph_replays() -> None:
    s = load("multistream")
    kernels = [r for r in s["device"] if isinstance(r, events.Kernel)]
    assert len({k.stream_id for k in kernels}) >= 5
    assert len({k.thread_id for k in kernels if k.thread_id}) >= 4
    assert sum(1 for k in kernels if k.graph_id) >= 10
