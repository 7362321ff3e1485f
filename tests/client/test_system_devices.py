"""The system engine: system samples carry CUDA ordinals (which NVML devices CUDA gives the process, in which
order); PCIe throughput is read within its cost budget, and without NVML is skipped and said to be absent."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gpufl.client.engines import EngineUnavailable
from gpufl.client.engines.system import PcieSchedule, cuda_ordinals
from gpufl.contract import events

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


def test_pcie_reads_are_spaced_to_stay_within_their_budget() -> None:
    # nvmlDeviceGetPcieThroughput blocks ~20 ms per direction and GPU: 2 GPUs ≈ 80 ms a read of all.
    s = PcieSchedule(interval_s=1.0)
    assert [s.due() for _ in range(11)] == [True, False, False, False, False] * 2 + [True]
    s.took(0.08)  # 8% of one interval: every 5th sample keeps it at 1.6%, within 5%
    assert s.every == 5
    s.took(0.32)  # 8 GPUs: 0.32 s / (5% of 1 s) → every 7th sample
    assert s.every == 7
    s2 = PcieSchedule(interval_s=0.05)  # a fast sampler (GPUFL_SYSTEM_INTERVAL=0.05)
    s2.took(0.04)
    assert s2.every == 16 and 0.04 / (s2.every * 0.05) <= 0.05


def test_without_nvml_samples_have_host_metrics_and_one_notice_names_pcie_not_reported(
    tmp_path: Path,
) -> None:
    # The CPU machines of CI have no NVML (no driver, or no nvidia-ml-py): PCIe, like every GPU field, is
    # skipped cleanly — no GPU entries, no sampler errors — and the notice says it is not reported.
    try:
        from gpufl.client.engines.system import NvmlProbe

        NvmlProbe().close()
        pytest.skip("NVML works here: this test is for machines without it")
    except EngineUnavailable:
        pass
    import gpufl

    gpufl.init(app_name="nonvml", log_dir=str(tmp_path), engines="system", system_interval_s=0.02)
    threading.Event().wait(0.2)
    gpufl.shutdown()
    recs = [events.decode(ln) for p in sorted(tmp_path.glob("*.log")) for ln in p.read_bytes().splitlines()]
    samples = [r for r in recs if isinstance(r, events.SystemSample)]
    assert len(samples) >= 3 and all(s.gpus == [] and s.host is not None for s in samples)
    notices = [r for r in recs if isinstance(r, events.Notice)]
    assert [n.code for n in notices if n.engine == "system"] in (["nvml_missing"], ["nvml_init_failed"])
    (n,) = [n for n in notices if n.engine == "system"]
    assert "PCIe throughput" in n.message and "not reported" in n.message
    assert not any(n.code == "system_sample_failed" for n in notices)
