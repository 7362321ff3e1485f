"""What a rule returns: insights with their evidence, each rule's status, and ``NotChecked``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["info", "warning", "critical"]
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}

Unit = Literal["ns", "bytes", "count", "pct", "mhz", "celsius", "mw", "mib", "gbps", "text"]


@dataclass
class Fact:
    label: str
    value: float | int | str
    unit: Unit


@dataclass
class Involved:
    """A kernel, copy group, thread, phase, gap, sample (a system sample, or a stall reason's PC samples),
    synchronisation or source line the insight is about, with its own numbers."""

    kind: Literal["kernel", "copy", "thread", "gap", "sample", "sync", "line"]
    name: str
    facts: list[Fact] = field(default_factory=list)
    start_ns: int | None = None
    end_ns: int | None = None


@dataclass
class Insight:
    rule: str
    severity: Severity
    title: str
    suggestion: str
    start_ns: int
    end_ns: int
    device_id: int | None = None
    facts: list[Fact] = field(default_factory=list)
    involved: list[Involved] = field(default_factory=list)


@dataclass
class RuleStatus:
    rule: str
    status: Literal["fired", "clear", "not_checked"]
    reason: str = ""


class NotChecked(Exception):
    """The facts this rule needs were not recorded: said, never silently passed."""
