"""The dead-letter file: lines that cannot be delivered, with where they came from and why.

One JSON object per line: ``ts`` (unix seconds), ``segment`` (file name), ``offset`` (byte offset of the
line in the segment, or null when unknown), ``reason``, and ``line`` (the raw bytes as text; undecodable
bytes are backslash-escaped). Written before the cursor moves past the line, so a crash can repeat a
dead letter but never lose one.
"""

from __future__ import annotations

import os
import threading
import time

import msgspec


class DeadLetter(msgspec.Struct):
    ts: float
    segment: str
    offset: int | None
    reason: str
    line: str


class DeadLetters:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._f = open(path, "ab")  # noqa: SIM115 - kept open for the agent's lifetime
        self._unsynced = False

    def add(self, segment: str, offset: int | None, line: bytes, reason: str) -> None:
        rec = DeadLetter(time.time(), segment, offset, reason, line.decode("utf-8", "backslashreplace"))
        data = msgspec.json.encode(rec) + b"\n"
        with self._lock:
            self._f.write(data)
            self._unsynced = True

    def sync(self) -> None:
        """Make every dead letter durable (called before the cursor is saved)."""
        with self._lock:
            if not self._unsynced:
                return
            self._f.flush()
            os.fsync(self._f.fileno())
            self._unsynced = False

    def close(self) -> None:
        self.sync()
        with self._lock:
            self._f.close()
