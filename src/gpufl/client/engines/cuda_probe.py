"""What both tracing engines ask CUDA and CUPTI before and around tracing: the devices (occupancy inputs as a
typed ``DeviceLimits``, static properties), the driver version, the GPU-to-wall clock offset, whether
torch.profiler holds CUPTI, and what a CUPTI error means for the user (a cause code and a sentence).

One module so the two record paths (``tracing``: cupti-python, ``native_tracing``: C) probe the same way
and neither imports the other's internals.

The clock offset is measured here, in Python, for both paths of a Python process: a bracket of two
``time.time_ns()`` around one CUPTI timestamp read, the narrowest of 25. The injection library
(``gpufl run -- ./app``, native/inject.c) measures it the same way in C because its process has no Python.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import NamedTuple

from gpufl.client.engines import EngineUnavailable
from gpufl.client.engines.occupancy import DeviceLimits
from gpufl.contract import events


class CudaDevice(NamedTuple):
    """One CUDA device: its occupancy inputs and what session_start records about it."""

    limits: DeviceLimits
    props: events.DeviceProperties


class DeviceProbe(NamedTuple):
    devices: dict[int, CudaDevice]  # by CUDA ordinal
    driver_version: int | None

    def facts(self) -> dict[str, object]:
        """The session_start facts of the probe."""
        out: dict[str, object] = {"devices": [d.props for d in self.devices.values()]}
        if self.driver_version is not None:
            out["cuda_driver_version"] = self.driver_version
        return out


def measure_clock_offset(gpu_clock: Callable[[], int], samples: int = 25) -> events.ClockSync:
    """realtime = cupti + offset; the bracket with the smallest width wins (least scheduling noise)."""
    best: tuple[int, int] | None = None
    for _ in range(samples):
        t0 = time.time_ns()
        c = gpu_clock()
        t1 = time.time_ns()
        width = t1 - t0
        if best is None or width < best[0]:
            best = (width, (t0 + t1) // 2 - c)
    assert best is not None
    return events.ClockSync(offset_ns=best[1], measured_at_ns=time.time_ns(), uncertainty_ns=best[0] // 2 + 1)


def cuda_driver_version() -> int | None:
    """cuDriverGetVersion (e.g. 13000), or None where cuda-bindings or the driver is missing."""
    try:
        from cuda.bindings import driver

        _err, ver = driver.cuDriverGetVersion()
        return int(ver)
    except Exception:
        return None


def cuda_device_limits() -> dict[int, CudaDevice]:
    """Occupancy inputs and static properties of every CUDA device (cuda-bindings), keyed by CUDA ordinal."""
    from cuda.bindings import runtime as rt

    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess:
        raise EngineUnavailable("no_cuda_device", f"no usable CUDA device ({err.name}){_driver_hint()}")
    out: dict[int, CudaDevice] = {}
    for i in range(count):
        err, p = rt.cudaGetDeviceProperties(i)
        if err != rt.cudaError_t.cudaSuccess:
            continue
        lim = DeviceLimits(
            warp_size=p.warpSize,
            max_threads_per_sm=p.maxThreadsPerMultiProcessor,
            max_blocks_per_sm=p.maxBlocksPerMultiProcessor,
            max_threads_per_block=p.maxThreadsPerBlock,
            regs_per_sm=p.regsPerMultiprocessor,
            regs_per_block=p.regsPerBlock,
            shared_mem_per_sm=p.sharedMemPerMultiprocessor,
            shared_mem_per_block_optin=p.sharedMemPerBlockOptin,
            reserved_shared_mem_per_block=p.reservedSharedMemPerBlock,
        )
        raw_uuid = bytes(p.uuid.bytes) if hasattr(p.uuid, "bytes") else b""
        uuid = None
        if len(raw_uuid) == 16:
            h = raw_uuid.hex()
            uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        name = p.name.decode(errors="replace").rstrip("\x00") if isinstance(p.name, bytes) else str(p.name)
        props = events.DeviceProperties(
            device_id=i,
            name=name,
            uuid=uuid,
            compute_capability=(p.major, p.minor),
            sm_count=p.multiProcessorCount,
            total_memory_bytes=p.totalGlobalMem,
            max_threads_per_sm=lim.max_threads_per_sm,
            max_blocks_per_sm=lim.max_blocks_per_sm,
            max_threads_per_block=lim.max_threads_per_block,
            regs_per_sm=lim.regs_per_sm,
            regs_per_block=lim.regs_per_block,
            shared_mem_per_sm=lim.shared_mem_per_sm,
            shared_mem_per_block_optin=lim.shared_mem_per_block_optin,
            reserved_shared_mem_per_block=lim.reserved_shared_mem_per_block,
            warp_size=lim.warp_size,
        )
        out[i] = CudaDevice(lim, props)
    return out


LIBCUDA = "libcuda.so.1"
"""The NVIDIA driver's CUDA library: present wherever an NVIDIA driver is installed (Linux)."""


def driver_present() -> bool:
    """Whether the NVIDIA driver's libcuda loads in this process."""
    import ctypes

    try:
        ctypes.CDLL(LIBCUDA)
    except OSError:
        return False
    return True


def _driver_hint() -> str:
    return "" if driver_present() else f": no NVIDIA driver ({LIBCUDA}) found, so no NVIDIA GPU can be used"


def missing_package(e: BaseException) -> str | None:
    """The cuda-bindings module (``cuda``, ``cuda.bindings``) an ImportError says is missing, else None."""
    name = getattr(e, "name", None) or ""
    if isinstance(e, ModuleNotFoundError) and name.split(".")[0] == "cuda":
        return name
    return None


def unreachable(e: BaseException) -> EngineUnavailable:
    """What a failure to reach CUDA means for the user: its cause and its fix, not a bare exception repr
    (issue #25: a machine without a GPU said ``ModuleNotFoundError("No module named 'cuda'")``)."""
    module = missing_package(e)
    if module is not None:
        # cuda-bindings ("cuda") comes with cupti-python, which the [cuda] extra installs.
        return EngineUnavailable(
            "cupti_missing",
            f"the Python module {module!r} (cuda-bindings, which cupti-python needs) is not installed:"
            " pip install 'gpu-flight[cuda]'",
        )
    if not driver_present():
        return EngineUnavailable(
            "no_cuda_device",
            f"no NVIDIA driver ({LIBCUDA}) found: this machine has no NVIDIA GPU or its driver is not installed"
            f" ({type(e).__name__}: {e})",
        )
    return EngineUnavailable("no_cuda_device", f"CUDA devices could not be queried: {type(e).__name__}: {e}")


def probe_devices() -> DeviceProbe:
    """The devices and driver version, or EngineUnavailable("no_cuda_device") saying why not."""
    try:
        devices = cuda_device_limits()
    except EngineUnavailable:
        raise
    except Exception as e:
        raise unreachable(e) from None
    if not devices:
        raise EngineUnavailable("no_cuda_device", f"no CUDA device is visible{_driver_hint()}")
    return DeviceProbe(devices, cuda_driver_version())


def native_limits(devices: dict[int, CudaDevice]) -> list[tuple[int, ...]]:
    """The devices' limits as ``_native.attach`` parses them: (ordinal, then DevLimits' fields in order).
    The one place the positional form exists (native/module.c, set_limits)."""
    return [
        (
            i,
            d.limits.warp_size,
            d.limits.max_threads_per_sm,
            d.limits.max_blocks_per_sm,
            d.limits.max_threads_per_block,
            d.limits.regs_per_sm,
            d.limits.regs_per_block,
            d.limits.shared_mem_per_sm,
            d.limits.shared_mem_per_block_optin,
            d.limits.reserved_shared_mem_per_block,
        )
        for i, d in devices.items()
    ]


def torch_profiler_active() -> bool:
    """Kineto may hold CUPTI's activity buffers without a callback subscription: ask torch directly."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch._C._autograd._profiler_enabled())
    except Exception:
        return False


def refuse_if_torch_profiler() -> None:
    """EngineUnavailable("cupti_busy") while torch.profiler runs: its CUPTI is not ours to share."""
    if torch_profiler_active():
        raise EngineUnavailable(
            "cupti_busy",
            "torch.profiler is running and owns CUPTI in this process; kernels are not traced. "
            "Start gpufl before other profilers, or run without them",
        )


def cause_code(e: BaseException, subscribing: bool = False) -> str:
    """The notice code of a CUPTI error (``subscribing``: it came from cuptiSubscribe)."""
    text = str(e).upper()
    if "MULTIPLE_SUBSCRIBERS" in text or (subscribing and "NOT_INITIALIZED" not in text):
        return "cupti_busy"
    if "INSUFFICIENT_PRIVILEGES" in text:
        return "cupti_permissions"
    if "NOT_INITIALIZED" in text or "NO_DEVICE" in text:
        return "no_cuda_device"
    return "cupti_error"


def explain(e: BaseException, subscribing: bool = False) -> str:
    """What a CUPTI error means for the user, and what to do."""
    code = cause_code(e, subscribing)
    if code == "cupti_busy":
        return (
            "another CUPTI client (torch.profiler/Kineto, Nsight Systems) already holds CUPTI in this "
            f"process; kernels are not traced. Start gpufl before other profilers, or run without them ({e})"
        )
    if code == "cupti_permissions":
        return f"the driver denies profiling to this user (see docs/troubleshooting.md) ({e})"
    return f"CUPTI could not start tracing: {e}"


def unavailable(e: BaseException, subscribing: bool = False) -> EngineUnavailable:
    """The EngineUnavailable a CUPTI error becomes."""
    if missing_package(e) is not None:  # cupti-python imports cuda-bindings lazily, so this can come here
        return unreachable(e)
    return EngineUnavailable(cause_code(e, subscribing), explain(e, subscribing))
