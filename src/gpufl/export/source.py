"""A recorded session as three record iterators (device, scope, system), read lazily from its log folder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gpufl.contract import events

STREAMS = ("device", "scope", "system")


@dataclass(frozen=True)
class LogSession:
    """One session's segment files, per stream, in index order."""

    session_id: str
    segments: dict[str, list[Path]]

    def records(self, stream: str) -> Iterator[events.Record]:
        """The stream's records in file order, decoded one line at a time (a bad line raises ContractError
        naming the file and line: an export never skips what it cannot read)."""
        for path in self.segments.get(stream, []):
            with path.open("rb") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        yield events.decode(line)
                    except events.ContractError as e:
                        raise events.ContractError(f"{path}:{n}: {e}") from None


def find_sessions(folder: Path) -> dict[str, LogSession]:
    """Every session with segments in ``folder`` (not recursive), by session id."""
    found: dict[str, dict[str, list[tuple[int, Path]]]] = {}
    for path in folder.glob("*.log"):
        name = events.parse_segment_name(path.name)
        if name is None:
            continue
        found.setdefault(name.session_id, {}).setdefault(name.stream, []).append((name.index, path))
    return {
        sid: LogSession(sid, {s: [p for _, p in sorted(segs)] for s, segs in streams.items()})
        for sid, streams in found.items()
    }
