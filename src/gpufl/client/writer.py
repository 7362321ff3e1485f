"""The single writer of one stream: owns its segments, rotation, ``seq`` and dictionary records.

The caller's side (``emit``) is an O(1) append to a bounded deque: the user's thread never blocks on disk
and never encodes JSON. A background thread stamps ``seq``, inserts ``dict`` records before their first use
in each segment, encodes whole chunks in C (msgspec ``encode_lines``) and hands them to the OS every
``flush_interval_s`` — so a SIGKILL loses at most about that much, and leaves at most one partial line.

When the queue is full, records are dropped and counted; the count is written as a ``dropped`` record
(so a drop never leaves a gap in ``seq``: gaps downstream always mean transport loss).
"""

from __future__ import annotations

import collections
import logging
import operator
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from gpufl.client.watchdog import Watchdog
from gpufl.contract import events
from gpufl.contract.events import DictEntry, Dropped, Record, SegmentsDeleted, SessionEnd

_CHUNK = 256  # records encoded per call; rotation happens between chunks (bounds the overshoot)

log = logging.getLogger("gpufl")


@dataclass(frozen=True)
class SegmentFiles:
    """Where a session's segments go, and how they are named."""

    log_dir: str
    host: str
    app: str
    session_id: str

    def path(self, stream: str, index: int) -> str:
        return os.path.join(
            self.log_dir, events.segment_name(self.host, self.app, self.session_id, stream, index)
        )


class DiskBudget:
    """The session-wide byte cap, shared by the three writers: deletes the oldest *closed* segments."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._closed: collections.deque[tuple[str, int]] = collections.deque()  # (path, bytes), oldest first
        self._open: dict[str, int] = {}
        self.write_error: str | None = None  # the first failed write of any stream (disk full, I/O error)

    def write_failed(self, stream: str, log_dir: str, error: BaseException | str) -> None:
        """A stream could not write (disk full, quota, I/O error): it stops writing and counts what it
        drops. Said once per session, whichever stream fails first; the program goes on."""
        with self._lock:
            if self.write_error is not None:
                return
            self.write_error = str(error)
        log.warning(
            "gpufl: cannot write to %s (%s stream: %s): gpufl stops writing this session's logs; "
            "the program goes on, and the records not written are counted (total at shutdown)",
            log_dir,
            stream,
            error,
        )

    def update_open(self, stream: str, size: int) -> None:
        self._open[stream] = size

    def segment_closed(self, stream: str, path: str, size: int) -> list[tuple[str, int]]:
        """Register a closed segment; return the segments deleted to get back under the cap."""
        deleted: list[tuple[str, int]] = []
        with self._lock:
            self._closed.append((path, size))
            self._open[stream] = 0
            if self.max_bytes <= 0:
                return deleted
            total = sum(s for _, s in self._closed) + sum(self._open.values())
            while self._closed and total > self.max_bytes:
                victim, vsize = self._closed.popleft()
                try:
                    os.unlink(victim)
                except FileNotFoundError:
                    pass
                total -= vsize
                deleted.append((victim, vsize))
        return deleted


@dataclass(frozen=True)
class WriterConfig:
    """What a stream's writer is built from, whichever implementation writes it."""

    files: SegmentFiles
    stream: str
    queue_size: int
    segment_max_bytes: int
    segment_max_age_s: float
    flush_interval_s: float
    budget: DiskBudget
    clock: Callable[[], int] = time.time_ns


class RecordWriter(Protocol):
    """One stream's single writer, as the session and the engines use it. Two implementations:
    ``StreamWriter`` (Python: a queue and a writer thread) and ``NativeStreamWriter`` (the device stream's
    writer in C, which the native record path appends to without the GIL). The session picks one per
    stream, once (``writer_class``); nothing else chooses or swaps them."""

    stream: str
    session_id: str
    error: BaseException | None

    @property
    def running(self) -> bool: ...
    @property
    def seq(self) -> int: ...
    @property
    def dropped_total(self) -> int: ...
    @property
    def segments_written(self) -> int: ...
    @property
    def lost(self) -> int: ...

    def watch(self, watchdog: Watchdog) -> None:
        """Let the watchdog see this writer's write steps (it disables gpufl if one hangs)."""
        ...

    def start(self) -> None: ...

    def emit(self, record: Record) -> bool:
        """Queue a record; never blocks; False when it was dropped."""
        ...

    def intern(self, kind: str, key: Any, make: Callable[[], DictEntry]) -> int: ...

    def intern_string(self, kind: str, value: str) -> int: ...

    def flush(self, timeout: float = 5.0) -> None: ...

    def disable(self) -> None: ...

    def close(self, end: SessionEnd | None = None, timeout: float = 10.0) -> None: ...


def writer_class(native: bool) -> Callable[[WriterConfig], RecordWriter]:
    """The implementation a stream gets: chosen once per stream by the session (``native``: the native
    record path runs and writes this stream)."""
    return NativeStreamWriter if native else StreamWriter.from_config


class Interner:
    """Ids of interned values, a counter per dict kind: the first time a key is seen, ``make`` builds its dict
    record, which gets its kind and id and goes to ``on_new`` (the writer keeps or writes it). Lock-free
    when the key is known; both writers use it."""

    def __init__(self, session_id: str, stream: str, on_new: Callable[[DictEntry], None]) -> None:
        self.session_id = session_id
        self.stream = stream
        self._on_new = on_new
        self._ids: dict[tuple[str, Any], int] = {}
        self._next_id: dict[str, int] = collections.defaultdict(int)
        self._lock = threading.Lock()

    def intern(self, kind: str, key: Any, make: Callable[[], DictEntry]) -> int:
        ident = self._ids.get((kind, key))
        if ident is not None:
            return ident
        with self._lock:
            ident = self._ids.get((kind, key))
            if ident is None:
                ident = self._next_id[kind]
                self._next_id[kind] = ident + 1
                entry = make()
                entry.kind = kind  # type: ignore[assignment]
                entry.id = ident
                self._on_new(entry)
                self._ids[(kind, key)] = ident
        return ident

    def intern_string(self, kind: str, value: str) -> int:
        return self.intern(
            kind,
            value,
            lambda: DictEntry(session_id=self.session_id, stream=self.stream, kind=kind, id=0, value=value),  # type: ignore[arg-type]
        )

    def adopt(self, entry: DictEntry, keep: Callable[[DictEntry], None]) -> None:
        """A dict entry with its own id (a replayed recording): later ids of its kind come after it."""
        with self._lock:
            keep(entry)
            self._next_id[entry.kind] = max(self._next_id[entry.kind], entry.id + 1)


class StreamWriter:
    def __init__(
        self,
        files: SegmentFiles,
        stream: str,
        *,
        queue_size: int,
        segment_max_bytes: int,
        segment_max_age_s: float,
        flush_interval_s: float,
        budget: DiskBudget | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = WriterConfig(
            files,
            stream,
            queue_size,
            segment_max_bytes,
            segment_max_age_s,
            flush_interval_s,
            budget or DiskBudget(0),
            clock,
        )
        self.files = files
        self.stream = stream
        self.session_id = files.session_id
        self._cap = queue_size
        self._max_bytes = segment_max_bytes
        self._max_age_ns = int(segment_max_age_s * 1e9)
        self._interval = flush_interval_s
        self._budget = self.config.budget
        self._clock = clock

        self._q: collections.deque[Record] = collections.deque()
        self._accepting = True
        self._stop = threading.Event()
        self._wake = threading.Event()

        # Interning (caller side): entries by (kind, id), re-written at the head of every segment.
        self._entries: dict[tuple[str, int], DictEntry] = {}
        self._interner = Interner(self.session_id, stream, self._keep_entry)

        # Drop accounting (caller side, rare path).
        self._drop_lock = threading.Lock()
        self._dropped_pending = 0
        self._dropped_by_type: dict[str, int] = collections.defaultdict(int)
        self._dropped_first = 0
        self._dropped_last = 0
        self.dropped_total = 0

        # Writer-thread state.
        self.seq = 0
        self._index = 0
        self._fd = -1
        self._size = 0
        self._opened_ns = 0
        self._in_segment: dict[str, set[int]] = collections.defaultdict(set)
        # type -> ((getter, kind), ...): attrgetter is several times cheaper than getattr in the hot loop.
        self._refs_by_type = {
            events.TYPE_BY_TAG[tag]: tuple((operator.attrgetter(attr), kind) for attr, kind in refs)
            for tag, refs in events.DICT_REFS.items()
        }
        self.segments_written = 0
        self.error: BaseException | None = None
        self.lost = 0  # records not written because writing failed (disk full, I/O error)
        self.watchdog: Watchdog | None = None
        self._busy_name = f"{stream} writer"  # the watchdog's name for this thread's write step

        self._thread = threading.Thread(target=self._run, name=f"gpufl-writer-{stream}", daemon=True)

    @classmethod
    def from_config(cls, c: WriterConfig) -> StreamWriter:
        return cls(
            c.files,
            c.stream,
            queue_size=c.queue_size,
            segment_max_bytes=c.segment_max_bytes,
            segment_max_age_s=c.segment_max_age_s,
            flush_interval_s=c.flush_interval_s,
            budget=c.budget,
            clock=c.clock,
        )

    # ---------------------------------------------------------------- caller side (any thread)

    def watch(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog  # the writer thread marks its write steps busy (_write_all)

    def start(self) -> None:
        os.makedirs(self.files.log_dir, exist_ok=True)
        try:
            self._open_segment()
        except OSError as e:  # e.g. the disk is full already: this stream counts instead of writing
            self.error = e
            self._budget.write_failed(self.stream, self.files.log_dir, e)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def emit(self, record: Record) -> bool:
        """Queue a record for writing. Never blocks; returns False if it was dropped."""
        if self._accepting and len(self._q) < self._cap:
            self._q.append(record)
            return True
        if self._accepting:
            self._count_drop(record)
        return False

    def _keep_entry(self, entry: DictEntry) -> None:
        self._entries[(entry.kind, entry.id)] = entry

    def intern(self, kind: str, key: Any, make: Callable[[], DictEntry]) -> int:
        """Id of an interned value (``make`` builds its dict record the first time ``key`` is seen)."""
        return self._interner.intern(kind, key, make)

    def register(self, entry: DictEntry) -> None:
        """Adopt a dict entry with its own id (replaying a recorded session); interned keys stay separate."""
        self._interner.adopt(entry, self._keep_entry)

    def intern_string(self, kind: str, value: str) -> int:
        return self._interner.intern_string(kind, value)

    def _count_drop(self, record: Record) -> None:
        now = self._clock()
        with self._drop_lock:
            if self._dropped_pending == 0:
                self._dropped_first = now
            self._dropped_last = now
            self._dropped_pending += 1
            self.dropped_total += 1
            self._dropped_by_type[events.type_tag(type(record))] += 1

    def disable(self) -> None:
        """Stop accepting records (the watchdog found a gpufl thread stuck); never blocks."""
        self._accepting = False

    def close(self, end: SessionEnd | None = None, timeout: float = 10.0) -> None:
        """Stop accepting, write everything queued, then ``end`` as the last record, and close."""
        self._accepting = False
        self._end = end
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def flush(self, timeout: float = 5.0) -> None:
        """Block until everything queued before this call is handed to the OS."""
        deadline = time.monotonic() + timeout
        while self._q and time.monotonic() < deadline and self._thread.is_alive():
            self._wake.set()
            time.sleep(0.001)

    # ---------------------------------------------------------------- writer thread

    _end: SessionEnd | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self._interval)
                self._wake.clear()
                self._drain()
            self._drain()
            end = self._end
            if end is not None:
                end.records = self.seq + 1
                end.dropped = self.dropped_total
                self._write_chunk([end])
        except BaseException as e:  # never let a writer error reach the user's program
            self.error = e
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _drain(self) -> None:
        q = self._q
        while True:
            chunk: list[Record] = []
            if self._dropped_pending:
                chunk.append(self._take_drop_record())
            popleft = q.popleft
            try:
                for _ in range(_CHUNK):
                    chunk.append(popleft())
            except IndexError:
                pass
            if not chunk:
                return
            self._write_chunk(chunk)
            if len(chunk) < _CHUNK:
                return

    def _take_drop_record(self) -> Dropped:
        with self._drop_lock:
            rec = Dropped(
                session_id=self.session_id,
                stream=self.stream,  # type: ignore[arg-type]
                count=self._dropped_pending,
                first_ns=self._dropped_first,
                last_ns=self._dropped_last,
                by_type=dict(self._dropped_by_type),
            )
            self._dropped_pending = 0
            self._dropped_by_type.clear()
        return rec

    def _write_chunk(self, chunk: list[Record]) -> None:
        if self.lost or self._fd < 0:  # writing failed before: count, never retry into a full disk
            self.lost += len(chunk)
            return
        try:
            if self.watchdog is None:
                self._encode_and_write(chunk)
            else:
                with self.watchdog.busy(self._busy_name):
                    self._encode_and_write(chunk)
        except OSError as e:
            self.error = e
            self.lost += len(chunk)  # a partial line at most reached the file; the reader skips it
            self._budget.write_failed(self.stream, self.files.log_dir, e)

    def _encode_and_write(self, chunk: list[Record]) -> None:
        if self._size >= self._max_bytes or (
            self._size > 0 and self._clock() - self._opened_ns >= self._max_age_ns
        ):
            self._rotate()
        out: list[Record] = []
        append = out.append
        seq = self.seq
        in_seg = self._in_segment
        refs_by_type = self._refs_by_type
        for rec in chunk:
            refs = refs_by_type.get(rec.__class__)
            if refs is not None:
                for get, kind in refs:
                    ident = get(rec)
                    if ident is not None:
                        seen = in_seg[kind]
                        if ident not in seen:
                            entry = self._entries.get((kind, ident))
                            if entry is not None:
                                entry = msgspec.structs.replace(entry, seq=seq)
                                seq += 1
                                append(entry)
                                seen.add(ident)
            rec.seq = seq
            seq += 1
            append(rec)
        data = _encoder.encode_lines(out)
        self._write_all(data)
        self.seq = seq

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self._budget.update_open(self.stream, self._size)

    def _open_segment(self) -> None:
        path = self.files.path(self.stream, self._index)
        # O_EXCL: a segment is never rewritten; O_APPEND: a crash can only truncate the last line.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0
        self._opened_ns = self._clock()
        self._in_segment = collections.defaultdict(set)
        self.segments_written += 1

    def _rotate(self) -> None:
        old_path = self.files.path(self.stream, self._index)
        os.close(self._fd)
        self._fd = -1
        deleted = self._budget.segment_closed(self.stream, old_path, self._size)
        self._index += 1
        self._open_segment()  # OSError (disk full) reaches _write_chunk, which stops this stream
        if deleted:
            rec = SegmentsDeleted(
                session_id=self.session_id,
                stream=self.stream,  # type: ignore[arg-type]
                files=[os.path.basename(p) for p, _ in deleted],
                bytes=sum(s for _, s in deleted),
                ts_ns=self._clock(),
            )
            rec.seq = self.seq
            self.seq += 1
            self._write_all(_encoder.encode_lines([rec]))


_encoder = msgspec.json.Encoder()


class NativeStreamWriter:
    """The device stream's writer in C (``gpufl.client._native.Writer``), with ``StreamWriter``'s interface.

    The native tracing engine appends kernel/memcpy/memset lines to it from CUPTI's buffer thread without
    the GIL; the few records Python writes (session_start/end, notices) are encoded here and given their
    ``seq`` in C, in order with the rest. Dictionary records work as in ``StreamWriter``: written before
    their first use in each segment. Launch configurations and stacks are interned in C; the other kinds
    are interned here and handed to C.
    """

    def __init__(self, config: WriterConfig | StreamWriter, max_pending_bytes: int = 64 << 20) -> None:
        """``config``: a WriterConfig, or a StreamWriter's (the tests build one that way)."""
        from gpufl.client import _native  # type: ignore[attr-defined]

        c = config.config if isinstance(config, StreamWriter) else config
        self._native = _native
        self.files = c.files
        self.stream = c.stream
        self.session_id = c.files.session_id
        self._budget = c.budget
        self._clock = c.clock
        prefix, suffix = _split_segment_path(c.files, c.stream)
        self._w = _native.Writer(
            prefix,
            suffix,
            self.session_id,
            c.stream,
            c.segment_max_bytes,
            c.segment_max_age_s,
            c.flush_interval_s,
            max_pending_bytes,
            self._segment_closed,
            self._write_failed,
        )
        self._kinds = {
            k: getattr(_native, f"DICT_{k.upper()}") for k in ("launch", "stack", "kernel", "scope", "thread")
        }
        self._refs_by_type = {
            events.TYPE_BY_TAG[tag]: tuple((operator.attrgetter(attr), kind) for attr, kind in refs)
            for tag, refs in events.DICT_REFS.items()
        }
        self._interner = Interner(self.session_id, self.stream, self._write_entry)
        self._running = False
        self._accepting = True
        self.error: BaseException | None = None

    @property
    def native(self) -> Any:
        return self._w

    @property
    def running(self) -> bool:
        return self._running

    @property
    def seq(self) -> int:
        return int(self._w.stats()["seq"])

    @property
    def dropped_total(self) -> int:
        return int(self._w.stats()["dropped"])

    @property
    def segments_written(self) -> int:
        return int(self._w.stats()["segments"])

    @property
    def lost(self) -> int:
        return int(self._w.stats()["lost"])

    def watch(self, watchdog: Watchdog) -> None:
        watchdog.watch(f"{self.stream} writer", self._w.busy_s)  # its flush thread is C: it reports itself

    def start(self) -> None:
        os.makedirs(self.files.log_dir, exist_ok=True)
        self._w.start()
        self._running = True

    def emit(self, record: Record) -> bool:
        if not (self._running and self._accepting):
            return False
        refs: tuple[tuple[int, int], ...] = ()
        getters = self._refs_by_type.get(record.__class__)
        if getters:
            refs = tuple(
                (self._kinds[kind], ident) for get, kind in getters if (ident := get(record)) is not None
            )
        record.seq = -1  # omitted from the line: C inserts the real one
        self._w.emit_line(_encoder.encode(record), refs)
        return True

    def intern(self, kind: str, key: Any, make: Callable[[], DictEntry]) -> int:
        if kind in ("launch", "stack"):
            raise ValueError(f"{kind} entries are interned by the native engine")
        return self._interner.intern(kind, key, make)

    def _write_entry(self, entry: DictEntry) -> None:
        entry.seq = -1
        self._w.set_dict(self._kinds[entry.kind], entry.id, _encoder.encode(entry))

    def intern_string(self, kind: str, value: str) -> int:
        return self._interner.intern_string(kind, value)

    def register(self, entry: DictEntry) -> None:
        raise ValueError("replaying recorded dictionaries goes through StreamWriter")

    def flush(self, timeout: float = 5.0) -> None:
        self._w.flush()

    def disable(self) -> None:
        """Stop accepting records (the watchdog found a gpufl thread stuck); never blocks."""
        self._accepting = False

    def close(self, end: SessionEnd | None = None, timeout: float = 10.0) -> None:
        if not self._running:
            return
        self._running = False
        line = None
        if end is not None:
            stats = self._w.stats()
            end.records = int(stats["seq"]) + 1
            end.dropped = int(stats["dropped"])
            end.seq = -1
            line = _encoder.encode(end)
        self._w.close(line)
        stats = self._w.stats()
        if stats["error"]:  # a failure in the last writes, after the flush thread ended
            self._write_failed(str(stats["error_message"]))

    def _write_failed(self, message: str) -> None:
        """From the C flush thread (with the GIL), once: this stream stopped writing."""
        try:
            self._budget.write_failed(self.stream, self.files.log_dir, message)
        except BaseException as e:  # never raise into the C thread
            self.error = e

    def _segment_closed(self, path: str, size: int) -> None:
        """From the C flush thread (with the GIL): the session's disk budget, shared with the other streams."""
        try:
            deleted = self._budget.segment_closed(self.stream, path, size)
            if deleted:
                rec = SegmentsDeleted(
                    session_id=self.session_id,
                    stream=self.stream,  # type: ignore[arg-type]
                    files=[os.path.basename(p) for p, _ in deleted],
                    bytes=sum(s for _, s in deleted),
                    ts_ns=self._clock(),
                )
                self._w.emit_line(_encoder.encode(rec), ())
        except BaseException as e:  # never raise into the C thread
            self.error = e


def _split_segment_path(files: SegmentFiles, stream: str) -> tuple[str, str]:
    """(prefix, suffix) around the 6-digit segment index of ``files.path(stream, i)``."""
    probe = files.path(stream, 123456)
    at = probe.rindex("123456")
    return probe[:at], probe[at + 6 :]
