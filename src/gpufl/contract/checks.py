"""The contract's checks beyond types and ranges, in the three forms the backend needs, from one definition.

The decoder (msgspec, from the structs in ``events``) enforces every field's type, presence and range. What
it cannot express is stated once, as data in ``events`` (``STREAM_TYPES``, ``FIXED_SEQ``, ``ORDERED``, the
session id's form) and here (what a posted batch must also satisfy: its records' stream is the one posted
to, no NUL in a string, ``options`` nested at most ``MAX_OPTIONS_DEPTH`` levels), and checked in three forms:

- per record (``check_posted``): decode, ``events.check``, then the posting rules; raises ContractError
  with the reason, the first rule broken;
- per column (``columns_ok``): the same rules over a decoded batch's columns, one type at a time;
- in SQL (``sql_violations``): counts of rows breaking a rule, for a batch the store's engine parsed.

A rule added to that data is picked up by all three forms; ``tests/backend/test_ingest_validation.py``
holds the column form to the row form on mutated batches.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import msgspec

from gpufl.contract import events as ev
from gpufl.contract.events import ContractError

MAX_OPTIONS_DEPTH = 32
"""How deep a session_start's ``options`` may nest (a stored header is parsed again by every reader)."""

NUL_ESCAPE = b"\\u0000"
"""A NUL can't be stored in PostgreSQL text and has no business in a name or path: the escape is refused
anywhere in a record (a raw NUL byte is already malformed JSON)."""

_OPTIONAL = {t: {f.name for f in msgspec.structs.fields(t) if f.default is None} for t in ev.EVENT_TYPES}
_FIELDS = {t: {f.name for f in msgspec.structs.fields(t)} for t in ev.EVENT_TYPES}


def depth(obj: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping once past ``limit``."""
    if limit < 0:
        return 1
    if isinstance(obj, dict):
        return 1 + max((depth(v, limit - 1) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((depth(v, limit - 1) for v in obj), default=0)
    return 0


def _options_ok(rec: ev.Record) -> bool:
    return not isinstance(rec, ev.SessionStart) or depth(rec.options, MAX_OPTIONS_DEPTH) <= MAX_OPTIONS_DEPTH


def check_posted(raw: bytes, stream: str) -> ev.Record:
    """One record posted to ``stream``, decoded and checked: the contract (``events.decode``) and the posting
    rules. Raises ContractError with the reason, whatever the bytes."""
    if NUL_ESCAPE in raw:
        raise ContractError("strings must not contain NUL (\\u0000)")
    rec = ev.decode(raw)
    if rec.stream != stream:
        raise ContractError(f"record of stream {rec.stream!r} posted to /events/{stream}")
    if not _options_ok(rec):
        raise ContractError(f"options nested deeper than {MAX_OPTIONS_DEPTH} levels")
    return rec


def columns_ok(
    t: type[ev.Record], rs: Sequence[ev.Record], cols: dict[str, Sequence[Any]], stream: str
) -> bool:
    """Whether every record of ``rs`` (decoded records of type ``t``, so within the contract's types and
    ranges; ``cols``: their fields as columns) passes the rules of ``check_posted`` for ``stream``. The NUL
    rule is the caller's, on the batch's bytes."""
    tag = ev.type_tag(t)
    if tag not in ev.STREAM_TYPES[stream]:
        return False
    if cols["stream"].count(stream) != len(rs):
        return False
    # Usually one id per batch: the id's form is checked once per distinct id.
    if not all(map(ev.valid_session_id, set(cols["session_id"]))):
        return False
    if min(cols["seq"]) < 0:
        return False
    fixed = ev.FIXED_SEQ.get(tag)
    if fixed is not None and any(s != fixed for s in cols["seq"]):
        return False
    if t is ev.SessionStart and not all(map(_options_ok, rs)):
        return False
    for first, last in ev.ORDERED:
        if first not in cols or last not in cols:
            continue
        starts: Sequence[Any]
        ends: Sequence[Any]
        if first in _OPTIONAL[t] or last in _OPTIONAL[t]:
            pairs = [
                (a, b)
                for a, b in zip(cols[first], cols[last], strict=True)
                if a is not None and b is not None
            ]
            starts, ends = [a for a, _ in pairs], [b for _, b in pairs]
        else:
            starts, ends = cols[first], cols[last]
        if any(map(operator.lt, ends, starts)):
            return False
    return True


def sql_violations(t: type[ev.Record], stream: str) -> dict[str, str] | None:
    """Per rule, an SQL aggregate counting the rows (of a relation holding ``t``'s fields and ``stream``)
    that break it: a batch passes where every count is 0 and its one session id passes
    ``events.valid_session_id``. None where a rule of ``t`` has no SQL form (a session_start's ``options``):
    such a batch takes the Python path. ``stream`` is one of ``events.STREAMS`` (spliced as a literal)."""
    if stream not in ev.STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    tag = ev.type_tag(t)
    if tag not in ev.STREAM_TYPES[stream] or t is ev.SessionStart:
        return None
    out = {
        "off_stream": f"count(*) FILTER (WHERE stream <> '{stream}')",
        "unstamped": "count(*) FILTER (WHERE seq < 0)",
    }
    fixed = ev.FIXED_SEQ.get(tag)
    if fixed is not None:
        out["fixed_seq"] = f"count(*) FILTER (WHERE seq <> {int(fixed)})"
    for first, last in ev.ORDERED:
        if first in _FIELDS[t] and last in _FIELDS[t]:
            # A null on either side compares to null, which FILTER leaves out: as the row form skips it.
            out[f"reversed_{first}_{last}"] = f"count(*) FILTER (WHERE {last} < {first})"
    return out
