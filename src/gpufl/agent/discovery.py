"""Folder scan: which segments exist, grouped per (session, stream) and ordered by index.

Polling with ``os.scandir`` is the only discovery mechanism: inotify does not see writes made by another
NFS client, and a scan of a log folder is cheap (no stat per file; the tailer reads what it needs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gpufl.contract.events import parse_segment_name

StreamKey = tuple[str, str]
"""(session_id, stream)."""


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    path: str
    host: str
    app: str
    session_id: str
    stream: str
    index: int


def scan(folder: str) -> dict[StreamKey, list[Segment]]:
    """Every segment file in ``folder`` grouped per (session, stream), oldest index first.

    Files that are not segments (the cursor, dead letters, editor droppings) are ignored.
    """
    out: dict[StreamKey, list[Segment]] = {}
    with os.scandir(folder) as it:
        for entry in it:
            parsed = parse_segment_name(entry.name)
            if parsed is None:
                continue
            seg = Segment(
                entry.name,
                entry.path,
                parsed.host,
                parsed.app,
                parsed.session_id,
                parsed.stream,
                parsed.index,
            )
            out.setdefault((seg.session_id, seg.stream), []).append(seg)
    for segs in out.values():
        segs.sort(key=lambda s: s.index)
    return out
