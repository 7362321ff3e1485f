"""Fixtures shared by the client tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpufl.contract import events

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def native() -> Any:
    """The C extension (gpufl.client._native): CI builds it (scripts/install.sh), so a missing one fails there;
    elsewhere the test is skipped, saying why."""
    try:
        from gpufl.client import _native  # type: ignore[attr-defined]
    except ImportError as e:
        if IN_CI:
            pytest.fail(f"gpufl.client._native is not built: {e}")
        pytest.skip(f"gpufl.client._native is not built here: {e}")
    return _native


@pytest.fixture
def notices() -> Callable[[Path, str], list[events.Notice]]:
    """Read the notices of one code a session wrote to its device stream in a log folder."""

    def read(log_dir: Path, code: str) -> list[events.Notice]:
        out = []
        for p in sorted(log_dir.glob("*.device.*.log")):
            for ln in p.read_bytes().splitlines():
                r = events.decode(ln)
                if isinstance(r, events.Notice) and r.code == code:
                    out.append(r)
        return out

    return read
