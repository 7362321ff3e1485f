"""System samples carry CUDA ordinals: which NVML devices CUDA gives the process, in which order."""

from __future__ import annotations

import pytest

from gpufl.client.engines.system import cuda_ordinals

H100 = "NVIDIA H100 80GB HBM3"
FOUR = [
    (f"GPU-{c}{c}{c}{c}aaaa-0000-0000-0000-00000000000{i}", H100, f"00000000:{0x18 + 0x20 * i:02X}:00.0")
    for i, c in enumerate("abcd")
]


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
    mixed = [("GPU-aaaa", "NVIDIA A100", "00000000:18:00.0"), ("GPU-bbbb", H100, "00000000:38:00.0")]
    assert cuda_ordinals(mixed, None, None) is None  # "fastest first" over two models: only CUDA knows
    assert cuda_ordinals(mixed, "1", None) is None
    assert cuda_ordinals(mixed, "1", "PCI_BUS_ID") == [1]
    assert cuda_ordinals(mixed, "GPU-bbbb,GPU-aaaa", None) == [1, 0]  # UUIDs name the order themselves
    assert cuda_ordinals(FOUR, "MIG-1234", None) is None


def test_cuda_order_is_pci_bus_order_whatever_nvml_index_order() -> None:
    shuffled = [FOUR[2], FOUR[0], FOUR[3], FOUR[1]]  # NVML indices 0..3 on buses 58, 18, 78, 38
    assert cuda_ordinals(shuffled, None, "PCI_BUS_ID") == [1, 3, 0, 2]
    assert cuda_ordinals(shuffled, "0", None) == [1]
