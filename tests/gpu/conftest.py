"""GPU tests: run on the lent H100 (scripts/gpu_checks.sh); skipped where no CUDA device + CUPTI exist."""

from __future__ import annotations

import pytest


def _gpu_available() -> bool:
    try:
        from cuda.bindings import runtime as rt
        from cupti import cupti  # noqa: F401

        err, n = rt.cudaGetDeviceCount()
        return err == rt.cudaError_t.cudaSuccess and n > 0
    except Exception:
        return False


GPU = _gpu_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/gpu/" in str(item.fspath):
            item.add_marker(pytest.mark.gpu)
            if not GPU:
                item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU with CUPTI (run on the H100)"))


@pytest.fixture(autouse=True, params=["native", "cupti-python"])
def tracing_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every GPU test runs on both record paths (the child processes inherit GPUFL_NATIVE)."""
    monkeypatch.setenv("GPUFL_NATIVE", "1" if request.param == "native" else "0")
    return str(request.param)
