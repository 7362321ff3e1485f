"""Theoretical occupancy of a kernel launch, from its record and the device's properties.

Follows the CUDA occupancy calculator (``cuda_occupancy.h``): registers are allocated per warp in units of
256 and split over 4 sub-partitions per SM; shared memory is allocated in 128 B units plus a reserved 1 KB
per block; warps, blocks per SM and threads per SM are hard limits. With no carveout preference the
calculator (and ``cudaOccupancyMaxActiveBlocksPerMultiprocessor``) assumes the full shared memory per SM.
Checked against ``cuOccupancyMaxActiveBlocksPerMultiprocessor`` on the H100 (tests/test_gpu_capture.py).
"""

from __future__ import annotations

from dataclasses import dataclass

REG_ALLOC_UNIT = 256
SMEM_ALLOC_UNIT = 128
SUB_PARTITIONS = 4
MAX_REGS_PER_THREAD = 255


@dataclass(frozen=True)
class DeviceLimits:
    warp_size: int = 32
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    max_threads_per_block: int = 1024
    regs_per_sm: int = 65536
    regs_per_block: int = 65536
    shared_mem_per_sm: int = 233472
    shared_mem_per_block_optin: int = 232448
    reserved_shared_mem_per_block: int = 1024


@dataclass(frozen=True)
class Occupancy:
    occupancy: float
    max_active_blocks: int
    limiting_resource: str
    reg_occupancy: float
    smem_occupancy: float
    warp_occupancy: float
    block_occupancy: float


def _ceil(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def compute(
    dev: DeviceLimits, threads_per_block: int, regs_per_thread: int, smem_per_block: int
) -> Occupancy:
    """Occupancy of one configuration. ``smem_per_block`` is static + dynamic shared memory in bytes."""
    ws = dev.warp_size
    max_warps = dev.max_threads_per_sm // ws
    warps_per_block = max(1, -(-threads_per_block // ws))
    big = 1 << 30

    # Warps (threads) per SM.
    by_warps = max_warps // warps_per_block if threads_per_block <= dev.max_threads_per_block else 0
    # Resident blocks per SM.
    by_blocks = dev.max_blocks_per_sm
    # Registers: allocated per warp, per sub-partition.
    if regs_per_thread <= 0:
        by_regs = big
    elif regs_per_thread > MAX_REGS_PER_THREAD:
        by_regs = 0
    else:
        regs_per_warp = _ceil(regs_per_thread * ws, REG_ALLOC_UNIT)
        if regs_per_warp * warps_per_block > dev.regs_per_block:
            by_regs = 0
        else:
            warps_per_sub = (dev.regs_per_sm // SUB_PARTITIONS) // regs_per_warp
            by_regs = (warps_per_sub * SUB_PARTITIONS) // warps_per_block
    # Shared memory (the runtime reserves some per block).
    if smem_per_block > dev.shared_mem_per_block_optin:
        by_smem = 0
    else:
        need = _ceil(smem_per_block + dev.reserved_shared_mem_per_block, SMEM_ALLOC_UNIT)
        by_smem = dev.shared_mem_per_sm // need if need > 0 else big

    limits = {"warps": by_warps, "blocks": by_blocks, "registers": by_regs, "shared_memory": by_smem}
    blocks = min(limits.values())
    # Ties: report the resource the user can act on first (registers, then shared memory).
    order = ("registers", "shared_memory", "warps", "blocks")
    limiter = next(k for k in order if limits[k] == blocks)

    def occ(b: int) -> float:
        return round(min(b, big) * warps_per_block / max_warps, 4) if b < big else 1.0

    return Occupancy(
        occupancy=occ(blocks),
        max_active_blocks=blocks,
        limiting_resource=limiter,
        reg_occupancy=min(1.0, occ(by_regs)),
        smem_occupancy=min(1.0, occ(by_smem)),
        warp_occupancy=min(1.0, occ(by_warps)),
        block_occupancy=min(1.0, occ(by_blocks)),
    )
