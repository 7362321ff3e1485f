"""The pipeline: one reader thread tails every (session, stream) and builds batches; sender threads
deliver them; the cursor advances in batch order once each batch is acknowledged.

Memory is bounded by construction: the reader blocks when ``queue_batches`` batches wait for a sender,
so at most (senders + queue_batches + one open batch per stream) batches of ``batch_bytes`` are held,
however long the target is down.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpufl.agent import discovery, liveness, tailer
from gpufl.agent.batcher import Batch, BatchBuilder, Piece
from gpufl.agent.cursor import Cursor, WriterInfo
from gpufl.agent.deadletter import DeadLetters
from gpufl.agent.metrics import Metrics
from gpufl.agent.sinks.base import Result, Sink, deliver
from gpufl.contract.events import STREAMS, segment_name

log = logging.getLogger("gpufl.agent")


@dataclass
class Settings:
    folder: str
    cursor_file: str
    dead_letter_file: str
    exit_when_idle: bool = False
    poll_interval: float = 0.5
    batch_records: int = 25_000
    batch_bytes: int = 4 << 20
    read_bytes: int = 1 << 20
    senders: int = 2
    queue_batches: int = 2
    cursor_save_interval: float = 0.5
    status_interval: float = 10.0
    backoff_base: float = 0.2
    backoff_cap: float = 30.0


@dataclass
class _Tail:
    """Read state of one (session, stream)."""

    segments: list[discovery.Segment]
    done_index: int = -1
    """Highest segment index read to its end and closed."""
    waiting_partial: bool = False


@dataclass
class _Committer:
    """Applies acknowledged batches to the cursor strictly in batch order."""

    cursor: Cursor
    dead: DeadLetters
    save_interval: float
    next_id: int = 0
    done: dict[int, Batch] = field(default_factory=dict)
    issued: int = 0
    committed: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)
    last_save: float = 0.0

    def issue(self, batch: Batch) -> None:
        with self.lock:
            batch.id = self.issued
            self.issued += 1

    def complete(self, batch: Batch) -> None:
        with self.lock:
            self.done[batch.id] = batch
            while self.next_id in self.done:
                b = self.done.pop(self.next_id)
                self.cursor.advance(b.positions())
                self.next_id += 1
                self.committed += 1
            self.lock.notify_all()
            due = time.monotonic() - self.last_save >= self.save_interval
        if due:
            self.save()

    def save(self) -> None:
        with self.lock:
            self.last_save = time.monotonic()
            # Dead letters first: the cursor must never point past a line that is neither delivered nor
            # durably dead-lettered.
            self.dead.sync()
            self.cursor.save()

    def idle(self) -> bool:
        with self.lock:
            return self.committed == self.issued


class Agent:
    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        metrics: Metrics | None = None,
        on_system: Callable[[discovery.Segment, bytes], None] | None = None,
    ) -> None:
        self.s = settings
        # Sees every run of good system-stream lines as it is read (the GPU/host metrics, gpumetrics.py).
        self.on_system = on_system
        self.sink = sink
        self.metrics = metrics or Metrics()
        self.cursor = Cursor(settings.cursor_file)
        self.dead = DeadLetters(settings.dead_letter_file)
        self.stop_event = threading.Event()
        self._q: queue.Queue[Batch | None] = queue.Queue(maxsize=settings.queue_batches)
        self._committer = _Committer(self.cursor, self.dead, settings.cursor_save_interval)
        self._tails: dict[discovery.StreamKey, _Tail] = {}
        self._read_off: dict[str, int] = {}
        self._writers: dict[str, tuple[float, WriterInfo | None]] = {}
        self._builders = {s: BatchBuilder(s, settings.batch_records, settings.batch_bytes) for s in STREAMS}
        self._threads: list[threading.Thread] = []
        self._sender_error: BaseException | None = None
        self._pending_since: dict[discovery.StreamKey, float] = {}
        self._refused_sessions: set[str] = set()
        self._refused_lock = threading.Lock()
        self._last_lag = 0.0
        self._last_status = time.monotonic()

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Run until stopped (or idle with ``exit_when_idle``). Returns the process exit code."""
        for i in range(self.s.senders):
            t = threading.Thread(target=self._send_loop, name=f"gpufl-agent-sender-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        code = 0
        try:
            # Measure the backlog before reading any of it: until a scan has, the lag gauges say unknown
            # (NaN), and the first round may spend a while reading and blocked on the senders.
            try:
                self._update_lag(discovery.scan(self.s.folder))
            except OSError:
                pass  # reported by the first round; the lag stays unknown until a scan succeeds
            while not self.stop_event.is_set():
                progressed, waiting = self._round()
                if self._sender_error is not None:
                    log.error("sender failed: %s", self._sender_error)
                    code = 1
                    break
                self._tick()
                if self.s.exit_when_idle and not progressed and not waiting and self._drained():
                    self._update_lag(discovery.scan(self.s.folder))
                    log.info("idle: everything present was delivered; status %s", self.metrics.status_line())
                    break
                if not progressed:
                    self.stop_event.wait(self.s.poll_interval)
        finally:
            self._shutdown()
        return code

    def stop(self) -> None:
        self.stop_event.set()

    def _drained(self) -> bool:
        # Wait for in-flight batches; the next round then sees whether anything new arrived meanwhile.
        with self._committer.lock:
            while not self.stop_event.is_set() and self._committer.committed != self._committer.issued:
                self._committer.lock.wait(0.2)
                self._tick()
        return self._committer.idle() and self._sender_error is None

    def _shutdown(self) -> None:
        for b in self._builders.values():
            batch = b.flush()
            if batch is not None and not self.stop_event.is_set():
                self._enqueue(batch)
        self._drained()
        self.stop_event.set()
        for _ in self._threads:
            try:
                self._q.put_nowait(None)
            except queue.Full:
                break
        for t in self._threads:
            t.join(timeout=10)
        self._committer.save()
        self.dead.close()
        self.sink.close()

    # ---------------------------------------------------------------- sending

    def _send_loop(self) -> None:
        try:
            while True:
                try:
                    batch = self._q.get(timeout=0.2)
                except queue.Empty:
                    if self.stop_event.is_set():
                        return
                    continue
                if batch is None:
                    return
                result = deliver(
                    self.sink, batch, self.stop_event, self.metrics, self.s.backoff_base, self.s.backoff_cap
                )
                if result is None:
                    return  # stopping: not acknowledged, so not committed; re-sent after restart
                self._acknowledged(batch, result)
                self._committer.complete(batch)
        except Exception as e:
            # Reported by run() as one line and exit code 1; the cursor keeps what was acknowledged.
            log.debug("sender failed", exc_info=True)
            self._sender_error = e
            self.stop_event.set()

    def _acknowledged(self, batch: Batch, result: Result) -> None:
        refused: dict[str, list[Any]] = {}  # session -> [records, the backend's reason]
        for r in result.rejected:
            try:
                piece, offset, line = batch.locate(r.index)
            except IndexError:
                log.error("target rejected index %d of a %d-record batch", r.index, batch.count)
                continue
            if r.code == "pruned":
                # The backend's retention deleted this record's session: storing the rest would only make a
                # fragment of it. Final, not transient: pass over it (no retry), and no dead letter either,
                # since nothing is wrong with the line and the segment still holds it for a re-delivery.
                refused.setdefault(piece.session_id, [0, r.reason])[0] += 1
                continue
            self.dead.add(piece.segment, offset, line, f"rejected by target: {r.reason}")
            self.metrics.dead_letter("rejected")
        for sid, (n, reason) in refused.items():
            self.metrics.refused_records("pruned", n)
            with self._refused_lock:
                first = sid not in self._refused_sessions
                self._refused_sessions.add(sid)
            if first:
                log.warning(
                    "session %s: passing over records the target refuses (%s); counted in "
                    "gpufl_agent_records_refused_total, logged once per session",
                    sid,
                    reason,
                )
        self.metrics.delivered(
            batch.stream, batch.count - len(result.rejected), batch.nbytes, result.duplicates
        )

    def _enqueue(self, batch: Batch) -> None:
        self._committer.issue(batch)
        while True:
            try:
                self._q.put(batch, timeout=0.5)
                return
            except queue.Full:
                self._tick()
                if self.stop_event.is_set():
                    # Never delivered, never committed: the next run reads it again.
                    return

    # ---------------------------------------------------------------- reading

    def _round(self) -> tuple[bool, bool]:
        """One scan and one pass over every stream. Returns (read anything, waiting on a partial line)."""
        try:
            found = discovery.scan(self.s.folder)
        except OSError as e:
            # A folder that cannot be listed right now (NFS hiccup) is not an empty folder: forgetting
            # the cursor's entries would re-send everything. Try again next round.
            log.warning("cannot list %s: %s", self.s.folder, e)
            return False, True
        present = {seg.name for segs in found.values() for seg in segs}
        sessions = {key[0] for key in found}
        for key in [k for k in self._tails if k not in found]:
            del self._tails[key]
        for key, segs in found.items():
            tail = self._tails.get(key)
            if tail is None:
                self._tails[key] = _Tail(segs)
            else:
                tail.segments = segs
        self.cursor.forget(present, sessions)
        for name in [n for n in self._read_off if n not in present]:
            del self._read_off[name]

        progressed = False
        waiting = False
        for key, tail in list(self._tails.items()):
            if self.stop_event.is_set():
                break
            p, w = self._read_tail(key, tail)
            progressed |= p
            waiting |= w
        for b in self._builders.values():
            batch = b.flush()
            if batch is not None:
                self._enqueue(batch)
        self._update_lag(found)
        return progressed, waiting

    def _read_tail(self, key: discovery.StreamKey, tail: _Tail) -> tuple[bool, bool]:
        """Read one (session, stream) forward until a batch fills (then other streams get their turn)
        or its data ends. Returns (read anything, waiting on a partial line that will resolve)."""
        session_id, stream = key
        builder = self._builders[stream]
        progressed = False
        tail.waiting_partial = False
        segs = [s for s in tail.segments if s.index > tail.done_index]
        for i, seg in enumerate(segs):
            closed = i + 1 < len(segs)
            offset = self._read_off.get(seg.name)
            if offset is None:
                offset = self.cursor.get(seg.name)
            while True:
                max_lines, max_bytes = builder.room()
                chunk = tailer.read_lines(seg.path, offset, min(self.s.read_bytes, max_bytes), max_lines)
                if chunk is None or not chunk.data:
                    break
                good, n, bad = tailer.validate(chunk.data, chunk.lines)
                offsets = None
                if bad:
                    for b in bad:
                        self.dead.add(seg.name, offset + b.offset, b.line, b.reason)
                        self.metrics.dead_letter("malformed")
                    offsets = _good_offsets(chunk.data, offset, {b.offset for b in bad})
                if stream == "system" and self.on_system is not None:
                    self.on_system(seg, good)
                full = builder.add(Piece(seg.name, session_id, offset, chunk.end, good, n, offsets))
                offset = self._read_off[seg.name] = chunk.end
                progressed = True
                if full is not None:
                    self._enqueue(full)
                    if not chunk.eof:
                        return True, False  # a batch's worth read: other streams get their turn
                if chunk.eof:
                    break
            if chunk is None:
                # Deleted by the session byte cap (or by hand) before we read all of it: not an error.
                self.metrics.vanished.inc()
                log.warning("segment %s vanished at offset %d", seg.name, offset)
                tail.done_index = seg.index
                continue
            if chunk.partial:
                if self._partial_is_final(seg, closed):
                    self.dead.add(seg.name, offset, chunk.partial, _partial_reason(closed))
                    self.metrics.dead_letter("partial")
                    end = offset + len(chunk.partial)
                    full = builder.add(Piece(seg.name, session_id, end, end, b"", 0))
                    if full is not None:
                        self._enqueue(full)
                    self._read_off[seg.name] = end
                    progressed = True
                else:
                    tail.waiting_partial = self._partial_decidable(seg)
                    return progressed, tail.waiting_partial
            if not closed:
                break
            tail.done_index = seg.index
        return progressed, False

    def _writer(self, seg: discovery.Segment) -> WriterInfo | None:
        cached = self._writers.get(seg.session_id)
        now = time.monotonic()
        if cached is not None and (cached[1] is not None or now - cached[0] < 5.0):
            return cached[1]
        info = self.cursor.writer(seg.session_id)
        if info is None:
            for stream in STREAMS:
                zero = os.path.join(self.s.folder, segment_name(seg.host, seg.app, seg.session_id, stream, 0))
                info = liveness.read_writer(zero)
                if info is not None:
                    self.cursor.set_writer(seg.session_id, info)
                    break
        self._writers[seg.session_id] = (now, info)
        return info

    def _partial_is_final(self, seg: discovery.Segment, closed: bool) -> bool:
        if closed:
            return True
        info = self._writer(seg)
        return info is not None and liveness.writer_gone(info)

    def _partial_decidable(self, seg: discovery.Segment) -> bool:
        """Whether waiting for this partial line can end by itself: a local writer either finishes the
        line or dies. For a writer on another host only rotation decides, which may never come, so
        ``--exit-when-idle`` does not wait for it (the line stays uncommitted for the next run)."""
        info = self._writer(seg)
        return info is not None and liveness.is_local(info)

    def _tick(self) -> None:
        """Keep the lag gauges and the status line current, also while the reader is blocked waiting
        for the senders (target down): that is exactly when they matter."""
        now = time.monotonic()
        if now - self._last_lag >= 1.0:
            try:
                self._update_lag(discovery.scan(self.s.folder))
            except OSError:
                pass
        if self.s.status_interval > 0 and now - self._last_status >= self.s.status_interval:
            self._last_status = now
            log.info("status %s", self.metrics.status_line())

    def _update_lag(self, found: dict[discovery.StreamKey, list[discovery.Segment]]) -> None:
        lag = 0
        oldest = 0.0
        now = self._last_lag = time.monotonic()
        committed = self.cursor.snapshot()
        for key, segs in found.items():
            tail = self._tails.get(key)
            done_index = tail.done_index if tail is not None else -1
            pending = 0
            for seg in segs:
                done = committed.get(seg.name, 0)
                if seg.index <= done_index and done >= self._read_off.get(seg.name, 0):
                    continue  # read to its end and all of it acknowledged
                try:
                    size = os.stat(seg.path).st_size
                except FileNotFoundError:
                    continue
                pending += max(0, size - done)
            if pending:
                since = self._pending_since.setdefault(key, now)
                oldest = max(oldest, now - since)
            else:
                self._pending_since.pop(key, None)
            lag += pending
        for key in [k for k in self._pending_since if k not in found]:
            del self._pending_since[key]
        self.metrics.lag_bytes.set(lag)
        self.metrics.lag_seconds.set(oldest)
        self.metrics.lag_known.set(1)
        self.metrics.segments.set(sum(len(v) for v in found.values()))
        self.metrics.sessions.set(len({k[0] for k in found}))


def _partial_reason(closed: bool) -> str:
    why = "a later segment exists" if closed else "the writing process is gone"
    return f"partial last line ({why})"


def _good_offsets(data: bytes, base: int, bad: set[int]) -> list[int]:
    out = []
    pos = 0
    for line in data[:-1].split(b"\n"):
        if pos not in bad:
            out.append(base + pos)
        pos += len(line) + 1
    return out
