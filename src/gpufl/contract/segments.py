"""Segment file names: ``<host>.<app>.<session_id>.<stream>.<NNNNNN>.log``, one per rotation of a stream."""

from __future__ import annotations

import msgspec

STREAMS: tuple[str, ...] = ("device", "scope", "system")

SEGMENT_SUFFIX = ".log"


def safe_name(text: str) -> str:
    """Host and app names reduced to [A-Za-z0-9_-] for file names."""
    out = "".join(c if (c.isascii() and (c.isalnum() or c in "_-")) else "_" for c in text)
    return out or "_"


def segment_name(host: str, app: str, session_id: str, stream: str, index: int) -> str:
    return f"{safe_name(host)}.{safe_name(app)}.{session_id}.{stream}.{index:06d}{SEGMENT_SUFFIX}"


class SegmentName(msgspec.Struct, frozen=True):
    host: str
    app: str
    session_id: str
    stream: str
    index: int


def parse_segment_name(filename: str) -> SegmentName | None:
    """Inverse of segment_name, or None for a file that is not a segment."""
    if not filename.endswith(SEGMENT_SUFFIX):
        return None
    parts = filename[: -len(SEGMENT_SUFFIX)].split(".")
    if len(parts) != 5:
        return None
    host, app, sid, stream, idx = parts
    if stream not in STREAMS or not idx.isdigit() or len(idx) < 6:
        return None
    return SegmentName(host, app, sid, stream, int(idx))
