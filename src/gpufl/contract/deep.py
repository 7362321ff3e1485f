"""The deep engines' range record (contract v6): one ``profile_range`` per range a deep engine covered (a
``gpufl.scope(..., deep=True)`` or the whole session), on the scope stream beside the range's
``profile_sample`` records. It states what the range's samples are a share of and what was lost, so a reader
never takes a thin or empty sample set for the whole truth: PC sampling's total and dropped samples, the
hardware buffer filling up, SASS records dropped, or the engine's error. Its own module so that ``events``
stays small; ``events`` re-exports it and lists it in the contract's unions and tables."""

from __future__ import annotations

from typing import Literal

from gpufl.contract.limits import Count, DeviceId, Id, Ns, Record

DeepEngine = Literal["sass", "pc_sampling"]

SASS_INST = "smsp__sass_inst_executed"
"""Warp-level instructions executed, per PC (a ``profile_sample`` of source ``sass_metric``)."""
SASS_THREAD_INST = "smsp__sass_thread_inst_executed"
"""Thread-level instructions executed, per PC: divided by ``SASS_INST`` it is the average number of active
threads per executed warp instruction (32 = no divergence)."""


class ProfileRange(Record, tag="profile_range", kw_only=True):
    """A deep engine covered ``start_ns`` .. ``end_ns`` on ``device_id``; its samples carry ``scope_inst``."""

    scope_inst: Id | None = None
    """The deep scope's instance (null: the session-wide range of ``deep="session"``)."""
    device_id: DeviceId
    start_ns: Ns
    end_ns: Ns
    engines: list[DeepEngine]
    """The engines that covered the range (those that failed are named in ``error``)."""
    pc_samples: Count | None = None
    """PC sampling: samples taken in the range, user kernels' and others' (``pc_non_user_samples``)."""
    pc_dropped: Count | None = None
    """PC sampling: samples lost (CUPTI's count): the range's stall shares are of the samples kept."""
    pc_non_user_samples: Count | None = None
    """PC sampling: samples in kernels CUPTI does not attribute to the program's code (driver internals)."""
    pc_buffer_full: bool | None = None
    """PC sampling: the hardware buffer filled up in the range (samples were lost; raise the period)."""
    pc_period_log2: Count | None = None
    """PC sampling: one sample every 2**pc_period_log2 cycles per SM sub-partition."""
    pc_records: Count | None = None
    """PC sampling: the ``profile_sample`` records written for the range (PC x stall reason)."""
    sass_records: Count | None = None
    """SASS metrics: the ``profile_sample`` records written for the range (PC x metric)."""
    sass_dropped: Count | None = None
    """SASS metrics: instruction records CUPTI discarded (never flushed)."""
    error: str | None = None
    """Why an engine gave nothing or stopped in this range (a CUPTI error, the deep watchdog)."""
