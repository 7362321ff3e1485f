"""List the documentation blocks the doc test skipped, and why, at the end of every run."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from .test_docs import SKIPPED, _id

    if SKIPPED:
        terminalreporter.section("documentation blocks not run (doc-test: skip)")
        for b in SKIPPED:
            terminalreporter.write_line(f"{_id(b)}: {b.skip}")
