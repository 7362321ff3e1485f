"""The cursor file: how far each segment has been delivered, saved atomically.

An offset here is only ever advanced after the target acknowledged every record before it, so a
restart resumes exactly there (re-sending at most what was in flight; the backend de-duplicates on
(session_id, stream, seq)). Segments are append-only and never renamed, so a per-file offset survives
rotation. The file also remembers each session's writer (host, pid, start) because segment 000000,
which carries it, may be deleted by the session byte cap. With the archiver on, it also records which
segments are in the bucket (their size and sha256 when uploaded), so a restart neither uploads a
segment again nor skips one (agent/archiver.py).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import msgspec


class WriterInfo(msgspec.Struct, frozen=True):
    host: str
    pid: int
    start_ns: int


class Archived(msgspec.Struct, frozen=True):
    """A segment's bytes as uploaded: a segment that grew since is uploaded again (same key)."""

    size: int
    sha256: str


class _State(msgspec.Struct):
    version: int = 1
    segments: dict[str, int] = {}
    writers: dict[str, WriterInfo] = {}
    archived: dict[str, Archived] = {}


class CursorError(RuntimeError):
    pass


class Cursor:
    """Per-segment delivered offsets. Thread-safe; ``save`` writes, fsyncs and renames."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        # The committer and the archiver both save: one writer of the temporary file at a time.
        self._save_lock = threading.Lock()
        self._state = _State()
        self._dirty = False
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        try:
            self._state = msgspec.json.decode(raw, type=_State)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            # A cursor is only ever replaced by rename, so a bad one was not written by us: refuse to
            # guess (starting from zero would re-send everything; starting at the end would lose data).
            raise CursorError(f"cursor file {path} is unreadable ({e}); move it away to start over") from None

    def get(self, segment: str) -> int:
        with self._lock:
            return self._state.segments.get(segment, 0)

    def advance(self, positions: dict[str, int]) -> None:
        with self._lock:
            segs = self._state.segments
            for name, off in positions.items():
                if off > segs.get(name, 0):
                    segs[name] = off
                    self._dirty = True

    def writer(self, session_id: str) -> WriterInfo | None:
        with self._lock:
            return self._state.writers.get(session_id)

    def set_writer(self, session_id: str, info: WriterInfo) -> None:
        with self._lock:
            if self._state.writers.get(session_id) != info:
                self._state.writers[session_id] = info
                self._dirty = True

    def archived(self, segment: str) -> Archived | None:
        with self._lock:
            return self._state.archived.get(segment)

    def set_archived(self, segment: str, info: Archived) -> None:
        with self._lock:
            if self._state.archived.get(segment) != info:
                self._state.archived[segment] = info
                self._dirty = True

    def forget(self, present_segments: set[str], present_sessions: set[str]) -> None:
        """Drop entries of segments (and sessions) no longer in the folder, so the file stays small."""
        with self._lock:
            st = self._state
            for name in [n for n in st.segments if n not in present_segments]:
                del st.segments[name]
                self._dirty = True
            for name in [n for n in st.archived if n not in present_segments]:
                del st.archived[name]
                self._dirty = True
            for sid in [s for s in st.writers if s not in present_sessions]:
                del st.writers[sid]
                self._dirty = True

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._state.segments)

    def save(self) -> None:
        """Write atomically: a crash leaves either the old file or the new one, never a torn one."""
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return
                data = msgspec.json.encode(self._state)
                self._dirty = False
            tmp = f"{self.path}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))


def _fsync_dir(path: str) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_raw(path: str) -> dict[str, Any]:
    """The cursor file as plain data (for tests and operators)."""
    with open(path, "rb") as f:
        out: dict[str, Any] = msgspec.json.decode(f.read())
    return out
