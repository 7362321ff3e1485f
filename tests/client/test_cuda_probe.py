"""What gpufl.init says when CUDA can't be reached: the cause and the fix, not an exception's repr (#25).
These run without a GPU: the failures are produced by stub modules or by the machine itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpufl.client.engines import EngineUnavailable, cuda_probe


def test_missing_cuda_bindings_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda() -> dict[int, cuda_probe.CudaDevice]:
        raise ModuleNotFoundError("No module named 'cuda'", name="cuda")

    monkeypatch.setattr(cuda_probe, "cuda_device_limits", no_cuda)
    with pytest.raises(EngineUnavailable) as ei:
        cuda_probe.probe_devices()
    assert ei.value.code == "cupti_missing"
    assert "pip install 'gpu-flight[cuda]'" in str(ei.value) and "ModuleNotFoundError" not in str(ei.value)


def test_missing_driver_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> dict[int, cuda_probe.CudaDevice]:
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    monkeypatch.setattr(cuda_probe, "cuda_device_limits", no_driver)
    monkeypatch.setattr(cuda_probe, "driver_present", lambda: False)
    with pytest.raises(EngineUnavailable) as ei:
        cuda_probe.probe_devices()
    assert ei.value.code == "no_cuda_device" and "no NVIDIA driver (libcuda.so.1) found" in str(ei.value)


def test_init_without_cuda_bindings_names_the_cause(tmp_path: Path) -> None:
    # A machine with cupti-python's module but no cuda-bindings (the case): stub `cupti` imports,
    # stub `cuda` has no `bindings`, whatever this machine has installed.
    (tmp_path / "cupti").mkdir()
    (tmp_path / "cupti" / "__init__.py").write_text("cupti = None\n")
    (tmp_path / "cuda").mkdir()
    (tmp_path / "cuda" / "__init__.py").write_text("")
    logs = tmp_path / "logs"
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import gpufl;"
        f" gpufl.init(app_name='check', log_dir={str(logs)!r}, engines='tracing'); gpufl.shutdown()"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(p for p in sys.path if p)},
    )
    assert r.returncode == 0, r.stderr
    assert "pip install 'gpu-flight[cuda]'" in r.stderr and "cuda.bindings" in r.stderr, r.stderr
    assert "ModuleNotFoundError" not in r.stderr
