"""Response models of the run-vs-run diff (#26): they mirror gpufl.diff.compare's structs field for field (a
test holds them equal)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class DiffSide(BaseModel):
    n: int
    total_ns: int
    mean_ns: float
    sd_ns: float
    """Standard deviation of one instance's duration."""
    bytes: int
    value_ns: float
    """The compared figure: time per step where the diff is per step, else total time."""
    n_value: float
    """Instances per step where per step, else instances."""


class DiffRow(BaseModel):
    kind: Literal["kernel", "scope", "copy", "memset"]
    key: str
    """Kernel name, scope path, copy direction and size class (``HtoD 4–8 MiB``), or memset size class."""
    base: DiffSide
    target: DiffSide
    delta_ns: float
    rel: float | None
    z: float | None
    label: Literal["added", "removed", "slower", "faster", "unchanged"]


class DiffTotal(BaseModel):
    metric: str
    unit: Literal["ns", "count", "bytes"]
    base: float
    target: float
    delta: float
    rel: float | None
    z: float | None
    tested: bool
    label: Literal["up", "down", "unchanged", "untested"]


class DiffSessionRef(BaseModel):
    session_id: str
    app: str | None
    host: str | None
    start_ns: int | None
    steps: int


class DiffNoise(BaseModel):
    test: str
    z_crit: float
    min_effect: float
    min_instances: int


class Diff(BaseModel):
    base: DiffSessionRef
    target: DiffSessionRef
    per_step: bool
    noise: DiffNoise
    totals: list[DiffTotal]
    rows: list[DiffRow]
    """Sorted by impact (|delta_ns|), largest first; cut to ``limit`` (``rows_total`` says how many)."""
    rows_total: int
    counts: dict[str, int]
