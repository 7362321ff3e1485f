"""The ingest path shared by HTTP and Kafka: body → records → validate → dedup + store.

A batch is first decoded whole (msgspec, in chunks of whole lines) and checked column-wise; only a batch
with a bad record (or one the store can't take as is) is redone record by record (``gpufl.contract.events.decode``),
so that one bad record is rejected with its reason while the rest of the batch is stored.

Where the store can parse NDJSON itself (DuckDB's ``read_json``, which runs without the GIL), a batch of
one bulk record type goes to it as text: msgspec's decode stays the judge of what is valid, the store's
parser only supplies the columns (see ``SqlStore.ingest_json``), and any disagreement sends the batch
down the Python path instead. The engine's parse runs in a helper thread while msgspec decodes the same
text in the request's thread (its first and last lines give the type to parse for); the helper writes
nothing until the decode has cleared the batch, and throws its parse away otherwise.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import typing
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import msgspec

from gpufl.backend.store import IngestOutcome, SqlStore, ValueOutOfRange
from gpufl.backend.store.json_ingest import JSON_TYPES
from gpufl.contract import checks
from gpufl.contract import events as ev
from gpufl.contract.protocol import PRUNED, REDELIVER_HEADER, IngestResult, Rejection

log = logging.getLogger("gpufl.backend.ingest")

_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_SEQ_PROBE = msgspec.json.Decoder(dict[str, Any])


class BadBody(ValueError):
    """Nothing in the body is usable (not JSON / NDJSON, broken gzip)."""


class TooLarge(ValueError):
    """Over a body or batch limit (→ 413)."""


# ---- records of sessions that retention deleted ----------------------------------------------------------


_logged_refusals: dict[str, None] = {}
"""Sessions whose refusal this process has logged (insertion-ordered, bounded): logged once, not per batch."""
_logged_lock = threading.Lock()


def _pruned_reason(sid: str, redeliver: bool) -> str:
    if redeliver:
        return (
            f"session {sid} was deleted by retention: a re-delivery ({REDELIVER_HEADER}: 1) re-creates it only "
            "from a batch that holds its session_start record"
        )
    return (
        f"session {sid} was deleted by retention: its late records are refused (re-deliver the whole session "
        f"with {REDELIVER_HEADER}: 1 to restore it)"
    )


def _refuse(
    res: IngestResult,
    out: IngestOutcome,
    recs: Sequence[ev.Record],
    idx: Sequence[int] | None,
    redeliver: bool,
) -> IngestResult:
    """Add the store's refusals (``out.refused``: positions in ``recs``, whose batch indices are ``idx``, or
    the same positions when None) to ``res`` as per-line rejections with code ``pruned``."""
    if not out.refused:
        return res
    for sid, positions in out.refused.items():
        reason = _pruned_reason(sid, redeliver)
        res.rejected.extend(
            Rejection(p if idx is None else idx[p], recs[p].seq, reason, PRUNED) for p in positions
        )
        with _logged_lock:
            first = sid not in _logged_refusals
            if first:
                _logged_refusals[sid] = None
                if len(_logged_refusals) > 10_000:
                    del _logged_refusals[next(iter(_logged_refusals))]
        if first:
            log.warning(
                "refusing records of session %s: it was deleted by retention (%d in this batch%s; logged "
                'once per session, counted in gpufl_ingest_rejected_records_total{reason="pruned"})',
                sid,
                len(positions),
                ", a re-delivery without its session_start" if redeliver else "",
            )
    res.rejected.sort(key=lambda r: r.index)
    return res


_SLICE = 1 << 20
"""Bytes decompressed per step: each slice is charged to the memory budget before the next is made (and
zlib's output buffer for a step, up to twice the slice, is short-lived)."""
_GZIP_MAGIC = b"\x1f\x8b"


def gunzip(body: bytes, max_bytes: int, charge: Callable[[bytes], None] | None = None) -> bytes:
    """Decompress every member of a gzip body (RFC 1952 2.2: a gzip file is a series of members, which
    ``gzip -c a b`` and appending writers produce; zlib stops at the end of the first), refusing to inflate
    past ``max_bytes`` in all (a gzip bomb is a 413, not an OOM) and refusing bytes after the last member
    that do not start another: the body would otherwise be stored in part with nothing said.

    Slice by slice (``_SLICE``), each handed to ``charge`` (the memory budget) before the next is made.
    zlib itself, not the ``gzip`` module, because the module's reader is ~1.7x slower (8 KiB reads: 14 vs
    8 ms for a 50,000-kernel batch) and accepts zero padding after the last member."""
    parts: list[bytes] = []
    total = 0
    data = body
    while True:
        d = zlib.decompressobj(wbits=31)  # one gzip member: header, deflate stream, CRC-32 and size checked
        while True:
            room = min(_SLICE, max_bytes + 1 - total)
            try:
                out = d.decompress(data, room)
            except zlib.error as e:
                raise BadBody(f"body is not valid gzip: {e}") from None
            total += len(out)
            if total > max_bytes:
                raise TooLarge(f"decompressed body exceeds {max_bytes} bytes (max_decompressed_bytes)")
            if out:
                if charge is not None:
                    charge(out)
                parts.append(out)
            data = d.unconsumed_tail
            if d.eof or (not data and len(out) < room):
                break  # the member ended, or the input did (and nothing is left inside zlib)
        if not d.eof:
            raise BadBody("body is not valid gzip: truncated (a member ends before its end-of-stream marker)")
        data = d.unused_data
        if not data:
            break
        if not data.startswith(_GZIP_MAGIC[: len(data)]):
            raise BadBody(
                f"body is not valid gzip: {len(data)} trailing bytes after the last gzip member "
                f"(starting {data[:8]!r}) are not another member"
            )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def split_records(body: bytes, json_array: bool | None = None) -> list[bytes]:
    """The raw records of a JSON array or NDJSON body (detected from the first non-blank byte when
    ``json_array`` is None)."""
    stripped = body.lstrip()
    if json_array is None:
        json_array = stripped.startswith(b"[")
    if json_array:
        try:
            return [bytes(r) for r in _RAW_LIST.decode(body)]
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise BadBody(f"body is not a JSON array of records: {e}") from None
        except RecursionError:
            raise BadBody("body is not a JSON array of records: nested too deeply") from None
    return [line for line in body.split(b"\n") if line.strip()]


_NON_SPACE = re.compile(rb"\S")


def ingest_body(
    store: SqlStore,
    stream: str,
    body: bytes,
    json_array: bool | None,
    max_records: int,
    redeliver: bool = False,
    max_sessions: int | None = None,
) -> IngestResult:
    """Ingest a request body: a JSON array or NDJSON (detected from the first non-blank byte when
    ``json_array`` is None). Raises BadBody (nothing usable, no records) or TooLarge (over ``max_records``).
    ``redeliver``: the body is part of a deliberate re-delivery of whole sessions (``SqlStore.ingest``).
    ``max_sessions``: the most sessions one batch may hold records of (TooLarge past it; None: no limit).

    NDJSON is decoded without splitting it into lines first (its newlines become the commas of one JSON
    array); it is split only when that fails (a blank line, a bad record) or when the store needs one size
    per record."""
    if json_array is None:
        m = _NON_SPACE.search(body)
        json_array = m is not None and m.group() == b"["
    tried = 0  # lines of an NDJSON body whose whole-batch decode failed
    if not json_array:
        # The lines end at ``end`` (trailing newlines aside): no copy of the body without them.
        end = len(body)
        while end and body[end - 1] == 10:  # b"\n"
            end -= 1
        n = body.count(b"\n", 0, end) + 1
        if end and n <= max_records:
            with _gc_paused():
                res = _ingest_lines(store, stream, body, n, end, redeliver, max_sessions)
            if res is not None:
                return res
            tried = n
    raws = split_records(body, json_array)
    if len(raws) > max_records:
        raise TooLarge(f"batch of {len(raws)} records exceeds {max_records}")
    if not raws:
        raise BadBody("no records in body")
    with _gc_paused():
        # Without blank lines the lines are the records already tried whole: go record by record.
        return _ingest_raws(store, stream, raws, len(raws) != tried, redeliver, max_sessions)


def _probe_seq(raw: bytes) -> int | None:
    try:
        seq = _SEQ_PROBE.decode(raw).get("seq")
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


_BATCH: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[ev.Event])
_FIELDS = {t: [f.name for f in msgspec.structs.fields(t)] for t in ev.EVENT_TYPES}
# Every number's range is a constraint of the contract's types, which ``_BATCH`` enforces as it decodes: a
# batch with a value out of range fails to decode whole and is redone record by record, where that record
# is rejected with its reason.

Columns = dict[type[ev.Record], dict[str, Sequence[Any]]]

# Record types whose batches the store may parse itself (``SqlStore.ingest_json``).
JSON_CLASSES = frozenset(ev.TYPE_BY_TAG[tag] for tag in JSON_TYPES)


def _validate_fast(stream: str, raws: list[bytes]) -> tuple[list[ev.Record], Columns] | None:
    """All records, and per record type the columns of its fields (built once here, reused by the store),
    if every record passes exactly the checks of ``_validate_slow``; else None."""
    body = b"[" + b",".join(raws) + b"]"
    if checks.NUL_ESCAPE in body:
        return None
    try:
        recs: list[ev.Record] = _BATCH.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    # Each non-blank line must be exactly one value: equal counts mean no line held two or none.
    if len(recs) != len(raws):
        return None
    columns = _checked_columns(stream, recs)
    return None if columns is None else (recs, columns)


def _checked_columns(stream: str, recs: list[ev.Record]) -> Columns | None:
    """Per record type, the columns of its records' fields, if every record passes the contract's checks (``gpufl.contract.checks``); else None."""
    groups: dict[type[ev.Record], list[ev.Record]]
    if len(set(map(type, recs))) == 1:  # the usual batch: one type
        groups = {type(recs[0]): recs}
    else:
        groups = defaultdict(list)
        for r in recs:
            groups[type(r)].append(r)
    columns: Columns = {}
    for t, rs in groups.items():
        # One astuple per record, then a transpose, both in C: ~40 % faster than an attrgetter per field.
        cols: dict[str, Sequence[Any]] = dict(
            zip(_FIELDS[t], zip(*map(_astuple, rs), strict=True), strict=True)
        )
        if not checks.columns_ok(t, rs, cols, stream):
            return None
        columns[t] = cols
    return columns


_astuple = msgspec.structs.astuple


def _validate_slow(stream: str, raws: list[bytes]) -> tuple[list[ev.Record], list[int], IngestResult]:
    res = IngestResult(0, 0, [])
    good: list[ev.Record] = []
    sizes: list[int] = []
    check_posted = checks.check_posted
    for i, raw in enumerate(raws):
        try:
            rec = check_posted(raw, stream)
        except ev.ContractError as e:  # the only error check_posted raises, whatever the bytes
            res.rejected.append(Rejection(i, _probe_seq(raw), _reason(raw, e)))
            continue
        good.append(rec)
        sizes.append(len(raw))
    return good, sizes, res


_BAD_CHAR = re.compile(r"invalid character \(byte (\d+)\)")


def _reason(raw: bytes, e: ev.ContractError) -> str:
    """The rejection reason for ``raw``: the contract's, or, where the decoder stopped at a raw control
    character (RFC 8259 7: U+0000..U+001F must be escaped in strings, and only tab, LF, CR are whitespace;
    msgspec and DuckDB's reader both refuse them), one that names it."""
    msg = str(e)
    m = _BAD_CHAR.search(msg) if msg.startswith("malformed JSON") else None
    if m is not None and int(m.group(1)) < len(raw) and raw[int(m.group(1))] < 0x20:
        pos = int(m.group(1))
        return (
            f"malformed JSON: unescaped control character U+{raw[pos]:04X} at byte {pos} "
            f"(JSON strings must escape U+0000..U+001F, e.g. \\u{raw[pos]:04x})"
        )
    return msg[:500]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch (at most ``max_batch_records``) is decoded, turned
    into columns and stored: tens of thousands of allocations would each count towards a collection
    (measured ~20 % of the decode + column building). Only the thread that paused it resumes it, so
    concurrent batches never leave it off."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def ingest_raws(store: SqlStore, stream: str, raws: list[bytes]) -> IngestResult:
    """Ingest a batch given as its raw records (the Kafka bridge, tests)."""
    with _gc_paused():
        if raws:
            text = b"\n".join(raws)
            if text.count(b"\n") == len(raws) - 1:  # one line per record: the NDJSON path
                res = _ingest_lines(store, stream, text, len(raws))
                return res if res is not None else _ingest_raws(store, stream, raws, fast=False)
        return _ingest_raws(store, stream, raws)


class _LineSizes(Sequence[int]):
    """The encoded size of each line of an NDJSON text (``n`` lines), split only when one is asked for: the
    store needs only ``total`` when every record of the batch is new (the usual batch)."""

    def __init__(self, text: bytes, n: int) -> None:
        self._text = text
        self._n = n
        self._sizes: list[int] | None = None
        self.total = len(text) - (n - 1)

    def __len__(self) -> int:
        return self._n

    @typing.overload
    def __getitem__(self, i: int) -> int: ...
    @typing.overload
    def __getitem__(self, i: slice) -> list[int]: ...
    def __getitem__(self, i: int | slice) -> int | list[int]:
        if self._sizes is None:
            self._sizes = list(map(len, self._text.split(b"\n")))
        return self._sizes[i]


_CHUNK = 256 * 1024
"""Bytes of NDJSON decoded per msgspec call (~1 ms): between calls the GIL can pass to the thread writing
the previous batch, whose DuckDB queries need it briefly, again and again (see the backend CLI)."""


def _decode_lines(text: bytes, stop: int) -> list[ev.Record] | None:
    """The records of the NDJSON lines of ``text[:stop]`` (their newlines turned into the commas of JSON
    arrays), decoded in chunks of whole lines; None if any chunk does not decode."""
    arr = memoryview(text.replace(b"\n", b","))  # same length: a line ends at the same offset in both
    recs: list[ev.Record] = []
    start = 0
    try:
        while start < stop:
            end = text.find(b"\n", start + _CHUNK, stop)
            if end < 0:
                end = stop
            recs += _BATCH.decode(b"".join((b"[", arr[start:end], b"]")))  # one copy of the chunk
            start = end + 1
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return recs


_ONE: msgspec.json.Decoder[Any] = msgspec.json.Decoder(ev.Event)
_PARSERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gpufl-ingest-json")
"""Threads that run ``SqlStore.ingest_json`` for a batch while its request's thread decodes it (the engine's
parse releases the GIL): each waits for that decode's verdict before it writes, so at most one per batch in
flight is busy or waiting (``max_inflight_ingests``, 8 by default; more only queue)."""


class _Verdict:
    """Whether msgspec's decode cleared the batch for the engine's parse, once known."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._ok = False

    def set(self, ok: bool) -> None:
        self._ok = ok
        self._done.set()

    def wait(self) -> bool:
        self._done.wait()
        return self._ok


def _guess_type(body: bytes, end: int) -> type[ev.Record] | None:
    """The record type of the first and the last line of ``body[:end]`` if they are of one type (a guess at
    the batch's: the decode decides), else None."""
    first = body.find(b"\n", 0, end)
    last = body.rfind(b"\n", 0, end) + 1
    try:
        a = type(_ONE.decode(body[: end if first < 0 else first]))
        b = type(_ONE.decode(body[last:end]))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return a if a is b else None


def _ingest_lines(
    store: SqlStore,
    stream: str,
    body: bytes,
    n: int,
    end: int | None = None,
    redeliver: bool = False,
    max_sessions: int | None = None,
) -> IngestResult | None:
    """Ingest the NDJSON ``body[:end]`` (``end``: after its last line's last byte, the rest of ``body``
    newlines, if any) of ``n`` lines (none of them blank if it is to decode), or None when the batch does
    not decode whole with one record per line (a bad record, a blank line): the caller then splits it and
    goes record by record."""
    if end is None:
        end = len(body)
    escaped = b"\\" in body  # memchr: ~25x faster than looking for the 6-byte escape below
    if escaped and checks.NUL_ESCAPE in body:
        return None
    # No escapes: every string reads the same in any JSON parser. The trailing newlines are harmless to the
    # engine's reader (no copy without them).
    jsonable = store.json_stage and not escaped
    pending: Future[IngestOutcome | None] | None = None
    verdict = _Verdict()
    guess = _guess_type(body, end) if jsonable else None
    if guess is not None and guess in JSON_CLASSES and ev.type_tag(guess) in ev.STREAM_TYPES[stream]:
        # The engine parses the batch while msgspec decodes it here; it writes nothing before the verdict.
        pending = _PARSERS.submit(store.ingest_json, stream, guess, body, n, end - (n - 1), verdict.wait)
    decoded = one_type = False
    t0: type[ev.Record] | None = None
    try:
        recs = _decode_lines(body, end)
        # Each line must be exactly one value: equal counts mean no line held two (two values without a
        # comma between them don't decode at all).
        decoded = recs is not None and len(recs) == n
        t0 = type(recs[0]) if recs else None
        one_type = decoded and len(set(map(type, recs))) == 1  # type: ignore[arg-type]
    finally:
        verdict.set(pending is not None and decoded and one_type and t0 is guess)
    if pending is not None:
        out = pending.result()
        if out is not None:
            return IngestResult(out.stored, out.duplicates, [])
    if not decoded:
        return None
    assert recs is not None and t0 is not None
    _check_sessions(recs, max_sessions)
    if (
        pending is None
        and jsonable
        and t0 in JSON_CLASSES
        and ev.type_tag(t0) in ev.STREAM_TYPES[stream]
        and one_type
    ):
        out = store.ingest_json(stream, t0, body, n, end - (n - 1))
        if out is not None:
            return IngestResult(out.stored, out.duplicates, [])
    text = body if end == len(body) else body[:end]
    columns = _checked_columns(stream, recs)
    if columns is not None:
        try:
            out = store.ingest(stream, recs, _LineSizes(text, n), columns=columns, redeliver=redeliver)
            return _refuse(IngestResult(out.stored, out.duplicates, []), out, recs, None, redeliver)
        except ValueOutOfRange:
            pass  # an integer past int64 (the transaction rolled back): find it record by record
    return _ingest_slow(store, stream, text.split(b"\n"), redeliver, max_sessions)


def _check_sessions(recs: Sequence[ev.Record], max_sessions: int | None) -> None:
    """TooLarge when ``recs`` hold records of more than ``max_sessions`` sessions: the store's work (and
    memory) per batch grows with its sessions beyond what the memory budget's estimate of the body covers
    (a body of ~38,000 session_start records took the backend past 1 GiB, bench/backend_memory.py)."""
    if max_sessions is None or len(recs) <= max_sessions:
        return
    k = len({r.session_id for r in recs})
    if k > max_sessions:
        raise TooLarge(
            f"batch holds records of {k} sessions, over {max_sessions} (max_batch_sessions): "
            "send each session's records in batches of their own"
        )


def _ingest_raws(
    store: SqlStore,
    stream: str,
    raws: list[bytes],
    fast: bool = True,
    redeliver: bool = False,
    max_sessions: int | None = None,
) -> IngestResult:
    if fast:
        checked = _validate_fast(stream, raws)
        if checked is not None:
            _check_sessions(checked[0], max_sessions)
            try:
                out = store.ingest(
                    stream, checked[0], list(map(len, raws)), columns=checked[1], redeliver=redeliver
                )
                return _refuse(IngestResult(out.stored, out.duplicates, []), out, checked[0], None, redeliver)
            except ValueOutOfRange:
                pass  # an integer past int64 (the transaction rolled back): find it record by record
    return _ingest_slow(store, stream, raws, redeliver, max_sessions)


def _ingest_slow(
    store: SqlStore, stream: str, raws: list[bytes], redeliver: bool = False, max_sessions: int | None = None
) -> IngestResult:
    good, sizes, res = _validate_slow(stream, raws)
    _check_sessions(good, max_sessions)
    if good:
        out = store.ingest(stream, good, sizes, redeliver=redeliver)
        res.stored, res.duplicates = out.stored, out.duplicates
        if out.refused:
            # The valid records are the batch's records less the rejected ones, in order.
            bad = {r.index for r in res.rejected}
            _refuse(res, out, good, [i for i in range(len(raws)) if i not in bad], redeliver)
    return res


def decompress_if(
    body: bytes, encoding: str | None, max_bytes: int, charge: Callable[[bytes], None] | None = None
) -> bytes:
    """The body's text: ``gunzip`` for gzip (each decompressed slice handed to ``charge``), the body itself
    for identity (checked against ``max_bytes``)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        if len(body) > max_bytes:
            raise TooLarge(f"body of {len(body)} bytes exceeds {max_bytes} (max_decompressed_bytes)")
        return body
    if enc in ("gzip", "x-gzip"):
        return gunzip(body, max_bytes, charge)
    raise BadBody(f"unsupported Content-Encoding {encoding!r} (use gzip)")


__all__ = [
    "BadBody",
    "IngestResult",
    "Rejection",
    "TooLarge",
    "decompress_if",
    "ingest_body",
    "ingest_raws",
    "split_records",
]
