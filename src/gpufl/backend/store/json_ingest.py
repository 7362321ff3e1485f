"""A batch stored from its NDJSON text, parsed by the engine itself (``SqlStore.ingest_json``)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from gpufl.backend.store.engine import IngestOutcome, StageRefused
from gpufl.backend.store.lod import LodStore
from gpufl.backend.store.schema import RECORD_TABLES, TABLES
from gpufl.backend.store.write import merge_ranges
from gpufl.contract import checks
from gpufl.contract import events as ev

STAGING_PREFIX, STAGING_SUFFIX = "gpufl-batch-", ".ndjson"
_STALE_TMP_S = 3600


def sweep_staging(folder: Path) -> None:
    """Delete the batch files left in a store's staging ``folder`` (a backend killed mid-batch leaves its
    file: every one there is stale once the store is open, its engine locking the store file), and those
    over an hour old in the system temp directory, where earlier versions staged them (a batch file lives
    for one batch's parse, so a younger one may be another backend's)."""
    for p in folder.glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}"):
        p.unlink(missing_ok=True)
    cutoff = time.time() - _STALE_TMP_S
    try:
        old = list(Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}"))
    except OSError:
        return
    for p in old:
        try:
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass  # another user's, or gone meanwhile


class _NotHere(Exception):
    """``ingest_json`` can't store this batch as is (a check failed, a record repeats or is held already):
    roll back and let the caller take the record path."""


# Record types whose batches the engine may parse from JSON text itself (``SqlStore.ingest_json``): stored
# verbatim in one table, with no float column (integers and escape-free strings read the same in any JSON
# parser; two float parsers need not agree on every digit string).
JSON_TYPES: dict[str, str] = {
    tag: table for tag, table in RECORD_TABLES.items() if all(code != "F" for _, code in TABLES[table])
}


def _sql_literal(value: Any) -> str | None:
    """A field's default as an SQL literal (None: no default, or null)."""
    if value is None or value is msgspec.NODEFAULT:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"no SQL literal for default {value!r}")
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


class JsonIngestStore(LodStore):
    def ingest_json(
        self,
        stream: str,
        cls: type[ev.Record],
        text: bytes,
        count: int,
        nbytes: int,
        valid: Callable[[], bool] | None = None,
    ) -> IngestOutcome | None:
        """Store a batch of ``count`` records of one type of JSON_TYPES from its NDJSON ``text`` (one record
        per line, no backslash, ``nbytes`` bytes without the newlines), the engine parsing it (``_parse_json``).
        ``valid``: where the caller's decode runs at the same time as the engine's parse, it waits for that
        decode and says whether it found ``count`` valid records of ``cls``; nothing is written before it
        said yes.

        The caller has decoded the batch with msgspec: that decode is what makes a record valid (types,
        required fields, literals), and the engine only supplies the values, which for such text are the
        same (a duplicate key, where msgspec keeps the last value, makes the engine refuse the batch). The
        rest of the contract is checked here in SQL (``gpufl.contract.checks.sql_violations``). Returns None, having stored
        nothing, where the record path must do it: a check fails (it finds which record and why), the
        engine refuses the text, the batch spans sessions, or a record repeats or is held already (it
        counts the duplicates).

        Parsing and checking are done before the write lock is taken, overlapping the batch being written;
        under the lock the writes and the summaries' rows (aggregated from the parsed batch straight into
        their tables) go to the engine as one script, because each return to Python has to wait for the GIL
        while another request's thread runs Python."""
        tag = ev.type_tag(cls)
        table = JSON_TYPES.get(tag)
        if (
            not self.json_stage
            or table is None
            or stream not in ev.STREAMS
            or tag not in ev.STREAM_TYPES[stream]
            or checks.sql_violations(cls, stream) is None
        ):
            return None
        defaults = {f.name: f.default for f in msgspec.structs.fields(cls)}
        columns = [(c, code, _sql_literal(defaults[c])) for c, code in TABLES[table]]
        columns.append(("stream", "T", None))
        name = "json_" + table
        with self._read() as cur:
            try:
                try:
                    fd, path = tempfile.mkstemp(
                        prefix=STAGING_PREFIX, suffix=STAGING_SUFFIX, dir=self.staging_dir
                    )
                except OSError:
                    return None  # no writable staging folder: the Python path needs none
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(text)
                    self._parse_json(cur, name, path, columns)
                except OSError:
                    return None  # e.g. the temp directory is full
                finally:
                    os.unlink(path)
                return self._ingest_parsed(cur, stream, tag, table, name, columns, count, nbytes, valid)
            except StageRefused:
                return None
            finally:
                self._script(cur, [f"DROP TABLE IF EXISTS {t}" for t in (name, f"{name}_facts")])

    def _ingest_parsed(
        self,
        read_cur: Any,
        stream: str,
        tag: str,
        table: str,
        name: str,
        columns: list[tuple[str, str, str | None]],
        count: int,
        nbytes: int,
        valid: Callable[[], bool] | None = None,
    ) -> IngestOutcome | None:
        violations = checks.sql_violations(ev.TYPE_BY_TAG[tag], stream)
        assert violations is not None  # ingest_json takes only types whose rules have an SQL form
        first, last = ev.TIME_SPAN[tag]
        # The batch's facts, kept in a one-row table so that the writes below take the session id from
        # it: no value of a record is spliced into SQL (``stream`` and ``tag`` are this module's names).
        facts = {
            "n": "count(*)",
            "sid": "min(session_id)",
            "sid_max": "max(session_id)",  # equal to the minimum: one id, whose form is checked below
            "lo": "min(seq)",
            "hi": "max(seq)",
            # No seq at or below the one before it, in whatever order the rows are scanned: a strictly
            # increasing sequence, so the seqs are distinct (the usual batch) without hashing them.
            # (A comparison, not a difference: no overflow, whatever the seqs.)
            "unordered": "count(*) FILTER (WHERE seq <= prev_seq)",
            "first_ns": f"min({first})",
            "last_ns": f"max({last})",
            # The contract's rules in their SQL form (``gpufl.contract.checks``): rows breaking each.
            **{f"bad_{k}": e for k, e in violations.items()},
        }
        got = self._script(
            read_cur,
            [
                f"CREATE OR REPLACE TEMP TABLE {name}_facts AS SELECT "
                + ", ".join(f"{e} AS {k}" for k, e in facts.items())
                + f" FROM (SELECT *, lag(seq) OVER () AS prev_seq FROM {name}) t",
                f"SELECT * FROM {name}_facts",
            ],
        )
        row = dict(zip(facts, got.fetchall()[0], strict=True))
        n, sid, lo, hi = row["n"], row["sid"], row["lo"], row["hi"]
        if row["unordered"]:
            row["seqs"] = self._exec(read_cur, f"SELECT count(DISTINCT seq) FROM {name}").fetchall()[0][0]
        else:
            row["seqs"] = n
        # The numbers' ranges are the decoder's (types of the contract): its verdict (``valid``) covers them.
        # The rest of the contract is checked here: the batch's one session id and its form, and every rule
        # in SQL form (the stream, a stamped seq, the order of start and end).
        if (
            n != count
            or sid != row["sid_max"]
            or not ev.valid_session_id(sid)
            or any(row[f"bad_{k}"] for k in violations)
        ):
            return None
        if valid is not None and not valid():
            return None  # msgspec's decode did not clear the batch: nothing may be stored from this parse
        try:
            with self._write() as cur:
                self._lock_streams(cur, [(sid, stream)])
                # A deleted session's tombstone comes back as a row (-1, -1), ahead of the real ranges
                # (seqs are >= 0), in the same round trip: the record path then refuses the batch.
                rows = self._exec(
                    cur,
                    """SELECT lo, hi FROM seq_ranges WHERE session_id = ? AND stream = ?
                       UNION ALL SELECT -1, -1 FROM pruned_sessions WHERE session_id = ?
                       ORDER BY lo""",
                    [sid, stream, sid],
                ).fetchall()
                ranges = [(int(a), int(b)) for a, b in rows]
                if (
                    row["seqs"] != n
                    or any(a <= hi and b >= lo for a, b in ranges)
                    or (ranges and ranges[0][0] < 0)
                ):
                    raise _NotHere
                if n == hi - lo + 1:  # gap-free (the usual batch): one run
                    merged = merge_ranges([*ranges, (lo, hi)], [])
                else:
                    seqs = self._exec(cur, f"SELECT seq FROM {name} ORDER BY seq").fetchall()
                    merged = merge_ranges(ranges, [int(r[0]) for r in seqs])
                the_sid = f"(SELECT sid FROM {name}_facts)"
                table_cols = ", ".join(c for c, _ in TABLES[table])
                script = [
                    f"DELETE FROM seq_ranges WHERE session_id = {the_sid} AND stream = '{stream}'",
                    f"INSERT INTO seq_ranges SELECT f.sid, '{stream}', r.lo, r.hi FROM (VALUES "
                    + ", ".join(f"({int(a)}, {int(b)})" for a, b in merged)
                    + f") r(lo, hi), {name}_facts f",
                    f"INSERT INTO {table} ({table_cols}) SELECT {table_cols} FROM {name}",
                ]
                # The summaries' rows go straight into their tables (temporary tables for them, made before
                # the lock, cost four more CREATE and DROP statements and a copy of their rows per batch).
                script += [f"INSERT INTO {t} {q}" for t, q in self._summary_selects(tag, name)]
                script += [
                    f"""INSERT INTO session_streams SELECT sid, '{stream}', n, first_ns, last_ns, {int(nbytes)},
                               {time.time_ns()} FROM {name}_facts""",
                    f"INSERT INTO type_counts SELECT sid, '{tag}', n FROM {name}_facts",
                ]
                self._script(cur, script)
        except _NotHere:
            return None
        self._count_batch([sid])
        return IngestOutcome(stored=count)
