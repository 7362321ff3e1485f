"""Response models of the deep engines' endpoints (contract v6: SASS metrics and PC sampling), ``/sessions/{id}
/deep...``. Its own module; re-exported by ``schemas`` with the rest."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class StallShare(BaseModel):
    reason: str
    """CUPTI's own name for the stall reason (e.g. ``smsp__pcsamp_warps_issue_stalled_long_scoreboard``);
    ``(not reported)`` for samples that named none."""
    samples: int
    share: float
    """Of the group's PC samples kept (dropped ones are counted in the ranges, not here)."""


class DeepFigures(BaseModel):
    instructions: float | None
    """Warp-level instructions executed (``smsp__sass_inst_executed``); null: SASS metrics did not cover it."""
    thread_instructions: float | None
    """Thread-level instructions executed (``smsp__sass_thread_inst_executed``)."""
    divergence: float | None
    """thread_instructions / instructions: average active threads per executed warp instruction (32 = no
    divergence); null where either metric is missing."""
    samples: int | None
    """PC samples kept (every reason but the ``…_not_issued`` subsets); null: PC sampling did not cover it."""
    stalls: list[StallShare]
    """Samples per stall reason, most first."""
    other_samples: int
    """Samples of the stall reasons not listed (where the list is cut: source lines list the top 3)."""
    not_issued: list[StallShare]
    """CUPTI's ``…_not_issued`` reasons: the samples of their base reason's state in which no warp issued (a
    subset of that reason's samples, so not in ``samples`` nor in ``stalls``); share of ``samples``."""


class DeepKernel(DeepFigures):
    kernel: str | None
    """Demangled name (the scope stream's ``kernel`` dict entry, or a pre-v6 sample's ``function_name``)."""
    mangled: str | None


class DeepRangeTotals(BaseModel):
    ranges: int
    """profile_range records: deep ranges the engines covered."""
    pc_samples: int | None
    """PC samples the ranges took (user kernels' and others'); null: no range reported it."""
    pc_dropped: int | None
    """PC samples lost: the stall shares are of the samples kept."""
    pc_non_user_samples: int | None
    pc_buffer_full_ranges: int
    """Ranges in which the hardware buffer filled up (samples lost)."""
    sass_records: int | None
    sass_dropped: int | None
    """SASS instruction records CUPTI discarded."""
    error_ranges: int
    """Ranges with an engine error (see ``errors``)."""


class DeepRange(BaseModel):
    """A profile_range record, every field, with its scope path."""

    seq: int
    scope_inst: int | None
    device_id: int
    start_ns: int
    end_ns: int
    engines: list[str]
    pc_samples: int | None
    pc_dropped: int | None
    pc_non_user_samples: int | None
    pc_buffer_full: bool | None
    pc_period_log2: int | None
    pc_records: int | None
    sass_records: int | None
    sass_dropped: int | None
    error: str | None
    scope_id: int | None
    path: str | None
    """The deep scope's path; null for the session-wide range or a scope instance whose begin is missing."""


class DeepScope(DeepFigures):
    scope_id: int | None
    """The scope path's dict id (``/deep/scopes/{scope_id}``); null for the session-wide range."""
    path: str | None
    whole_session: bool
    """The session-wide range (``deep="session"``): samples outside any deep scope."""
    kernels: list[DeepKernel]
    ranges: DeepRangeTotals


class DeepError(BaseModel):
    error: str
    ranges: int


class DeepSummary(BaseModel):
    session_id: str
    has_data: bool
    """False: no deep engine recorded in this session (no profile_sample, no profile_range)."""
    figures: DeepFigures
    """Over the whole session: every range, every kernel."""
    scopes: list[DeepScope]
    """Per deep scope path (the session-wide range first), most sampled first."""
    kernels: list[DeepKernel]
    """Per kernel over the whole session, most sampled first."""
    range_totals: DeepRangeTotals
    errors: list[DeepError]
    """Engine errors by text, most frequent first (20 at most)."""
    ranges: list[DeepRange]
    """The first ranges by start (``ranges_limit``)."""
    ranges_truncated: bool


class DeepInstance(BaseModel):
    inst: int
    range: DeepRange | None
    """The instance's profile_range (null where none arrived)."""
    kernels: list[DeepKernel]


class DeepScopeDetail(BaseModel):
    scope_id: int
    path: str
    kernels: list[DeepKernel]
    """Per kernel over the path's instances (not those of deep scopes nested in it: they have their own)."""
    instances: list[DeepInstance]
    """The first ``instances_limit`` instances by start."""
    instances_total: int
    truncated: bool


class DeepLine(DeepFigures):
    source_file: str | None
    source_line: int | None
    """Null where the module has no line info: the row is then one PC."""
    pc_offset: int | None
    """The PC (by=pc, or a row without line info); null for a line's row (``pcs`` PCs)."""
    pcs: int
    sample_share: float
    """The row's share of the kernel's PC samples."""


class DeepLines(DeepFigures):
    kernel: str
    scope_id: int | None
    by: Literal["line", "pc"]
    lines_total: int
    truncated: bool
    """More rows than ``limit``: the hottest are listed."""
    items: list[DeepLine]
