"""The committed diff captures (H100, examples/captures/diff_*): read as records or as raw JSON lines."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from gpufl.diff.profile import Profile, profile_from_records
from gpufl.export.source import find_sessions

CAPTURES = Path(__file__).resolve().parents[2] / "examples" / "captures"
BASE = CAPTURES / "diff_base"
REPEAT = CAPTURES / "diff_repeat"
LAYER_REMOVED = CAPTURES / "diff_layer_removed"
BF16 = CAPTURES / "diff_bf16"


def profile(folder: Path) -> Profile:
    (s,) = find_sessions(folder).values()
    return profile_from_records(s.session_id, itertools.chain(*(s.records(x) for x in ("device", "scope"))))


def raw(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(ln)
        for f in sorted(folder.glob("*.log"))
        for ln in f.read_bytes().splitlines()
        if ln.strip()
    ]
