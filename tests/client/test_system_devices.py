"""System samples carry CUDA ordinals: which NVML devices CUDA gives the process, in which order."""

from __future__ import annotations

import pytest

from gpufl.engines.system import cuda_ordinals

H100 = "NVIDIA H100 80GB HBM3"
FOUR = [(f"GPU-{c}{c}{c}{c}aaaa-0000-0000-0000-00000000000{i}", H100) for i, c in enumerate("abcd")]


@pytest.mark.parametrize(
    ("visible", "order", "want"),
    [
        (None, None, [0, 1, 2, 3]),  # no restriction: NVML's PCI order is CUDA's on one model
        ("3", None, [3]),  # the common job-scheduler case: CUDA device 0 is NVML device 3
        ("2,0", "PCI_BUS_ID", [2, 0]),
        ("GPU-cccc", None, [2]),  # UUID prefixes, as CUDA accepts them
        ("dddd,GPU-aaaa", None, [3, 0]),  # ... also without the GPU- prefix
        ("1,7,2", None, [1]),  # CUDA stops at the first entry it cannot use
        ("1,1", None, [1]),  # a repeat ends the list too
        ("GPU-", None, []),  # ambiguous prefix: nothing after it
        ("", None, []),  # no GPU for this process
        ("-1", None, []),
    ],
)
def test_visible_devices_map_to_nvml_indices(visible: str | None, order: str | None, want: list[int]) -> None:
    assert cuda_ordinals(FOUR, visible, order) == want


def test_order_unknown_without_cuda_returns_none() -> None:
    mixed = [("GPU-aaaa", "NVIDIA A100"), ("GPU-bbbb", H100)]
    assert cuda_ordinals(mixed, None, None) is None  # "fastest first" over two models: only CUDA knows
    assert cuda_ordinals(mixed, "1", "PCI_BUS_ID") == [1]
    assert cuda_ordinals(FOUR, "MIG-1234", None) is None
