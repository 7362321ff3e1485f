"""CI gate over a diff: ``--fail-if`` conditions, evaluated on the diff's JSON form, and JUnit XML.

A condition is ``SUBJECT OP VALUE``:

- SUBJECT: a total (``total_gpu_time``, ``kernel_time``, ``copy_time``, ``memset_time``, ``step_time``, ``idle``,
  ``kernels``, ``copies``, ``copy_bytes``) or rows by kind and name pattern (``kernel:*``, ``kernel:nvjet*``,
  ``scope:step/forward``, ``copy:HtoD*``, ``memset:*``; shell-style wildcards, case-sensitive).
- OP: ``>``, ``>=``, ``<``, ``<=``.
- VALUE: a relative change (``+5%``, ``-10%``) or an absolute one per step (or in total where the diff is not per
  step) with a unit: ``ns``, ``us``, ``ms``, ``s`` for times, none for counts and bytes.

Only what changed beyond noise can fail a gate (a row labelled ``unchanged``, a total ``unchanged``, never does):
a gate that trips on noise gets switched off. An added row is +∞% and a removed one −100%.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpufl.diff.compare import TOTALS
from gpufl.diff.profile import KINDS

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_UNITS = {"ns": 1.0, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "": 1.0}
_COND = re.compile(
    r"^\s*(?P<subject>\S+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>[+-]?\d+(?:\.\d+)?)\s*(?P<unit>%|ns|us|µs|ms|s)?\s*$"
)
TOTAL_NAMES = tuple(m for m, _, _ in TOTALS)


class GateError(ValueError):
    """A condition that cannot be read: the message says what is wrong and what is allowed."""


@dataclass(frozen=True)
class Condition:
    text: str
    kind: str | None
    """A row kind, or None for a total."""
    pattern: str
    op: str
    value: float
    relative: bool


@dataclass
class Verdict:
    condition: Condition
    offenders: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.offenders


def parse(text: str) -> Condition:
    m = _COND.match(text)
    if m is None:
        raise GateError(
            f"cannot read condition {text!r}: write SUBJECT OP VALUE, e.g. 'total_gpu_time > +5%' or "
            "'kernel:* > +10%' or 'step_time > +2ms'"
        )
    subject, op, unit = m["subject"], m["op"], m["unit"] or ""
    kind: str | None = None
    pattern = subject
    if ":" in subject:
        kind, pattern = subject.split(":", 1)
        if kind not in KINDS:
            raise GateError(f"{text!r}: row kind {kind!r} is not one of {', '.join(KINDS)}")
        if not pattern:
            raise GateError(f"{text!r}: give a name pattern after '{kind}:' (e.g. '{kind}:*')")
    elif subject not in TOTAL_NAMES:
        raise GateError(f"{text!r}: {subject!r} is not a total ({', '.join(TOTAL_NAMES)}) or KIND:PATTERN")
    relative = unit == "%"
    value = float(m["value"]) / 100 if relative else float(m["value"]) * _UNITS[unit]
    return Condition(text=text.strip(), kind=kind, pattern=pattern, op=op, value=value, relative=relative)


def _holds(c: Condition, rel: float | None, delta: float, added: bool) -> bool:
    if c.relative:
        if rel is None:
            rel = math.inf if added else 0.0
        return _OPS[c.op](rel, c.value)
    return _OPS[c.op](delta, c.value)


def _pct(rel: float | None, added: bool) -> str:
    if rel is None:
        return "added" if added else "n/a"
    return f"{100 * rel:+.1f}%"


def evaluate(diff: dict[str, Any], conditions: list[Condition]) -> list[Verdict]:
    """Each condition's offending rows or total, on a diff in its JSON form (the API's or ``compare``'s)."""
    out = []
    for c in conditions:
        v = Verdict(c)
        if c.kind is None:
            for t in diff["totals"]:
                if t["metric"] != c.pattern or t["label"] == "unchanged":
                    continue
                added = t["rel"] is None and t["target"] > 0
                if _holds(c, t["rel"], t["delta"], added):
                    v.offenders.append(
                        f"{t['metric']}: {t['base']:.6g} → {t['target']:.6g} ({_pct(t['rel'], added)}, {t['label']})"
                    )
        else:
            for r in diff["rows"]:
                if (
                    r["kind"] != c.kind
                    or r["label"] == "unchanged"
                    or not fnmatch.fnmatchcase(r["key"], c.pattern)
                ):
                    continue
                added = r["label"] == "added"
                if _holds(c, r["rel"], r["delta_ns"], added):
                    v.offenders.append(
                        f"{r['kind']} {r['key']}: {r['base']['value_ns']:.0f} → {r['target']['value_ns']:.0f} ns "
                        f"({_pct(r['rel'], added)}, {r['label']})"
                    )
        out.append(v)
    return out


def junit(diff: dict[str, Any], verdicts: list[Verdict]) -> str:
    """JUnit XML: one test case per condition, a failure listing its offenders."""
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"gpufl diff {diff['base']['session_id']} → {diff['target']['session_id']}",
        tests=str(len(verdicts)),
        failures=str(sum(not v.passed for v in verdicts)),
        errors="0",
    )
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname="gpufl.diff", name=v.condition.text)
        if not v.passed:
            fail = ET.SubElement(
                case, "failure", message=f"{len(v.offenders)} beyond the bar", type="RegressionGate"
            )
            fail.text = "\n".join(v.offenders)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
