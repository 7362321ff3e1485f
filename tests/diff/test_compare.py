"""The diff on the committed captures: a known change found with the right sign and size, a repeat found
unchanged; figures checked against counts made here from the raw log lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gpufl.diff.compare import MIN_EFFECT, compare
from gpufl.diff.profile import Stat, copy_key, size_class

from .captures import BASE, BF16, LAYER_REMOVED, REPEAT, profile, raw


def kernel_counts(folder: Path) -> tuple[Counter[str], int]:
    """Kernels per name and closed top-level ``step`` scopes, from the raw lines alone."""
    recs = raw(folder)
    names = {r["id"]: r["launch"]["name"] for r in recs if r["type"] == "dict" and r["kind"] == "launch"}
    paths = {r["id"]: r["value"] for r in recs if r["type"] == "dict" and r["kind"] == "scope"}
    ended = {r["inst"] for r in recs if r["type"] == "scope_end"}
    steps = sum(
        1
        for r in recs
        if r["type"] == "scope_begin"
        and r["depth"] == 0
        and paths[r["path_id"]] == "step"
        and r["inst"] in ended
    )
    return Counter(names[r["launch_id"]] for r in recs if r["type"] == "kernel"), steps


def test_the_profile_counts_what_the_lines_hold() -> None:
    counts, steps = kernel_counts(BASE)
    p = profile(BASE)
    assert p.steps == steps == 12
    assert {k: s.n for k, s in p.rows["kernel"].items()} == dict(counts)
    assert p.totals.kernels == sum(counts.values())
    durs = [r["end_ns"] - r["start_ns"] for r in raw(BASE) if r["type"] == "memcpy"]
    assert p.totals.copy_ns == sum(durs) and p.totals.copies == len(durs)
    assert 0 < p.totals.gpu_busy_ns <= p.totals.kernel_ns + p.totals.copy_ns + p.totals.memset_ns
    assert p.totals.gpu_busy_ns + p.totals.idle_ns == p.totals.span_ns


def test_a_repeat_of_the_same_run_is_unchanged_beyond_noise() -> None:
    d = compare(profile(BASE), profile(REPEAT))
    assert d.per_step
    changed = [(r.kind, r.key, r.rel) for r in d.rows if r.label != "unchanged"]
    assert changed == []
    assert {t.metric: t.label for t in d.totals if t.tested}.keys() >= {"total_gpu_time", "kernel_time"}
    assert all(t.label in ("unchanged", "untested") for t in d.totals), [
        (t.metric, t.label) for t in d.totals
    ]
    # the test is not blind: without the minimum effect, rows beyond the z test show up
    strict = compare(profile(BASE), profile(REPEAT), min_effect=0.0)
    assert strict.counts["unchanged"] < d.counts["unchanged"]


def test_a_removed_layer_makes_each_per_layer_kernel_a_sixth_faster() -> None:
    base_counts, base_steps = kernel_counts(BASE)
    target_counts, target_steps = kernel_counts(LAYER_REMOVED)
    per_layer = [
        n
        for n in base_counts
        if base_counts[n] >= 5 * base_steps
        and target_counts[n] * 6 * base_steps == base_counts[n] * 5 * target_steps
    ]
    assert len(per_layer) >= 10  # the block's GEMMs, attention, layer norms, GELU …
    rows = {r.key: r for r in compare(profile(BASE), profile(LAYER_REMOVED)).rows if r.kind == "kernel"}
    for name in per_layer:
        r = rows[name]
        assert r.label == "faster", (name, r.rel, r.z)
        assert r.rel is not None and abs(r.rel - (-1 / 6)) < 0.04, (name, r.rel)
        assert r.target.n_value == pytest.approx(r.base.n_value * 5 / 6)
    d = compare(profile(BASE), profile(LAYER_REMOVED))
    totals = {t.metric: t for t in d.totals}
    assert totals["kernel_time"].label == "down" and totals["total_gpu_time"].label == "down"
    assert totals["kernels"].label == "down"
    # sorted by impact: the largest change first
    impacts = [abs(r.delta_ns) for r in d.rows]
    assert impacts == sorted(impacts, reverse=True)


def test_a_dtype_change_swaps_the_half_kernels_for_bf16_ones() -> None:
    base, _ = kernel_counts(BASE)
    target, _ = kernel_counts(BF16)
    d = compare(profile(BASE), profile(BF16))
    added = {r.key for r in d.rows if r.label == "added"}
    removed = {r.key for r in d.rows if r.label == "removed"}
    assert added == set(target) - set(base) and removed == set(base) - set(target)
    assert added and removed
    assert all(r.base.n == 0 and r.rel is None for r in d.rows if r.label == "added")


def test_rows_too_few_to_test_move_only_by_count() -> None:
    from gpufl.diff.profile import Profile

    def one(durs: list[int]) -> Profile:
        p = Profile(session_id="s")
        st = p.rows["kernel"].setdefault("k", Stat())
        for x in durs:
            st.add(x)
        return p

    (r,) = compare(one([100, 100]), one([200, 200])).rows
    assert r.label == "unchanged" and r.z is None  # two instances: no spread worth testing
    (r,) = compare(one([100] * 5), one([100] * 6)).rows
    assert r.label == "slower" and r.rel == pytest.approx(0.2)  # a count change is not noise
    (r,) = compare(one([100, 101, 99, 100, 100] * 4), one([150, 151, 149, 150, 150] * 4)).rows
    assert r.label == "slower" and r.z is not None and r.z > 10
    (r,) = compare(one([100, 101, 99, 100, 100] * 4), one([103, 104, 102, 103, 103] * 4)).rows
    assert r.label == "unchanged" and r.z is not None and r.z > 3.29  # beyond noise, below MIN_EFFECT
    assert MIN_EFFECT > 0.03


def test_copies_are_keyed_by_direction_and_size_class() -> None:
    assert size_class(4 << 20) == "4 MiB–8 MiB" and size_class((8 << 20) - 1) == "4 MiB–8 MiB"
    assert size_class(1) == "1 B–2 B" and size_class(0) == "0 B"
    assert copy_key("HtoD", 2048) == "HtoD 2 KiB–4 KiB"
    p = profile(BASE)
    raw_copies = Counter(copy_key(r["copy_kind"], r["bytes"]) for r in raw(BASE) if r["type"] == "memcpy")
    assert {k: s.n for k, s in p.rows["copy"].items()} == dict(raw_copies)


def test_min_effect_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        compare(profile(BASE), profile(BASE), min_effect=-0.1)
