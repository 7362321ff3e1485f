"""`gpufl run -- ./app` on a real GPU: a C++ CUDA program (built here with nvcc) profiled through CUDA's
injection mechanism, with its exit code preserved."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpufl.contract import events

APP = r"""
#include <cstdio>
#include <cuda_runtime.h>
template <typename T> __global__ void scale(T *x, T a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= a;
}
int main() {
  const int n = 1 << 20;
  float *h = new float[n], *d;
  for (int i = 0; i < n; i++) h[i] = 1.0f;
  cudaMalloc(&d, n * sizeof(float));
  cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice);
  for (int k = 0; k < 250; k++) scale<float><<<(n + 255) / 256, 256>>>(d, 1.0001f, n);
  cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(d);
  printf("h[0]=%f\n", h[0]);
  return 3;  // gpufl run must hand this back
}
"""


def _records(log_dir: Path, stream: str) -> list[events.Record]:
    out: list[events.Record] = []
    for p in sorted(log_dir.glob(f"*.{stream}.*.log")):
        out += [events.decode(line) for line in p.read_bytes().splitlines()]
    return out


def test_gpufl_run_profiles_a_cpp_cuda_program(tmp_path: Path, tracing_path: str) -> None:
    if tracing_path != "native":
        pytest.skip("the injection library is the native path")
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    src = tmp_path / "app.cu"
    src.write_text(APP)
    subprocess.run([nvcc, "-O2", "-o", str(tmp_path / "app"), str(src)], check=True, timeout=240)
    log_dir = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, "-m", "gpufl", "run", "--log-dir", str(log_dir), "--system-interval", "0.2", "--",
         str(tmp_path / "app")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "h[0]=" in proc.stdout
    device = _records(log_dir, "device")
    start, end = device[0], device[-1]
    assert isinstance(start, events.SessionStart) and start.argv == [str(tmp_path / "app")]
    assert isinstance(end, events.SessionEnd) and end.records == len(device) and end.reason == "atexit"
    launches = {r.id: r.launch for r in device if isinstance(r, events.DictEntry) and r.launch is not None}
    kernels = [r for r in device if isinstance(r, events.Kernel)]
    assert len(kernels) == 250, len(kernels)
    (cfg,) = {k.launch_id for k in kernels}
    launch = launches[cfg]
    assert launch is not None and launch.name.startswith("void scale<float>("), launch.name
    assert launch.occupancy is not None and 0 < launch.occupancy <= 1 and launch.limiting_resource
    assert all(k.thread_id and k.api_dur_ns and k.api_lead_ns is not None for k in kernels)
    copies = [r for r in device if isinstance(r, events.Memcpy)]
    assert sorted(c.copy_kind for c in copies) == ["DtoH", "HtoD"]
    for stream in ("scope", "system"):
        recs = _records(log_dir, stream)
        assert recs[0].session_id == start.session_id and isinstance(recs[-1], events.SessionEnd)
    assert any(isinstance(r, events.SystemSample) for r in _records(log_dir, "system"))
