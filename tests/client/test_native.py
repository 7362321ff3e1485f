"""The native record path without a GPU: its C writer, and its CUPTI record parser replaying raw activity
buffers recorded on the H100 (tests/fixtures/native_gpt: the buffers CUPTI delivered, dumped with
GPUFL_NATIVE_DUMP_DIR, and the device log the same run wrote there)."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

import gpufl
from gpufl.client.engines.demangle import demangle
from gpufl.client.engines.occupancy import DeviceLimits, compute
from gpufl.client.writer import DiskBudget, NativeStreamWriter, SegmentFiles, StreamWriter
from gpufl.contract import events

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "native_gpt"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _native() -> Any:
    try:
        from gpufl.client import _native  # type: ignore[attr-defined]
    except ImportError as e:
        if IN_CI:  # CI builds the extension (scripts/install.sh): a missing one is a failure there
            pytest.fail(f"gpufl.client._native is not built: {e}")
        pytest.skip(f"gpufl.client._native is not built here: {e}")
    return _native


def _with_libcupti() -> Any:
    native = _native()
    from gpufl.client.engines.native_tracing import libcupti_candidates

    for path in libcupti_candidates():
        try:
            native.load(path)
            return native
        except OSError:
            continue
    if IN_CI:
        pytest.fail("libcupti not found (the CUDA toolkit's or nvidia-cuda-cupti's)")
    pytest.skip("libcupti not found")


def _replay_all(native: Any) -> None:
    """Every recorded buffer, with the kernel names recorded beside it."""
    for buf in sorted(FIXTURE.glob("buffer-*.bin")):
        names = {}
        for line in buf.with_suffix(".names").read_bytes().splitlines():
            ptr, name = line.split(b"\t", 1)
            names[int(ptr, 16)] = name
        native.replay_buffer(buf.read_bytes(), names)


def _writer(tmp: Path, **kw: Any) -> NativeStreamWriter:
    files = SegmentFiles(str(tmp), "host", "app", "sid0000000000000")
    base = StreamWriter(
        files,
        "device",
        queue_size=1000,
        segment_max_bytes=kw.get("segment_max_bytes", 64 << 20),
        segment_max_age_s=600,
        flush_interval_s=0.01,
        budget=DiskBudget(kw.get("budget", 0)),
    )
    return NativeStreamWriter(base)


def _read(tmp: Path) -> list[list[events.Record]]:
    return [
        [events.decode(line) for line in p.read_bytes().splitlines()]
        for p in sorted(tmp.glob("*.device.*.log"))
    ]


def _fixture_log() -> list[events.Record]:
    (log,) = FIXTURE.glob("*.device.*.log")
    return [events.decode(line) for line in log.read_bytes().splitlines()]


T0 = 1_700_000_000_000_000_000  # inside the contract's time window


def test_writer_orders_seq_and_ends_with_counts(tmp_path: Path) -> None:
    _native()
    w = _writer(tmp_path)
    w.start()
    for i in range(100):
        w.emit(
            events.Notice(session_id=w.session_id, stream="device", ts_ns=T0 + i, code="c", message=f"m{i}")
        )
    w.close(
        events.SessionEnd(session_id=w.session_id, stream="device", end_ns=T0, reason="shutdown", records=0)
    )
    (recs,) = _read(tmp_path)
    assert [r.seq for r in recs] == list(range(101))
    assert [r.message for r in recs[:100]] == [f"m{i}" for i in range(100)]  # type: ignore[attr-defined]
    end = recs[-1]
    assert isinstance(end, events.SessionEnd) and end.records == 101 and end.dropped == 0


def test_writer_refuses_a_line_without_its_stream(tmp_path: Path) -> None:
    native = _native()
    w = native.Writer(str(tmp_path / "p."), ".log", "sid", "device", 1 << 20, 600.0, 0.05, 1 << 20)
    w.start()
    with pytest.raises(ValueError):
        w.emit_line(b'{"type":"notice","session_id":"sid","stream":"scope"}', ())
    w.close(None)


def test_replay_equals_what_the_h100_run_wrote(tmp_path: Path) -> None:
    """The recorded buffers parsed here give the kernels/copies the H100 run wrote: same count, times,
    streams, bytes, kinds, and launch configurations (name, demangled name, grid, block, registers, shared
    memory, occupancy). Launch-site fields need the live callback, so they are compared separately."""
    native = _with_libcupti()
    h100 = _fixture_log()
    start = h100[0]
    assert isinstance(start, events.SessionStart) and start.clock is not None
    w = _writer(tmp_path)
    w.start()
    lim = {d.device_id: d for d in start.devices or []}
    limits = [
        (i, d.warp_size, d.max_threads_per_sm, d.max_blocks_per_sm, d.max_threads_per_block, d.regs_per_sm,
         d.regs_per_block, d.shared_mem_per_sm, d.shared_mem_per_block_optin, d.reserved_shared_mem_per_block)
        for i, d in lim.items()
    ]  # fmt: skip
    native.reset()
    native.attach(w.native, limits, start.clock.offset_ns, False)
    try:
        _replay_all(native)
        stats = native.stats()
    finally:
        native.detach()
    w.close(None)
    (mine,) = _read(tmp_path)

    def activity(recs: list[events.Record]) -> dict[tuple[str, int, int], events.Record]:
        return {
            (type(r).__name__, r.corr_id, r.start_ns): r  # type: ignore[attr-defined]
            for r in recs
            if isinstance(r, events.Kernel | events.Memcpy | events.Memset)
        }

    def launches(recs: list[events.Record]) -> dict[int, events.LaunchConfig]:
        return {r.id: r.launch for r in recs if isinstance(r, events.DictEntry) and r.launch is not None}

    theirs, ours = activity(h100), activity(mine)
    assert len(ours) == len(theirs) > 1000
    assert set(ours) == set(theirs)
    assert stats["kernels"] == sum(isinstance(r, events.Kernel) for r in ours.values())
    site_fields = {"session_id", "seq", "thread_id", "stack_id", "scope_inst", "api_lead_ns", "api_dur_ns"}
    # Contract v3's copy mode comes from the buffers' MEMCPY_ASYNC flag, which the v2 run did not write: every
    # replayed copy has one.
    copies = [r for r in ours.values() if isinstance(r, events.Memcpy)]
    assert copies and all(c.mode in ("async", "sync") for c in copies)
    site_fields.add("mode")
    for key, a in theirs.items():
        b = ours[key]
        fa = {f: getattr(a, f) for f in a.__struct_fields__ if f not in site_fields}
        fb = {f: getattr(b, f) for f in b.__struct_fields__ if f not in site_fields}
        assert fa == fb, key
    la, lb = launches(h100), launches(mine)
    assert la == lb and len(la) > 50
    # The H100 run had its launch callbacks: every kernel there was joined with its site.
    assert all(r.thread_id and r.api_dur_ns for r in theirs.values() if isinstance(r, events.Kernel))


def test_records_without_timestamps_are_counted_and_not_written(tmp_path: Path) -> None:
    """After a CUDA error (device-side assert) CUPTI delivers the records it had not read with start 0: the
    H200 run wrote them as kernels at 1970 that the contract refused. Here two recorded kernels lose their
    timestamps (start 0; end before start) and one copy too: all three are counted, none written, the rest
    unchanged."""
    native = _with_libcupti()
    h100 = _fixture_log()
    start = h100[0]
    assert isinstance(start, events.SessionStart) and start.clock is not None
    off = start.clock.offset_ns
    first = sorted(FIXTURE.glob("buffer-*.bin"))[0]
    raw = bytearray(first.read_bytes())
    kernels = [r for r in h100 if isinstance(r, events.Kernel)]
    copies = [r for r in h100 if isinstance(r, events.Memcpy)]
    spoiled = []
    for rec, (new_start, new_end) in zip(
        [kernels[0], kernels[1], copies[0]], [(0, 0), (None, 1), (0, None)], strict=True
    ):
        old = struct.pack("<QQ", rec.start_ns - off, rec.end_ns - off)
        at = raw.find(old)
        if at < 0:
            continue  # not in the first buffer
        s = rec.start_ns - off if new_start is None else new_start
        e = rec.end_ns - off if new_end is None else new_end
        raw[at : at + 16] = struct.pack("<QQ", s, e)
        spoiled.append((type(rec).__name__, rec.corr_id))
    assert len(spoiled) == 3, "the first recorded buffer should hold the first kernels and copy"
    w = _writer(tmp_path)
    w.start()
    native.reset()
    native.attach(w.native, [], off, False)
    try:
        names = {}
        for line in first.with_suffix(".names").read_bytes().splitlines():
            ptr, name = line.split(b"\t", 1)
            names[int(ptr, 16)] = name
        native.replay_buffer(bytes(raw), names)
        stats = native.stats()
    finally:
        native.detach()
    w.close(None)
    (mine,) = _read(tmp_path)  # every line decodes: nothing at 1970
    written = {(type(r).__name__, r.corr_id) for r in mine if isinstance(r, events.Kernel | events.Memcpy)}
    assert stats["untimed"] == 3
    assert not written & set(spoiled)
    assert ("Kernel", kernels[2].corr_id) in written


def test_occupancy_and_names_match_the_python_implementations() -> None:
    h100 = _fixture_log()
    start = h100[0]
    assert isinstance(start, events.SessionStart)
    d = (start.devices or [])[0]
    dev = DeviceLimits(
        warp_size=d.warp_size or 32,
        max_threads_per_sm=d.max_threads_per_sm or 0,
        max_blocks_per_sm=d.max_blocks_per_sm or 0,
        max_threads_per_block=d.max_threads_per_block or 0,
        regs_per_sm=d.regs_per_sm or 0,
        regs_per_block=d.regs_per_block or 0,
        shared_mem_per_sm=d.shared_mem_per_sm or 0,
        shared_mem_per_block_optin=d.shared_mem_per_block_optin or 0,
        reserved_shared_mem_per_block=d.reserved_shared_mem_per_block or 0,
    )
    configs = [r.launch for r in h100 if isinstance(r, events.DictEntry) and r.launch is not None]
    assert len(configs) > 50
    for c in configs:
        occ = compute(
            dev, c.block[0] * c.block[1] * c.block[2], c.num_regs, c.static_shared_bytes + c.dyn_shared_bytes
        )
        assert (c.occupancy, c.limiting_resource, c.max_active_blocks) == (
            occ.occupancy,
            occ.limiting_resource,
            occ.max_active_blocks,
        ), c
        assert c.mangled is not None and c.name == demangle(c.mangled)
    assert any(c.name != c.mangled for c in configs)  # C++ kernels really were demangled


def test_every_segment_carries_the_dictionary_it_uses(tmp_path: Path) -> None:
    """Rotation every ~64 KB: each segment holds the launch records its kernels reference, before them."""
    native = _with_libcupti()
    start = _fixture_log()[0]
    assert isinstance(start, events.SessionStart) and start.clock is not None
    w = _writer(tmp_path, segment_max_bytes=64 << 10)
    w.start()
    native.reset()
    native.attach(w.native, [], start.clock.offset_ns, False)
    try:
        _replay_all(native)
    finally:
        native.detach()
    w.close(None)
    segments = _read(tmp_path)
    assert len(segments) > 5
    seqs = [r.seq for seg in segments for r in seg]
    assert seqs == list(range(len(seqs)))
    for seg in segments:
        known: set[int] = set()
        for r in seg:
            if isinstance(r, events.DictEntry) and r.kind == "launch":
                known.add(r.id)
            elif isinstance(r, events.Kernel):
                assert r.launch_id in known


def test_launch_sites_join_kernels_by_correlation_id(tmp_path: Path) -> None:
    """What the launch callback stores (thread, open scope, API enter time and duration) lands on the kernel
    with that correlation id."""
    native = _with_libcupti()
    h100 = _fixture_log()
    start = h100[0]
    assert isinstance(start, events.SessionStart) and start.clock is not None
    first = next(r for r in h100 if isinstance(r, events.Kernel))
    w = _writer(tmp_path)
    w.start()
    native.reset()
    native.attach(w.native, [], start.clock.offset_ns, False)
    try:
        native.scope_enter(7)
        native.record_launch(first.corr_id, first.start_ns - 5000, 1234)  # API entered 5 µs before the start
        native.scope_exit(7)
        _replay_all(native)
    finally:
        native.detach()
    w.close(None)
    (mine,) = _read(tmp_path)
    k = next(r for r in mine if isinstance(r, events.Kernel) and r.corr_id == first.corr_id)
    assert (k.api_lead_ns, k.api_dur_ns, k.scope_inst) == (5000, 1234, 7)
    assert k.thread_id is not None and k.thread_id > 0
    others = [r for r in mine if isinstance(r, events.Kernel) and r.corr_id != first.corr_id]
    assert others and all(r.thread_id is None for r in others)


def test_nvtx_ranges_become_scope_records(tmp_path: Path) -> None:
    """NVTX callbacks as CUPTI delivers them: push/pop ranges nest on the thread's scope stack (kernels are
    attributed to them); start/end ranges hang under the starting thread's scope, may end on another thread,
    and an end without a begin we saw (a range started before tracing) writes nothing."""
    import threading

    import gpufl
    from gpufl.client.engines.native_tracing import NVTX_START_BASE, NativeTracingEngine

    native = _native()
    session = gpufl.init(app_name="nvtx", log_dir=str(tmp_path), engines="system")
    assert session is not None
    eng = NativeTracingEngine()
    eng.native, eng.session = native, session
    native.drain_nvtx()  # nothing left over from other tests
    native.nvtx_call(native.NVTX_RANGE_PUSH_A, "outer", 0)
    native.nvtx_call(native.NVTX_RANGE_START_A, "load", 41)
    native.nvtx_call(native.NVTX_RANGE_PUSH_EX, "inner", 0)
    native.nvtx_call(native.NVTX_RANGE_POP, None, 0)
    native.nvtx_call(native.NVTX_RANGE_POP, None, 0)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_START_EX, "io", 42)
    ender = threading.Thread(target=native.nvtx_call, args=(native.NVTX_RANGE_END, None, 41))
    ender.start()
    ender.join()
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_END, None, 42)
    native.nvtx_call(native.NVTX_RANGE_END, None, 40)  # began before tracing: ignored
    native.nvtx_call(native.NVTX_NAME_OS_THREAD_A, "loader", 4242)
    eng._drain_nvtx()
    gpufl.shutdown()

    scope = [
        events.decode(ln)
        for p in sorted(tmp_path.glob("*.scope.*.log"))
        for ln in p.read_bytes().splitlines()
    ]
    paths = {r.id: r.value for r in scope if isinstance(r, events.DictEntry) and r.kind == "scope"}
    begins = {paths[r.path_id]: r for r in scope if isinstance(r, events.ScopeBegin)}
    ends = [r.inst for r in scope if isinstance(r, events.ScopeEnd)]
    assert set(begins) == {"outer", "outer/load", "outer/inner", "io"}
    outer, load, inner, io = (begins[k] for k in ("outer", "outer/load", "outer/inner", "io"))
    assert all(b.tag == "nvtx" for b in begins.values())
    assert inner.parent_inst == outer.inst and inner.depth == 1  # pushes nest
    assert load.parent_inst == outer.inst and load.inst == NVTX_START_BASE + 41  # starts hang under the scope
    assert io.parent_inst is None and io.depth == 0 and io.inst == NVTX_START_BASE + 42
    assert sorted(ends) == sorted([inner.inst, outer.inst, load.inst, io.inst])  # no end for range 40
    assert ends.index(inner.inst) < ends.index(outer.inst)
    device = [
        events.decode(ln)
        for p in sorted(tmp_path.glob("*.device.*.log"))
        for ln in p.read_bytes().splitlines()
    ]
    names = [(r.id, r.value) for r in device if isinstance(r, events.DictEntry) and r.kind == "thread"]
    assert names == [(4242, "loader")]


def test_nvtx_ranges_without_a_message_are_named_and_nest_under_the_programs_scope(tmp_path: Path) -> None:
    """Issue #25: a GPT run showed 36 "(nvtx range)" scopes at the root, pushed on autograd's backward thread
    (no gpufl.scope of its own) with no ASCII message. Messages registered through
    nvtxDomainRegisterStringA are resolved, a range with none is named by its domain, and a range on a
    thread without scopes nests under the scope entered last anywhere (the rule kernels follow)."""
    import threading

    import gpufl
    from gpufl.client.engines.native_tracing import NativeTracingEngine

    native = _native()
    session = gpufl.init(app_name="nvtx", log_dir=str(tmp_path), engines="system")
    assert session is not None
    eng = NativeTracingEngine()
    eng.native, eng.session = native, session
    native.drain_nvtx()
    dom, gemm = 0x7F00_0000_1000, 0x7F00_0000_2000  # handles, as NVTX returns them
    native.nvtx_call(native.NVTX_DOMAIN_CREATE_A, "cuBLAS", 0, dom)
    native.nvtx_call(native.NVTX_DOMAIN_REGISTER_STRING_A, "gemm", 0, dom, gemm)
    # On a thread with no scope of its own (before any scope is open anywhere): at the root.
    native.nvtx_call(native.NVTX_RANGE_PUSH_EX, None, 0)
    native.nvtx_call(native.NVTX_RANGE_POP, None, 0)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_START_EX, None, 43, dom)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_END, None, 43, dom)
    step = 7  # the program's gpufl.scope("step/backward"), on this thread
    native.scope_enter(step)
    eng._remember(step, "step/backward", 1)

    def backward_thread() -> None:
        native.nvtx_call(native.NVTX_DOMAIN_RANGE_PUSH_EX, None, 0, dom, gemm)
        native.nvtx_call(native.NVTX_DOMAIN_RANGE_PUSH_EX, None, 0, dom)
        native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, dom)
        native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, dom)

    t = threading.Thread(target=backward_thread)
    t.start()
    t.join()
    native.scope_exit(step)
    eng._drain_nvtx()
    gpufl.shutdown()

    scope = [
        events.decode(ln)
        for p in sorted(tmp_path.glob("*.scope.*.log"))
        for ln in p.read_bytes().splitlines()
    ]
    paths = {r.id: r.value for r in scope if isinstance(r, events.DictEntry) and r.kind == "scope"}
    begins = [r for r in scope if isinstance(r, events.ScopeBegin)]
    gemm_inst = begins[2].inst
    assert [(paths[r.path_id], r.parent_inst, r.depth) for r in begins] == [
        ("(unnamed NVTX range)", None, 0),
        ("(unnamed NVTX range, domain cuBLAS)", None, 0),
        ("step/backward/gemm", step, 2),  # the registered string, under the program's scope
        ("step/backward/gemm/(unnamed NVTX range, domain cuBLAS)", gemm_inst, 3),
    ]
    assert len({r.thread_id for r in begins[2:]}) == 1 and begins[2].thread_id != begins[0].thread_id


def _nvtx_scopes(tmp_path: Path) -> list[tuple[str, int | None]]:
    scope = [
        events.decode(ln)
        for p in sorted(tmp_path.glob("*.scope.*.log"))
        for ln in p.read_bytes().splitlines()
    ]
    paths = {r.id: r.value for r in scope if isinstance(r, events.DictEntry) and r.kind == "scope"}
    return [(paths[r.path_id], r.parent_inst) for r in scope if isinstance(r, events.ScopeBegin)]


def _nvtx_domain_calls(native: Any, spec: str) -> None:
    """The NVTX calls of test_nvtx_domains_choose_which_ranges_become_scopes, as CUPTI delivers them."""
    salt = (
        sum(spec.encode()) & 0xFFFF
    )  # fresh handles per case: the C table of domains lives as long as the process
    tsl, cublas, early = (0x7E00_0000_0000 + (salt << 8) + i for i in (1, 2, 3))
    native.nvtx_call(native.NVTX_DOMAIN_CREATE_A, "TSL", 0, tsl)
    native.nvtx_call(native.NVTX_DOMAIN_CREATE_A, "cuBLAS", 0, cublas)
    native.nvtx_call(native.NVTX_RANGE_PUSH_A, "step", 0)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_PUSH_EX, "xla", 0, tsl)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_PUSH_EX, "thunk", 0, tsl)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, tsl)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_PUSH_EX, "gemm", 0, cublas)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, cublas)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_START_EX, "run", 7001, tsl)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_END, None, 7001, tsl)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, tsl)
    native.nvtx_call(native.NVTX_RANGE_POP, None, 0)
    # a domain created before tracing began: no name, so "named" cannot tell it is a framework's
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_PUSH_EX, None, 0, early)
    native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, early)


@pytest.mark.parametrize(
    ("spec", "recorded", "left_out"),
    [
        # the default: the default domain and named ones, not XLA's TSL (counted: 2 pushes + 1 start)
        ("default,named", ["step", "step/gemm", "(unnamed NVTX range)"], [("TSL", 3)]),
        ("default,TSL", ["step", "step/xla", "step/xla/thunk", "step/xla/run"],
         [("cuBLAS", 1), ("(a domain created before tracing)", 1)]),
        ("all", ["step", "step/xla", "step/xla/thunk", "step/xla/gemm", "step/xla/run",
                 "(unnamed NVTX range)"], []),
        ("named", ["gemm", "(unnamed NVTX range)"], [("(default domain)", 1)]),
    ],
)  # fmt: skip
def test_nvtx_domains_choose_which_ranges_become_scopes(
    tmp_path: Path, spec: str, recorded: list[str], left_out: list[tuple[str, int]]
) -> None:
    """#21: a framework's internal NVTX domain (XLA's TSL: ~30 ranges per jitted call) is left out by default
    — counted per domain and said once in a notice, never silently — while the default domain and the
    program's named domains stay scopes; GPUFL_NVTX_DOMAINS chooses. A left-out push and its pop leave the
    thread's scope stack as it was, so what is recorded still nests right."""
    import gpufl
    from gpufl.client.engines.native_tracing import NativeTracingEngine

    native = _native()
    session = gpufl.init(app_name="nvtx", log_dir=str(tmp_path), engines="system", nvtx_domains=spec)
    assert session is not None
    eng = NativeTracingEngine()
    eng.native, eng.session = native, session
    native.drain_nvtx()
    native.nvtx_domains(spec)
    try:
        _nvtx_domain_calls(native, spec)
        eng._drain_nvtx()
        eng._report_domains_left_out()
    finally:
        native.nvtx_domains("default,named")  # the C side's choice outlives the test: back to the default
    gpufl.shutdown()

    got = _nvtx_scopes(tmp_path)
    assert [path for path, _ in got] == recorded
    # what is recorded nests under what is recorded, whatever was left out between
    insts = {path: parent for path, parent in got}
    assert all(parent is None for path, parent in got if "/" not in path)
    notices = [
        events.decode(ln)
        for p in sorted(tmp_path.glob("*.device.*.log"))
        for ln in p.read_bytes().splitlines()
        if b"nvtx_domains_left_out" in ln
    ]
    if not left_out:
        assert notices == [] and insts
        return
    assert len(notices) == 1
    message = notices[0].message  # type: ignore[union-attr]
    for name, n in left_out:
        assert f"{name}: {n:,}" in message
    assert repr(spec) in message


def test_lazy_domains_switch_the_domain_range_callbacks_off_for_a_framework_alone(
    tmp_path: Path, notices: Any
) -> None:
    """#21: CUPTI's dispatch of XLA's ranges cost JAX +43 % (H100) while gpufl only counted them. Where every
    domain's creation is seen (the session set NVTX_INJECTION64_PATH first), the domain-API range callbacks go
    off once XLA's TSL exists, unless a recorded named domain or a NULL-handle (default-domain) range needs
    them; the left-out count then says it is partial, never a silent zero. A session that could have missed a
    creation (not lazy) keeps them on."""
    import gpufl
    from gpufl.client.engines.native_tracing import NativeTracingEngine

    native = _native()
    tsl, tsl2, mine = 0x7F10_0000_0001, 0x7F10_0000_0003, 0x7F10_0000_0002

    def drain_notice(log_dir: Path, lazy_calls: Any) -> str:
        session = gpufl.init(app_name="lazy", log_dir=str(log_dir), engines="system")
        assert session is not None
        eng = NativeTracingEngine()
        eng.native, eng.session = native, session
        try:
            lazy_calls()
            eng._report_domains_left_out()
        finally:
            native.nvtx_domains("default,named")
        gpufl.shutdown()
        said = notices(log_dir, "nvtx_domains_left_out")
        assert len(said) == 1
        return str(said[0].message)

    def framework_alone() -> None:
        assert native.nvtx_domains("default,named", True) is True  # lazy, no framework yet: on
        native.nvtx_call(native.NVTX_DOMAIN_CREATE_A, "TSL", 0, tsl)
        assert native.nvtx_ranges_wanted() is False  # XLA's domain alone: off (the next drain switches)
        native.nvtx_ranges_off()  # as cupti.c marks a window traced with them off
        native.nvtx_call(native.NVTX_DOMAIN_CREATE_A, "myapp", 0, mine)
        assert native.nvtx_ranges_wanted() is True  # a recorded named domain: on again

    assert "TSL: not counted (its range callbacks were off" in drain_notice(tmp_path / "a", framework_alone)

    def null_handle_range() -> None:
        native.nvtx_domains("default,named", True)
        native.nvtx_call(native.NVTX_DOMAIN_CREATE_A, "TSL", 0, tsl2)
        native.nvtx_call(native.NVTX_DOMAIN_RANGE_PUSH_EX, "xla", 0, tsl2)  # counted while still on
        native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, tsl2)
        assert native.nvtx_ranges_wanted() is False
        native.nvtx_ranges_off()
        native.nvtx_call(
            native.NVTX_DOMAIN_RANGE_PUSH_EX, "annotate", 0, 0
        )  # nvtx.annotate: the default domain
        native.nvtx_call(native.NVTX_DOMAIN_RANGE_POP, None, 0, 0)
        assert native.nvtx_ranges_wanted() is True  # only these callbacks see such ranges: kept on
        native.drain_nvtx()

    assert "TSL: 1, counted only while its range callbacks were on" in drain_notice(
        tmp_path / "b", null_handle_range
    )
    try:
        assert native.nvtx_domains("default,named", False) is True  # not lazy: always on
        native.nvtx_call(native.NVTX_DOMAIN_CREATE_A, "TSL", 0, tsl)
        assert native.nvtx_ranges_wanted() is True
    finally:
        native.nvtx_domains("default,named")


def test_shutdown_while_paused_for_torch_profiler_ends_the_nvtx_thread(tmp_path: Path) -> None:
    """gpufl.shutdown() while torch.profiler still holds CUPTI: the stopped engine's NVTX thread must end,
    or it would drain (and lose into a closed session) the NVTX ranges of a later session."""
    import threading
    import time

    import gpufl
    from gpufl.client.engines.native_tracing import NativeTracingEngine

    native = _native()
    session = gpufl.init(app_name="paused", log_dir=str(tmp_path), engines="system")
    assert session is not None
    eng = NativeTracingEngine()
    eng.native, eng.session = native, session
    eng.started = True  # as start() leaves it, with its NVTX thread
    eng._nvtx_stop.clear()
    eng._nvtx_thread = threading.Thread(target=eng._nvtx_loop, daemon=True)
    eng._nvtx_thread.start()
    eng._paused_at = time.time_ns()  # pause(): torch.profiler started
    eng.stop()
    gpufl.shutdown()
    assert not eng._nvtx_thread.is_alive()
    native.drain_nvtx()
    native.nvtx_call(native.NVTX_RANGE_PUSH_A, "next session", 0)
    time.sleep(0.25)  # the old thread drained every 0.1 s
    evs, _ = native.drain_nvtx()
    native.nvtx_call(native.NVTX_RANGE_POP, None, 0)
    native.drain_nvtx()
    assert [e[5] for e in evs] == ["next session"]


HANDOVER = r"""
import ctypes, sys, threading
from pathlib import Path
sys.path[:0] = [SRC]
from gpufl.client import _native as native
from gpufl.client.engines.native_tracing import libcupti_candidates
from gpufl.client.writer import DiskBudget, NativeStreamWriter, SegmentFiles, StreamWriter
for path in libcupti_candidates():
    try:
        native.load(path); break
    except OSError:
        pass
def writer(i):
    files = SegmentFiles(TMP, "host", "app", f"sid{i:013d}")
    return NativeStreamWriter(StreamWriter(files, "device", queue_size=100, segment_max_bytes=1 << 20,
                                           segment_max_age_s=600, flush_interval_s=0.01, budget=DiskBudget(0)))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
w = writer(0)
native.attach(w.native, [], 0, False)
# 1. Our buffers in flight when we step aside come back through our callback, are freed once.
ours = [native.request_buffer() for _ in range(3)]
assert native.stats()["buffers_outstanding"] == 3
for b in ours:
    native.complete_buffer(b, 0)
assert native.stats()["buffers_outstanding"] == 0
# 2. The next client (Kineto) allocates its own buffers (malloc, as its std::vector does); CUPTI completes
#    one through our callback (the hand-over order that killed the process): left alone, its owner frees it.
foreign = libc.malloc(1 << 20)
native.complete_buffer(foreign, 4096)
libc.free(foreign)
# 3. Detach racing CUPTI's buffer thread: buffers keep completing while the writer is swapped and dropped.
stop = threading.Event()
def cupti_thread():
    while not stop.is_set():
        native.complete_buffer(native.request_buffer(), 0)
t = threading.Thread(target=cupti_thread); t.start()
for i in range(1, 200):
    native.attach(writer(i).native, [], 0, False)
    native.detach()
stop.set(); t.join()
s = native.stats()
print("FOREIGN", s["foreign_buffers"], "OUTSTANDING", s["buffers_outstanding"])
"""


def test_a_hand_over_never_frees_another_clients_buffer(tmp_path: Path) -> None:
    """Issue #15 (hand-over teardown, hardening): CUPTI's buffer callbacks are process-wide, so around a
    hand-over with torch.profiler it can complete another client's buffer through ours; the extension must
    read and free only the buffers it handed out, and a detach racing CUPTI's buffer thread must not free
    the writer under it. Run in a child: freeing a foreign buffer aborts the process. (The exit-time abort
    seen on the H200 had another cause: Kineto's callback in CUDA's exit teardown, see handover.py.)"""
    import subprocess
    import sys

    _with_libcupti()
    # Where this process imports gpufl from: the checkout's src/, or an installed wheel (scripts/test_wheels.sh)
    src = str(Path(gpufl.__file__).resolve().parents[1])
    code = f"SRC = {src!r}\nTMP = {str(tmp_path)!r}\n" + HANDOVER
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FOREIGN 1 OUTSTANDING 0" in proc.stdout, proc.stdout + proc.stderr[-3000:]
