"""``--fail-if`` conditions: what they read, what they refuse, and what trips them on real diffs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import msgspec
import pytest

from gpufl.diff import gate
from gpufl.diff.compare import compare

from .captures import BASE, BF16, LAYER_REMOVED, REPEAT, profile


def doc(target):  # type: ignore[no-untyped-def]
    return msgspec.to_builtins(compare(profile(BASE), profile(target)))


def test_conditions_read_relative_and_absolute_values() -> None:
    c = gate.parse("total_gpu_time > +5%")
    assert (c.kind, c.pattern, c.op, c.value, c.relative) == (None, "total_gpu_time", ">", 0.05, True)
    c = gate.parse("kernel:nvjet* <= -10%")
    assert (c.kind, c.pattern, c.op, c.value) == ("kernel", "nvjet*", "<=", -0.1)
    c = gate.parse("step_time>2ms")
    assert (c.value, c.relative) == (2e6, False)
    assert gate.parse("copies > 3").value == 3


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "total_gpu_time",
        "gpu > 5%",
        "kernel: > 5%",
        "warp:* > 5%",
        "kernel:* >> 5%",
        "kernel:* > 5 parsecs",
    ],
)
def test_unreadable_conditions_are_refused_with_the_grammar(bad: str) -> None:
    with pytest.raises(gate.GateError):
        gate.parse(bad)


def test_a_repeat_passes_every_gate() -> None:
    conds = [
        gate.parse(c) for c in ("total_gpu_time > +1%", "kernel:* > +5%", "kernel:* < -5%", "copy:* > +5%")
    ]
    assert all(v.passed for v in gate.evaluate(doc(REPEAT), conds))


def test_a_removed_layer_trips_the_faster_gate_and_not_the_slower_one() -> None:
    d = doc(LAYER_REMOVED)
    slower, faster, total = gate.evaluate(
        d,
        [
            gate.parse("kernel:nvjet* > +10%"),
            gate.parse("kernel:nvjet* < -10%"),
            gate.parse("total_gpu_time < -5%"),
        ],
    )
    assert slower.passed
    assert not faster.passed and all("nvjet" in o and "faster" in o for o in faster.offenders)
    nvjet_faster = [
        r for r in d["rows"] if r["key"].startswith("nvjet") and r["label"] == "faster" and r["rel"] < -0.1
    ]
    assert len(faster.offenders) == len(nvjet_faster) > 3
    assert not total.passed


def test_added_kernels_count_as_an_infinite_rise() -> None:
    (v,) = gate.evaluate(doc(BF16), [gate.parse("kernel:* > +50%")])
    added = [r for r in doc(BF16)["rows"] if r["label"] == "added"]
    assert len(v.offenders) >= len(added) > 0


def test_junit_has_one_case_per_condition_and_a_failure_per_failed_one() -> None:
    d = doc(LAYER_REMOVED)
    verdicts = gate.evaluate(d, [gate.parse("total_gpu_time > +5%"), gate.parse("kernel:* < -10%")])
    root = ET.fromstring(gate.junit(d, verdicts))
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["total_gpu_time > +5%", "kernel:* < -10%"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.text is not None
    assert len(failure.text.splitlines()) == len(verdicts[1].offenders) > 10
