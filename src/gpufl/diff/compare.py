"""Two ``Profile``s compared: per kernel name, scope path, copy direction and memsets, and in total.

Each row is labelled ``added`` / ``removed`` (no instance on one side), ``slower`` / ``faster`` (its time
changed beyond noise), or ``unchanged``. The noise test, per row: the difference of the two sides' summed
durations (per step where both sides mark steps) against its standard error from each side's per-instance
spread, ``SE = sqrt(n_b·s_b²/k_b² + n_t·s_t²/k_t²)`` (Welch's unequal-variance form; k = steps or 1), two-sided
at ``Z_CRIT`` (p < 0.001, normal approximation: rows have hundreds of instances), AND a relative change of at
least ``min_effect``. A row whose instance count (per step) moved by ``min_effect`` or more changed, whatever the
spread: counts are exact. The second condition is there because instance spread is not the only noise: the same
program in a fresh process runs a GPU kernel up to a few percent faster or slower as a whole (clocks, memory
placement), a shift no per-instance spread shows. The repeat capture (examples/captures/diff_repeat) measures it;
docs/diff.md gives the figures.
"""

from __future__ import annotations

import math

import msgspec

from gpufl.diff.profile import KINDS, Profile, Stat

Z_CRIT = 3.29
"""Two-sided normal critical value for p < 0.001: a diff tests hundreds of rows, so 5% would cry wolf."""

MIN_EFFECT = 0.05
"""Default smallest relative change called a change. In the repeat of the base run (same program, fresh
process, same GPU; examples/captures/diff_repeat) the rows beyond the z test shifted by at most 0.7%, and
pageable uploads too few to test by 8% (docs/diff.md); 5% keeps well above the first."""

MIN_INSTANCES = 5
"""Below this on either side a spread is not worth testing against (two 16 MiB pageable uploads differ by 8%
between two fresh processes with almost no spread within either); such rows change only by count."""

LABELS = ("added", "removed", "slower", "faster", "unchanged")


class SideStat(msgspec.Struct, kw_only=True):
    """One row on one side: instances, time (total, mean, standard deviation of one instance), bytes, and
    the compared figure (time per step where the diff is per step, else total)."""

    n: int
    total_ns: int
    mean_ns: float
    sd_ns: float
    bytes: int
    value_ns: float
    n_value: float
    """Instances per step where per step, else ``n``."""


class Row(msgspec.Struct, kw_only=True):
    kind: str
    key: str
    base: SideStat
    target: SideStat
    delta_ns: float
    """target − base of the compared figure (time per step, or total time): the row's impact."""
    rel: float | None
    """delta / base; None where the base has none (added)."""
    z: float | None
    """delta in standard errors; None where untestable (added, removed, too few instances)."""
    label: str


class TotalRow(msgspec.Struct, kw_only=True):
    metric: str
    unit: str
    base: float
    target: float
    delta: float
    rel: float | None
    z: float | None
    tested: bool
    """Whether a noise test applies: time totals have an instance spread; counts are exact (``()`` below);
    idle and span have no spread to test against, so only ``min_effect`` judges them."""
    label: str
    """``up`` / ``down`` beyond noise and ``min_effect``, else ``unchanged``; ``untested`` where no noise model
    applies (idle: host scheduling and warm-up move it between identical runs by 20%)."""


class SessionRef(msgspec.Struct, kw_only=True):
    session_id: str
    app: str | None
    host: str | None
    start_ns: int | None
    steps: int


class Noise(msgspec.Struct, kw_only=True):
    test: str
    z_crit: float
    min_effect: float
    min_instances: int


class Diff(msgspec.Struct, kw_only=True):
    base: SessionRef
    target: SessionRef
    per_step: bool
    """True when both sides mark steps: every figure is then per step, so runs of different length compare."""
    noise: Noise
    totals: list[TotalRow]
    rows: list[Row]
    """Sorted by impact (|delta_ns|), largest first."""
    counts: dict[str, int]
    """Rows per label."""


NOISE_TEST = (
    "Welch z on the difference of summed durations (per step when both sides mark steps), SE from each "
    "side's per-instance spread; changed when |z| ≥ z_crit and |relative change| ≥ min_effect, or when the "
    "instance count (per step) moved by min_effect or more"
)

# Totals, in display order: (metric, unit, figure). "total_gpu_time" is the GPU's busy time (kernels, copies
# and memsets, overlap counted once): what a user means by "my run's GPU time".
TOTALS: tuple[tuple[str, str, str], ...] = (
    ("total_gpu_time", "ns", "gpu_busy_ns"),
    ("idle", "ns", "idle_ns"),
    ("kernel_time", "ns", "kernel_ns"),
    ("kernels", "count", "kernels"),
    ("copy_time", "ns", "copy_ns"),
    ("copy_bytes", "bytes", "copy_bytes"),
    ("copies", "count", "copies"),
    ("memset_time", "ns", "memset_ns"),
    ("step_time", "ns", "step_ns"),
)

# The totals with a noise test: the row kinds whose instances they sum (``()``: exact counts, no noise).
TESTED_TOTALS: dict[str, tuple[str, ...]] = {
    "total_gpu_time": ("kernel", "copy", "memset"),
    "kernel_time": ("kernel",),
    "copy_time": ("copy",),
    "memset_time": ("memset",),
    "step_time": ("step",),  # the step scope's own row
    "kernels": (),
    "copy_bytes": (),
    "copies": (),
}


def _side(s: Stat, steps: int) -> SideStat:
    k = steps or 1
    return SideStat(
        n=s.n,
        total_ns=s.total_ns,
        mean_ns=s.total_ns / s.n if s.n else 0.0,
        sd_ns=math.sqrt(s.variance()),
        bytes=s.bytes,
        value_ns=s.total_ns / k,
        n_value=s.n / k,
    )


def _row(kind: str, key: str, b: Stat, t: Stat, kb: int, kt: int, min_effect: float) -> Row:
    base, target = _side(b, kb), _side(t, kt)
    delta = target.value_ns - base.value_ns
    rel = delta / base.value_ns if base.value_ns else None
    z: float | None = None
    if b.n == 0:
        label = "added"
    elif t.n == 0:
        label = "removed"
    else:
        se = math.sqrt(b.n * b.variance() / (kb or 1) ** 2 + t.n * t.variance() / (kt or 1) ** 2)
        count_changed = not math.isclose(base.n_value, target.n_value, rel_tol=1e-9)
        testable = (b.n >= MIN_INSTANCES and t.n >= MIN_INSTANCES) or count_changed
        if se > 0:
            z = delta / se
        elif delta != 0:
            z = math.copysign(math.inf, delta)
        else:
            z = 0.0
        beyond = testable and abs(z) >= Z_CRIT and rel is not None and abs(rel) >= min_effect
        # A count that moved by min_effect or more is a change whatever the instances' spread: launches are
        # counted exactly (64 → 54 per step of a kernel whose instances differ in size would fail the z test).
        if count_changed and abs(target.n_value - base.n_value) >= min_effect * base.n_value:
            beyond = rel is not None and delta != 0
        label = ("slower" if delta > 0 else "faster") if beyond else "unchanged"
        if not testable or not math.isfinite(z):
            z = None  # JSON has no infinity: a zero-spread change says so by its label alone
    return Row(kind=kind, key=key, base=base, target=target, delta_ns=delta, rel=rel, z=z, label=label)


def _sum_var(p: Profile, kinds: tuple[str, ...], k: int) -> float:
    """Variance of a sum of rows' summed durations (per step where k): each instance independent."""
    if kinds == ("step",):
        st = p.rows["scope"].get(p.step_scope)
        return st.n * st.variance() / (k or 1) ** 2 if st else 0.0
    return sum(st.n * st.variance() for kind in kinds for st in p.rows.get(kind, {}).values()) / (k or 1) ** 2


def _totals(
    base: Profile, target: Profile, kb: int, kt: int, min_effect: float, rows: list[Row]
) -> list[TotalRow]:
    b, t = base.totals, target.totals
    moved = {r.kind for r in rows if r.label != "unchanged"}
    if any(r.kind == "scope" and r.key == base.step_scope and r.label != "unchanged" for r in rows):
        moved.add("step")
    out = []
    for metric, unit, attr in TOTALS:
        bv, tv = getattr(b, attr) / (kb or 1), getattr(t, attr) / (kt or 1)
        delta = tv - bv
        rel = delta / bv if bv else None
        kinds = TESTED_TOTALS.get(metric)
        z = None
        if kinds is not None:
            se = math.sqrt(_sum_var(base, kinds, kb) + _sum_var(target, kinds, kt))
            z = delta / se if se > 0 else (0.0 if delta == 0 else None)
        # A time total moved only if it is beyond noise and min_effect AND a row behind it moved: rows too
        # few to test (a pair of pageable uploads) must not move the total they sum into.
        beyond = rel is not None and abs(rel) >= min_effect
        if kinds:
            beyond = beyond and (z is None or abs(z) >= Z_CRIT) and bool(moved & set(kinds))
        if rel is None:
            label = "unchanged" if tv == 0 else "up"
        elif kinds is None:
            label = "untested"
        else:
            label = ("up" if delta > 0 else "down") if beyond else "unchanged"
        out.append(
            TotalRow(
                metric=metric,
                unit=unit,
                base=bv,
                target=tv,
                delta=delta,
                rel=rel,
                z=z,
                tested=kinds is not None and kinds != (),
                label=label,
            )
        )
    return out


def compare(base: Profile, target: Profile, min_effect: float = MIN_EFFECT) -> Diff:
    """The diff of ``target`` against ``base``. Per step when both sides have steps."""
    if not (0 <= min_effect < 10):
        raise ValueError(f"min_effect {min_effect} is not a fraction in [0, 10)")
    per_step = base.steps > 0 and target.steps > 0
    kb, kt = (base.steps, target.steps) if per_step else (0, 0)
    rows = []
    empty = Stat()
    for kind in KINDS:
        b_rows, t_rows = base.rows.get(kind, {}), target.rows.get(kind, {})
        for key in sorted(set(b_rows) | set(t_rows)):
            rows.append(_row(kind, key, b_rows.get(key, empty), t_rows.get(key, empty), kb, kt, min_effect))
    rows.sort(key=lambda r: (-abs(r.delta_ns), r.kind, r.key))
    counts = dict.fromkeys(LABELS, 0)
    for r in rows:
        counts[r.label] += 1

    def ref(p: Profile) -> SessionRef:
        return SessionRef(session_id=p.session_id, app=p.app, host=p.host, start_ns=p.start_ns, steps=p.steps)

    return Diff(
        base=ref(base),
        target=ref(target),
        per_step=per_step,
        noise=Noise(test=NOISE_TEST, z_crit=Z_CRIT, min_effect=min_effect, min_instances=MIN_INSTANCES),
        totals=_totals(base, target, kb, kt, min_effect, rows),
        rows=rows,
        counts=counts,
    )
