"""Tracing on a real GPU: occupancy against CUDA's own calculator, late init, threads/streams/graphs,
and degrading cleanly when another profiler holds CUPTI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpufl.client.engines.cuda_probe import cuda_device_limits
from gpufl.client.engines.occupancy import compute
from gpufl.contract import events

ROOT = Path(__file__).resolve().parents[2]

KERNELS = r"""
extern "C" __global__ void light(float *x) { x[threadIdx.x] += 1.0f; }
extern "C" __global__ void smem(float *x) {
  __shared__ float buf[8192];
  buf[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  x[threadIdx.x] = buf[(threadIdx.x * 7) % blockDim.x];
}
extern "C" __global__ void dyn(float *x) {
  extern __shared__ float d[];
  d[threadIdx.x] = x[threadIdx.x]; __syncthreads(); x[threadIdx.x] = d[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void __launch_bounds__(256) heavy(float *x, int n) {
  float acc[64];
  #pragma unroll
  for (int i = 0; i < 64; i++) acc[i] = x[(threadIdx.x + i) % n];
  #pragma unroll
  for (int k = 0; k < 32; k++)
    #pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = acc[i] * acc[(i + k) % 64] + 1.0f;
  float s = 0; for (int i = 0; i < 64; i++) s += acc[i];
  x[threadIdx.x] = s;
}
"""


def _check(res):  # cuda-bindings returns (err, value...)
    err = res[0]
    assert int(err) == 0, f"CUDA error {err}"
    return res[1] if len(res) == 2 else res[1:]


def test_occupancy_equals_cuda_calculator() -> None:
    from cuda.bindings import driver as cu
    from cuda.bindings import nvrtc

    _check(cu.cuInit(0))
    dev = _check(cu.cuDeviceGet(0))
    ctx = _check(cu.cuDevicePrimaryCtxRetain(dev))
    _check(cu.cuCtxSetCurrent(ctx))
    major = _check(
        cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    )
    minor = _check(
        cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    )
    prog = _check(nvrtc.nvrtcCreateProgram(KERNELS.encode(), b"k.cu", 0, [], []))
    opts = [f"--gpu-architecture=sm_{major}{minor}".encode()]
    res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    assert int(res[0]) == 0, res
    size = _check(nvrtc.nvrtcGetCUBINSize(prog))
    cubin = b" " * size
    _check(nvrtc.nvrtcGetCUBIN(prog, cubin))
    mod = _check(cu.cuModuleLoadData(cubin))
    limits = cuda_device_limits()[0][0]
    checked = 0
    for name in (b"light", b"smem", b"dyn", b"heavy"):
        fn = _check(cu.cuModuleGetFunction(mod, name))
        regs = _check(cu.cuFuncGetAttribute(cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_NUM_REGS, fn))
        static = _check(
            cu.cuFuncGetAttribute(cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn)
        )
        max_threads = _check(
            cu.cuFuncGetAttribute(cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn)
        )
        for block in (32, 64, 96, 128, 192, 256, 384, 512, 768, 1024):
            if block > max_threads:
                continue
            for dyn in (0, 4096, 48 * 1024) if name == b"dyn" else (0,):
                want = _check(cu.cuOccupancyMaxActiveBlocksPerMultiprocessor(fn, block, dyn))
                got = compute(limits, block, regs, static + dyn)
                assert got.max_active_blocks == want, (name, block, regs, static, dyn, got, want)
                assert 0 < got.occupancy <= 1
                checked += 1
    assert checked >= 25


def _run(code: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp / "prog.py"
    script.write_text(textwrap.dedent(code))
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=e)


def _records(log_dir: Path, stream: str) -> list[events.Record]:
    out = []
    for p in sorted(log_dir.glob(f"*.{stream}.*.log")):
        out.extend(events.decode(line) for line in p.read_bytes().splitlines() if line)
    return out


def _launches(recs: list[events.Record]) -> dict[int, events.LaunchConfig]:
    return {
        r.id: r.launch for r in recs if isinstance(r, events.DictEntry) and r.kind == "launch" and r.launch
    }


def test_late_init_threads_streams_graphs(tmp_path: Path) -> None:
    """init after the CUDA context exists and kernels ran: every later kernel is captured, in every
    thread and stream, graph replays included."""
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import threading, torch, gpufl
        x = torch.randn(256, 256, device="cuda")
        for _ in range(5): x = torch.relu(x)        # before init: not ours to see
        torch.cuda.synchronize()
        gpufl.init(app_name="late", log_dir={str(log_dir)!r})
        def work(n):
            s = torch.cuda.Stream()
            with torch.cuda.stream(s):
                y = torch.randn(128, 128, device="cuda")
                for _ in range(n): y = torch.sigmoid(y)
            s.synchronize()
        ts = [threading.Thread(target=work, args=(25,)) for _ in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        g = torch.cuda.CUDAGraph(); z = torch.randn(64, 64, device="cuda")
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            w = torch.tanh(z)
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            w = torch.tanh(z)
        for _ in range(7): g.replay()
        torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    recs = _records(log_dir, "device")
    launches = _launches(recs)
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    names = [launches[k.launch_id].name for k in kernels]
    assert sum("sigmoid" in n for n in names) == 100, names
    streams = {k.stream_id for k, n in zip(kernels, names, strict=True) if "sigmoid" in n}
    assert len(streams) == 4
    graph_tanh = [k for k, n in zip(kernels, names, strict=True) if "tanh" in n and k.graph_id]
    assert len(graph_tanh) == 7
    assert isinstance(recs[-1], events.SessionEnd)


def test_other_profiler_holding_cupti_is_reported_not_fatal(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import torch, gpufl
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as p:
            x = torch.randn(64, 64, device="cuda"); x = x @ x
            gpufl.init(app_name="busy", log_dir={str(log_dir)!r})
            with gpufl.scope("inside"):
                x = x @ x
            torch.cuda.synchronize()
        gpufl.shutdown()
        print("SURVIVED", float(x.sum()) == float(x.sum()))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SURVIVED True" in proc.stdout
    notices = [
        r for r in _records(log_dir, "device") if isinstance(r, events.Notice) and r.code != "record_path"
    ]
    scopes = [r for r in _records(log_dir, "scope") if isinstance(r, events.ScopeBegin)]
    assert scopes, "scopes are still recorded"
    # Either CUPTI refused us (a notice says why) or it let two clients in: never silence plus no data.
    kernels = [r for r in _records(log_dir, "device") if isinstance(r, events.Kernel)]
    assert notices or kernels, proc.stderr


def test_no_visible_gpu_degrades_with_one_notice(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import gpufl
        gpufl.init(app_name="nogpu", log_dir={str(log_dir)!r})
        with gpufl.scope("cpu_only"):
            pass
        gpufl.shutdown()
        """,
        tmp_path,
        env={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr
    notices = [
        r for r in _records(log_dir, "device") if isinstance(r, events.Notice) and r.code != "record_path"
    ]
    assert any(n.engine == "tracing" for n in notices), notices


def test_pm_sampling_says_once_whether_it_works_here_and_tracing_goes_on(tmp_path: Path) -> None:
    """#20's optional engine is a probe (docs/log-format.md): one notice, either answer, with CUPTI's words."""
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import time, torch, gpufl
        gpufl.init(app_name="pm", log_dir={str(log_dir)!r}, engines="tracing,system,pm_sampling")
        x = torch.randn(1024, 1024, device="cuda")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and not any(
            n.code.startswith("pm_sampling") for n in gpufl.active_session().notices
        ):
            x = torch.tanh(x @ x); torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    device = _records(log_dir, "device")
    said = [r for r in device if isinstance(r, events.Notice) and r.code.startswith("pm_sampling")]
    print("pm_sampling notice:", [(n.code, n.message) for n in said])  # the GPU log keeps what CUPTI said
    assert len(said) == 1, said
    assert said[0].code in ("pm_sampling_unavailable", "pm_sampling_not_recorded")
    assert any(isinstance(r, events.Kernel) for r in device)


def test_stacks_and_scopes_on_kernels(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import torch, gpufl
        gpufl.init(app_name="stacks", log_dir={str(log_dir)!r}, stacks=True)
        def launch_here(x):
            return torch.relu(x)
        with gpufl.scope("outer"):
            with gpufl.scope("inner"):
                x = launch_here(torch.ones(1000, device="cuda"))
        torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    recs = _records(log_dir, "device")
    stacks = {r.id: r.frames for r in recs if isinstance(r, events.DictEntry) and r.kind == "stack"}
    launches = _launches(recs)
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    assert kernels and all(k.stack_id is not None for k in kernels)
    mine = [k for k in kernels if any(f[2] == "launch_here" for f in stacks[k.stack_id])]
    assert len(mine) == 1, [launches[k.launch_id].name for k in kernels]
    k = mine[0]
    assert k.api_lead_ns is not None and k.api_lead_ns >= 0  # the launch call precedes the GPU start
    assert k.scope_inst is not None
    scope_recs = _records(log_dir, "scope")
    begins = {r.inst: r for r in scope_recs if isinstance(r, events.ScopeBegin)}
    paths = {r.id: r.value for r in scope_recs if isinstance(r, events.DictEntry) and r.kind == "scope"}
    assert paths[begins[k.scope_inst].path_id] == "outer/inner"


def test_clock_mapping_puts_kernels_inside_their_scope(tmp_path: Path) -> None:
    """GPU times mapped to CLOCK_REALTIME: a synchronised kernel lies inside the scope that waited for it."""
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import torch, gpufl
        gpufl.init(app_name="clock", log_dir={str(log_dir)!r})
        x = torch.randn(4096, 4096, device="cuda")
        torch.cuda.synchronize()
        for i in range(5):
            with gpufl.scope("mm"):
                y = x @ x
                torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    dev = _records(log_dir, "device")
    sc = _records(log_dir, "scope")
    begins = {r.inst: r.ts_ns for r in sc if isinstance(r, events.ScopeBegin)}
    ends = {r.inst: r.ts_ns for r in sc if isinstance(r, events.ScopeEnd)}
    ks = [r for r in dev if isinstance(r, events.Kernel) and r.scope_inst in begins]
    assert len(ks) >= 5
    slack = 200_000  # 0.2 ms: clock-offset uncertainty plus launch latency
    for k in ks:
        assert begins[k.scope_inst] - slack <= k.start_ns <= k.end_ns <= ends[k.scope_inst] + slack
    start = next(r for r in dev if isinstance(r, events.SessionStart))
    end = next(r for r in dev if isinstance(r, events.SessionEnd))
    assert start.clock is not None and end.clock is not None
    assert abs(start.clock.offset_ns - end.clock.offset_ns) < 1_000_000
    print(json.dumps({"drift_ns": end.clock.offset_ns - start.clock.offset_ns}))


@pytest.mark.parametrize("script", ["memcpy_heavy.py", "multistream.py"])
def test_workloads_produce_valid_logs(tmp_path: Path, script: str) -> None:
    log_dir = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples/workloads" / script), "--log-dir", str(log_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert _records(log_dir, "device")


@pytest.mark.parametrize("syncs", [False, True])
def test_sync_records_only_when_asked_for(tmp_path: Path, syncs: bool) -> None:
    """Synchronisation calls become ``sync`` records with ``syncs=True`` (CUPTI's synchronisation activity
    costs every launch, so it is off by default); copy modes are recorded either way."""
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import torch, gpufl
        gpufl.init(app_name="syncs", log_dir={str(log_dir)!r}, syncs={syncs})
        x = torch.randn(1 << 20, device="cuda")
        for _ in range(5):
            y = x * 2
            torch.cuda.synchronize()
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            y = x + 1
        s.synchronize()
        host = y.cpu()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    dev = _records(log_dir, "device")
    start = next(r for r in dev if isinstance(r, events.SessionStart))
    assert start.options["syncs"] is syncs
    got = [r for r in dev if isinstance(r, events.Sync)]
    if not syncs:
        assert got == []
    else:
        kinds = {r.sync_kind for r in got}
        assert "context" in kinds and "stream" in kinds, kinds
        for r in got:
            assert r.end_ns >= r.start_ns
    copies = [r for r in dev if isinstance(r, events.Memcpy)]
    # the mode is recorded whether or not sync records are: torch's y.cpu() is a cudaMemcpyAsync to pageable
    # memory followed by a stream wait, which CUPTI reports as async (seen on the H100)
    assert copies and all(c.mode in ("sync", "async") for c in copies), copies


def test_system_samples_carry_gpu_activity(tmp_path: Path) -> None:
    """NVML GPM on a Hopper GPU: after the first sample, each GPU sample has SM activity; a GEMM loop keeps
    the tensor pipes busy."""
    log_dir = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples/workloads/gpu_activity.py"), "--gpufl", "--log-dir", str(log_dir),
         "--phases", "idle,gemm", "--seconds", "2", "--interval", "0.25"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    samples = [r for r in _records(log_dir, "system") if isinstance(r, events.SystemSample)]
    assert len(samples) >= 10
    gpus = [s.gpus[0] for s in samples[1:]]
    assert all(g.sm_active_pct is not None for g in gpus[1:-1])
    # alone on the GPU the GEMM phase reads 93 % (docs/benchmarks.md, beside ncu); the suite runs 8 tests at once
    # on one GPU (73 % seen on the H100 so), so the bar here is the pipes being clearly busy, not the figure
    assert max(g.tensor_active_pct or 0 for g in gpus) >= 50
    assert min(g.sm_active_pct or 0 for g in gpus) < 1  # the idle phase
