"""The native record path on a real GPU: it is the one used, every launch is joined with its site, and
torch.profiler started after gpufl.init is handled (see the test's docstring)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpufl.client.engines.native_tracing import NVTX_START_BASE
from gpufl.contract import events


def _run(code: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    script = tmp / "prog.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _records(log_dir: Path, stream: str) -> list[events.Record]:
    out: list[events.Record] = []
    for p in sorted(log_dir.glob(f"*.{stream}.*.log")):
        out += [events.decode(line) for line in p.read_bytes().splitlines()]
    return out


def test_native_path_joins_every_launch(tmp_path: Path, tracing_path: str) -> None:
    if tracing_path != "native":
        pytest.skip("native path only")
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import torch, gpufl
        gpufl.init(app_name="native", log_dir={str(log_dir)!r}, stacks=True)
        a = torch.randn(512, 512, device="cuda")
        with gpufl.scope("loop"):
            for _ in range(300):
                a = torch.relu(a @ a)
        torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    recs = _records(log_dir, "device")
    notices = [r for r in recs if isinstance(r, events.Notice)]
    assert not [n for n in notices if n.code == "native_unavailable"], notices
    assert [n.code for n in notices if n.code == "record_path"] == ["record_path"], notices
    launches = {r.id: r.launch for r in recs if isinstance(r, events.DictEntry) and r.kind == "launch"}
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    loop = [k for k in kernels if k.scope_inst is not None]
    # matmul + relu per iteration (cuBLAS may add a kernel per matmul): every one joined with its site
    assert len(loop) >= 600 and len(loop) % 300 == 0, len(loop)
    for k in loop:
        assert k.thread_id and k.stack_id is not None and k.api_lead_ns is not None and k.api_dur_ns
        launch = launches[k.launch_id]
        assert launch is not None and 0 < (launch.occupancy or 0) <= 1 and launch.limiting_resource
    assert isinstance(recs[-1], events.SessionEnd) and recs[-1].records == len(recs)
    assert [r.seq for r in recs] == list(range(len(recs)))


@pytest.mark.parametrize("torch_first", [True, False], ids=["torch-imported-first", "gpufl-init-first"])
def test_torch_profiler_after_init_gets_cupti_and_gpufl_resumes(
    tmp_path: Path, tracing_path: str, torch_first: bool
) -> None:
    """torch.profiler started after gpufl.init: gpufl steps aside (flush, unsubscribe, finalize), the
    profiler sees its kernels, the gap is recorded, and gpufl resumes — or says clearly that it cannot."""
    if tracing_path != "native":
        pytest.skip("native path only (the cupti-python path keeps CUPTI; see docs/troubleshooting.md)")
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import gpufl
        {"import torch" if torch_first else ""}
        gpufl.init(app_name="interplay", log_dir={str(log_dir)!r})
        import torch
        from torch.profiler import profile, ProfilerActivity
        x = torch.randn(256, 256, device="cuda")
        with gpufl.scope("before"):
            for _ in range(10): x = torch.relu(x @ x)
            torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as p:
            for _ in range(50): x = torch.relu(x @ x)
            torch.cuda.synchronize()
        print("PROFILER_KERNELS", sum(1 for e in p.events() if e.device_type.name == "CUDA"))
        with gpufl.scope("after"):
            for _ in range(20): x = torch.relu(x @ x)
            torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    seen = int(proc.stdout.split("PROFILER_KERNELS")[1].split()[0])
    assert seen >= 100, proc.stdout + proc.stderr
    recs = _records(log_dir, "device")
    gaps = [r for r in recs if isinstance(r, events.CaptureGap)]
    assert len(gaps) == 1 and gaps[0].reason == "torch.profiler" and gaps[0].end_ns
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    before = [k for k in kernels if k.end_ns < gaps[0].start_ns]
    after = [k for k in kernels if k.start_ns > gaps[0].end_ns]
    assert len(before) >= 20
    notices = [r for r in recs if isinstance(r, events.Notice) and "could not resume" in r.message]
    assert len(after) >= 40 or notices, (len(after), notices)
    print("RESUMED" if len(after) >= 40 else "NOT RESUMED", len(after))


NVNAME = r"""
#include <nvtx3/nvToolsExt.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
extern "C" void name_this_thread(const char *name) { nvtxNameOsThreadA((uint32_t)syscall(SYS_gettid), name); }
"""


def test_nvtx_ranges_become_scopes_and_threads_get_names(tmp_path: Path, tracing_path: str) -> None:
    if tracing_path != "native":
        pytest.skip("native path only")
    import shutil

    src = tmp_path / "nvname.cpp"
    src.write_text(NVNAME)
    lib = tmp_path / "libnvname.so"
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    subprocess.run(
        [nvcc, "-shared", "-Xcompiler", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=240
    )
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import ctypes, threading, torch, gpufl
        gpufl.init(app_name="nvtx", log_dir={str(log_dir)!r})
        ctypes.CDLL({str(lib)!r}).name_this_thread(b"trainer-main")
        print("TID", threading.get_native_id())
        x = torch.randn(256, 256, device="cuda")
        with gpufl.scope("step"):
            rid = torch.cuda.nvtx.range_start("cross")  # a start/end range, ended on another thread below
            torch.cuda.nvtx.range_push("fwd")
            x = torch.relu(x @ x)
            torch.cuda.nvtx.range_push("inner")
            x = torch.sigmoid(x)
            torch.cuda.nvtx.range_pop()
            torch.cuda.nvtx.range_pop()
        t = threading.Thread(target=torch.cuda.nvtx.range_end, args=(rid,))
        t.start(); t.join()
        torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    tid = int(proc.stdout.split("TID")[1].split()[0])
    scope_recs = _records(log_dir, "scope")
    paths = {r.id: r.value for r in scope_recs if isinstance(r, events.DictEntry) and r.kind == "scope"}
    begins = {paths[r.path_id]: r for r in scope_recs if isinstance(r, events.ScopeBegin)}
    ends = {r.inst for r in scope_recs if isinstance(r, events.ScopeEnd)}
    assert {"step", "step/fwd", "step/fwd/inner", "step/cross"} <= set(begins), sorted(begins)
    cross = begins["step/cross"]
    assert cross.tag == "nvtx" and cross.parent_inst == begins["step"].inst and cross.inst in ends
    assert cross.inst >= NVTX_START_BASE and begins["step/fwd"].parent_inst == begins["step"].inst
    fwd, inner = begins["step/fwd"], begins["step/fwd/inner"]
    assert fwd.tag == "nvtx" and fwd.parent_inst == begins["step"].inst and inner.parent_inst == fwd.inst
    assert inner.depth == 2 and fwd.inst in ends and inner.inst in ends and inner.thread_id == tid
    device = _records(log_dir, "device")
    kernels = [r for r in device if isinstance(r, events.Kernel)]
    assert any(k.scope_inst == inner.inst for k in kernels)  # the sigmoid
    assert any(k.scope_inst == fwd.inst for k in kernels)  # the matmul / relu
    names = [r for r in device if isinstance(r, events.DictEntry) and r.kind == "thread"]
    assert [(n.id, n.value) for n in names] == [(tid, "trainer-main")]
