"""Every committed capture (real GPU runs) exported to Perfetto's protobuf format and read back with
Perfetto's own definitions: the counts per kind equal the session's, every kernel/copy/memset sits on its
CUDA stream's track at its recorded times under its interned name, scopes nest on their threads, and every
flow runs from a launch call on the launching thread to its kernel or copy."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from gpufl.contract import events
from gpufl.export import perfetto
from gpufl.export.source import LogSession, find_sessions

CAPTURES = sorted((Path(__file__).resolve().parents[2] / "examples" / "captures").iterdir())


def _session(folder: Path) -> LogSession:
    (s,) = find_sessions(folder).values()
    return s


def _records(s: LogSession, stream: str) -> list[events.Record]:
    return list(s.records(stream))


class Parsed:
    """A trace read back: tracks by uuid, slices per track (BEGIN/END paired in order), counters, flows."""

    def __init__(self, data: bytes) -> None:
        trace = pb.Trace()
        trace.ParseFromString(data)
        self.packets = list(trace.packet)
        self.tracks: dict[int, Any] = {}
        self.names: dict[int, str] = {}
        self.slices: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.counters: dict[int, list[tuple[int, float]]] = defaultdict(list)
        open_: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.first_flags = self.packets[0].sequence_flags
        for p in self.packets:
            assert p.trusted_packet_sequence_id == perfetto.SEQUENCE_ID
            for n in p.interned_data.event_names:
                assert n.iid not in self.names, "an interned name defined twice"
                self.names[n.iid] = n.name
            if p.HasField("track_descriptor"):
                self.tracks[p.track_descriptor.uuid] = p.track_descriptor
                continue
            if not p.HasField("track_event"):
                continue
            e = p.track_event
            assert e.track_uuid in self.tracks, "an event before its track's descriptor"
            if e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
                assert p.sequence_flags & pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
                s = {
                    "name": self.names[e.name_iid],
                    "start": p.timestamp,
                    "cat": list(e.categories),
                    "args": {a.name: a for a in e.debug_annotations},
                    "flow_out": list(e.flow_ids),
                    "flow_in": list(e.terminating_flow_ids),
                    "depth": len(open_[e.track_uuid]),
                }
                open_[e.track_uuid].append(s)
            elif e.type == pb.TrackEvent.TYPE_SLICE_END:
                s = open_[e.track_uuid].pop()
                s["end"] = p.timestamp
                self.slices[e.track_uuid].append(s)
            elif e.type == pb.TrackEvent.TYPE_COUNTER:
                self.counters[e.track_uuid].append((p.timestamp, e.double_counter_value))
        self.unclosed = sum(len(v) for v in open_.values())

    def by_name(self, name: str) -> Any:
        (t,) = [t for t in self.tracks.values() if t.name == name]
        return t


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_export_of_a_real_capture_reads_back_with_perfettos_definitions(capture: Path) -> None:
    s = _session(capture)
    out = io.BytesIO()
    counts = perfetto.export(s, out)
    t = Parsed(out.getvalue())
    assert t.first_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    assert t.unclosed == 0

    device = _records(s, "device")
    scope = _records(s, "scope")
    system = _records(s, "system")
    start = device[0]
    assert isinstance(start, events.SessionStart)
    launches = {r.id: r.launch for r in device if isinstance(r, events.DictEntry) and r.launch is not None}
    activity = [r for r in device if isinstance(r, events.Kernel | events.Memcpy | events.Memset)]
    assert counts.kernels == sum(isinstance(r, events.Kernel) for r in activity) > 0
    assert counts.memcpys == sum(isinstance(r, events.Memcpy) for r in activity)
    assert counts.memsets == sum(isinstance(r, events.Memset) for r in activity)

    # Each activity record on its CUDA stream's track (under its GPU), at its times, with its name.
    want: dict[tuple[int, int], list[tuple[int, int, str, int]]] = defaultdict(list)
    for r in activity:
        if isinstance(r, events.Kernel):
            name = launches[r.launch_id].name  # type: ignore[union-attr]
        elif isinstance(r, events.Memcpy):
            name = f"memcpy {r.copy_kind}"
        else:
            name = "memset"
        want[(r.device_id, r.stream_id)].append((r.start_ns, r.end_ns, name, r.corr_id))
    by_corr = {(r.corr_id, r.start_ns): r for r in activity if isinstance(r, events.Kernel)}
    got: dict[tuple[int, int], list[tuple[int, int, str, int]]] = defaultdict(list)
    for uuid, slices in t.slices.items():
        d = t.tracks[uuid]
        if not d.name.startswith("stream "):
            continue
        gpu = t.tracks[d.parent_uuid]
        dev = int(gpu.name.split()[1].rstrip(":"))
        assert start.devices and gpu.name == f"GPU {dev}: {start.devices[0].name}"
        for sl in slices:
            assert sl["depth"] == 0  # a CUDA stream runs one thing at a time
            if "kernel" in sl["cat"]:  # the launch configuration, encoded once per configuration and copied
                k = by_corr[(sl["args"]["corr_id"].int_value, sl["start"])]
                cfg = launches[k.launch_id]
                assert cfg is not None and sl["args"]["grid"].string_value == "x".join(map(str, cfg.grid))
                assert sl["args"]["registers"].int_value == cfg.num_regs
            got[(dev, int(d.name.split()[1]))].append(
                (sl["start"], sl["end"], sl["name"], sl["args"]["corr_id"].int_value)
            )
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}

    # Flows: each launch call (on the launching thread) starts the flow its kernel or copy ends.
    flow_out: dict[int, tuple[int, dict[str, Any]]] = {}
    flow_in: dict[int, dict[str, Any]] = {}
    for uuid, slices in t.slices.items():
        for sl in slices:
            for f in sl["flow_out"]:
                assert f not in flow_out
                flow_out[f] = (uuid, sl)
            for f in sl["flow_in"]:
                flow_in[f] = sl
    with_site = [r for r in activity if isinstance(r, events.Kernel | events.Memcpy) and r.thread_id is not None
                 and r.api_dur_ns is not None and events.api_start_ns(r) is not None]  # fmt: skip
    # A CUDA graph launch is one call for many kernels (one correlation id): its flow ends at the first.
    first: dict[int, events.Kernel | events.Memcpy] = {}
    for r in with_site:
        first.setdefault(r.corr_id, r)
    assert counts.launches == len(first) == len(flow_out) == len(flow_in)
    for corr, r in first.items():
        uuid, call = flow_out[corr]
        assert t.tracks[uuid].thread.tid == r.thread_id and t.tracks[uuid].thread.pid == start.pid
        assert call["start"] == events.api_start_ns(r) and call["end"] - call["start"] == r.api_dur_ns
        assert flow_in[corr]["start"] == r.start_ns

    # Scopes and NVTX ranges: nested slices on their threads, as the scope stream recorded them.
    begins = {r.inst: r for r in scope if isinstance(r, events.ScopeBegin)}
    ends = {r.inst: r for r in scope if isinstance(r, events.ScopeEnd)}
    paths = {r.id: r.value for r in scope if isinstance(r, events.DictEntry) and r.kind == "scope"}
    scope_slices = [
        (uuid, sl) for uuid, sls in t.slices.items() for sl in sls if sl["cat"][0] in ("scope", "nvtx")
    ]
    assert counts.scopes == len(begins) == len(scope_slices)
    for uuid, sl in scope_slices:
        b = begins[sl["args"]["inst"].int_value]
        assert t.tracks[uuid].thread.tid == b.thread_id
        assert (sl["start"], sl["end"]) == (b.ts_ns, ends[b.inst].ts_ns)
        assert sl["args"]["path"].string_value == paths[b.path_id]
        # nesting as recorded, counted on the slice's own thread: an NVTX range on a thread with no scope of
        # its own is recorded under the scope entered last on another thread (its depth counts that one)
        same_thread, parent = 0, b.parent_inst
        while parent is not None and parent in begins:
            same_thread += begins[parent].thread_id == b.thread_id
            parent = begins[parent].parent_inst
        assert sl["depth"] == same_thread

    # Counters: every GPU metric present in a sample, in base units; absent ones not invented.
    samples = [r for r in system if isinstance(r, events.SystemSample)]
    if not samples:  # a run shorter than the sampling interval (deep_truth): no counter track is invented
        assert not [x for x in t.tracks.values() if x.name.startswith("GPU 0 ")], capture.name
        return
    util = t.by_name("GPU 0 GPU utilization")
    assert t.counters[util.uuid] == [
        (r.ts_ns, float(g.util_gpu_pct))
        for r in samples
        for g in r.gpus
        if g.device_id == 0 and g.util_gpu_pct is not None
    ]
    mem = t.by_name("GPU 0 memory used")
    assert mem.counter.unit_name == "bytes"
    assert t.counters[mem.uuid] == [
        (r.ts_ns, float(g.mem_used_mib) * (1 << 20))
        for r in samples for g in r.gpus if g.device_id == 0 and g.mem_used_mib is not None
    ]  # fmt: skip
    present = sum(
        getattr(g, f) is not None
        for r in samples
        for g in r.gpus
        for f in ("util_gpu_pct", "power_mw", "temp_c")
    )
    exported = sum(
        len(t.counters[t.by_name(f"GPU {g} {n}").uuid])
        for g in {g.device_id for r in samples for g in r.gpus}
        for n in ("GPU utilization", "power", "temperature")
        if any(tr.name == f"GPU {g} {n}" for tr in t.tracks.values())
    )
    assert present == exported
    assert counts.counters == sum(len(v) for v in t.counters.values())


def test_interned_names_are_defined_once_and_reused(tmp_path: Path) -> None:
    s = _session(next(c for c in CAPTURES if c.name == "gpt_train"))
    out = io.BytesIO()
    counts = perfetto.export(s, out)
    t = Parsed(out.getvalue())
    distinct = {sl["name"] for sls in t.slices.values() for sl in sls}
    assert len(t.names) == len(distinct) < counts.kernels / 10  # a training loop repeats a few names
