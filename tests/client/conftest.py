"""Fixtures shared by the client tests."""

from __future__ import annotations

import os
from typing import Any

import pytest

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
