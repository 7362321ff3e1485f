"""The ``pm_sampling`` engine: whether CUPTI's PM sampling works here, said once in a notice.

CUPTI PM sampling reads the GPU's performance counters at sub-millisecond intervals (issue #20's optional
higher-rate engine). On the lent H200 it did not work (NVIDIA's own ``pm_sampling`` sample printed "No samples
to print"; cupti-python 13.4's ``Collector.enable()`` failed in ``profiler_initialize`` with ERROR_UNKNOWN
against libcupti 13.0.85), so gpufl's GPU activity comes from NVML GPM at the system interval (engines/gpm.py),
and this engine is a probe: it asks CUPTI for PM samples and says what it got.

The probe runs in a child process, started from a background thread after the session starts: CUPTI's
profiler initialisation is process-wide and, where it fails, fails inside libcupti — the program must never
pay for that, in time or in a crash. The child makes its own CUDA context (about 1 GiB of GPU memory with the
sampling buffer, for about a second), enables PM sampling on device 0, samples half a second of its own memsets, decodes and reports as JSON. The
session gets one notice: ``pm_sampling_unavailable`` with CUPTI's reason, or ``pm_sampling_not_recorded``
(PM sampling works here, N samples; gpufl records GPM's series, not PM sampling's, yet).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpufl.client.engines import EngineHost

# NVIDIA's own sample's configuration (cupti-python's CuptiPmSamplingVectorAddNumba.py and Collector's defaults),
# so that a refusal is CUPTI's and not a choice of ours: on the H100 (libcupti 13.0.85) a 32 MiB buffer at 100 µs
# was refused by configure() with ERROR_INVALID_PARAMETER (session 14).
PROBE_METRICS = ("gr__cycles_elapsed.max", "sm__cycles_elapsed.sum")
PROBE_INTERVAL_NS = 10_000
PROBE_BUFFER_BYTES = 512 << 20
PROBE_SECONDS = 0.5
PROBE_TIMEOUT_S = 60.0  # a CUDA context plus the profiler's start; a child past it is killed, and said so


def probe_environment(base: dict[str, str]) -> dict[str, str]:
    """The child's environment: the parent's, less what would start gpufl (``gpufl run``'s sitecustomize acts
    on GPUFL_RUN_ACTIVE) or inject it into the child's CUDA (the native program build)."""
    return {k: v for k, v in base.items() if not k.startswith("GPUFL_") and k != "CUDA_INJECTION64_PATH"}


def run_probe(timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Start the probe child and read its answer: ``{"ok": bool, "reason": str, ...}``. Never raises."""
    cmd = [sys.executable, "-m", "gpufl.client.engines.pm_sampling"]
    try:
        done = subprocess.run(
            cmd, env=probe_environment(dict(os.environ)), capture_output=True, text=True,
            timeout=timeout_s, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"the probe did not answer within {timeout_s:g} s (killed)"}
    except OSError as e:
        return {"ok": False, "reason": f"the probe could not start: {e}"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                answer = json.loads(line)
            except ValueError:
                break
            if isinstance(answer, dict) and isinstance(answer.get("ok"), bool):
                return answer
            break
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return {"ok": False, "reason": f"the probe exited with code {done.returncode} ({tail})"}


def notice_for(answer: dict[str, Any]) -> tuple[str, str, str]:
    """(code, message, level) of the session's one notice about PM sampling."""
    if answer.get("ok"):
        return (
            "pm_sampling_not_recorded",
            f"CUPTI PM sampling works on this GPU ({answer.get('samples')} samples at "
            f"{PROBE_INTERVAL_NS / 1000:g} µs in a {PROBE_SECONDS:g} s probe, chip {answer.get('chip')}), but "
            "gpufl does not record its series yet: GPU activity comes from NVML GPM at the system interval",
            "info",
        )
    return (
        "pm_sampling_unavailable",
        f"CUPTI PM sampling is not available here: {answer.get('reason')}. GPU activity comes from NVML GPM "
        "at the system interval (where the GPU has GPM)",
        "warning",
    )


class PmSamplingEngine:
    name = "pm_sampling"
    device_writer = "python"

    def __init__(self) -> None:
        self._session: EngineHost | None = None
        self._thread: threading.Thread | None = None

    def prepare(self, session: EngineHost) -> dict[str, Any]:
        self._session = session
        return {}

    def start(self) -> None:
        # off the program's thread: gpufl.init() returns before the child has made its context
        self._thread = threading.Thread(target=self._probe, name="gpufl-pm-sampling-probe", daemon=True)
        self._thread.start()

    def _probe(self) -> None:
        code, message, level = notice_for(run_probe())
        if self._session is not None:
            self._session.notice(code, message, engine=self.name, level=level)

    def scope_enter(self, inst: int) -> None:
        pass

    def scope_exit(self, inst: int) -> None:
        pass

    def stop(self) -> dict[str, Any]:
        # A program shorter than the probe ends without its notice rather than waiting for it: shutdown
        # must stay fast, and the daemon thread's child ends with its timeout.
        if self._thread is not None:
            self._thread.join(timeout=0.05)
        return {}


# ---- the child ------------------------------------------------------------------------------------


def _busy(cuda: Any, seconds: float) -> None:
    """Keep the GPU working while sampling (memsets over 256 MiB): an idle GPU may give no samples, and "no
    samples" must mean PM sampling does not work, not that nothing ran."""
    import ctypes

    ptr, words = ctypes.c_uint64(), (256 << 20) // 4
    if cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(words * 4)) != 0:
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(16):  # ~0.1 ms each on an H100: never more than a few ms queued past the end
            cuda.cuMemsetD32_v2(ptr, ctypes.c_uint(7), ctypes.c_size_t(words))
        cuda.cuCtxSynchronize()
    cuda.cuMemFree_v2(ptr)


def _probe_in_this_process() -> dict[str, Any]:
    import ctypes

    from gpufl.client.engines.cuda_probe import LIBCUDA

    try:
        from cupti import pm_sampling
    except ImportError:
        return {
            "ok": False,
            "reason": "cupti-python with PM sampling (cupti.pm_sampling, 13.x) is not installed: "
            "pip install 'gpu-flight[cuda]'",
        }
    try:
        cuda = ctypes.CDLL(LIBCUDA)
    except OSError as e:
        return {"ok": False, "reason": f"no CUDA driver ({e})"}
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    for step, rc in (
        ("cuInit", lambda: cuda.cuInit(0)),
        ("cuDeviceGet", lambda: cuda.cuDeviceGet(ctypes.byref(dev), 0)),
        ("cuDevicePrimaryCtxRetain", lambda: cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)),
        ("cuCtxSetCurrent", lambda: cuda.cuCtxSetCurrent(ctx)),
    ):
        err = rc()
        if err != 0:
            return {"ok": False, "reason": f"{step} returned CUDA error {err} (no usable GPU)"}
    collector = pm_sampling.Collector(device_index=0)
    stage = "enable"
    try:
        collector.enable()
        stage = "configure"
        collector.configure(metrics=list(PROBE_METRICS), hardware_buffer_size=PROBE_BUFFER_BYTES,
                            sampling_interval=PROBE_INTERVAL_NS)  # fmt: skip
        stage = "start"
        collector.start()
        _busy(cuda, PROBE_SECONDS)
        stage = "stop"
        collector.stop()
        stage = "decode"
        data = collector.decode()
        samples = int(data.num_completed_samples)
    except Exception as e:  # CUPTI's error, named, is the notice's reason
        return {"ok": False, "reason": f"{stage}() failed: {type(e).__name__}: {e}"}
    finally:
        try:
            collector.disable()
        except Exception:
            pass
    chip = getattr(collector, "_chip_name", None)
    if samples == 0:
        return {"ok": False, "reason": f"CUPTI returned no samples in {PROBE_SECONDS:g} s", "chip": chip}
    return {"ok": True, "samples": samples, "chip": chip, "reason": ""}


if __name__ == "__main__":
    try:
        result = _probe_in_this_process()
    except Exception as e:  # the parent reads one JSON line whatever happened
        result = {"ok": False, "reason": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
