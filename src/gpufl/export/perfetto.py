"""Perfetto's protobuf trace format (``.pftrace``), written with Perfetto's own definitions.

Why protobuf and the ``perfetto`` package: JSON traces over ~500 MB fail to load in trace viewers
(pytorch/kineto#595), and the package ships the published ``perfetto_trace_pb2`` and a streaming builder that
writes one packet at a time — so a long session exports in bounded memory.

One packet sequence: the first packet clears the incremental state, event names (kernel and scope names)
are interned on first use, later packets that use them say they need that state. Tracks are
``TrackDescriptor`` packets written just before their first event; a kernel's launch configuration is
encoded once and copied; slices are BEGIN/END pairs on their track
(written next to each other, so equal timestamps keep their order), flows go from the launch call on the
CPU thread to the kernel or copy on its CUDA stream.
"""

from __future__ import annotations

from typing import IO, Any

from gpufl.export.model import Begin, Counter, Counts, End, Instant, Slice, Track, Walk
from gpufl.export.source import LogSession

SEQUENCE_ID = 1
BATCH_PACKETS = 4096
"""Packets are built inside a ``Trace`` message and written every this many: concatenated ``Trace``
serialisations are one ``Trace`` (a repeated field), and building in place saves a copy per packet."""


def _pb() -> Any:
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2
    except ImportError as e:  # the client's plain install leaves it out
        raise RuntimeError(
            "exporting to Perfetto needs the `perfetto` package: pip install 'gpu-flight[export]'"
        ) from e
    return perfetto_trace_pb2


class _Writer:
    def __init__(self, out: IO[bytes]) -> None:
        self.pb = _pb()
        self.out = out
        self.trace = self.pb.Trace()
        self.uuids: dict[tuple[Any, ...], int] = {}
        self.names: dict[str, int] = {}
        self.protos: dict[tuple[Any, ...], Any] = {}  # (shared key, name, category) → a BEGIN TrackEvent
        self.first = True

    def flush(self) -> None:
        self.out.write(self.trace.SerializeToString())
        self.trace = self.pb.Trace()  # a new arena: Clear() keeps the old one's memory (upb)

    def packet(self) -> Any:
        if len(self.trace.packet) >= BATCH_PACKETS:
            self.flush()
        p = self.trace.packet.add()
        p.trusted_packet_sequence_id = SEQUENCE_ID
        if self.first:
            p.sequence_flags = self.pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            self.first = False
        return p

    def uuid(self, key: tuple[Any, ...]) -> int:
        u = self.uuids.get(key)
        if u is None:
            u = self.uuids[key] = len(self.uuids) + 1
        return u

    def track(self, t: Track) -> None:
        p = self.packet()
        d = p.track_descriptor
        d.uuid = self.uuid(t.key)
        if t.kind == "process":
            d.process.pid = t.pid or 0
            d.process.process_name = t.name
        elif t.kind == "thread":
            d.thread.pid = t.pid or 0
            d.thread.tid = t.tid or 0
            d.thread.thread_name = t.name
        else:
            d.name = t.name
            if t.parent is not None:
                d.parent_uuid = self.uuid(t.parent)
            if t.kind == "counter":
                d.counter.unit_name = t.unit or ""

    def _name(self, p: Any, name: str) -> None:
        iid = self.names.get(name)
        if iid is None:
            iid = self.names[name] = len(self.names) + 1
            entry = p.interned_data.event_names.add()
            entry.iid, entry.name = iid, name
        p.track_event.name_iid = iid
        p.sequence_flags |= self.pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE

    def begin(self, track: Track, name: str, ts: int, category: str, args: dict[str, Any], flow_out: int | None = None,
              flow_in: int | None = None, shared_key: tuple[Any, ...] | None = None,
              shared_args: dict[str, Any] | None = None) -> None:  # fmt: skip
        p = self.packet()
        p.timestamp = ts
        e = p.track_event
        key = (shared_key, name, category) if shared_key is not None else None
        proto = self.protos.get(key) if key is not None else None
        if proto is not None:  # name interned and shared annotations encoded before: copy them
            e.CopyFrom(proto)
            p.sequence_flags |= self.pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        else:
            e.type = self.pb.TrackEvent.TYPE_SLICE_BEGIN
            e.categories.append(category)
            self._name(p, name)
            for k, v in (shared_args or {}).items():
                _annotate(e.debug_annotations.add(), k, v)
            if key is not None:
                proto = self.protos[key] = self.pb.TrackEvent()
                proto.CopyFrom(e)
        e.track_uuid = self.uuid(track.key)
        for k, v in args.items():
            _annotate(e.debug_annotations.add(), k, v)
        if flow_out is not None:
            e.flow_ids.append(flow_out)
        if flow_in is not None:
            e.terminating_flow_ids.append(flow_in)

    def end(self, track: Track, ts: int) -> None:
        p = self.packet()
        p.timestamp = ts
        p.track_event.type = self.pb.TrackEvent.TYPE_SLICE_END
        p.track_event.track_uuid = self.uuid(track.key)

    def counter(self, c: Counter) -> None:
        p = self.packet()
        p.timestamp = c.ts_ns
        p.track_event.type = self.pb.TrackEvent.TYPE_COUNTER
        p.track_event.track_uuid = self.uuid(c.track.key)
        p.track_event.double_counter_value = c.value

    def instant(self, i: Instant) -> None:
        p = self.packet()
        p.timestamp = i.ts_ns
        e = p.track_event
        e.type = self.pb.TrackEvent.TYPE_INSTANT
        e.track_uuid = self.uuid(i.track.key)
        e.categories.append("gpufl")
        self._name(p, i.name)
        for k, v in i.args.items():
            _annotate(e.debug_annotations.add(), k, v)


def _annotate(a: Any, key: str, value: Any) -> None:
    a.name = key
    if isinstance(value, bool):
        a.bool_value = value
    elif isinstance(value, int):
        a.int_value = value
    elif isinstance(value, float):
        a.double_value = value
    elif isinstance(value, list | tuple):
        a.string_value = "x".join(str(v) for v in value)
    else:
        a.string_value = str(value)


def export(session: LogSession, out: IO[bytes]) -> Counts:
    """Write ``session`` to ``out`` as a Perfetto trace; returns what was written, per kind."""
    w = _Writer(out)
    walk = Walk(session)
    for ev in walk.timeline():
        if isinstance(ev, Track):
            w.track(ev)
        elif isinstance(ev, Slice):
            w.begin(ev.track, ev.name, ev.start_ns, ev.category, ev.args, ev.flow_out, ev.flow_in, ev.shared_key,
                    ev.shared_args)  # fmt: skip
            w.end(ev.track, ev.end_ns)
        elif isinstance(ev, Begin):
            w.begin(ev.track, ev.name, ev.ts_ns, ev.category, ev.args, None, None)
        elif isinstance(ev, End):
            w.end(ev.track, ev.ts_ns)
        elif isinstance(ev, Counter):
            w.counter(ev)
        elif isinstance(ev, Instant):
            w.instant(ev)
    w.flush()
    return walk.counts
